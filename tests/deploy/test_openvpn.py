"""vps_1's OpenVPN gateway, live: the real ``entrypoint.sh`` and ``vpn-client`` under the real openvpn, easy-rsa and
iptables, with the generated ``server.conf`` (only its ``/etc/openvpn`` paths moved to a scratch folder), in network
namespaces (deploy/sim/netns.py), over years of faked time (libfaketime). The container itself (folders, volume,
environment, clients) is deploy/sim/gateway.py's, which tests/topology/test_vpn_gateway.py runs in the topology.

Hosts: ``edge`` (the container: 203.0.113.1 on a simulated internet, vps_1's VPC address on a link to ``vpc``),
``laptop`` (a VPN client, 203.0.113.10) and ``vpc`` (vps_2's address, a TCP service that answers with the address
it sees). The PKI folder is a bind mount, as the compose volume is. The lab clock is one libfaketime file that every
process reads, so the running gateway sees time pass: the CRL (180 days) and the server certificate (825 days) run
out while it serves, and the gateway must renew them itself.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from glob import glob
from pathlib import Path

import pytest

from deploy.sim import gateway as sim_gateway
from deploy.sim.gateway import CONNECTED, EASYRSA, PATH
from deploy.sim.netns import Lab, Namespace, host_routes_overlapping, wait_for
from resources.topology import NODES
from tests.deploy._helpers import assert_split_tunnel, readable_scratch

GATEWAY_ENV = sim_gateway.compose_service("openvpn")["environment"]
VPN_SUBNET, VPC_CIDR = GATEWAY_ENV["VPN_SUBNET"], GATEWAY_ENV["VPC_CIDR"]
PUBLIC_IP, LAPTOP_IP = "203.0.113.1", "203.0.113.10"  # documentation range, inside the lab only
EDGE_VPC_IP, VPC_HOST_IP, VPC_PORT = NODES["vps_1"].private_ip, NODES["vps_2"].private_ip, 8000
ANSWER = f"""
import socket
with socket.create_server(({VPC_HOST_IP!r}, {VPC_PORT})) as s:
    while True:
        c, peer = s.accept()
        with c:
            c.sendall(peer[0].encode())
"""
ASK = f"""
import socket
with socket.create_connection(({VPC_HOST_IP!r}, {VPC_PORT}), timeout=5) as c:
    print(c.recv(64).decode())
"""


def _libfaketime() -> str:
    found = glob("/usr/lib/*/faketime/libfaketime.so.1")
    assert found, "libfaketime missing: run deploy/local/bootstrap.sh (Debian package faketime)"
    return found[0]


def _require_tools() -> None:
    """The set-up installs these (deploy/local/bootstrap.sh): a missing one is a failure, not a skip."""
    try:
        sim_gateway.require_openvpn_tools()
    except (PermissionError, FileNotFoundError) as error:
        pytest.fail(str(error))


class Gateway(sim_gateway.OpenVPN):
    """The container (deploy/sim/gateway.py) on a lab clock: one libfaketime file every lab process reads."""

    def __init__(self, edge: Namespace, laptop: Namespace, work: Path) -> None:
        self.laptop = laptop
        self.clock = work / "faketime.rc"
        self.offset_days = 0
        self.set_clock(0)
        super().__init__(edge, work, PUBLIC_IP)

    def clock_env(self) -> dict[str, str]:
        return {"LD_PRELOAD": _libfaketime(), "FAKETIME_TIMESTAMP_FILE": str(self.clock), "FAKETIME_NO_CACHE": "1"}

    def set_clock(self, days: int) -> None:
        """Move every lab process's clock at once (libfaketime re-reads the file at each call: no cache)."""
        new = self.clock.with_suffix(".new")
        new.write_text(f"+{days}d\n")
        new.replace(self.clock)  # a reader never sees half a file
        self.offset_days = days

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(days=self.offset_days)

    def session(self, profile: Path) -> contextlib.AbstractContextManager[sim_gateway.Connection]:
        return self.client(self.laptop, profile)

    def refusal(self, profile: Path) -> str:
        """Connect and expect a refusal: the reason (the VERIFY ERROR line of the gateway, else of the client)."""
        with self.session(profile) as c:
            assert not c.connected, f"{profile.stem} connected:\n{c.client_log[-2000:]}"
        assert c.refusal, f"{profile.stem} refused, but not by certificate checks:\n{c.client_log[-2000:]}"
        return c.refusal

    def expect_connects(self, profile: Path) -> None:
        with self.session(profile) as c:
            assert c.connected, (
                f"{profile.stem} refused:\n{c.client_log[-1500:]}\n--- gateway:\n{c.gateway_log[-1500:]}"
            )

    def crl_next_update(self) -> datetime:
        return _next_update(self.etc / "crl.pem")


