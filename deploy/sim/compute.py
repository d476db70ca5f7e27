"""vps_2's Spark Connect pod run for real: the pyspark wheel's Spark Connect server with the ConfigMap's
``spark-defaults.conf``, behind Debian's nginx with the ConfigMap's ``nginx.conf`` as the TLS and token sidecar.

Both files come from the generated ``deploy/vps_2/manifests/spark-connect.yaml``, so what runs is what k3s would
run. The server starts as the Deployment starts it: ``start-connect-server.sh`` in the foreground
(``SPARK_NO_DAEMONIZE``), the defaults in its conf folder, the token in ``SPARK_CONNECT_AUTHENTICATE_TOKEN`` (from
``SPARK_CONNECT_TOKEN``, as Ansible fills the secret). Rewritten, and only these: ``spark.local.dir`` and, when
asked, Spark's ``binding.port``; nginx's listen address and port (the pod listens on all its addresses, the Service
puts it on the node's private one), its upstream port, the certificate paths, the pid and temp paths (the sidecar's
emptyDir) moved to nginx's folder, plus an access log there. Spark's binding address is never rewritten: only the
sidecar reaches it. Started as root, nginx runs as the sidecar's ``runAsUser``/``runAsGroup`` from the start (no
root master, as in the pod), in a folder of its own that uid owns (``folder/nginx`` links to it; removed on stop).

Debian's nginx 1.22 does not know ``http2 on;`` (1.25.1+), so that one directive becomes ``listen ... ssl http2``.

    node = start(work_dir, topo.nodes["vps_2"])  # 10.104.0.3:15002 inside the namespace
    node.url                                     # sc://10.104.0.3:15002/;use_ssl=true;token=...
    node.stop_spark(); node.start_spark()         # a lost Spark server; the sidecar keeps running
    node.stop()
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import yaml

from deploy.compute_manifests import NAMESPACE, NGINX_SCRATCH, NGINX_TEMP, NODE, SPARK_DNS
from deploy.sim.netns import Namespace
from resources.topology import NODES, service

MANIFEST = Path(__file__).resolve().parents[1] / "vps_2" / "manifests" / "spark-connect.yaml"
CONFIG_MAP = "spark-connect-conf"
TOOLS = ("nginx", "openssl", "java")
SPARK_START_TIMEOUT = 180.0  # a cold JVM on 2 cores needs ~12 s; a loaded machine much more
STOP_TIMEOUT = 30.0


def config_map() -> dict[str, str]:
    """The ``spark-connect-conf`` ConfigMap's data: ``spark-defaults.conf`` and ``nginx.conf``."""
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    return next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == CONFIG_MAP)["data"]


def deployment(name: str = "spark-connect") -> dict:
    """A Deployment of vps_2's manifests (``spark-connect``, ``jupyter``)."""
    docs = [d for d in yaml.safe_load_all((MANIFEST.parent / f"{name}.yaml").read_text()) if d]
    return next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name)


