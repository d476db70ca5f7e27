"""vps_1's gateway in the simulated topology (deploy/sim/gateway.py): the real OpenVPN entrypoint and Caddy with the
generated files in vps_1's namespace, behind its firewall, reached from the ``internet`` namespace at the public
address, as an agent's laptop reaches the deployment.

Stand-ins, each started by one fixture so that the real server can take its place: the Dagster webserver (an HTTP
server answering ``/server_info`` on its node-only binding, 127.0.0.1:3000) and Spark Connect on vps_2
(deploy.sim.listeners on 10.104.0.3:15002); oltp-postgres's stand-in on 10.104.0.2:5432 is the control that vps_1's
published ports do answer over the VPN, so that the webserver's port not answering means something.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy import firewall
from deploy.sim import gateway
from deploy.sim import topology as sim
from deploy.sim.netns import Lab, Namespace, host_routes_overlapping, wait_for
from resources.topology import PRIVATE_NETWORK, SERVICES
from tests.deploy._helpers import assert_split_tunnel, readable_scratch

WEBSERVER = """
import http.server, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"dagster_webserver_version": "stand-in"}' if self.path == "/server_info" else b"not found"
        self.send_response(200 if self.path == "/server_info" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

server = http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler)
print("listening", flush=True)
server.serve_forever()
"""


def _endpoint(name: str) -> str:
    """Where the deployment binds a service (deploy/firewall.bindings), as a probe spec."""
    b = next(b for node in sim.NODES for b in firewall.bindings(node) if b.service == name)
    return f"{b.address}:{b.port}/{b.protocol}"


SPARK_CONNECT, OLTP = _endpoint("spark-connect"), _endpoint("oltp-postgres")
WEBSERVER_ON_VPC = f"{sim.NODES[sim.EDGE].private_ip}:{SERVICES['dagster-webserver'].port}/tcp"


def _started(proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    wait_for(lambda: "listening" in log.read_text() or proc.poll() is not None, 30, what)
    assert proc.poll() is None, f"{what} exited:\n{log.read_text()[-2000:]}"


def dagster_webserver_stand_in(ns: Namespace, logs: Path) -> None:
    address, port, _ = _endpoint("dagster-webserver").replace("/", ":").split(":")
    log = logs / "dagster-webserver.log"
    _started(ns.popen(sys.executable, "-c", WEBSERVER, address, port, log=log), log, "the webserver's stand-in")


def listener_stand_in(ns: Namespace, logs: Path, *specs: str) -> None:
    log = logs / f"listeners-{ns.short}.log"
    _started(ns.popen(sys.executable, "-m", "deploy.sim.listeners", *specs, log=log), log, f"listeners {specs}")


@dataclass
class Edge:
    topo: sim.Topology
    vpn: gateway.OpenVPN
    proxy: gateway.Proxy

    @property
    def internet(self) -> Namespace:
        return self.topo.internet


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    with readable_scratch("vpn-gateway-") as path:
        yield path


@pytest.fixture(scope="module")
def edge(work: Path) -> Iterator[Edge]:
    assert host_routes_overlapping(str(PRIVATE_NETWORK)) == [], "the host already routes to the VPC: refusing to run"
    with Lab() as lab:
        topo = sim.build(lab)
        logs = work / "logs"
        logs.mkdir()
        dagster_webserver_stand_in(topo.nodes[sim.EDGE], logs)
        listener_stand_in(topo.nodes[sim.EDGE], logs, OLTP)
        listener_stand_in(topo.nodes["vps_2"], logs, SPARK_CONNECT)
        vpn = gateway.start_openvpn(topo, work / "openvpn")
        proxy = gateway.start_caddy(topo, work / "caddy")
        yield Edge(topo, vpn, proxy)
    _assert_host_untouched()


def _assert_host_untouched() -> None:
    vpn_subnet = gateway.compose_service("openvpn")["environment"]["VPN_SUBNET"]
    assert host_routes_overlapping(str(PRIVATE_NETWORK)) == []
    assert host_routes_overlapping(vpn_subnet) == []
    ruleset = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, check=True).stdout
    assert vpn_subnet.split("/")[0] not in ruleset, "the gateway's NAT or admit rules reached the host"


def test_a_profile_reaches_the_vpc_over_the_tunnel_and_only_the_vpc(edge: Edge) -> None:
    assert gateway.reachable(edge.internet, SPARK_CONNECT, OLTP) == set(), "the VPC must be closed without the VPN"
    alice = edge.vpn.issue("alice")
    assert f"remote {sim.EDGE_PUBLIC_IP} 1194" in alice.read_text()
    with edge.vpn.client(edge.internet, alice) as c:
        assert c.connected, f"{c.client_log[-2000:]}\n--- gateway:\n{c.gateway_log[-2000:]}"
        assert_split_tunnel(c, edge.vpn.vpn_subnet, edge.vpn.vpc_cidr)
        answered = gateway.reachable(edge.internet, SPARK_CONNECT, OLTP, WEBSERVER_ON_VPC)
        # vps_2 through the NAT; vps_1's published port (the control); never the webserver behind the proxy
        assert answered == {SPARK_CONNECT, OLTP}
    assert gateway.reachable(edge.internet, SPARK_CONNECT) == set(), "the route must go with the tunnel"


def test_the_ui_answers_through_the_proxy_with_the_login_only(edge: Edge) -> None:
    url, ca = edge.proxy.url + "/server_info", edge.proxy.ca
    status, _ = gateway.https_get(edge.internet, url, ca)
    assert status == 401
    user, password = edge.proxy.login
    assert gateway.https_get(edge.internet, url, ca, (user, password + "x"))[0] == 401
    status, body = gateway.https_get(edge.internet, url, ca, edge.proxy.login)
    assert status == 200 and "dagster_webserver_version" in body


def test_a_revoked_profile_is_refused_and_the_others_connect(edge: Edge) -> None:
    alice, bob = edge.vpn.issue("alice"), edge.vpn.issue("bob")
    edge.vpn.revoke("alice")
    assert {"R alice", "V bob"} <= edge.vpn.list()
    with edge.vpn.client(edge.internet, alice) as c:
        assert not c.connected, c.client_log[-2000:]
        assert c.refusal and "certificate revoked" in c.refusal, c.gateway_log[-2000:]
    with edge.vpn.client(edge.internet, bob) as c:
        assert c.connected, f"{c.client_log[-2000:]}\n--- gateway:\n{c.gateway_log[-2000:]}"
        assert gateway.reachable(edge.internet, SPARK_CONNECT) == {SPARK_CONNECT}
