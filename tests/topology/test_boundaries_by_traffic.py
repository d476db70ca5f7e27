"""The network boundaries proven with packets: the three nodes and the internet as network namespaces
(``deploy/sim``), each node behind its cloud firewall applied with nftables, a stand-in listener on every binding
the deployment declares (``deploy/firewall.bindings``), and probes sent from where an attacker or a pod would be.

What the listeners stand for: the real servers bind the same addresses and ports (compose files, manifests,
sshd's default), so what answers here is what the firewall and the bindings let through — not whether the server
behind a port would accept the client (the TLS, token and password tests do that).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from deploy import firewall, nftables
from deploy.sim import topology as sim
from deploy.sim.netns import Lab, host_routes_overlapping, wait_for
from resources.topology import NODES, PRIVATE_NETWORK, SERVICES
from tests.deploy.test_cloud_infra import ADMIN_CIDR, DigitalOceanMocks, _build, _rules, _settle

OUTSIDER_IP = "192.0.2.10"  # TEST-NET-1: a host outside the VPC that has somehow reached its segment
INTERNET_PORT = 8443  # a server on the internet, for the egress check


def _spec(address: str, port: int, protocol: str) -> str:
    return f"{address}:{port}/{protocol}"


def _answering(ns, specs: list[str]) -> set[str]:
    out = ns.run(sys.executable, "-m", "deploy.sim.probe", *specs, timeout=120).stdout
    return set(out.split())


@pytest.fixture(scope="module")
def topo(tmp_path_factory) -> Iterator[sim.Topology]:
    with Lab() as lab:
        topo = sim.build(lab)
        logs = []
        for node, ns in topo.nodes.items():
            specs = [_spec(b.address, b.port, b.protocol) for b in firewall.bindings(node)]
            logs.append(tmp_path_factory.mktemp("listeners") / f"{node}.log")
            ns.popen(sys.executable, "-m", "deploy.sim.listeners", *specs, log=logs[-1])
        logs.append(tmp_path_factory.mktemp("listeners") / "internet.log")
        internet_server = _spec(sim.INTERNET_IP, INTERNET_PORT, "tcp")
        topo.internet.popen(sys.executable, "-m", "deploy.sim.listeners", internet_server, log=logs[-1])
        for log in logs:
            wait_for(lambda log=log: log.exists() and "listening" in log.read_text(), 30, f"listeners ({log.name})")
        # on the VPC's segment with an address outside it; the nodes get a route back in the test, so only their
        # firewalls decide
        topo.outsider = lab.namespace("outsider")  # type: ignore[attr-defined]
        topo.vpc.attach(topo.outsider, f"{OUTSIDER_IP}/24", sim.PRIVATE_IFACE)
        topo.outsider.ip("route", "add", str(PRIVATE_NETWORK), "dev", sim.PRIVATE_IFACE)
        assert host_routes_overlapping(str(PRIVATE_NETWORK)) == []
        yield topo
    assert host_routes_overlapping(str(PRIVATE_NETWORK)) == []


def _every_port_on(addresses: list[str]) -> list[str]:
    """Every service of the topology on each address: TCP ones by connect, the VPN by UDP."""
    return [_spec(a, s.port, s.protocol) for a in addresses for s in SERVICES.values()]


def test_the_internet_reaches_only_the_vpn_and_https_on_the_public_address(topo):
    addresses = [sim.EDGE_PUBLIC_IP, *(n.private_ip for n in NODES.values())]
    answered = _answering(topo.internet, _every_port_on(addresses))
    public = {_spec(sim.EDGE_PUBLIC_IP, s.port, s.protocol) for s in SERVICES.values() if s.public}
    assert public == {_spec(sim.EDGE_PUBLIC_IP, 443, "tcp"), _spec(sim.EDGE_PUBLIC_IP, 1194, "udp")}
    assert answered == public


def test_the_vpc_reaches_exactly_what_the_topology_exposes(topo):
    for source in NODES:
        others = [n.private_ip for name, n in NODES.items() if name != source]
        answered = _answering(topo.nodes[source], _every_port_on(others))
        expected = {
            _spec(NODES[s.node].private_ip, s.port, s.protocol)
            for s in SERVICES.values()
            if s.node != source and s.reach != "node"
        }
        assert answered == expected, source


def test_node_only_services_answer_on_their_node_only(topo):
    node_only = [s for s in SERVICES.values() if s.reach == "node"]
    assert node_only
    for s in node_only:
        assert _answering(topo.nodes[s.node], [_spec("127.0.0.1", s.port, s.protocol)]), s.name


def test_private_nodes_refuse_a_source_outside_the_vpc(topo):
    for ns in topo.nodes.values():
        ns.ip("route", "replace", f"{OUTSIDER_IP}/32", "dev", sim.PRIVATE_IFACE)
    answered = _answering(topo.outsider, _every_port_on([n.private_ip for n in NODES.values()]))
    edge = NODES[sim.EDGE].private_ip
    # the control: vps_1's public services admit anyone, so the segment and the routes back work
    assert answered == {_spec(edge, s.port, s.protocol) for s in SERVICES.values() if s.public}


def test_vps_2_and_vps_3_cannot_reach_the_internet(topo):
    target = [_spec(sim.INTERNET_IP, INTERNET_PORT, "tcp")]
    assert _answering(topo.nodes[sim.EDGE], target) == set(target)  # the control: the edge can
    for node in (n for n in NODES if n != sim.EDGE):
        assert _answering(topo.nodes[node], target) == set(), node


def _nft_admits(ns) -> set[tuple[str, str, str]]:
    """(protocol, port range, source) of every accept rule with a source, from the kernel's own listing."""
    listing = json.loads(ns.run("nft", "-j", "list", "table", "inet", nftables.TABLE).stdout)["nftables"]
    out = set()
    for rule in (item["rule"] for item in listing if "rule" in item):
        source = protocol = None
        ports = ""
        for expr in rule["expr"]:
            match = expr.get("match", {})
            left, right = match.get("left", {}), match.get("right")
            if left.get("payload", {}).get("field") == "saddr":  # a prefix, or one address for a /32 or /128
                full = 128 if left["payload"]["protocol"] == "ip6" else 32
                source = (
                    f"{right['prefix']['addr']}/{right['prefix']['len']}"
                    if isinstance(right, dict)
                    else f"{right}/{full}"
                )
            elif left.get("payload", {}).get("field") == "dport":
                protocol = left["payload"]["protocol"]
                ports = f"{right['range'][0]}-{right['range'][1]}" if isinstance(right, dict) else str(right)
            elif left.get("meta", {}).get("key") == "l4proto":
                protocol = "icmp"
        if source:
            out.add((protocol, ports, source))
    return out