def container_spec(deployment_name: str, container: str) -> dict:
    spec = deployment(deployment_name)["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == container)


def defaults(text: str) -> dict[str, str]:
    """``spark-defaults.conf`` as a dict."""
    return dict(line.split(" ", 1) for line in text.splitlines() if line.strip())


def _set(conf: str, key: str, value: str) -> str:
    new, n = re.subn(rf"^{re.escape(key)} .*$", f"{key} {value}", conf, flags=re.MULTILINE)
    if n != 1:
        raise RuntimeError(f"{key} is not set once in spark-defaults.conf")
    return new


def spark_defaults(original: str, port: int, folder: Path) -> str:
    """The ConfigMap's defaults with Spark's port and its scratch folder moved, plus the s3a jars the image bakes
    into /opt/spark/jars (the pyspark wheel's Spark has none); everything else as shipped."""
    from resources.settings import s3a_jars_dir

    conf = _set(original, "spark.connect.grpc.binding.port", str(port))
    conf = _set(conf, "spark.local.dir", str(folder / "spark-local"))
    jars = sorted(str(p) for p in s3a_jars_dir().glob("*.jar"))
    if not jars:
        raise RuntimeError(f"no s3a jars in {s3a_jars_dir()}: deploy/local/bootstrap.sh fetches them")
    return conf.rstrip("\n") + f"\nspark.jars {','.join(jars)}\n"


def fold_http2(conf: str, listen: str | None = None) -> str:
    """``listen PORT ssl;`` + ``http2 on;`` (nginx 1.25.1+) as ``listen LISTEN ssl http2;`` for Debian's nginx 1.22;
    ``listen`` defaults to the port as written."""
    folded, n = re.subn(r"listen (\d+) ssl;\n\s*http2 on;\n", lambda m: f"listen {listen or m[1]} ssl http2;\n", conf)
    if n != 1:
        raise RuntimeError("nginx.conf no longer has `listen PORT ssl;` followed by `http2 on;`: revisit the rewrite")
    return folded


def nginx_conf(original: str, address: str, port: int, upstream: int, folder: Path) -> str:
    """The ConfigMap's ``nginx.conf`` listening on ``address:port``, for nginx 1.22, with everything it reads or
    writes in ``folder``: the certificate and key, the pid and temp files (the sidecar's emptyDir), the access log."""
    conf = fold_http2(original, f"{address}:{port}")
    conf, n = re.subn(r"grpc_pass grpc://127\.0\.0\.1:\d+;", f"grpc_pass grpc://127.0.0.1:{upstream};", conf)
    if n != 1:
        raise RuntimeError("nginx.conf has no single `grpc_pass grpc://127.0.0.1:PORT;`")
    for name in ("tls.crt", "tls.key"):
        if conf.count(f" /tls/{name};") != 1:
            raise RuntimeError(f"nginx.conf does not name /tls/{name} once")
        conf = conf.replace(f" /tls/{name};", f" {folder / name};")
    scratch = rf"^(\s*(?:pid|\w+_temp_path)) {re.escape(NGINX_SCRATCH)}/"
    conf, n = re.subn(scratch, rf"\1 {folder}/", conf, flags=re.MULTILINE)
    if n != 1 + len(NGINX_TEMP):
        raise RuntimeError(f"nginx.conf does not put its pid and {len(NGINX_TEMP)} temp paths in {NGINX_SCRATCH}")
    if conf.count("http {\n") != 1:
        raise RuntimeError("nginx.conf has no single `http {` block")
    return conf.replace("http {\n", f"http {{\n  access_log {folder / 'access.log'};\n")


def nginx_folder(folder: Path) -> tuple[Path, list[str]]:
    """nginx's folder (its conf, certificate and key, pid, temp files and logs) and the command prefix it runs under.

    Not as root: ``folder/nginx``, as this user. As root: as the sidecar's uid and gid (the pod starts nginx as them,
    never as a root master), so its folder must be reachable by that uid, which ``folder`` (a test's 0700 temp dir)
    may not be: a private folder of the system's temp dir, owned by that uid, which ``folder/nginx`` links to."""
    link = folder / "nginx"
    if os.geteuid() != 0:
        link.mkdir(parents=True, exist_ok=True)
        return link, []
    security = container_spec("spark-connect", "tls-proxy")["securityContext"]
    uid, gid = security["runAsUser"], security["runAsGroup"]
    own = Path(tempfile.mkdtemp(prefix="spark-connect-nginx-"))
    os.chown(own, uid, gid)
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        shutil.rmtree(link)
    link.symlink_to(own)
    return own, ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]


def issue_certificate(folder: Path, address: str) -> Path:
    """A self-signed certificate for ``address`` as Ansible issues it ("Spark Connect TLS certificate" in
    ``deploy/ansible/site.yml``: P-256, SAN = the address and the Service's names); the clients trust exactly it.
    Returns the certificate, which is also the CA; the key lies next to it."""
    folder.mkdir(parents=True, exist_ok=True)
    san = f"IP:{address},DNS:{SPARK_DNS},DNS:spark-connect.{NAMESPACE}.svc"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
         "-subj", "/CN=spark-connect", "-addext", f"subjectAltName={san}",
         "-keyout", str(folder / "tls.key"), "-out", str(folder / "tls.crt")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return folder / "tls.crt"


def _proc_net(packed: bytes, port: int) -> str:
    """An address as ``/proc/net/tcp{,6}`` prints it: each 32-bit word in host byte order, in hex."""
    words = (int.from_bytes(packed[i : i + 4], sys.byteorder) for i in range(0, len(packed), 4))
    return "".join(f"{w:08X}" for w in words) + f":{port:04X}"


