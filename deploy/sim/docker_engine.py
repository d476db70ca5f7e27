"""A real Docker Engine (Debian's ``docker.io``) for the simulated topology: one per node, inside the node's network
namespace, so container networks, published ports and the engine's iptables rules exist only in that namespace.

An engine is started with ``nsenter --net`` (``ip netns exec`` remounts /sys, and dockerd then finds no cgroups).
Image builds need the package registries, which only the host namespace reaches: a *build* engine runs in the host
namespace with no bridge and no iptables rules (``--bridge=none --iptables=false``: it adds no interface and no
route) and builds with ``--network host``; it is stopped before the node's engine starts on the same data root, so
images never need copying and their layers stay cached between runs (the data roots live under ``.data/docker``).

Every engine removes at start and on stop what it ran: containers, volumes (their bind folders stay), networks, its
containerd, its mounts; the data root keeps the images. Needs root and ``dockerd``/``containerd``/``runc``
(``make setup`` installs them).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from types import TracebackType

from deploy.sim.netns import Lab, Namespace, wait_for

DOCKERD = "dockerd"
# Debian's client (20.10, the engine's own version): its classic ``docker build`` talks BuildKit to the engine with
# DOCKER_BUILDKIT=1 and needs no buildx plugin; a newer client on PATH would insist on one.
DOCKER_CLIENT = "/usr/bin/docker"
EXEC_ROOTS = Path("/run/platform-docker")  # short: containerd's sockets live under the exec root (108-byte limit)


class EngineError(RuntimeError):
    """dockerd did not start or a docker command failed (the message carries the engine's log tail)."""


def installed() -> bool:
    return all(shutil.which(tool) for tool in (DOCKERD, "containerd", "runc")) and Path(DOCKER_CLIENT).exists()


def _mounts_under(*roots: Path) -> list[str]:
    prefixes = tuple(str(r) + "/" for r in roots)
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if target.startswith(prefixes) or target in {str(r) for r in roots}:
            out.append(target)
    return sorted(out, key=len, reverse=True)


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM, then SIGKILL once ``timeout`` has passed: for a process that is not this one's child."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout, f"process {pid} to end")
        os.kill(pid, signal.SIGKILL)


class DockerEngine:
    """dockerd on ``data_root``, in ``namespace`` (None: the host's, for builds only)."""

    def __init__(self, name: str, data_root: Path, namespace: Namespace | None = None) -> None:
        self.name, self.data_root, self.namespace = name, data_root, namespace
        self.exec_root = EXEC_ROOTS / name
        self.socket = self.exec_root / "docker.sock"
        self.log_path = data_root.parent / f"{data_root.name}.dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def env(self) -> dict[str, str]:
        """What a docker or compose client needs to talk to this engine."""
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "1"}

    def argv(self) -> list[str]:
        cmd = [DOCKERD, "--data-root", str(self.data_root), "--exec-root", str(self.exec_root),
               "--pidfile", str(self.exec_root / "dockerd.pid"), "-H", self.host, "--bridge=none"]  # fmt: skip
        if self.namespace is None:
            return [*cmd, "--iptables=false", "--ip6tables=false"]
        return ["nsenter", f"--net=/run/netns/{self.namespace.name}", *cmd, "--ip6tables=false"]

    def start(self, timeout: float = 60) -> DockerEngine:
        if not installed():
            raise EngineError("Docker Engine is not installed (dockerd, containerd, runc, /usr/bin/docker)")
        self._clean_exec_root()
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.exec_root.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        try:
            wait_for(lambda: self.proc.poll() is not None or self._answers(), timeout, f"dockerd {self.name}")
        except TimeoutError as e:
            self.stop()
            raise EngineError(f"{e}\n{self.log_tail()}") from None
        if self.proc.poll() is not None:
            raise EngineError(f"dockerd {self.name} exited with {self.proc.returncode}\n{self.log_tail()}")
        self.remove_state()  # what an engine killed earlier on this data root left (it restarts such containers)
        return self

    def remove_state(self) -> None:
        """Every container, volume and network of this engine; images (the layer cache) stay. A volume's bind
        folder stays too: only the volume's record (with its device path) goes."""
        ids = self.docker("ps", "-aq", timeout=30).stdout.split()
        if ids:
            self.docker("rm", "-f", "-v", *ids, timeout=120)
        volumes = self.docker("volume", "ls", "-q", timeout=30).stdout.split()
        if volumes:
            self.docker("volume", "rm", "-f", *volumes, timeout=120)
        self.docker("network", "prune", "-f", timeout=60)

    def _answers(self) -> bool:
        return self.socket.exists() and self.docker("version", check=False, timeout=10).returncode == 0

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def docker(
        self, *args: str, check: bool = True, timeout: float = 120, extra_env: dict[str, str] | None = None, **kw
    ) -> subprocess.CompletedProcess[str]:
        """``extra_env``: for ``-e NAME`` without a value, which keeps a secret off the command line."""
        out = subprocess.run([DOCKER_CLIENT, "-H", self.host, *args], capture_output=True, text=True,
                             timeout=timeout, env=self.env() | (extra_env or {}), **kw)  # fmt: skip
        if check and out.returncode != 0:
            raise EngineError(f"docker {' '.join(args[:3])} failed ({out.returncode}): {out.stderr[-3000:]}")
        return out

    def image_exists(self, tag: str) -> bool:
        return self.docker("image", "inspect", tag, check=False).returncode == 0

    def inspect(self, kind: str, name: str) -> dict:
        return json.loads(self.docker(kind, "inspect", name).stdout)[0]

    def stop(self, timeout: float = 30) -> None:
        """Containers, volumes and networks removed, dockerd (and its containerd) ended, its mounts undone. Also
        stops an engine that an earlier command started and left running (``make topology-up``): found by its pid
        file."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(subprocess.SubprocessError, EngineError):
                self.remove_state()
            Lab.stop(self.proc, timeout)
        elif self.proc is None and (pid := self._detached_pid()) is not None:
            with contextlib.suppress(subprocess.SubprocessError, EngineError):
                self.remove_state()
            _terminate(pid, timeout)
        self.proc = None
        self._clean_exec_root()

    def _detached_pid(self) -> int | None:
        try:
            pid = int((self.exec_root / "dockerd.pid").read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def _clean_exec_root(self) -> None:
        """Processes and mounts an earlier engine of this name left (also after a killed run), then its exec root."""
        for pid_file in self.exec_root.glob("**/*.pid") if self.exec_root.exists() else []:
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        for target in _mounts_under(self.exec_root, self.data_root):
            subprocess.run(["umount", "-l", target], check=False, capture_output=True, timeout=30)
        shutil.rmtree(self.exec_root, ignore_errors=True)

    def __enter__(self) -> DockerEngine:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
