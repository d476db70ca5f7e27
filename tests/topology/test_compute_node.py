"""vps_2 run for real in the simulated topology (``deploy/sim/compute.py``): the Spark Connect server and its nginx
TLS sidecar from the ConfigMap, in vps_2's namespace behind its firewall, reached from vps_1 the way Dagster reaches
it (``sc://10.104.0.3:15002/;use_ssl=true;token=...``, the node's certificate as the only root).

What the boundary tests show with stand-in listeners, this shows with the real servers: the token is checked behind
TLS, the internet cannot reach the port, and the raw Spark port is not on the VPC even without the firewall.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from deploy.sim import compute
from deploy.sim import topology as sim
from deploy.sim.netns import Lab, Namespace, host_routes_overlapping
from resources.topology import NODES, PRIVATE_NETWORK, service
from tests.conftest import REPO

SITE = Path(__file__).resolve().parents[2] / "deploy" / "ansible"
VPS_2 = NODES["vps_2"].private_ip
CLIENT = """
import json, sys
from pyspark.sql import SparkSession
try:
    spark = SparkSession.builder.remote(sys.argv[1]).create()
    print(json.dumps({"count": spark.range(10).count()}))
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
"""


@dataclass
class Compute:
    topo: sim.Topology
    node: compute.SparkConnect


@pytest.fixture(scope="module")
def vps_2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compute]:
    with Lab() as lab:
        topo = sim.build(lab)
        ns = topo.nodes["vps_2"]
        with compute.start(tmp_path_factory.mktemp("vps_2"), ns) as node:
            yield Compute(topo, node)
        assert _pids_in(ns) == [], "stop() left processes in vps_2"
        assert host_routes_overlapping(str(PRIVATE_NETWORK)) == []
    assert host_routes_overlapping(str(PRIVATE_NETWORK)) == []


def _pids_in(ns: Namespace) -> list[str]:
    return subprocess.run(["ip", "netns", "pids", ns.name], capture_output=True, text=True, check=True).stdout.split()


def _answering(ns: Namespace, *specs: str) -> set[str]:
    return set(ns.run(sys.executable, "-m", "deploy.sim.probe", *specs, timeout=60).stdout.split())


def _connect(ns: Namespace, url: str, ca: Path) -> dict:
    """A pyspark Connect client run as the namespace's host, in its own process (gRPC reads its roots once)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))}  # only the URL's token
    env["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(ca)
    try:
        result = ns.run(sys.executable, "-c", CLIENT, url, check=False, timeout=90, env=env)
    except subprocess.TimeoutExpired as exc:  # the client retries while the channel fails
        pytest.fail(f"no answer in 90 s from {url}:\n{(exc.stderr or b'')[-3000:]!r}")
    assert result.returncode == 0 and result.stdout.strip(), result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_vps_1_runs_a_query_with_the_token_over_tls(vps_2: Compute) -> None:
    node = vps_2.node
    assert (
        node.url
        == f"sc://{VPS_2}:{service('spark-connect').port}/;use_ssl=true;token={os.environ['SPARK_CONNECT_TOKEN']}"
    )
    assert _connect(vps_2.topo.nodes["vps_1"], node.url, node.ca) == {"count": 10}


def test_vps_1_with_a_wrong_token_is_refused(vps_2: Compute) -> None:
    url = vps_2.node.url.replace(vps_2.node.token, "not-the-token")
    result = _connect(vps_2.topo.nodes["vps_1"], url, vps_2.node.ca)
    assert "UNAUTHENTICATED" in result.get("message", "") and "Invalid authentication token" in result["message"]


def test_the_certificate_names_what_ansible_names(vps_2: Compute) -> None:
    """The SAN of Ansible's task, its variables filled in for vps_2: the client checks the IP in the URL against it."""
    task = next(
        t
        for play in yaml.safe_load((SITE / "site.yml").read_text())
        for t in play.get("tasks", [])
        if t.get("name", "").startswith("Spark Connect TLS certificate")
    )
    variables = yaml.safe_load((SITE / "vars.yml").read_text()) | {"private_ip": VPS_2}
    command = re.sub(
        r"\{\{ (\w+) \}\}", lambda m: str(variables.get(m.group(1), m.group(0))), task["ansible.builtin.command"]
    )
    san = re.search(r"subjectAltName=(\S+)", command)
    assert san
    expected = san.group(1).split(",")
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(vps_2.node.ca)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    names = [n.strip().replace("IP Address:", "IP:") for n in text.splitlines()[1].split(",")]
    assert names == expected and f"IP:{VPS_2}" in names


def test_the_internet_cannot_reach_spark_connect(vps_2: Compute) -> None:
    tls = f"{vps_2.node.endpoint}/tcp"
    assert _answering(vps_2.topo.nodes["vps_1"], tls) == {tls}  # the control: the VPC can
    assert _answering(vps_2.topo.internet, tls) == set()


def test_the_raw_spark_port_stays_inside_vps_2(vps_2: Compute) -> None:
    """Bound to the ConfigMap's loopback address: not on the private address even from vps_2 itself (where the
    firewall admits everything), so only the sidecar reaches it."""
    node = vps_2.node
    assert node.spark_address == "127.0.0.1"
    loopback, private = f"127.0.0.1:{node.spark_port}/tcp", f"{VPS_2}:{node.spark_port}/tcp"
    assert _answering(vps_2.topo.nodes["vps_2"], loopback, private) == {loopback}
    assert _answering(vps_2.topo.nodes["vps_1"], private) == set()


def test_spark_connect_stops_and_restarts_alone(vps_2: Compute) -> None:
    """As a lost Spark server (SIGKILL): the sidecar keeps listening, the raw port goes; a restart serves again."""
    node, ns = vps_2.node, vps_2.topo.nodes["vps_2"]
    nginx = node.nginx
    node.stop_spark(signal.SIGKILL)
    assert not node.spark_running
    raw, tls = f"127.0.0.1:{node.spark_port}/tcp", f"{node.endpoint}/tcp"
    assert _answering(ns, raw, tls) == {tls}
    node.start_spark()
    assert node.nginx is nginx and nginx is not None and nginx.poll() is None
    assert _connect(vps_2.topo.nodes["vps_1"], node.url, node.ca) == {"count": 10}


RESOURCE_CLIENT = """
import os, sys
from resources.object_store import ObjectStoreResource
from resources.spark import SparkResource
store = ObjectStoreResource(endpoint_url="http://127.0.0.1:9", bucket="lake", aws_access_key_id="k",
                            aws_secret_access_key="s")
spark = SparkResource(object_store=store, remote=sys.argv[1], token=os.environ["SPARK_CONNECT_TOKEN"],
                      connect_retry_seconds=3)
for line in sys.stdin:
    try:
        with spark.unavailable_if_lost():
            print("count", spark.session.range(int(line)).count(), flush=True)
    except Exception as exc:
        print("error", type(exc).__name__, str(exc).splitlines()[0], flush=True)
"""


def test_a_run_s_spark_resource_reports_the_lost_server_and_works_again_after_its_restart(vps_2: Compute) -> None:
    """What a step and its retry see: the resource on vps_1 fails in one line while vps_2's Spark is gone, then opens
    a new session on the restarted server (it never heard of the old one)."""
    node, vps_1 = vps_2.node, vps_2.topo.nodes["vps_1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))}
    env |= {"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(node.ca), "SPARK_CONNECT_TOKEN": node.token}
    client = subprocess.Popen(
        vps_1.argv(sys.executable, "-c", RESOURCE_CLIENT, f"sc://{node.endpoint}"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO,
    )  # fmt: skip

    def ask(rows: int) -> str:
        client.stdin.write(f"{rows}\n")
        client.stdin.flush()
        return client.stdout.readline().strip()

    try:
        assert ask(10) == "count 10"
        node.stop_spark(signal.SIGKILL)
        lost = ask(10)
        prefix = "error ServiceUnavailableError spark-connect on vps_2 is unreachable or misconfigured at "
        prefix += f"sc://{node.endpoint}: "
        # gRPC's status depends on the moment: the sidecar's 502 (UNAVAILABLE), or the stream cut as the server dies
        assert lost.removeprefix(prefix).startswith(("UNAVAILABLE", "UNKNOWN: Stream removed")), lost
        node.start_spark()
        assert ask(12) == "count 12"
        # not asserted: the process's exit. pyspark 4.3 then hangs in gRPC's channel close (SparkSession.__del__ of
        # the session whose server was lost waits on a lock); an open finding, stated in deploy/README.md
    finally:
        if client.poll() is None:
            client.kill()
        if not node.spark_running:
            node.start_spark()
