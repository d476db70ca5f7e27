"""The platform end to end on the simulated topology, as deployed and as an agent uses it: vps_1's stack run by
Docker Engine and Compose inside vps_1's namespace (images built from their Dockerfiles, the stack folder and
``.env`` written by Ansible), behind the nodes' firewalls; from the internet, on the VPN, through Caddy,
``platform describe`` and ``platform materialize job:full_lineage``.

What cannot run here stays a stand-in (``deploy/README.md``): vps_2's Spark Connect pod (Spark + its TLS/token
sidecar) runs as containers on a Docker Engine in vps_2's namespace, as no Kubernetes runs here; in place of vps_3's
ClickHouse servers, the in-process engine (chDB) on a folder the run containers mount, one run at a time. Each run
starts in a container of its own (``DockerRunLauncher``), extracts from 10.104.0.2:5432, transforms on
10.104.0.3:15002, and the marts must equal TPC-H's answers. A run terminated from the UI stops its container; a run
container killed with ``docker kill`` is failed by run monitoring and retried as a new run; vps_2's Spark container
killed in the middle of a run fails the run with one line naming node, service and endpoint (reported to the
operator's webhook, not retried as a run), and a re-run once Spark is back leaves the warehouse equal to the OLTP
and the marts to TPC-H.

The first session builds the images (several minutes); later ones reuse the layers in ``.data/docker``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from deploy.edge_stack import OLTP
from deploy.sim import clickhouse_http, compute, gateway, images
from deploy.sim import compute_containers as pod
from deploy.sim import topology as sim
from deploy.sim.docker_engine import DOCKER_CLIENT, DockerEngine, installed
from deploy.sim.edge_containers import DAGSTER_SERVICES, ContainerEdge, operator_stack, seed, start_edge
from deploy.sim.netns import Lab, host_routes_overlapping, wait_for
from deploy.sim.operator import UI_DOMAIN
from platform_assets.marts.queries import TPCH
from resources.environments import OLTP_ROLES, RESOURCE_SECRETS
from resources.topology import PRIVATE_NETWORK, SERVICES, service
from tests.conftest import REPO, SCALE_FACTOR, TEST_DATA
from tests.tpch_reference import mismatches, reference_answer

pytestmark = pytest.mark.skipif(not installed(), reason="Docker Engine not installed (`make setup` installs it)")

SEED_DAY = "1998-08-03"  # the day the seed stamps every row with
WEBHOOK_PORT = 8099
WEBHOOK_PATH = "/hooks/T000/B000/sim-token"
# a run retries an unreachable Spark for this long per attempt (60 s deployed): the lost-node test waits less
SETTINGS = {"SPARK_CONNECT_RETRY_SECONDS": "5"}
RUN_LABEL = "dagster/run_id"  # DockerRunLauncher's label on a run's container
WEBHOOK = """
import http.server, sys
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open(sys.argv[3], "ab") as out:
            out.write(self.path.encode() + b" " + body + b"\\n")
        self.send_response(204); self.end_headers()
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), Hook).serve_forever()
"""


@dataclass
class Platform:
    topo: sim.Topology
    engine: DockerEngine
    edge: ContainerEdge
    spark: pod.ContainerPod
    root: Path
    dotenv: dict[str, str]  # the .env Ansible wrote
    password: str  # the UI login's
    webhook_log: Path
    first_up: float  # seconds from `compose up` to every service healthy
    compute_env: dict[str, str]  # the .env Ansible wrote on vps_2

    @property
    def ca(self) -> Path:
        """Caddy's local CA (``tls internal``), on the proxy's data volume."""
        return self.edge.root / "mnt/edge-state/proxy-data" / gateway.CA_ROOT

    @property
    def url(self) -> str:
        return f"https://{UI_DOMAIN}"

    @property
    def login(self) -> tuple[str, str]:
        return self.dotenv["DAGSTER_UI_USER"], self.password

    def agent_env(self) -> dict[str, str]:
        """An agent's environment: the proxy's URL and login, trusting the proxy's CA, nothing of the platform's."""
        return {"PATH": os.environ["PATH"], "HOME": str(self.root / "agent"), "DAGSTER_URL": self.url,
                "DAGSTER_USER": self.login[0], "DAGSTER_PASSWORD": self.login[1],
                "REQUESTS_CA_BUNDLE": str(self.ca)}  # fmt: skip

    def platform(self, *args: str, timeout: float = 900) -> tuple[int, str, str]:
        out = self.topo.internet.run(
            sys.executable, "-m", "control_plane.cli", *args, env=self.agent_env(), cwd=REPO, check=False,
            timeout=timeout,
        )  # fmt: skip
        return out.returncode, out.stdout, out.stderr

    def run_containers(self, run_id: str) -> list[str]:
        """Ids of the containers (running or not) the run launcher started for ``run_id``."""
        return self.engine.docker("ps", "-aq", "--filter", f"label={RUN_LABEL}={run_id}").stdout.split()

    @contextlib.contextmanager
    def container_events(self, *filters: str) -> Iterator[list[dict]]:
        """The engine's container events while the block runs, filtered by the engine (``event=create``, …).
        Streamed and read as they come: ``docker events --since`` reads a buffer of the last 256 events, and an
        unread pipe stalls the stream, both filled within minutes by the healthchecks' exec events."""
        events: list[dict] = []
        argv = [DOCKER_CLIENT, "-H", self.engine.host, "events", "--format", "{{json .}}", "--filter",
                "type=container", *(f for flt in filters for f in ("--filter", flt))]  # fmt: skip
        watch = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(watch.stdout), daemon=True)
        reader.start()
        try:
            time.sleep(0.5)  # subscribed before the block starts
            yield events
            time.sleep(1)  # the last events of the block
        finally:
            watch.terminate()
            watch.wait(timeout=30)
            reader.join(timeout=30)
        events += [json.loads(line) for line in lines]

    def in_image(self, script: str, *args: str) -> object:
        """A Python script in a one-off container of the code server's service (its image, environment, mounts
        and network); returns the JSON of its last output line."""
        out = self.edge.compose("run", "--rm", "--no-deps", "-T", "dagster-code-server", "python", "-c", script,
                                *args, timeout=600)  # fmt: skip
        return json.loads(out.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    root = TEST_DATA / "topology"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "agent").mkdir()
    # the operator's optional webhook: a chat service on the internet, reached from vps_1
    webhook = f"http://{sim.INTERNET_IP}:{WEBHOOK_PORT}{WEBHOOK_PATH}"
    operator = operator_stack(root, {"FAILURE_WEBHOOK_URL": webhook})
    assert operator.dotenv["FAILURE_WEBHOOK_URL"] == webhook
    webhook_log = root / "webhook.log"
    with Lab() as lab:
        topo = sim.build(lab)
        topo.internet.popen(sys.executable, "-c", WEBHOOK, sim.INTERNET_IP, str(WEBHOOK_PORT), str(webhook_log),
                            log=root / "webhook.out")  # fmt: skip
        topo.internet.hosts({UI_DOMAIN: sim.EDGE_PUBLIC_IP})  # the A record
        compute_engine = DockerEngine(f"{lab.prefix}-vps_2", images.docker_root() / "vps_2", topo.nodes["vps_2"])
        spark = pod.start(compute_engine, root / "vps_2" / "pod", operator.compute_env["SPARK_CONNECT_TOKEN"])
        engine = DockerEngine(f"{lab.prefix}-vps_1", images.docker_root() / "vps_1", topo.nodes[sim.EDGE])
        try:
            pod.start_jupyter(spark, operator.compute_env)
            edge, up = start_edge(engine, operator.stack, root / "disks", spark.ca, SETTINGS)
            # vps_3's ClickHouse HTTP, served from the runs' warehouse folder by the stand-in (its users from vps_3's
            # stack folder): what the notebooks on vps_2 query
            clickhouse_http.start(topo.nodes["vps_3"], operator.warehouse_stack, edge.warehouse,
                                  root / "clickhouse-http.log")  # fmt: skip
            seed(edge, SCALE_FACTOR)
            yield Platform(topo, engine, edge, spark, root, operator.dotenv, operator.password, webhook_log, up,
                           operator.compute_env)  # fmt: skip
            engine.docker("rmi", f"{operator.dotenv['DAGSTER_IMAGE']}-next", check=False)  # the upgrade test's tag
        finally:
            engine.stop()
            spark.stop()
    assert host_routes_overlapping(str(PRIVATE_NETWORK)) == []


