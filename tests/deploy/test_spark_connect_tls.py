"""vps_2's Spark Connect pod on this machine (``deploy/sim/compute.py``, here on loopback without namespaces): the
real Spark Connect server with the ConfigMap's ``spark-defaults.conf`` behind Debian's nginx with the ConfigMap's
``nginx.conf`` (as the sidecar's non-root uid and gid when the tests run as root), reached by a pyspark Connect
client over TLS the way Jupyter and Dagster reach it (``use_ssl=true``, token, the certificate as the only root).
``deploy.local.stack.spark_connect_up`` cannot stand in: it passes master, port and token as ``--conf`` flags, which
would hide the file's settings.

Left unchecked: that the image's nginx 1.29 accepts ``http2 on;`` and enables HTTP/2 on this listener with it (gRPC
fails without HTTP/2; Debian's 1.22 gets ``listen ... ssl http2``), the images themselves (nginx's alpine build, the
Spark image's s3a jars; the s3a settings are loaded but no s3a path is read) and the Kubernetes wiring (subPath and
secret mounts, Spark's runAsUser 185, probes, the Service on the private address).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.sim import compute
from tests.conftest import PORT_BASE

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


def _free_ports(base: int, count: int) -> list[int]:
    ports = []
    for port in range(base, base + 100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"fewer than {count} free ports in {base}-{base + 99}")


@pytest.fixture(scope="module")
def tls_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[compute.SparkConnect]:
    """nginx's TLS port in front of Spark Connect, on loopback; both stopped at the end, also on failure."""
    spark_port, tls_port = _free_ports(PORT_BASE + 900, 2)
    folder = tmp_path_factory.mktemp("spark-tls")
    with compute.start(folder, None, address="127.0.0.1", port=tls_port, spark_port=spark_port, token=TOKEN) as node:
        yield node


def _connect(node: compute.SparkConnect, params: str, *conf: str) -> dict:
    """A pyspark Connect client in its own process (gRPC reads its TLS roots once per process)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))}  # no token from env
    env["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(node.ca)
    url = f"sc://{node.endpoint}/;use_ssl=true{params}"
    try:
        result = subprocess.run(
            [sys.executable, "-c", CLIENT, url, *conf], env=env, capture_output=True, text=True, timeout=90
        )
    except subprocess.TimeoutExpired as exc:  # the client retries while the channel fails (e.g. no HTTP/2)
        pytest.fail(f"no answer in 90 s from {url}:\n{(exc.stderr or b'')[-3000:].decode(errors='replace')}")
    assert result.returncode == 0 and result.stdout.strip(), result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_right_token_over_tls_runs_a_query(tls_endpoint: compute.SparkConnect) -> None:
    """The session runs with the ConfigMap's defaults (its master, driver memory, time zone), through nginx."""
    defaults = compute.defaults(compute.config_map()["spark-defaults.conf"])
    keys = ("spark.master", "spark.driver.memory", "spark.sql.session.timeZone")
    result = _connect(tls_endpoint, f";token={TOKEN}", *keys)
    assert result == {"total": 45, "conf": {k: defaults[k] for k in keys}}
    access = (tls_endpoint.folder / "nginx" / "access.log").read_text()
    assert re.search(r'"POST /spark\.connect\.SparkConnectService/ExecutePlan HTTP/2\.0" 200 ', access), access


def test_a_wrong_token_is_refused(tls_endpoint: compute.SparkConnect) -> None:
    result = _connect(tls_endpoint, ";token=not-the-token")
    assert "error" in result, result
    assert "UNAUTHENTICATED" in result["message"] and "Invalid authentication token" in result["message"], result


def test_no_token_is_refused(tls_endpoint: compute.SparkConnect) -> None:
    result = _connect(tls_endpoint, "")
    assert "error" in result, result
    assert "UNAUTHENTICATED" in result["message"] and "No authentication token provided" in result["message"], result


def _children(parent: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text() if proc.name.isdigit() else ""
        except OSError:  # gone meanwhile
            continue
        if stat and int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found.append(int(proc.name))
    return found


def _ids(pid: int) -> set[tuple[str, ...]]:
    """The real, effective, saved and filesystem uids and gids of a process."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {tuple(status["Uid"].split()), tuple(status["Gid"].split())}


def test_the_sidecar_runs_as_the_pods_uid_from_the_start(tls_endpoint: compute.SparkConnect) -> None:
    """Pod Security's restricted profile: nginx is started as the sidecar's ``runAsUser``/``runAsGroup`` (here as
    this user when not root) and every process of it, master and workers, keeps them; none switches from root."""
    security = compute.container_spec("spark-connect", "tls-proxy")["securityContext"]
    uid, gid = (security["runAsUser"], security["runAsGroup"]) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    assert tls_endpoint.nginx is not None
    master = tls_endpoint.nginx.pid
    workers = _children(master)
    assert workers, "nginx started no worker"
    for pid in [master, *workers]:
        assert _ids(pid) == {(str(uid),) * 4, (str(gid),) * 4}, pid