def _next_update(crl: Path) -> datetime:
    out = subprocess.run(["openssl", "crl", "-in", str(crl), "-noout", "-nextupdate"], capture_output=True, text=True)
    return _openssl_date(out.stdout.strip().removeprefix("nextUpdate="))


def _not_after(cert: Path) -> datetime:
    out = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-enddate"], capture_output=True, text=True)
    return _openssl_date(out.stdout.strip().removeprefix("notAfter="))


def _openssl_date(text: str) -> datetime:
    return datetime.strptime(text, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)


@pytest.fixture
def work() -> Iterator[Path]:
    with readable_scratch("openvpn-") as path:
        yield path


@pytest.fixture
def gateway(work: Path) -> Iterator[Gateway]:
    _require_tools()
    assert host_routes_overlapping(VPC_CIDR) == [], "the host already routes to the VPC: refusing to run"
    with Lab() as lab:
        edge, laptop, vpc = lab.namespace("edge"), lab.namespace("laptop"), lab.namespace("vpc")
        internet = lab.switch("internet")
        internet.attach(edge, f"{PUBLIC_IP}/24")
        internet.attach(laptop, f"{LAPTOP_IP}/24")
        prefix = VPC_CIDR.split("/")[1]
        lab.link(edge, f"{EDGE_VPC_IP}/{prefix}", vpc, f"{VPC_HOST_IP}/{prefix}")
        sim_gateway.apply_sysctls(edge, "openvpn")  # compose: sysctls net.ipv4.ip_forward
        vpc.popen(sys.executable, "-c", ANSWER)
        yield Gateway(edge, laptop, work)  # mounts the PKI volume, as compose does
    _assert_host_untouched()


def _assert_host_untouched() -> None:
    assert host_routes_overlapping(VPC_CIDR) == []
    assert host_routes_overlapping(VPN_SUBNET) == []
    ruleset = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, check=True).stdout
    assert VPN_SUBNET.split("/")[0] not in ruleset, "the gateway's NAT rules reached the host"


def test_hard_init_pki_fails_on_a_mount_point(work: Path) -> None:
    """Why the entrypoint uses ``init-pki soft``: the volume's mount point cannot be removed, only emptied."""
    _require_tools()
    with Lab() as lab:
        pki = work / "pki"
        lab.bind_mount(work / "volume", pki)
        env = {**os.environ, "PATH": PATH, "EASYRSA_PKI": str(pki), "EASYRSA_BATCH": "1"}
        hard = subprocess.run([str(EASYRSA), "init-pki"], env=env, capture_output=True, text=True)
        assert hard.returncode != 0 and "Device or resource busy" in hard.stdout + hard.stderr
        soft = subprocess.run([str(EASYRSA), "init-pki", "soft"], env=env, capture_output=True, text=True)
        assert soft.returncode == 0, soft.stdout + soft.stderr
        assert (pki / "private").is_dir()