def test_every_service_runs_healthy_from_its_compose_image(platform: Platform):
    print(f"\nvps_1's stack up and healthy in {platform.first_up:.0f} s")
    compose = yaml.safe_load((platform.edge.stack / "compose.yaml").read_text())["services"]
    running = platform.edge.containers()
    assert set(running) == set(compose)
    for name, info in running.items():
        image = compose[name]["image"].replace("${DAGSTER_IMAGE:?set by Ansible}", platform.dotenv["DAGSTER_IMAGE"])
        assert info["Config"]["Image"] == image, name
        assert info["State"]["Health"]["Status"] == "healthy", (name, info["State"]["Health"]["Log"][-1:])
        assert info["HostConfig"]["RestartPolicy"]["Name"] == compose[name]["restart"], name


def test_the_dagster_image_runs_as_its_own_user_and_postgres_as_postgres(platform: Platform):
    def uid(service: str, *process: str) -> str:
        return platform.edge.compose("exec", "-T", service, *process, "id", "-un", timeout=60).stdout.strip()

    assert uid("dagster-code-server") == "dagster"
    # the server (the container's first process) runs as the image's postgres user: the entrypoint dropped root
    script = "grep ^Uid: /proc/1/status | cut -f2; id -u postgres"
    server, postgres = platform.edge.compose("exec", "-T", "oltp-postgres", "sh", "-c", script).stdout.split()
    assert server == postgres != "0"


DOCKER_API_PROBE = """
import sys, urllib.error, urllib.request
for method, path in (("GET", "/_ping"), ("POST", "/v1.41/containers/create"), ("GET", "/v1.41/containers/json"),
                     ("POST", "/v1.41/images/create?fromImage=busybox")):
    try:
        status = urllib.request.urlopen(urllib.request.Request(sys.argv[1] + path, method=method, data=None if
                                        method == "GET" else b"{}"), timeout=30).status
    except urllib.error.HTTPError as e:
        status = e.code
    print(method, path, status)
"""

LAKE_AND_BACKUPS = """
import os, boto3, botocore
e = os.environ
s3 = boto3.client("s3", endpoint_url=e["S3_ENDPOINT_URL"], region_name="us-east-1",
                  aws_access_key_id=e["S3_ACCESS_KEY_ID"], aws_secret_access_key=e["S3_SECRET_ACCESS_KEY"])
for bucket in ("lake", "backups"):
    try:
        print(bucket, s3.list_objects_v2(Bucket=bucket).get("KeyCount"))
    except botocore.exceptions.ClientError as e:
        print(bucket, e.response["Error"]["Code"])
"""


