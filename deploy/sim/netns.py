"""Simulated hosts on one machine: Linux network namespaces joined by veth pairs and bridges, for live tests.

``Lab`` is a context manager. Everything it makes carries a per-run prefix, and on exit it ends every process it
started (and any other process left in its namespaces), unmounts what it mounted and deletes its namespaces (their
veths and bridges go with them), also when the test failed. Links are created inside namespaces only, so the host
namespace never gets an interface, an address or a route from a lab; ``host_routes_overlapping`` lets a test check
that. A run killed outright leaves namespaces behind: the next ``Lab`` deletes those whose owning process is gone.

    with Lab() as lab:
        edge, laptop = lab.namespace("edge"), lab.namespace("laptop")
        internet = lab.switch("internet")
        internet.attach(edge, "203.0.113.1/24")
        internet.attach(laptop, "203.0.113.10/24")
        laptop.run("python3", "-c", "...")

Needs root, iproute2 and a kernel with network namespaces.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

PREFIX = "nsl"  # every lab's namespaces are named nsl<pid>x<random>-<name>
_OWNED = re.compile(rf"^{PREFIX}(\d+)x[0-9a-f]+-")
NETNS_ETC = Path("/etc/netns")  # per-namespace files `ip netns exec` binds over /etc
STATE = Path("/run/netns-lab")  # <prefix>.mounts: what a lab mounted, for the clean-up after a killed run
IFNAME_MAX = 15  # Linux interface names
ROUTE_TYPES = {"unicast", "local", "broadcast", "multicast", "anycast", "unreachable", "blackhole", "prohibit", "throw"}


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


def _netns_names() -> list[str]:
    return [line.split()[0] for line in _ip("netns", "list").stdout.splitlines() if line.strip()]


def _pids_in(netns: str) -> list[int]:
    return [int(p) for p in _ip("netns", "pids", netns, check=False).stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill_inside(netns: str) -> list[int]:
    """SIGKILL whatever still runs in the namespace (it would keep the namespace, and files under a mount, alive)."""
    pids = _pids_in(netns)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def _delete_netns(name: str) -> None:
    shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
    _kill_inside(name)
    _ip("netns", "del", name, check=False)


def _is_mount(path: Path | str) -> bool:
    """From the mount table: ``os.path.ismount`` misses a bind mount within one file system."""
    escaped = str(path).replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011").replace("\n", "\\012")
    return any(line.split()[4] == escaped for line in Path("/proc/self/mountinfo").read_text().splitlines())


def _unmount(target: Path) -> None:
    if subprocess.run(["umount", str(target)], capture_output=True, timeout=30).returncode:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)


def remove_stale() -> list[str]:
    """Remove what earlier labs whose process has died left (a run killed by SIGKILL cannot clean up itself)."""
    stale = [n for n in _netns_names() if (m := _OWNED.match(n)) and not _alive(int(m.group(1)))]
    for name in stale:
        _kill_inside(name)
    for record in STATE.glob(f"{PREFIX}*.mounts") if STATE.is_dir() else []:
        if (m := _OWNED.match(record.stem + "-")) and not _alive(int(m.group(1))):
            for target in reversed(record.read_text().splitlines()):
                if _is_mount(target):
                    _unmount(Path(target))
            record.unlink()
    for name in stale:
        _delete_netns(name)
    return stale


def host_routes_overlapping(network: str) -> list[str]:
    """The host namespace's routes (all tables, default routes aside) that cover any address of ``network``."""
    net = ipaddress.ip_network(network)
    out = []
    for line in _ip("-4", "route", "show", "table", "all").stdout.splitlines():
        words = line.split()
        if words and words[0] in ROUTE_TYPES:
            words = words[1:]
        if not words or words[0] == "default":
            continue
        try:
            if ipaddress.ip_network(words[0], strict=False).overlaps(net):
                out.append(line)
        except ValueError:
            continue
    return out


