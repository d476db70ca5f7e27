"""The topology as network namespaces: one per node on a VPC bridge at its private address, and an ``internet``
host that reaches vps_1 only over a separate public link. Each node applies its cloud firewall with nftables.

Addresses, ports and rules all come from ``resources/topology.py`` through ``deploy/firewall.py``; the public link
uses TEST-NET-3 (203.0.113.0/24), which belongs to nobody. The host namespace gets no interface and no route.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network

from deploy import nftables
from deploy.sim.netns import Lab, Namespace, Switch
from resources.topology import NODES, PRIVATE_NETWORK

PUBLIC_NETWORK = IPv4Network("203.0.113.0/24")
EDGE = next(n.name for n in NODES.values() if n.public)
EDGE_PUBLIC_IP = str(PUBLIC_NETWORK[2])  # vps_1's reserved IP
INTERNET_IP = str(PUBLIC_NETWORK[100])  # anyone on the internet: an agent's laptop, a scanner
PRIVATE_IFACE = "eth1"  # as on a DigitalOcean droplet


@dataclass
class Topology:
    lab: Lab
    nodes: dict[str, Namespace]
    internet: Namespace
    vpc: Switch  # the private network's segment: a test may plug another host into it

    def address_of(self, node: str) -> str:
        return NODES[node].private_ip


def admit_container_bridges(ns: Namespace) -> None:
    """On a node that runs Docker: what comes from a container bridge is not the cloud firewall's business.

    The cloud firewall filters the droplet's network interfaces from outside; a container's packets to the node
    (a service dialling a port the node publishes, through Docker's proxy) cross a bridge inside the droplet and
    never reach it. The node's input chain stands for the cloud firewall, so it lets the bridges in.
    """
    rules = [f'add rule inet {nftables.TABLE} input iifname "{bridge}" accept comment "Docker bridge, inside the node"'
             for bridge in ("docker0", "br-*")]  # fmt: skip
    ns.run("nft", "-f", "-", input="\n".join(rules) + "\n")


def build(lab: Lab) -> Topology:
    vpc = lab.switch("vpc")
    nodes: dict[str, Namespace] = {}
    for node in NODES.values():
        ns = lab.namespace(node.name)
        vpc.attach(ns, f"{node.private_ip}/{PRIVATE_NETWORK.prefixlen}", PRIVATE_IFACE)
        nodes[node.name] = ns
    internet = lab.namespace("internet")
    lab.link(
        nodes[EDGE], f"{EDGE_PUBLIC_IP}/{PUBLIC_NETWORK.prefixlen}",
        internet, f"{INTERNET_IP}/{PUBLIC_NETWORK.prefixlen}",
    )  # fmt: skip
    for name, ns in nodes.items():
        ns.run("nft", "-f", "-", input=nftables.ruleset(name))
    return Topology(lab, nodes, internet, vpc)