def test_gateway_over_the_certificate_lifetimes(gateway: Gateway) -> None:
    """Split tunnel, revocation, then the CRL and the server certificate running out while the gateway serves."""
    alice, bob = _day_0(gateway)
    carol = _day_200_crl_renewed_while_running(gateway, alice, bob)
    _day_400_crl_renewed_at_start(gateway, bob)
    _day_900_server_certificate_renewed(gateway, alice, carol)


def _day_0(gw: Gateway) -> tuple[Path, Path]:
    """First start on an empty mount point; a client gets the VPC and only the VPC; a revoked one is refused."""
    gw.start(check_seconds=1)
    assert "Device or resource busy" not in gw.log()
    nat = gw.ns.run("iptables", "-t", "nat", "-S", "POSTROUTING").stdout
    assert f"-A POSTROUTING -s {VPN_SUBNET} -d {VPC_CIDR} -j MASQUERADE" in nat
    alice, bob = gw.issue("alice"), gw.issue("bob")
    assert f"remote {PUBLIC_IP} 1194" in alice.read_text()
    with gw.session(alice) as c:
        assert c.connected, c.client_log[-2000:]
        assert_split_tunnel(c, VPN_SUBNET, VPC_CIDR)
        seen_as = gw.laptop.run(sys.executable, "-c", ASK).stdout.strip()
        assert seen_as == EDGE_VPC_IP, f"the VPC saw {seen_as}: the gateway should masquerade VPN clients"
    gw.vpn_client("revoke", "alice")
    assert "certificate revoked" in gw.refusal(alice)
    assert {"R alice", "V bob"} <= gw.list()
    gw.expect_connects(bob)
    return alice, bob


def _day_200_crl_renewed_while_running(gw: Gateway, alice: Path, bob: Path) -> Path:
    """Past the first CRL's 180 days every client would be refused ('CRL has expired') unless it is renewed."""
    first = gw.crl_next_update()
    assert first < gw.now() + timedelta(days=200)
    gw.set_clock(200)
    try:
        wait_for(lambda: gw.crl_next_update() > gw.now(), 10, "the running gateway to renew the expired CRL")
    except TimeoutError:
        pytest.fail(f"the running gateway did not renew its expired CRL; bob refused: {gw.refusal(bob)}")
    gw.expect_connects(bob)
    assert "certificate revoked" in gw.refusal(alice), "a renewed CRL must still list alice"
    return gw.issue("carol")


def _day_400_crl_renewed_at_start(gw: Gateway, bob: Path) -> None:
    """A gateway (re)started after its CRL ran out renews it before OpenVPN starts."""
    gw.stop()
    gw.set_clock(400)
    assert gw.crl_next_update() < gw.now()
    gw.start(check_seconds=1)
    log = gw.log()
    renewed = "renewing the CRL" in log and log.index("renewing the CRL") < log.index(CONNECTED)
    assert renewed, "the entrypoint started OpenVPN with an expired CRL (the renewal loop came only later)"
    assert gw.crl_next_update() > gw.now() + timedelta(days=30)
    gw.expect_connects(bob)


def _day_900_server_certificate_renewed(gw: Gateway, alice: Path, carol: Path) -> None:
    """Past the server certificate's 825 days the running gateway stops itself; its restart renews the certificate."""
    cert = gw.pki / "issued" / "server.crt"
    assert _not_after(cert) < gw.now() + timedelta(days=900)
    gw.set_clock(900)
    assert gw.proc is not None
    try:
        gw.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the gateway kept serving its expired server certificate; carol refused: {gw.refusal(carol)}")
    assert "server certificate due for renewal" in gw.log()
    gw.start(check_seconds=1)  # restart: unless-stopped
    assert _not_after(cert) > gw.now() + timedelta(days=30)
    gw.expect_connects(carol)
    assert "certificate revoked" in gw.refusal(alice)
    assert {"R server", "V server", "R alice"} <= gw.list()  # the old server certificate: superseded
    nat = gw.ns.run("iptables", "-t", "nat", "-S", "POSTROUTING").stdout
    assert nat.count("MASQUERADE") == 1, "restarts must not pile up NAT rules"