def test_the_webserver_holds_no_socket_and_no_pipeline_secret_and_the_backups_their_own_key(platform: Platform):
    """What the internet reaches first after Caddy runs as `dagster`, without the Docker socket or a pipeline secret,
    and its Docker API (docker-api) answers a ping but refuses to create a container, list them or pull an image
    (stopping a run through it: the terminate test). A backup round succeeds with the backup key, which the
    pipeline's key cannot read."""
    p = platform
    web = p.edge.containers()["dagster-webserver"]
    assert p.edge.compose("exec", "-T", "dagster-webserver", "id", "-un").stdout.strip() == "dagster"
    assert not [m for m in web["Mounts"] if "docker.sock" in m["Source"] + m["Destination"]], web["Mounts"]
    env = dict(e.split("=", 1) for e in web["Config"]["Env"])
    pipeline = {k: v for k, v in p.dotenv.items() if k in RESOURCE_SECRETS}
    assert not {k for k, v in env.items() if k in pipeline or v in pipeline.values()}, "a pipeline secret"
    probe = p.edge.compose("exec", "-T", "dagster-webserver", "python", "-c", DOCKER_API_PROBE, env["DOCKER_HOST"]
                           .replace("tcp://", "http://")).stdout  # fmt: skip
    assert probe.split("\n")[:4] == [
        "GET /_ping 200", "POST /v1.41/containers/create 403", "GET /v1.41/containers/json 403",
        "POST /v1.41/images/create?fromImage=busybox 403"], probe  # fmt: skip
    backup = p.edge.compose("run", "--rm", "-T", "-e", "BACKUP_ONCE=1", "postgres-backup", timeout=600, check=False)
    assert backup.returncode == 0, backup.stderr[-2000:]
    s3 = f"http://seaweedfs:{service('object-store-s3').port}"
    seen = p.edge.compose("exec", "-T", "-e", f"S3_ENDPOINT_URL={s3}", "dagster-code-server", "python", "-c",
                          LAKE_AND_BACKUPS).stdout.split()  # fmt: skip
    assert seen[:2] == ["lake", seen[1]] and seen[1].isdigit() and seen[2:] == ["backups", "AccessDenied"], seen


def test_up_again_recreates_nothing(platform: Platform):
    before = {n: (c["Id"], c["State"]["StartedAt"]) for n, c in platform.edge.containers().items()}
    platform.edge.up(timeout=600)
    after = {n: (c["Id"], c["State"]["StartedAt"]) for n, c in platform.edge.containers().items()}
    assert after == before


def test_with_the_real_services_the_internet_still_reaches_only_https_and_the_vpn(platform: Platform):
    """The containers publish as deployed (Caddy on 0.0.0.0:443 and OpenVPN on 0.0.0.0:1194/udp through Docker's
    NAT, the OLTP and SeaweedFS on the private address): the internet reaches only TCP 443; UDP 1194 is proven by
    the VPN connecting."""
    p = platform
    ports = sorted({s.port for s in SERVICES.values() if s.protocol == "tcp"})
    answered = gateway.reachable(p.topo.internet, *(f"{sim.EDGE_PUBLIC_IP}:{port}/tcp" for port in ports))
    assert answered == {f"{sim.EDGE_PUBLIC_IP}:443/tcp"}