class Namespace:
    """One simulated host: commands run inside it through ``ip netns exec``."""

    def __init__(self, lab: Lab, short: str) -> None:
        self.lab, self.short, self.name = lab, short, f"{lab.prefix}-{short}"

    def __repr__(self) -> str:
        return f"Namespace({self.name})"

    def argv(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(self, *cmd: str, check: bool = True, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run to completion inside the namespace; output captured as text."""
        kw.setdefault("capture_output", True)
        return subprocess.run(self.argv(*cmd), check=check, timeout=timeout, text=True, **kw)

    def popen(self, *cmd: str, log: Path | None = None, **kw: Any) -> subprocess.Popen[bytes]:
        """Start in the background in a session of its own; the lab ends it at exit. Output goes to ``log``."""
        with open(log or os.devnull, "ab") as out:
            proc = subprocess.Popen(
                self.argv(*cmd),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kw,
            )
        self.lab.processes.append(proc)
        return proc

    def ip(self, *args: str) -> str:
        return _ip("-n", self.name, *args).stdout

    def hosts(self, names: dict[str, str]) -> None:
        """Host names this host resolves (``ip netns exec`` binds /etc/netns/<name>/hosts on /etc/hosts), as Docker's
        DNS resolves a compose service's name; added to the names set before, removed with the namespace."""
        folder = NETNS_ETC / self.name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "hosts"
        known = dict(line.split()[::-1] for line in path.read_text().splitlines()[1:]) if path.exists() else {}
        lines = ["127.0.0.1 localhost", *(f"{address} {name}" for name, address in (known | names).items())]
        path.write_text("\n".join(lines) + "\n")

    def routes(self) -> list[str]:
        return self.ip("-4", "route", "show").splitlines()

    def addresses(self, dev: str) -> list[str]:
        """IPv4 addresses with prefix length, e.g. ``["10.8.0.2/24"]``."""
        return [line.split()[3] for line in self.ip("-4", "-o", "addr", "show", "dev", dev).splitlines()]

    def sysctl(self, key: str, value: str) -> None:
        """Set a per-namespace sysctl such as ``net.ipv4.ip_forward`` (the host's value is not touched)."""
        self.run("sh", "-c", 'echo "$1" > "$2"', "sh", value, "/proc/sys/" + key.replace(".", "/"))

    def add_address(self, dev: str, address: str) -> None:
        self.ip("addr", "add", address, "dev", dev)
        self.ip("link", "set", dev, "up")

    def add_route(self, destination: str, via: str) -> None:
        """E.g. ``add_route("default", "203.0.113.1")``: routes exist only inside this namespace."""
        self.ip("route", "add", destination, "via", via)


class Switch:
    """An Ethernet segment: a bridge in a namespace of its own, each attached host on a veth port."""

    def __init__(self, lab: Lab, short: str) -> None:
        self.ns = lab.namespace(f"sw-{short}")
        self.short = short
        self.ns.ip("link", "add", "br0", "type", "bridge")
        self.ns.ip("link", "set", "br0", "up")

    def attach(self, host: Namespace, address: str, ifname: str | None = None) -> str:
        """Plug ``host`` in with ``address`` (CIDR) on interface ``ifname`` (default: the switch's name)."""
        ifname = ifname or self.short[:IFNAME_MAX]
        port = f"p-{host.short}"[:IFNAME_MAX]
        self.ns.ip("link", "add", port, "type", "veth", "peer", "name", ifname, "netns", host.name)
        self.ns.ip("link", "set", port, "master", "br0", "up")
        host.add_address(ifname, address)
        return ifname


class Lab:
    """Namespaces, links, mounts and processes of one test run, all removed on exit."""

    def __init__(self, prefix: str | None = None) -> None:
        """``prefix``: a fixed name for a lab that outlives its process (``python -m deploy.sim up``)."""
        self.prefix = prefix or f"{PREFIX}{os.getpid()}x{secrets.token_hex(3)}"
        self.namespaces: list[Namespace] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self.mounts: list[Path] = []

    def __enter__(self) -> Lab:
        remove_stale()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def namespace(self, short: str) -> Namespace:
        ns = Namespace(self, short)
        _ip("netns", "add", ns.name)
        self.namespaces.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns

    def switch(self, short: str) -> Switch:
        return Switch(self, short)

    def link(self, a: Namespace, a_address: str, b: Namespace, b_address: str) -> tuple[str, str]:
        """A point-to-point veth between two hosts; the interfaces are named after the peer."""
        a_if, b_if = f"to-{b.short}"[:IFNAME_MAX], f"to-{a.short}"[:IFNAME_MAX]
        a.ip("link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b.name)
        a.add_address(a_if, a_address)
        b.add_address(b_if, b_address)
        return a_if, b_if

    def bind_mount(self, source: Path, target: Path) -> None:
        """Bind ``source`` on ``target`` (as Docker mounts a volume); unmounted on exit."""
        source.mkdir(parents=True, exist_ok=True)
        target.mkdir(parents=True, exist_ok=True)
        STATE.mkdir(exist_ok=True)
        with (STATE / f"{self.prefix}.mounts").open("a") as record:
            record.write(f"{target}\n")
        subprocess.run(["mount", "--bind", str(source), str(target)], check=True, timeout=30)
        self.mounts.append(target)

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], timeout: float = 5) -> int:
        """SIGTERM the process's session (as ``docker stop`` does), SIGKILL after ``timeout``; the exit status.

        The group is signalled only while its leader is not yet reaped, so its id cannot belong to another process;
        a leftover whose leader has gone is still in a lab namespace, where ``close`` finds it.
        """
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is not None:
                break
            os.killpg(proc.pid, sig)
            try:
                return proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                continue
        return proc.wait()

    def close(self) -> None:
        """Processes (started, then strays), mounts, namespaces; raises if a mount or a namespace is left."""
        for proc in reversed(self.processes):
            self.stop(proc)
        for ns in self.namespaces:
            _kill_inside(ns.name)
        for target in reversed(self.mounts):
            _unmount(target)
        for ns in reversed(self.namespaces):
            _delete_netns(ns.name)
        left = [str(t) for t in self.mounts if _is_mount(t)]
        if not left:
            (STATE / f"{self.prefix}.mounts").unlink(missing_ok=True)
        left += [n for n in _netns_names() if n.startswith(self.prefix + "-")]
        self.processes, self.mounts, self.namespaces = [], [], []
        if left:
            raise RuntimeError(f"lab left behind: {left}")


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def remove_prefixed(prefix: str) -> list[str]:
    """Delete every namespace named ``<prefix>-…`` with whatever runs in it (idempotent)."""
    names = [n for n in _netns_names() if n.startswith(prefix + "-")]
    for name in names:
        _delete_netns(name)
    return names
