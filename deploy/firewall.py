"""What each node admits and where each service listens, derived from the topology: the cloud-firewall rules the
Pulumi program turns into resources (and the simulated nodes apply with nftables), and the addresses services bind.

vps_1: public services (VPN, HTTPS) from anywhere; SSH from the VPC (VPN clients arrive NATed from vps_1
itself) and the admin CIDRs; every other service the VPC may reach from the VPC only (the node's container-only services
never). vps_2 and vps_3: everything
from the VPC, nothing else. Outbound is open (package updates, image pulls, ACME).
"""

from __future__ import annotations

from dataclasses import dataclass

from resources.topology import NODES, PRIVATE_NETWORK, SERVICES, exposed_services

ANYWHERE = ("0.0.0.0/0", "::/0")


@dataclass(frozen=True)
class InboundRule:
    protocol: str  # tcp, udp or icmp
    port_range: str  # "443", "1-65535"; empty for icmp
    sources: tuple[str, ...]
    why: str


def _is_ssh(name: str) -> bool:
    return name.startswith("ssh-")


def inbound_rules(node: str, admin_cidrs: tuple[str, ...] = ()) -> list[InboundRule]:
    vpc = (str(PRIVATE_NETWORK),)
    if not NODES[node].public:
        return [
            InboundRule("tcp", "1-65535", vpc, "private node: the VPC only"),
            InboundRule("udp", "1-65535", vpc, "private node: the VPC only"),
            InboundRule("icmp", "", vpc, "private node: the VPC only"),
        ]
    rules: list[InboundRule] = []
    for svc in sorted(exposed_services(node), key=lambda s: (s.port, s.protocol)):
        if svc.public:
            rules.append(InboundRule(svc.protocol, str(svc.port), ANYWHERE, svc.name))
        elif _is_ssh(svc.name):
            rules.append(InboundRule(svc.protocol, str(svc.port), vpc + tuple(admin_cidrs), svc.name))
        else:
            rules.append(InboundRule(svc.protocol, str(svc.port), vpc, svc.name))
    rules.append(InboundRule("icmp", "", vpc, "ping from the VPC"))
    return rules


def publicly_reachable(node: str, admin_cidrs: tuple[str, ...] = ()) -> list[InboundRule]:
    """Rules that admit a source outside the VPC and the admin CIDRs (what the internet at large can reach)."""
    trusted = {str(PRIVATE_NETWORK), *admin_cidrs}
    return [r for r in inbound_rules(node, admin_cidrs) if set(r.sources) - trusted]


@dataclass(frozen=True)
class Binding:
    service: str
    address: str
    port: int
    protocol: str


def listen_address(name: str) -> str:
    """The host address a service is bound to: every interface for the public ones and for sshd (the firewall
    admits only the VPC and the admin CIDRs), loopback for the node's container network, else the private address."""
    svc = SERVICES[name]
    if svc.public or _is_ssh(name):
        return "0.0.0.0"
    if svc.reach == "node":
        return "127.0.0.1"
    return NODES[svc.node].private_ip


def bindings(node: str) -> list[Binding]:
    return [Binding(s.name, listen_address(s.name), s.port, s.protocol) for s in SERVICES.values() if s.node == node]
