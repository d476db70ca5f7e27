"""The Pulumi program: VPC, three Debian 12 droplets, a reserved IP on vps_1, block volumes, cloud firewalls.

DigitalOcean assigns private addresses itself, so every droplet's assigned address is compared with the
topology and the program fails loudly on a mismatch (droplets are created in topology order so that a fresh
VPC hands out .2, .3, .4). Stack config (``pulumi config set platform:<key>``): ``region``, ``sshPublicKeys``
(list), ``adminCidrs`` (list, may be empty: then SSH only over the VPN), ``size_vps_1`` / ``size_vps_2`` /
``size_vps_3``, ``volumeSizes`` (map name -> GB).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_digitalocean as do

from deploy import cloud_init, firewall, versions
from deploy.storage import VOLUMES, volumes_on
from resources.topology import NODES, PRIVATE_NETWORK

DEFAULT_SIZES = {"vps_1": "s-4vcpu-8gb", "vps_2": "s-4vcpu-16gb-amd", "vps_3": "s-4vcpu-8gb"}
DEFAULT_REGION = "fra1"
PROJECT_TAG = "data-platform"


class AddressMismatchError(RuntimeError):
    """DigitalOcean gave a droplet another private address than the topology declares."""


def check_private_ip(node: str, assigned: str | None) -> str:
    expected = NODES[node].private_ip
    if assigned is not None and assigned != expected:
        raise AddressMismatchError(
            f"{node} got private address {assigned}, the topology declares {expected}: destroy the droplets "
            "and re-run (a fresh VPC assigns in creation order), or change resources/topology.py"
        )
    return expected


@dataclass
class Infra:
    vpc: do.Vpc
    droplets: dict[str, do.Droplet]
    volumes: dict[str, do.Volume]
    firewalls: dict[str, do.Firewall]
    reserved_ip: do.ReservedIp
    checked_ips: dict[str, pulumi.Output[str]] = field(default_factory=dict)


def _firewall_args(node: str, admin_cidrs: tuple[str, ...]) -> list[do.FirewallInboundRuleArgs]:
    rules = []
    for rule in firewall.inbound_rules(node, admin_cidrs):
        args: dict[str, Any] = {"protocol": rule.protocol, "source_addresses": list(rule.sources)}
        if rule.port_range:
            args["port_range"] = rule.port_range
        rules.append(do.FirewallInboundRuleArgs(**args))
    return rules


OUTBOUND = [
    do.FirewallOutboundRuleArgs(protocol=p, port_range="1-65535", destination_addresses=list(firewall.ANYWHERE))
    for p in ("tcp", "udp")
] + [do.FirewallOutboundRuleArgs(protocol="icmp", destination_addresses=list(firewall.ANYWHERE))]


def build(config: pulumi.Config | None = None) -> Infra:
    config = config or pulumi.Config("platform")
    region = config.get("region") or DEFAULT_REGION
    ssh_keys: list[str] = config.require_object("sshPublicKeys")
    admin_cidrs = tuple(config.get_object("adminCidrs") or [])
    sizes_gb: dict[str, int] = {v.name: v.size_gb for v in VOLUMES} | (config.get_object("volumeSizes") or {})

    vpc = do.Vpc("platform-vpc", name="platform-vpc", region=region, ip_range=str(PRIVATE_NETWORK))
    volumes = {
        v.name: do.Volume(
            f"vol-{v.name}",
            name=v.name,
            region=region,
            size=int(sizes_gb[v.name]),
            initial_filesystem_type="ext4",
            initial_filesystem_label=v.name[:16],
            description=v.description,
            opts=pulumi.ResourceOptions(protect=True),  # data outlives droplets
        )
        for v in VOLUMES
    }
    droplets: dict[str, do.Droplet] = {}
    checked: dict[str, pulumi.Output[str]] = {}
    previous: do.Droplet | None = None
    for node in NODES.values():
        droplet = do.Droplet(
            node.name,
            name=node.name.replace("_", "-"),
            image=versions.DEBIAN_IMAGE,
            region=region,
            size=config.get(f"size_{node.name}") or DEFAULT_SIZES[node.name],
            vpc_uuid=vpc.id,
            ipv6=False,
            monitoring=True,
            volume_ids=[volumes[v.name].id for v in volumes_on(node.name)],
            user_data=cloud_init.user_data(node.name, ssh_keys),
            tags=[PROJECT_TAG, node.name.replace("_", "-"), node.runtime],
            opts=pulumi.ResourceOptions(depends_on=[previous] if previous else [], ignore_changes=["user_data"]),
        )
        checked[node.name] = droplet.ipv4_address_private.apply(lambda ip, n=node.name: check_private_ip(n, ip))
        droplets[node.name] = droplet
        previous = droplet
    edge = next(n for n in NODES.values() if n.public)
    reserved_ip = do.ReservedIp("vps-1-reserved-ip", region=region, droplet_id=droplets[edge.name].id.apply(int))
    firewalls = {
        node.name: do.Firewall(
            f"fw-{node.name}",
            name=f"platform-{node.name.replace('_', '-')}",
            droplet_ids=[droplets[node.name].id.apply(int)],
            inbound_rules=_firewall_args(node.name, admin_cidrs),
            outbound_rules=OUTBOUND,
        )
        for node in NODES.values()
    }
    return Infra(vpc, droplets, volumes, firewalls, reserved_ip, checked)


def export(infra: Infra) -> None:
    pulumi.export("vpc_ip_range", infra.vpc.ip_range)
    pulumi.export("vps_1_public_ip", infra.reserved_ip.ip_address)
    for name, ip in infra.checked_ips.items():
        pulumi.export(f"{name}_private_ip", ip)