def test_the_nodes_nftables_admit_exactly_what_the_cloud_firewalls_admit():
    """The Pulumi program's firewall resources (under mocks) against the rules the kernel loaded in each node."""
    mocks = DigitalOceanMocks()
    infra = _build(mocks)
    _settle(infra)
    cloud = _rules(mocks)
    with Lab() as lab:
        for node in NODES:
            ns = lab.namespace(node)
            ns.run("nft", "-f", "-", input=nftables.ruleset(node, (ADMIN_CIDR,)))
            expected = {
                ("icmp" if r["protocol"] == "icmp" else r["protocol"], r.get("portRange") or "", source)
                for r in cloud[f"platform-{node.replace('_', '-')}"]
                for source in r["sourceAddresses"]
            }
            assert _nft_admits(ns) == expected, node


def test_topology_up_and_down_leave_nothing_behind():
    """``python -m deploy.sim up --listeners`` / ``make topology-down``: the namespaces outlive ``up``; ``down`` is
    idempotent. (The full ``make topology-up`` deploys with the functions ``test_end_to_end.py``'s fixture uses.)"""
    from deploy.sim.__main__ import PREFIX
    from deploy.sim.netns import _netns_names

    def run(*a):
        return subprocess.run([sys.executable, "-m", "deploy.sim", *a], capture_output=True, text=True, timeout=120)

    try:
        assert run("up", "--listeners").returncode == 0
        names = {n for n in _netns_names() if n.startswith(PREFIX + "-")}
        assert {f"{PREFIX}-{n}" for n in [*NODES, "internet"]} <= names
        probe = [sys.executable, "-m", "deploy.sim.probe", _spec(sim.EDGE_PUBLIC_IP, 443, "tcp")]
        answered = wait_for(
            lambda: subprocess.run(["ip", "netns", "exec", f"{PREFIX}-internet", *probe], capture_output=True,
                                   text=True, timeout=60).stdout.strip(), 20, "the proxy's stand-in")  # fmt: skip
        assert answered == _spec(sim.EDGE_PUBLIC_IP, 443, "tcp")
    finally:
        assert run("down").returncode == 0
    assert run("down").stdout.strip() == "nothing to remove"
    assert not [n for n in _netns_names() if n.startswith(PREFIX + "-")]
    assert host_routes_overlapping(str(PRIVATE_NETWORK)) == []
