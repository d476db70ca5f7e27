"""vps_2's Spark Connect pod on this machine: the real Spark Connect server (the pyspark wheel's) with the ConfigMap's
``spark-defaults.conf``, behind Debian's nginx with the ConfigMap's ``nginx.conf``, reached by a pyspark Connect
client over TLS the way Jupyter and Dagster reach it (``use_ssl=true``, token, the certificate as the only root).

Both configurations come from the generated ``deploy/vps_2/manifests/spark-connect.yaml``. The server starts as the
Deployment starts it: ``start-connect-server.sh`` in the foreground (``SPARK_NO_DAEMONIZE``), the defaults file in
its conf folder, the token from ``SPARK_CONNECT_AUTHENTICATE_TOKEN`` (``deploy.local.stack.spark_connect_up`` cannot
be used: it passes master, port and token as ``--conf`` flags, which would hide the file's settings). Rewritten,
and only these: Spark's ``binding.port`` and ``spark.local.dir``; nginx's listen port (bound to 127.0.0.1), its
upstream port, the certificate paths, and pid, error/access log and temp paths in a scratch folder, plus
``user nobody nogroup`` as root (the image's master is root, its workers the unprivileged ``nginx`` user).

nginx here is Debian's 1.22, which does not know ``http2 on;`` (1.25.1+); that one directive is rewritten to the
older ``listen ... ssl http2``. Left unchecked, so: that the image's nginx 1.29 accepts ``http2 on;`` and enables
HTTP/2 on this listener with it (gRPC fails without HTTP/2). Also unchecked: the images themselves (nginx's alpine
build, the Spark image's s3a jars; the s3a settings are loaded but no s3a path is read) and the Kubernetes wiring
(subPath and secret mounts, runAsUser 185, probes, the Service on the private address).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import PORT_BASE
from tests.deploy._helpers import MANIFESTS

TOKEN = "tls-test-token-" + os.urandom(8).hex()
CLIENT = """
import json, sys
from pyspark.sql import SparkSession
try:
    spark = SparkSession.builder.remote(sys.argv[1]).create()
    row = spark.sql("SELECT sum(id) AS total FROM range(10)").collect()[0]
    conf = {k: spark.conf.get(k) for k in sys.argv[2:]}
    print(json.dumps({"total": row.total, "conf": conf}))
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
"""


def _config_map() -> dict[str, str]:
    docs = [d for d in yaml.safe_load_all((MANIFESTS / "spark-connect.yaml").read_text()) if d]
    return next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "spark-connect-conf")["data"]


def _defaults(text: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in text.splitlines() if line.strip())


def _free_ports(base: int, count: int) -> list[int]:
    ports = []
    for port in range(base, base + 100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"fewer than {count} free ports in {base}-{base + 99}")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _set(conf: str, key: str, value: str) -> str:
    new, n = re.subn(rf"^{re.escape(key)} .*$", f"{key} {value}", conf, flags=re.MULTILINE)
    assert n == 1, f"{key} is not set once in spark-defaults.conf"
    return new


def _spark_defaults(original: str, port: int, folder: Path) -> str:
    conf = _set(original, "spark.connect.grpc.binding.port", str(port))
    return _set(conf, "spark.local.dir", str(folder / "spark-local"))


def _nginx_conf(original: str, listen: int, upstream: int, folder: Path) -> str:
    conf, n = re.subn(r"listen (\d+) ssl;\n(\s*)http2 on;\n", rf"listen 127.0.0.1:{listen} ssl http2;\n", original)
    assert n == 1, "nginx.conf no longer has `listen PORT ssl;` followed by `http2 on;`: revisit the rewrite"
    conf, n = re.subn(r"grpc_pass grpc://127\.0\.0\.1:\d+;", f"grpc_pass grpc://127.0.0.1:{upstream};", conf)
    assert n == 1
    for name in ("tls.crt", "tls.key"):
        assert conf.count(f" /tls/{name};") == 1
        conf = conf.replace(f" /tls/{name};", f" {folder / name};")
    scratch = "".join(
        f"  {kind}_temp_path {folder / 'nginx' / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    assert conf.count("http {\n") == 1
    conf = conf.replace("http {\n", f"http {{\n  access_log {folder / 'nginx' / 'access.log'};\n{scratch}")
    user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
    return f"{user}pid {folder / 'nginx' / 'nginx.pid'};\n{conf}"


def _group_alive(proc: subprocess.Popen) -> bool:
    proc.poll()  # reap the leader: a zombie would count as a member
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM to each process group we started, SIGKILL after 30 s; returns when every member is gone (the JVM
    outlives the launcher scripts that Popen holds)."""
    for proc in procs:
        if _group_alive(proc):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while any(_group_alive(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.2)
    for proc in procs:
        if _group_alive(proc):
            os.killpg(proc.pid, signal.SIGKILL)
            while _group_alive(proc):
                time.sleep(0.1)


def _wait_for(port: int, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _listening(port):
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        assert proc.poll() is None, f"exited with {proc.returncode} before listening on {port}:\n{tail}"
        assert time.monotonic() < deadline, f"not listening on {port} after {timeout} s:\n{tail}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def tls_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``(address, folder)``: nginx's TLS port in front of Spark Connect; both stopped at the end, also on failure."""
    import pyspark

    for tool in ("nginx", "openssl", "java"):
        assert shutil.which(tool), f"{tool} is missing: deploy/local/bootstrap.sh installs it"
    folder = tmp_path_factory.mktemp("spark-tls")
    for sub in ("conf", "spark-local", "logs", "pids", "java-tmp", "nginx"):
        (folder / sub).mkdir()
    data = _config_map()
    defaults = _defaults(data["spark-defaults.conf"])
    upstream = re.search(r"grpc_pass grpc://([^:;]+):(\d+);", data["nginx.conf"])
    assert upstream, data["nginx.conf"]
    server = (defaults["spark.connect.grpc.binding.address"], defaults["spark.connect.grpc.binding.port"])
    assert upstream.groups() == server, "the sidecar's upstream is not where Spark Connect listens"
    spark_port, tls_port = _free_ports(PORT_BASE + 900, 2)
    (folder / "conf" / "spark-defaults.conf").write_text(
        _spark_defaults(data["spark-defaults.conf"], spark_port, folder)
    )
    (folder / "nginx" / "nginx.conf").write_text(_nginx_conf(data["nginx.conf"], tls_port, spark_port, folder))
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
         "-subj", "/CN=spark-connect", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(folder / "tls.key"), "-out", str(folder / "tls.crt")],
        check=True, capture_output=True,
    )  # fmt: skip
    nginx = ["nginx", "-p", str(folder / "nginx"), "-e", str(folder / "nginx" / "error.log")]
    nginx += ["-c", str(folder / "nginx" / "nginx.conf")]
    checked = subprocess.run([*nginx, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0 and "[warn]" not in checked.stderr, checked.stderr
    spark_home = Path(pyspark.__file__).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))}
    env.update(
        SPARK_HOME=str(spark_home),
        SPARK_CONF_DIR=str(folder / "conf"),
        SPARK_PID_DIR=str(folder / "pids"),
        SPARK_LOG_DIR=str(folder / "logs"),
        SPARK_NO_DAEMONIZE="1",  # as the Deployment
        SPARK_CONNECT_AUTHENTICATE_TOKEN=TOKEN,  # as the Deployment, from the secret
        SPARK_LOCAL_IP="127.0.0.1",
        JAVA_TOOL_OPTIONS=f"-Djava.io.tmpdir={folder / 'java-tmp'} -XX:-UsePerfData",
    )
    procs: list[subprocess.Popen] = []
    try:
        with open(folder / "spark.out", "wb") as out:
            procs.append(
                subprocess.Popen([str(spark_home / "sbin" / "start-connect-server.sh")], env=env, stdout=out,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            )  # fmt: skip
        with open(folder / "nginx" / "nginx.out", "wb") as out:
            procs.append(
                subprocess.Popen([*nginx, "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
            )  # fmt: skip
        _wait_for(tls_port, procs[1], folder / "nginx" / "error.log", 30)
        _wait_for(spark_port, procs[0], folder / "spark.out", 180)
        yield f"127.0.0.1:{tls_port}", folder
    finally:
        _stop(procs)


def _connect(endpoint: tuple[str, Path], params: str, *conf: str) -> dict:
    """A pyspark Connect client in its own process (gRPC reads its TLS roots once per process)."""
    address, folder = endpoint
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))}  # no token from env
    env["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(folder / "tls.crt")
    url = f"sc://{address}/;use_ssl=true{params}"
    try:
        result = subprocess.run(
            [sys.executable, "-c", CLIENT, url, *conf], env=env, capture_output=True, text=True, timeout=90
        )
    except subprocess.TimeoutExpired as exc:  # the client retries while the channel fails (e.g. no HTTP/2)
        pytest.fail(f"no answer in 90 s from {url}:\n{(exc.stderr or b'')[-3000:].decode(errors='replace')}")
    assert result.returncode == 0 and result.stdout.strip(), result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_right_token_over_tls_runs_a_query(tls_endpoint: tuple[str, Path]) -> None:
    """The session runs with the ConfigMap's defaults (its master, driver memory, time zone), through nginx."""
    defaults = _defaults(_config_map()["spark-defaults.conf"])
    keys = ("spark.master", "spark.driver.memory", "spark.sql.session.timeZone")
    result = _connect(tls_endpoint, f";token={TOKEN}", *keys)
    assert result == {"total": 45, "conf": {k: defaults[k] for k in keys}}
    access = (tls_endpoint[1] / "nginx" / "access.log").read_text()
    assert re.search(r'"POST /spark\.connect\.SparkConnectService/ExecutePlan HTTP/2\.0" 200 ', access), access


def test_a_wrong_token_is_refused(tls_endpoint: tuple[str, Path]) -> None:
    result = _connect(tls_endpoint, ";token=not-the-token")
    assert "error" in result, result
    assert "UNAUTHENTICATED" in result["message"] and "Invalid authentication token" in result["message"], result


def test_no_token_is_refused(tls_endpoint: tuple[str, Path]) -> None:
    result = _connect(tls_endpoint, "")
    assert "error" in result, result
    assert "UNAUTHENTICATED" in result["message"] and "No authentication token provided" in result["message"], result