def test_vps_2_runs_the_spark_connect_pod_as_the_deployment_declares_and_answers_only_through_its_sidecar(
    platform: Platform,
):
    """The pod's containers as the Deployment gives them; from the VPC only the TLS sidecar's port answers on vps_2
    (Spark's own port is bound to the pod's loopback), from vps_1's run network too."""
    p = platform
    spark = p.spark.engine.inspect("container", pod.SPARK)
    assert spark["Config"]["User"] == "185" and spark["HostConfig"]["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in spark["HostConfig"]["SecurityOpt"]
    assert "SPARK_CONNECT_AUTHENTICATE_TOKEN" not in " ".join(spark["Args"] + [spark["Path"]])
    assert spark["HostConfig"]["NetworkMode"] == f"container:{p.spark.engine.inspect('container', pod.PAUSE)['Id']}"
    vps_2 = p.topo.address_of("vps_2")
    spark_port = compute.defaults(compute.config_map()["spark-defaults.conf"])["spark.connect.grpc.binding.port"]
    tried = (f"{vps_2}:{p.spark.port}/tcp", f"{vps_2}:{spark_port}/tcp")
    assert gateway.reachable(p.topo.nodes["vps_3"], *tried) == {tried[0]}


JUPYTER_API = """
import sys, urllib.error, urllib.request
for header in ({}, {"Authorization": "token " + sys.argv[2]}):
    try:
        print(urllib.request.urlopen(urllib.request.Request(sys.argv[1], headers=header), timeout=30).status)
    except urllib.error.HTTPError as e:
        print(e.code)
"""
SPARK_FROM_A_NOTEBOOK = (
    "from pyspark.sql import SparkSession; print(SparkSession.builder.getOrCreate().range(5).count())"
)


def test_jupyter_on_vps_2_answers_the_vpc_behind_its_token_and_its_kernel_reaches_spark_connect(platform: Platform):
    """The Jupyter Deployment as its manifest declares it: from another node, its API refuses a request without the
    token and answers one with it; Python in its container reaches Spark Connect by the Service's cluster name with
    nothing but the Deployment's environment (``SPARK_REMOTE``, the token, the CA)."""
    p = platform
    token = p.compute_env["JUPYTER_TOKEN"]
    url = f"http://{p.topo.address_of('vps_2')}:8888/api/contents"
    out = p.topo.nodes["vps_3"].run(sys.executable, "-c", JUPYTER_API, url, token, timeout=120)
    assert out.stdout.split() == ["403", "200"], out.stdout + out.stderr
    jupyter = p.spark.engine.inspect("container", pod.JUPYTER)
    assert token not in json.dumps(jupyter["Args"]) and jupyter["Config"]["User"] == "1000"
    count = p.spark.engine.docker("exec", pod.JUPYTER, "python", "-c", SPARK_FROM_A_NOTEBOOK, timeout=300)
    assert count.stdout.split()[-1:] == ["5"], count.stdout + count.stderr


@pytest.fixture(scope="module")
def agent(platform: Platform) -> Iterator[Platform]:
    """An agent's VPN tunnel from the internet with the profile ``vpn-client issue`` prints in the openvpn
    container, open for the tests that follow."""
    p = platform
    profile = p.root / "agent.ovpn"
    profile.write_text(p.edge.compose("exec", "-T", "openvpn", "vpn-client", "issue", "agent", timeout=120).stdout)
    log = p.root / "agent-vpn.log"
    client = p.topo.internet.popen("openvpn", "--config", str(profile), log=log)
    connected = lambda: gateway.CONNECTED in log.read_text(errors="replace") or client.poll() is not None  # noqa: E731
    wait_for(connected, 30, "the agent's VPN client to connect")
    assert gateway.CONNECTED in log.read_text(errors="replace"), log.read_text()[-3000:]
    yield p
    p.topo.lab.stop(client)


def test_on_the_vpn_the_agent_reaches_the_vpc_through_the_gateway_container(agent: Platform):
    """The tunnel ends in the openvpn container; its NAT and Docker's carry the agent to vps_1's private address,
    where only what vps_1 publishes to the VPC answers."""
    routes = agent.topo.internet.routes()
    assert any(r.startswith(str(PRIVATE_NETWORK)) for r in routes), routes
    private = agent.topo.address_of(sim.EDGE)
    tried = (443, 5432, 8333, 3000, 4000)
    answered = gateway.reachable(agent.topo.internet, *(f"{private}:{port}/tcp" for port in tried))
    assert answered == {f"{private}:{port}/tcp" for port in (443, 5432, 8333)}  # the webserver: only via Caddy


GRAPHQL_LOGS = """
query Logs($runId: ID!) { logsForRun(runId: $runId) { __typename ... on EventConnection {
  events { __typename ... on MessageEvent { timestamp stepKey message } ... on LogsCapturedEvent { fileKey stepKeys } }
} } }
"""
# figures the end-to-end run measures (not asserted: speed belongs to the benchmarks), kept after the run
FIGURES = Path(__file__).resolve().parents[2] / ".data" / "test-artifacts" / "end-to-end-figures.json"
GRAPHQL_CAPTURED = "query C($key: [String!]!) { capturedLogs(logKey: $key) { stdout stderr } }"


def _graphql(p: Platform, query: str, variables: dict) -> dict:
    """Straight to the webserver's GraphQL through the proxy, from the internet namespace (as the UI does)."""
    script = (
        "import json, sys, requests; q, v, url, user, pw, ca = sys.argv[1:]\n"
        "r = requests.post(url + '/graphql', json={'query': q, 'variables': json.loads(v)}, auth=(user, pw),"
        " verify=ca, timeout=180)\nprint(r.status_code); print(r.text)"
    )
    out = p.topo.internet.run(
        sys.executable, "-c", script, query, json.dumps(variables), p.url, *p.login, str(p.ca),
        env={"PATH": os.environ["PATH"]}, timeout=240, check=False,
    )  # fmt: skip
    status, _, body = out.stdout.partition("\n")
    assert status == "200", (out.stdout + out.stderr)[-2000:]
    return json.loads(body)["data"]


def _marts(p: Platform) -> dict[str, list[tuple]]:
    """The marts read from the chDB folder once no run holds it (the daemon stopped, its runs finished)."""
    script = (
        "import json, os\nfrom resources.clickhouse import ClickHouseResource\n"
        "from platform_assets.marts.assets import read_mart\nfrom platform_assets.marts.queries import TPCH\n"
        "ch = ClickHouseResource(dsn=os.environ['CLICKHOUSE_DSN'])\n"
        "from decimal import Decimal\n"
        "num = lambda v: float(v) if isinstance(v, Decimal) else str(v)\n"
        "print(json.dumps({m.name: [list(r) for r in read_mart(ch, m)[1]] for m in TPCH}, default=num))"
    )
    marts = p.in_image(script)
    return {name: [tuple(r) for r in rows] for name, rows in marts.items()}


def _idle(p: Platform) -> bool:
    """No run holds the chDB folder. Queued runs do not count: with the daemon stopped they never start."""
    code, out, _ = p.platform("status", "--limit", "20", timeout=120)
    return code == 0 and not any(r["status"] in {"STARTING", "STARTED", "CANCELING"} for r in json.loads(out)["runs"])


def _warehouse_vs_oltp(p: Platform) -> dict[str, str]:
    """Every warehouse table compared with the OLTP on vps_1, every column of every live row (``matches_oltp``)."""
    script = (
        "import json\nfrom resources.environments import resource_defs\n"
        "from platform_assets.catalog import TABLES\nfrom platform_assets.warehouse.table_diff import diff_table\n"
        "r = resource_defs()\n"
        "with r['oltp'].process_config_and_initialize_cm() as pg, "
        "r['clickhouse'].process_config_and_initialize_cm() as ch:\n"
        "    print(json.dumps({t.name: diff_table(pg, ch, t).describe() for t in TABLES}))"
    )
    return p.in_image(script)


@pytest.fixture(scope="module")
def first_lineage(agent: Platform) -> dict:
    """``platform materialize job:full_lineage`` through the proxy: the run the agent launched, and the engine's
    container events meanwhile."""
    with agent.container_events("event=create") as events:
        code, out, err = agent.platform("materialize", "job:full_lineage", "--from", SEED_DAY, "--to", SEED_DAY)
    assert code == 0, (out + err)[-4000:]
    return json.loads(out) | {"events": events}


def test_an_agent_on_the_vpn_runs_full_lineage_through_the_proxy(agent: Platform, first_lineage: dict):
    p = agent
    code, out, err = p.platform("describe", timeout=120)
    assert code == 0, err
    assert {n["name"] for n in json.loads(out)["topology"]["nodes"]} == {"vps_1", "vps_2", "vps_3"}
    assert first_lineage["status"] == "SUCCESS"

    # the run's compute logs, as the UI shows them: written by the run to SeaweedFS, read by the webserver
    events = _graphql(p, GRAPHQL_LOGS, {"runId": first_lineage["run_id"]})["logsForRun"]["events"]
    # a run container's start-up as the deployed bench counts it: launched (RUN_STARTING) → its first step
    stamps = {kind: min(float(e["timestamp"]) / 1000 for e in events if e["__typename"] == kind)
              for kind in ("RunStartingEvent", "RunStartEvent", "ExecutionStepStartEvent")}  # fmt: skip
    startup = stamps["ExecutionStepStartEvent"] - stamps["RunStartingEvent"]
    assert stamps["RunStartingEvent"] <= stamps["RunStartEvent"] <= stamps["ExecutionStepStartEvent"], stamps
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(json.dumps({"run_container_startup_s": round(startup, 2),
                                   "run_start_to_first_step_s": round(stamps["ExecutionStepStartEvent"]
                                                                           - stamps["RunStartEvent"], 2)}))  # fmt: skip
    print(f"run container start-up (launch → first step): {startup:.2f} s")
    keys = [e["fileKey"] for e in events if e["__typename"] == "LogsCapturedEvent"]
    assert keys, "no compute logs were captured"
    captured = _graphql(p, GRAPHQL_CAPTURED, {"key": [first_lineage["run_id"], "compute_logs", keys[0]]})
    logs = captured["capturedLogs"]
    assert (logs["stdout"] or "") + (logs["stderr"] or ""), "the webserver could not read the logs"

    # the curated layer ran on vps_2: Spark Connect's calls passed its TLS sidecar
    assert "ExecutePlan" in p.spark.access_log().read_text()


def test_the_run_ran_in_a_container_of_its_own_removed_after(agent: Platform, first_lineage: dict):
    # the sensors' runs got containers of their own meanwhile: one container was the agent's run's
    created = [e for e in first_lineage["events"] if e["Action"] == "create"]
    (run,) = [e for e in created if e["Actor"]["Attributes"].get(RUN_LABEL) == first_lineage["run_id"]]
    attributes = run["Actor"]["Attributes"]  # from the Dagster image, no compose service of its own
    assert attributes["image"] == agent.dotenv["DAGSTER_IMAGE"] and "com.docker.compose.service" not in attributes
    assert all(RUN_LABEL in e["Actor"]["Attributes"] for e in created), created  # no container but runs'
    # it reached dagster-postgres by its service name: it ran on the stack's network
    # auto_remove: the container goes once the run's process has ended
    wait_for(lambda: agent.run_containers(first_lineage["run_id"]) == [], 120, "the run's container removed")


NOTEBOOK = "notebooks/explore_lineage.ipynb"  # shipped in the Jupyter image, under its notebook dir
# A notebook executed headless in a kernel of the Jupyter server, as the UI runs it: the notebook read through the
# contents API, a kernel started with POST /api/kernels, each code cell sent as an execute_request over the kernel's
# websocket channels, its outputs collected until the kernel is idle again; then the kernel is shut down.
KERNEL_CLIENT = r"""
import datetime, json, sys, urllib.request, uuid
import websocket
base, token, path, extra = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
auth = {"Authorization": "token " + token}
def api(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + url, data=data, method=method,
                                     headers={**auth, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"null")
notebook = api("GET", "/api/contents/" + path + "?type=notebook&content=1")["content"]
cells = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"] + extra
kernel = api("POST", "/api/kernels", {"name": notebook["metadata"]["kernelspec"]["name"]})
session = uuid.uuid4().hex
ws = websocket.create_connection(base.replace("http", "ws", 1) + "/api/kernels/" + kernel["id"] + "/channels"
                                 + "?session_id=" + session, header=["Authorization: token " + token], timeout=900)
results = []
try:
    for code in cells:
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "username": "e2e", "session": session, "msg_type": "execute_request",
                  "version": "5.3", "date": datetime.datetime.now(datetime.timezone.utc).isoformat()}
        ws.send(json.dumps({"header": header, "parent_header": {}, "metadata": {}, "channel": "shell",
                            "buffers": [], "content": {"code": code, "silent": False, "store_history": True,
                                                       "user_expressions": {}, "allow_stdin": False,
                                                       "stop_on_error": True}}))
        outputs, status, idle = [], None, False
        while status is None or not idle:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "execute_reply":
                status = msg["content"]["status"]
            elif kind == "status":
                idle = msg["content"]["execution_state"] == "idle"
            elif kind in ("stream", "display_data", "execute_result", "error"):
                outputs.append({"output_type": kind, **msg["content"]})
        results.append({"status": status, "outputs": outputs})
        if status != "ok":
            break
finally:
    ws.close()
    api("DELETE", "/api/kernels/" + kernel["id"])
print(json.dumps(results))
"""
# run after the notebook in the same kernel: what its credentials may not do
WRITES_REFUSED = """
for target, write in {
    "warehouse": lambda: warehouse.command("CREATE TABLE default.probe (x UInt8) ENGINE = Memory"),
    "lake": lambda: spark.range(1).write.mode("overwrite").parquet(f"{lake}/curated/probe/"),
}.items():
    try:
        write()
        print(target, "written")
    except Exception as e:
        print(target, "refused:", str(e)[:300].replace("\\n", " "))
"""
NOTEBOOK_COUNTS = re.compile(r"^(\w+): curated (\d+) rows, warehouse (\d+) rows$", re.M)
WAREHOUSE_COUNTS = (
    "import json, sys\nfrom resources.environments import clickhouse_resource\n"
    "ch = clickhouse_resource('prod')\n"  # as the runs open it: CLICKHOUSE_DSN, the cluster
    "print(json.dumps({t: ch.scalar(f'SELECT count() FROM warehouse.{t} FINAL') for t in sys.argv[1:]}))"
)


def _text(outputs: list[dict]) -> str:
    return "".join(o["text"] for o in outputs if o["output_type"] == "stream" and o["name"] == "stdout")


def test_the_shipped_notebook_runs_in_jupyters_kernel_on_vps_2_and_matches_the_warehouse(
    agent: Platform, first_lineage: dict
):
    """Jupyter on vps_2 answers the VPC and the VPN, not the internet. The notebook its image ships, executed in a
    kernel of that server from another node, reads curated Parquet through Spark Connect and the warehouse through
    vps_3's ClickHouse HTTP as the read-only user: the row counts it prints equal the warehouse's (counted here on
    the runs' engine), its plot cell draws a PNG, and its credentials can write neither the warehouse nor the
    lake."""
    p = agent
    jupyter = f"{p.topo.address_of('vps_2')}:{service('jupyter').port}"
    probe = f"{jupyter}/tcp"
    assert gateway.reachable(p.topo.nodes["vps_3"], probe) == {probe}  # the VPC
    assert gateway.reachable(p.topo.internet, probe) == {probe}  # the agent's VPN tunnel
    public = f"{sim.EDGE_PUBLIC_IP}:{service('jupyter').port}/tcp"
    assert gateway.reachable(p.topo.internet, public) == set()  # the only address the internet has

    wait_for(lambda: _idle(p), 600, "runs in progress to finish", interval=5)  # the warehouse opens in one process
    started = time.monotonic()
    out = p.topo.nodes["vps_3"].run(
        sys.executable, "-c", KERNEL_CLIENT, f"http://{jupyter}", p.compute_env["JUPYTER_TOKEN"], NOTEBOOK,
        json.dumps([WRITES_REFUSED]), timeout=1200, check=False,
    )  # fmt: skip
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    cells = json.loads(out.stdout.splitlines()[-1])
    print(f"\nthe notebook ran in Jupyter's kernel in {time.monotonic() - started:.0f} s")
    failed = [c for c in cells if c["status"] != "ok"]
    assert not failed, json.dumps(failed)[-4000:]
    *notebook, probe_cell = cells
    executed = json.loads((REPO / NOTEBOOK).read_text())  # kept beside the module's logs, outputs and all
    for cell, ran in zip([c for c in executed["cells"] if c["cell_type"] == "code"], notebook, strict=True):
        cell["outputs"] = [{k: v for k, v in o.items() if k != "transient"} for o in ran["outputs"]]
    (p.root / Path(NOTEBOOK).name).write_text(json.dumps(executed, indent=1))
    stdout = _text([o for c in notebook for o in c["outputs"]])
    printed = {t: (int(curated), int(loaded)) for t, curated, loaded in NOTEBOOK_COUNTS.findall(stdout)}
    assert set(printed) == {"customer", "orders", "lineitem"}, stdout
    counted = p.in_image(WAREHOUSE_COUNTS, *printed)
    assert printed == {t: (n, n) for t, n in counted.items()} and min(counted.values()) > 0, (printed, counted)
    images = [o for c in notebook for o in c["outputs"] if "image/png" in o.get("data", {})]
    assert images and images[-1] in notebook[-1]["outputs"], "the plot cell produced no image/png output"
    refused = _text(probe_cell["outputs"])
    assert "warehouse refused:" in refused and "READONLY" in refused, refused
    assert "lake refused:" in refused and "written" not in refused, refused


def _run_status(p: Platform, run_id: str) -> str:
    code, out, err = p.platform("status", run_id, timeout=120)
    assert code == 0, err
    return json.loads(out)["status"]


SHORT_RUN = "raw/lineitem,curated/lineitem,warehouse/lineitem"  # one table through the three nodes: ≈15 s


def _launch_and_wait_for_its_container(p: Platform, selection: str) -> tuple[str, str]:
    """A run of ``selection`` launched without following it; returns once its container runs its steps."""
    code, out, err = p.platform("materialize", selection, "--from", SEED_DAY, "--to", SEED_DAY, "--no-wait")
    assert code == 0, (out + err)[-3000:]
    run_id = json.loads(out)["run_id"]
    wait_for(lambda: p.run_containers(run_id) != [] and _run_status(p, run_id) == "STARTED", 300,
             f"run {run_id} started in its container", interval=1)  # fmt: skip
    (container,) = p.run_containers(run_id)
    return run_id, container


def _run_story(p: Platform, run_id: str, container: str) -> str:
    """A run's status, its last events and its container's last lines: what a failed wait reports."""
    events = _graphql(p, GRAPHQL_LOGS, {"runId": run_id})["logsForRun"]["events"]
    lines = [f"{e.get('timestamp')} {e['__typename']} {e.get('stepKey') or '-'} {(e.get('message') or '')[:160]}"
             for e in events[-25:]]  # fmt: skip
    log = p.engine.docker("logs", "--tail", "30", container, check=False)
    return "\n".join([f"status {_run_status(p, run_id)}", *lines, "container log:", log.stdout + log.stderr])


GRAPHQL_TERMINATE = """
mutation T($runId: String!) { terminateRun(runId: $runId) { __typename
  ... on TerminateRunFailure { message } ... on PythonError { message } } }
"""


def test_terminating_a_run_from_the_ui_stops_its_container(agent: Platform, first_lineage: dict):
    p = agent
    run_id, container = _launch_and_wait_for_its_container(p, "job:full_lineage")  # long: it must not end first
    with p.container_events(f"container={container}") as events:
        started = time.monotonic()
        result = _graphql(p, GRAPHQL_TERMINATE, {"runId": run_id})["terminateRun"]  # the UI's Terminate button
        took = time.monotonic() - started
        assert result["__typename"] == "TerminateRunSuccess", result
        try:
            wait_for(lambda: _run_status(p, run_id) == "CANCELED", 240, f"run {run_id} canceled", interval=2)
        except TimeoutError as exc:  # say where the run stood: its status, its last events, its container's log
            raise AssertionError(f"{exc}\n{_run_story(p, run_id, container)}") from None
        canceled = time.monotonic() - started
        wait_for(lambda: p.run_containers(run_id) == [], 120, "the terminated run's container removed", interval=1)
    actions = [(e["Action"], e["Actor"]["Attributes"].get("exitCode")) for e in events]
    print(f"\nterminate: mutation {took:.1f} s, CANCELED after {canceled:.1f} s; container events {actions}")
    # the run worker ended on the launcher's SIGTERM: Docker did not have to kill it when the stop timeout ran out
    # (exit 137, as when the interrupted step was retried and the run went on: platform_assets/retries.py)
    (died,) = [code for action, code in actions if action == "die"]
    assert died != "137", actions


def test_a_run_container_killed_is_failed_by_run_monitoring_and_retried_as_a_new_run(
    agent: Platform, first_lineage: dict
):
    p = agent
    run_id, container = _launch_and_wait_for_its_container(p, SHORT_RUN)
    p.engine.docker("kill", container)  # the run's process dies with no word to Dagster
    # run monitoring (every 60 s, dagster.yaml) finds the container gone and fails the run; run_retries retries it
    assert _ends_done(p, run_id) == "retried"
    assert _run_status(p, run_id) == "FAILURE"


FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def _ends_done(p: Platform, run_id: str) -> str:
    """Waits for ``run_id`` to finish; a run failed for its container's sake must have been retried to success.
    Returns how it ended (``SUCCESS`` or ``retried``)."""
    wait_for(lambda: _run_status(p, run_id) in FINISHED, 900, f"run {run_id} to finish", interval=5)
    if _run_status(p, run_id) == "SUCCESS":
        return "SUCCESS"

    def retry() -> dict | None:
        code, out, _ = p.platform("status", "--limit", "20", timeout=120)
        runs = json.loads(out)["runs"] if code == 0 else []
        return next((r for r in runs if r["tags"].get("dagster/parent_run_id") == run_id), None)

    child = wait_for(retry, 180, f"run {run_id} retried", interval=5)
    wait_for(lambda: _run_status(p, child["run_id"]) in FINISHED, 900, "the retry to finish", interval=5)
    assert _run_status(p, child["run_id"]) == "SUCCESS", child
    return "retried"


def test_a_new_dagster_image_replaces_the_services_during_a_run_and_the_run_still_ends(
    agent: Platform, first_lineage: dict
):
    """An upgrade as Ansible does it (images built, ``.env`` rewritten with the new tag, ``compose up --wait``)
    while a run is in progress: the three Dagster services are recreated from the new image, and the run is not left
    STARTED (it finishes in its own container, or run monitoring fails it and it is retried)."""
    p = agent
    run_id, _ = _launch_and_wait_for_its_container(p, SHORT_RUN)
    old = p.dotenv["DAGSTER_IMAGE"]
    new = f"{old}-next"  # the fixture removes the tag
    p.engine.docker("tag", old, new)  # the next commit's build: same Dockerfile, the tag Ansible gives it
    env_file = p.edge.stack / ".env"
    text = env_file.read_text()
    assert text.count(f"DAGSTER_IMAGE={old}\n") == 1, "the .env format changed"
    env_file.write_text(text.replace(f"DAGSTER_IMAGE={old}\n", f"DAGSTER_IMAGE={new}\n"))
    p.dotenv["DAGSTER_IMAGE"] = new
    before = {n: c["Id"] for n, c in p.edge.containers().items()}
    p.edge.up(timeout=600)
    after = p.edge.containers()
    replaced = {n for n, c in after.items() if c["Id"] != before[n]}
    assert replaced == set(DAGSTER_SERVICES), replaced
    assert {after[n]["Config"]["Image"] for n in DAGSTER_SERVICES} == {new}
    print(f"\nthe run during the upgrade: {_ends_done(p, run_id)}")


@dataclass
class LostNode:
    failed: dict  # the CLI's result for the run that lost Spark
    progress: str  # its progress lines
    reports: list[dict]  # what the failure sensor posted to the webhook
    retries: list[dict]  # runs the daemon launched again for the failed one (by then it would have)
    rerun: dict


LOST_SELECTION = SHORT_RUN


@pytest.fixture(scope="module")
def node_lost(agent: Platform, first_lineage: dict) -> LostNode:
    """vps_2's Spark server killed at the run's first call to it (the sidecar logs each call; at SF 0.01 the curated
    step takes 2 s, too short to aim at from the run's events), then brought back and the run redone."""
    p = agent
    progress = p.root / "lost-run.progress"
    calls = p.spark.access_log()
    before = calls.stat().st_size
    with progress.open("w") as err:
        cli = subprocess.Popen(
            p.topo.internet.argv(sys.executable, "-m", "control_plane.cli", "materialize", LOST_SELECTION,
                                 "--from", SEED_DAY, "--to", SEED_DAY),
            env=p.agent_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True,
        )  # fmt: skip
    p.topo.lab.processes.append(cli)
    wait_for(lambda: calls.stat().st_size > before or cli.poll() is not None, 600, "the run's first Spark call",
             interval=0.02)  # fmt: skip
    p.spark.stop_spark(signal.SIGKILL)  # the node's Spark lost, as in a crash; the sidecar stays up (502)
    out, _ = cli.communicate(timeout=900)
    assert cli.returncode == 1, out + progress.read_text()[-3000:]
    failed = json.loads(out)

    def reports() -> list[dict]:
        lines = p.webhook_log.read_text().splitlines() if p.webhook_log.exists() else []
        return [json.loads(body) for path, _, body in (ln.partition(" ") for ln in lines) if path == WEBHOOK_PATH]

    wait_for(lambda: any(r["run_id"] == failed["run_id"] for r in reports()), 180, "the failure sensor's report")
    code, runs, err = p.platform("status", "--limit", "20", timeout=120)
    assert code == 0, err
    retries = [r for r in json.loads(runs)["runs"] if r["tags"].get("dagster/parent_run_id") == failed["run_id"]]
    p.spark.start_spark()
    code, again, err = p.platform("materialize", LOST_SELECTION, "--from", SEED_DAY, "--to", SEED_DAY)
    assert code == 0, (again + err)[-4000:]
    return LostNode(failed, progress.read_text(), reports(), retries, json.loads(again))


SPARK_LOST = f"spark-connect on vps_2 is unreachable or misconfigured at sc://{service('spark-connect').endpoint}: "


def test_a_lost_compute_node_fails_the_run_with_one_line_naming_it_and_the_sensor_reports_it(node_lost: LostNode):
    failed = node_lost.failed
    assert failed["status"] == "FAILURE"
    assert failed["failure"].startswith(f"step curated__lineitem failed: resources.errors.ServiceUnavailableError: "
                                        f"{SPARK_LOST}UNAVAILABLE: "), failed  # fmt: skip
    assert "\n" not in failed["failure"], failed
    assert "token=" not in failed["failure"]  # the endpoint shown is not the URL with its secret
    (report,) = [r for r in node_lost.reports if r["run_id"] == failed["run_id"]]
    (step,) = report["failed_steps"]
    assert step["asset_keys"] == ["curated/lineitem"] and step["error_class"] == "ServiceUnavailableError"
    assert SPARK_LOST in step["error"] and report["partition"] == str(SEED_DAY), report  # a 1-day range: its day
    # the step's policy already retried; run retries are for a run whose process died, not for a failed step
    assert node_lost.retries == []


def test_after_spark_is_back_a_rerun_leaves_the_warehouse_equal_to_the_oltp_and_the_marts_to_tpch(
    agent: Platform, node_lost: LostNode
):
    p = agent
    assert node_lost.rerun["status"] == "SUCCESS"
    p.edge.compose("stop", "dagster-daemon", timeout=120)  # no new runs; those the daemon launched finish
    wait_for(lambda: _idle(p), 600, "runs in progress to finish", interval=5)
    diffs = _warehouse_vs_oltp(p)
    assert all("equals the OLTP" in d for d in diffs.values()), diffs
    marts = _marts(p)
    for mart in TPCH:
        expected = reference_answer(mart.tpch_query, SCALE_FACTOR, TEST_DATA / "duckdb_extensions")
        assert mismatches(expected, marts[mart.name]) == [], mart.name


STATE = """
import json, os, sys, boto3, psycopg
from platform_assets.catalog import TABLES
from resources.topology import service
s3 = service("object-store-s3")
client = boto3.client("s3", endpoint_url=f"http://{s3.host}:{s3.port}", region_name="us-east-1",
                      aws_access_key_id=os.environ["S3_ACCESS_KEY_ID"],
                      aws_secret_access_key=os.environ["S3_SECRET_ACCESS_KEY"])
keys = sorted(f"{b['Name']}/{o['Key']}" for b in client.list_buckets()["Buckets"]
              for page in client.get_paginator("list_objects_v2").paginate(Bucket=b["Name"])
              for o in page.get("Contents", []))
oltp = service("oltp-postgres")
with psycopg.connect(host=oltp.host, port=oltp.port, user=sys.argv[1], dbname=sys.argv[2],
                     password=os.environ["OLTP_EXTRACT_PASSWORD"]) as conn:
    counts = {t.name: conn.execute(f"SELECT count(*) FROM {t.name}").fetchone()[0] for t in TABLES}
print(json.dumps({"objects": keys, "oltp": counts}))
"""


def test_stopping_and_starting_the_stack_keeps_the_oltp_the_lake_and_dagsters_history(
    agent: Platform, node_lost: LostNode
):
    """``docker compose down`` (containers and network removed) then ``up --wait``: the named volumes on the block
    volumes' folders keep the OLTP, the lake and Dagster's run history."""
    p = agent
    before = p.in_image(STATE, OLTP_ROLES["extract"][0], OLTP["db"])
    code, runs, err = p.platform("status", "--limit", "50", timeout=120)
    assert code == 0, err
    history = {r["run_id"]: r["status"] for r in json.loads(runs)["runs"]}
    p.edge.compose("down", timeout=300)
    assert p.edge.containers() == {}
    p.edge.up(timeout=600)
    after = p.in_image(STATE, OLTP_ROLES["extract"][0], OLTP["db"])
    assert after["oltp"] == before["oltp"] and min(before["oltp"].values()) > 0, (before, after)
    assert set(before["objects"]) <= set(after["objects"]), "objects lost"  # the sensors may add some meanwhile
    code, runs, err = p.platform("status", "--limit", "100", timeout=120)
    assert code == 0, err
    kept = {r["run_id"]: r["status"] for r in json.loads(runs)["runs"]}
    # every run is still there; the finished ones as they ended (a queued one may have run since the daemon is back)
    finished = {run: status for run, status in history.items() if status in FINISHED}
    assert set(history) <= set(kept) and {run: kept[run] for run in finished} == finished, (history, kept)