def listening(pid: int, address: str, port: int) -> bool:
    """Whether a TCP socket listens on IPv4 ``address:port`` in the network namespace of process ``pid``.

    Read from ``/proc/<pid>/net/tcp{,6}``, so it needs no process inside the namespace and sends no packet. The JVM
    binds an IPv6 socket to the v4-mapped address (``::ffff:127.0.0.1``), nginx an IPv4 one."""
    v4 = ipaddress.IPv4Address(address)
    wanted = {"tcp": _proc_net(v4.packed, port), "tcp6": _proc_net(ipaddress.IPv6Address(f"::ffff:{v4}").packed, port)}
    for table, local in wanted.items():
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:  # gone, or a zombie without a namespace
            return False
        if any(w[1] == local and w[3] == "0A" for w in (line.split() for line in lines)):
            return True
    return False


def _group_alive(proc: subprocess.Popen[bytes]) -> bool:
    proc.poll()  # reap the leader: a zombie would count as a member
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_groups(procs: list[subprocess.Popen[bytes]], sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> None:
    """``sig`` to each process group, SIGKILL after ``timeout``; returns when every member is gone (the JVM is a
    grandchild of the launcher scripts that Popen holds, and would outlive them).

    A group id stays taken while any member lives, so a group found alive is still ours."""
    for proc in procs:
        if _group_alive(proc):
            os.killpg(proc.pid, sig)
    deadline = time.monotonic() + timeout
    while any(_group_alive(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    for proc in procs:
        if _group_alive(proc):
            os.killpg(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while any(_group_alive(p) for p in procs):
        if time.monotonic() > deadline:
            raise RuntimeError(f"process groups {[p.pid for p in procs]} survive SIGKILL")
        time.sleep(0.1)


class Reachable:
    """What a Spark Connect pod's clients need: its endpoint and URL (address, port and token set by the pod)."""

    address: str
    port: int
    token: str

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def url(self) -> str:
        """What Jupyter and Dagster's ``SPARK_REMOTE`` hold: TLS on, the token, the node's address."""
        return f"sc://{self.endpoint}/;use_ssl=true;token={self.token}"


@dataclass
class SparkConnect(Reachable):
    """A running pod: nginx on ``address:port`` (TLS, token checked by Spark), Spark Connect on
    ``spark_address:spark_port`` (the ConfigMap's loopback binding), both in ``namespace`` or the host's."""

    folder: Path
    namespace: Namespace | None
    address: str
    port: int
    spark_address: str
    spark_port: int
    token: str
    ca: Path
    env: dict[str, str] = field(repr=False)
    nginx_dir: Path = field(repr=False)  # nginx's conf, certificate, pid, temp files and logs
    nginx_as: list[str] = field(repr=False)  # the command prefix that drops to the sidecar's uid (as root)
    nginx: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    spark: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def spark_running(self) -> bool:
        return self.spark is not None and self.spark.poll() is None

    def _popen(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """In a session of its own (one group to signal); in the namespace through the lab, which ends it on exit."""
        if self.namespace is not None:
            return self.namespace.popen(*argv, log=log, env=env)
        with open(log, "ab") as out:
            return subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def _wait_listening(
        self, proc: subprocess.Popen[bytes], port: int, address: str, log: Path, timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        while not listening(proc.pid, address, port):
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            if proc.poll() is not None:
                raise RuntimeError(f"exited with {proc.returncode} before listening on {address}:{port}:\n{tail}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"not listening on {address}:{port} after {timeout} s:\n{tail}")
            time.sleep(0.2)

    def start_nginx(self, timeout: float = 30) -> None:
        conf = self.nginx_dir
        nginx = [
            *self.nginx_as,
            "nginx",
            "-p",
            str(conf),
            "-e",
            str(conf / "error.log"),
            "-c",
            str(conf / "nginx.conf"),
        ]
        test = self.namespace.argv(*nginx, "-t") if self.namespace else [*nginx, "-t"]
        checked = subprocess.run(test, capture_output=True, text=True, timeout=30)
        if checked.returncode or "[warn]" in checked.stderr:
            raise RuntimeError(f"nginx -t: {checked.stderr}")
        self.nginx = self._popen([*nginx, "-g", "daemon off;"], conf / "nginx.out")
        self._wait_listening(self.nginx, self.port, self.address, conf / "error.log", timeout)

    def start_spark(self, timeout: float = SPARK_START_TIMEOUT) -> None:
        """Start (or restart) the Spark Connect server and wait until it listens; the sidecar is left alone."""
        if self.spark_running:
            raise RuntimeError("Spark Connect is already running")
        spark_home = self.env["SPARK_HOME"]
        log = self.folder / "spark.out"
        self.spark = self._popen([f"{spark_home}/sbin/start-connect-server.sh"], log, self.env)
        self._wait_listening(self.spark, self.spark_port, self.spark_address, log, timeout)

    def stop_spark(self, sig: int = signal.SIGTERM) -> None:
        """End the Spark server's whole process group (SIGKILL: a crashed node) and wait for it; nginx keeps
        running and answers ``UNAVAILABLE`` (502) until ``start_spark``."""
        if self.spark is not None:
            stop_groups([self.spark], sig)

    def stop(self) -> None:
        """End Spark's and nginx's process groups, every member, and remove nginx's own folder (idempotent)."""
        stop_groups([p for p in (self.spark, self.nginx) if p is not None])
        if self.nginx_dir != self.folder / "nginx":
            shutil.rmtree(self.nginx_dir, ignore_errors=True)

    def __enter__(self) -> SparkConnect:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start(
    folder: Path,
    namespace: Namespace | None,
    *,
    address: str | None = None,
    port: int | None = None,
    spark_port: int | None = None,
    token: str | None = None,
    timeout: float = SPARK_START_TIMEOUT,
) -> SparkConnect:
    """Start the pod in ``namespace`` (the topology's vps_2) or, with ``None``, in the host namespace on loopback.

    Defaults are the deployment's: nginx on vps_2's private address at the ``spark-connect`` service port, Spark on
    the ConfigMap's port, the token from ``SPARK_CONNECT_TOKEN``. Returns once both listen; on failure nothing is
    left running. Without a namespace the address must be a loopback one (no host traffic to the VPC)."""
    import pyspark

    for tool in TOOLS + (("setpriv",) if os.geteuid() == 0 else ()):
        if not shutil.which(tool):
            raise RuntimeError(f"{tool} is missing: deploy/local/bootstrap.sh installs it")
    address = address or NODES[NODE].private_ip
    if namespace is None and not ipaddress.ip_address(address).is_loopback:
        raise ValueError(f"{address}: without a namespace only a loopback address is allowed")
    token = token or os.environ.get("SPARK_CONNECT_TOKEN")
    if not token:
        raise RuntimeError("no token: set SPARK_CONNECT_TOKEN (Ansible's source of the spark-connect secret)")
    data = config_map()
    conf = defaults(data["spark-defaults.conf"])
    upstream = re.search(r"grpc_pass grpc://([^:;]+):(\d+);", data["nginx.conf"])
    server = (conf["spark.connect.grpc.binding.address"], conf["spark.connect.grpc.binding.port"])
    if not upstream or upstream.groups() != server:
        raise RuntimeError(f"the sidecar's upstream {upstream and upstream.groups()} is not Spark's binding {server}")
    spark_port = spark_port or int(server[1])
    port = port or service("spark-connect").port
    for sub in ("conf", "spark-local", "logs", "pids", "java-tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "conf" / "spark-defaults.conf").write_text(
        spark_defaults(data["spark-defaults.conf"], spark_port, folder)
    )
    ca = issue_certificate(folder / "tls", address)
    spark_home = Path(pyspark.__file__).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))}
    env.update(
        SPARK_HOME=str(spark_home),
        SPARK_CONF_DIR=str(folder / "conf"),
        SPARK_PID_DIR=str(folder / "pids"),
        SPARK_LOG_DIR=str(folder / "logs"),
        SPARK_NO_DAEMONIZE="1",  # as the Deployment
        SPARK_CONNECT_AUTHENTICATE_TOKEN=token,  # as the Deployment, from the secret
        SPARK_LOCAL_IP="127.0.0.1",  # the driver's own ports too; the host name resolves to no namespace address
        JAVA_TOOL_OPTIONS=f"-Djava.io.tmpdir={folder / 'java-tmp'} -XX:-UsePerfData",
    )
    nginx_dir, nginx_as = nginx_folder(folder)
    node = SparkConnect(folder, namespace, address, port, server[0], spark_port, token, ca, env, nginx_dir, nginx_as)
    try:
        (nginx_dir / "nginx.conf").write_text(nginx_conf(data["nginx.conf"], address, port, spark_port, nginx_dir))
        for name in (
            "tls.crt",
            "tls.key",
        ):  # the Secret's files, readable by the sidecar's uid as the kubelet mounts them
            shutil.copyfile(folder / "tls" / name, nginx_dir / name)
        owner = nginx_dir.stat()
        for path in nginx_dir.iterdir():
            os.chown(path, owner.st_uid, owner.st_gid)
        node.start_nginx()
        node.start_spark(timeout)
    except BaseException:
        node.stop()
        raise
    return node
