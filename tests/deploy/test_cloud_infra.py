"""The Pulumi program under Pulumi's mocks: no cloud, no CLI. DigitalOcean's address assignment is simulated."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pulumi
import pytest

from resources.topology import NODES, PRIVATE_NETWORK

ADMIN_CIDR = "203.0.113.7/32"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pulumi_digitalocean's own renames


class DigitalOceanMocks(pulumi.runtime.Mocks):
    """Echo inputs as outputs; droplets get private addresses from ``assign`` (topology order by default)."""

    def __init__(self, assign: dict[str, str] | None = None) -> None:
        self.assign = assign or {n.name.replace("_", "-"): n.private_ip for n in NODES.values()}
        self.created: list[tuple[str, str, dict[str, Any]]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        outputs = dict(args.inputs)
        if args.typ == "digitalocean:index/droplet:Droplet":
            outputs["ipv4AddressPrivate"] = self.assign[args.inputs["name"]]
            outputs["ipv4Address"] = "198.51.100.10"
        if args.typ == "digitalocean:index/reservedIp:ReservedIp":
            outputs["ipAddress"] = "198.51.100.200"
        self.created.append((args.typ, args.name, outputs))
        return [f"{args.name}-id" if args.typ != "digitalocean:index/droplet:Droplet" else "1234", outputs]

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


def _build(mocks: DigitalOceanMocks):
    """The program under ``mocks``, on an event loop of its own: Pulumi registers resources on the thread's current
    loop, and any earlier ``asyncio.run`` in the process (a library's, in another test) leaves the thread without
    one."""
    asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.set_mocks(mocks, project="platform", stack="test", preview=False)
    pulumi.runtime.set_all_config(
        {
            "platform:sshPublicKeys": '["ssh-ed25519 AAAAC3NzaTestKey operator"]',
            "platform:adminCidrs": f'["{ADMIN_CIDR}"]',
        }
    )
    from deploy import infra

    return infra.build()


def _resolve(output: pulumi.Output) -> Any:
    """Wait for one Output under the mocks."""
    return asyncio.get_event_loop().run_until_complete(output.future())


@pytest.fixture
def built():
    mocks = DigitalOceanMocks()
    infra = _build(mocks)
    return infra, mocks


def _by_type(mocks: DigitalOceanMocks, typ: str) -> list[dict[str, Any]]:
    return [outputs for t, _, outputs in mocks.created if t == f"digitalocean:index/{typ}"]


def _settle(infra) -> None:
    for out in infra.checked_ips.values():
        _resolve(out)
    _resolve(infra.reserved_ip.ip_address)
    for fw in infra.firewalls.values():
        _resolve(fw.inbound_rules)


def test_vpc_has_the_topology_range(built):
    infra, mocks = built
    assert _resolve(infra.vpc.ip_range) == str(PRIVATE_NETWORK)
    _settle(infra)
    assert [v["ipRange"] for v in _by_type(mocks, "vpc:Vpc")] == [str(PRIVATE_NETWORK)]


def test_every_droplet_is_debian_12_in_the_vpc_with_its_volumes(built):
    infra, mocks = built
    _settle(infra)
    droplets = _by_type(mocks, "droplet:Droplet")
    assert sorted(d["name"] for d in droplets) == sorted(n.replace("_", "-") for n in NODES)
    vpc_id = _resolve(infra.vpc.id)
    for d in droplets:
        assert d["vpcUuid"] == vpc_id
        assert d["image"] == "debian-12-x64"
        assert d["userData"].startswith("#cloud-config")
        assert ipaddress.IPv4Address(d["ipv4AddressPrivate"]) in PRIVATE_NETWORK
    by_name = {d["name"]: d for d in droplets}
    assert len(by_name["vps-1"]["volumeIds"]) == 4 and len(by_name["vps-3"]["volumeIds"]) == 1
    assert by_name["vps-2"].get("volumeIds", []) == []
    assert {v["name"] for v in _by_type(mocks, "volume:Volume")} == {
        "oltp-postgres", "dagster-postgres", "seaweedfs", "edge-state", "clickhouse",
    }  # fmt: skip
    assert _by_type(mocks, "reservedIp:ReservedIp")[0]["dropletId"] == 1234


def _rules(mocks: DigitalOceanMocks) -> dict[str, list[dict[str, Any]]]:
    return {fw["name"]: fw["inboundRules"] for fw in _by_type(mocks, "firewall:Firewall")}


def test_only_vps_1_has_public_ingress_and_only_vpn_and_https(built):
    infra, mocks = built
    _settle(infra)
    rules = _rules(mocks)
    assert set(rules) == {"platform-vps-1", "platform-vps-2", "platform-vps-3"}
    trusted = {str(PRIVATE_NETWORK), ADMIN_CIDR}
    public = {
        (name, r["protocol"], r.get("portRange"))
        for name, rs in rules.items()
        for r in rs
        if set(r["sourceAddresses"]) - trusted
    }
    assert public == {("platform-vps-1", "udp", "1194"), ("platform-vps-1", "tcp", "443")}
    for name in ("platform-vps-2", "platform-vps-3"):
        assert all(r["sourceAddresses"] == [str(PRIVATE_NETWORK)] for r in rules[name])
    ssh = [r for r in rules["platform-vps-1"] if r.get("portRange") == "22"]
    assert ssh and set(ssh[0]["sourceAddresses"]) == trusted


def test_firewalls_attach_to_their_own_droplet(built):
    infra, mocks = built
    _settle(infra)
    for fw in _by_type(mocks, "firewall:Firewall"):
        assert fw["dropletIds"] == [1234]
    assert len(_by_type(mocks, "firewall:Firewall")) == len(NODES)


def test_an_unexpected_private_address_fails_loudly():
    from deploy.infra import AddressMismatchError

    swapped = {"vps-1": "10.104.0.3", "vps-2": "10.104.0.2", "vps-3": "10.104.0.4"}
    infra = _build(DigitalOceanMocks(swapped))
    with pytest.raises(AddressMismatchError, match=r"vps_1 got private address 10\.104\.0\.3"):
        _resolve(infra.checked_ips["vps_1"])
