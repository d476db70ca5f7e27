"""The platform end to end on the simulated topology, as an agent uses it: from the internet, on the VPN, through
Caddy, ``platform describe`` and ``platform materialize job:full_lineage`` against vps_1's webserver.

Everything runs as deployed except what cannot run here (``deploy/sim``): vps_1's PostgreSQL servers, SeaweedFS
(``start.sh``), Dagster's code server, webserver and daemon from the compose commands with the prod
``dagster.yaml`` and ``PLATFORM_ENV=prod`` (runs start as processes, not containers), Caddy and OpenVPN; vps_2's
Spark Connect behind nginx (TLS + token); in place of vps_3's ClickHouse server, the in-process engine (chDB).
The run extracts from 10.104.0.2:5432, transforms on 10.104.0.3:15002 over TLS with the token, and the marts must
equal TPC-H's answers.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.sim import compute, edge, gateway
from deploy.sim import topology as sim
from deploy.sim.netns import Lab, host_routes_overlapping, wait_for
from platform_assets.marts.queries import TPCH
from resources.topology import PRIVATE_NETWORK, SERVICES
from tests.conftest import REPO, SCALE_FACTOR, TEST_DATA
from tests.tpch_reference import mismatches, reference_answer

SECRET_KEYS = ("OLTP_PASSWORD", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "SPARK_CONNECT_TOKEN",
               "CLICKHOUSE_PASSWORD", "DAGSTER_PG_PASSWORD")  # fmt: skip
SEED_DAY = "1998-08-03"  # the day the seed stamps every row with


@dataclass
class Platform:
    topo: sim.Topology
    edge: edge.Edge
    spark: compute.SparkConnect
    proxy: gateway.Proxy
    vpn: gateway.OpenVPN
    root: Path

    def agent_env(self) -> dict[str, str]:
        """An agent's environment: the proxy's URL and login, trusting the proxy's CA, nothing of the platform's."""
        return {
            "PATH": os.environ["PATH"],
            "HOME": str(self.root / "agent"),
            "DAGSTER_URL": self.proxy.url,
            "DAGSTER_USER": self.proxy.login[0],
            "DAGSTER_PASSWORD": self.proxy.login[1],
            "REQUESTS_CA_BUNDLE": str(self.proxy.ca),
        }

    def platform(self, *args: str, timeout: float = 900) -> tuple[int, str, str]:
        out = self.topo.internet.run(
            sys.executable, "-m", "control_plane.cli", *args, env=self.agent_env(), cwd=REPO, check=False,
            timeout=timeout,
        )  # fmt: skip
        return out.returncode, out.stdout, out.stderr


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    root = TEST_DATA / "topology"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    root.chmod(0o755)
    (root / "agent").mkdir()
    dotenv = {k: secrets.token_urlsafe(16) for k in SECRET_KEYS} | {"DAGSTER_IMAGE": "platform/dagster:sim"}
    with Lab() as lab:
        topo = sim.build(lab)
        spark = compute.start(root / "vps_2", topo.nodes["vps_2"], token=dotenv["SPARK_CONNECT_TOKEN"])
        try:
            node = edge.start(topo.nodes[sim.EDGE], root / "vps_1", dotenv, spark.ca)
            proxy = gateway.start_caddy(topo, root / "caddy")
            vpn = gateway.start_openvpn(topo, root / "openvpn")
            seed = topo.nodes[sim.EDGE].run(
                sys.executable, "-m", "platform_assets.cli", "seed", "--sf", str(SCALE_FACTOR),
                env={**node.env, "PLATFORM_DATA_DIR": str(TEST_DATA)}, cwd=REPO, timeout=600, check=False,
            )  # fmt: skip
            assert seed.returncode == 0, seed.stderr[-3000:]
            yield Platform(topo, node, spark, proxy, vpn, root)
        finally:
            spark.stop()
    assert host_routes_overlapping(str(PRIVATE_NETWORK)) == []


GRAPHQL_LOGS = """
query Logs($runId: ID!) { logsForRun(runId: $runId) { __typename ... on EventConnection {
  events { __typename ... on LogsCapturedEvent { fileKey stepKeys } } } } }
"""
GRAPHQL_CAPTURED = "query C($key: [String!]!) { capturedLogs(logKey: $key) { stdout stderr } }"


def _graphql(p: Platform, query: str, variables: dict) -> dict:
    """Straight to the webserver's GraphQL through the proxy, from the internet namespace (as the UI does)."""
    script = (
        "import json, sys, requests; q, v, url, user, pw, ca = sys.argv[1:]\n"
        "r = requests.post(url + '/graphql', json={'query': q, 'variables': json.loads(v)}, auth=(user, pw),"
        " verify=ca, timeout=60)\nprint(r.status_code); print(r.text)"
    )
    out = p.topo.internet.run(
        sys.executable, "-c", script, query, json.dumps(variables), p.proxy.url, *p.proxy.login, str(p.proxy.ca),
        env={"PATH": os.environ["PATH"]}, timeout=120,
    )  # fmt: skip
    status, _, body = out.stdout.partition("\n")
    assert status == "200", out.stdout[-2000:]
    return json.loads(body)["data"]


def _marts(p: Platform) -> dict[str, list[tuple]]:
    """The marts read from the chDB folder once no run holds it (the daemon stopped, its runs finished)."""
    script = (
        "import json, sys\nfrom resources.clickhouse import ClickHouseResource\n"
        "from platform_assets.marts.assets import read_mart\nfrom platform_assets.marts.queries import TPCH\n"
        "ch = ClickHouseResource(dsn=sys.argv[1])\n"
        "from decimal import Decimal\n"
        "num = lambda v: float(v) if isinstance(v, Decimal) else str(v)\n"
        "print(json.dumps({m.name: [list(r) for r in read_mart(ch, m)[1]] for m in TPCH}, default=num))"
    )
    out = p.edge.ns.run(sys.executable, "-c", script, p.edge.env["CLICKHOUSE_DSN"], cwd=REPO, timeout=300,
                        env={**p.edge.env, "PLATFORM_ENV": "local"})  # fmt: skip
    return {name: [tuple(r) for r in rows] for name, rows in json.loads(out.stdout.splitlines()[-1]).items()}


def _idle(p: Platform) -> bool:
    """No run holds the chDB folder. Queued runs do not count: with the daemon stopped they never start."""
    code, out, _ = p.platform("status", "--limit", "20", timeout=120)
    return code == 0 and not any(r["status"] in {"STARTING", "STARTED", "CANCELING"} for r in json.loads(out)["runs"])


def test_with_the_real_services_the_internet_still_reaches_only_https_and_the_vpn(platform: Platform):
    """The real servers bind as deployed (the webserver on 0.0.0.0:3000, weed on every port it has): the firewall
    and the bindings still leave only TCP 443 to the internet; UDP 1194 is proven by the VPN connecting."""
    p = platform
    ports = sorted({s.port for s in SERVICES.values() if s.protocol == "tcp"})
    answered = gateway.reachable(p.topo.internet, *(f"{sim.EDGE_PUBLIC_IP}:{port}/tcp" for port in ports))
    assert answered == {f"{sim.EDGE_PUBLIC_IP}:443/tcp"}


def test_an_agent_on_the_vpn_runs_full_lineage_through_the_proxy_and_the_marts_equal_tpch(platform: Platform):
    p = platform
    profile = p.vpn.issue("agent")
    with p.vpn.client(p.topo.internet, profile) as tunnel:
        assert tunnel.connected, tunnel.client_log[-2000:]
        assert any(r.startswith(str(PRIVATE_NETWORK)) for r in p.topo.internet.routes())

        code, out, err = p.platform("describe", timeout=120)
        assert code == 0, err
        described = json.loads(out)
        assert {n["name"] for n in described["topology"]["nodes"]} == {"vps_1", "vps_2", "vps_3"}

        code, out, err = p.platform("materialize", "job:full_lineage", "--from", SEED_DAY, "--to", SEED_DAY)
        assert code == 0, (out + err)[-4000:]
        run = json.loads(out)
        assert run["status"] == "SUCCESS"

        # the run's compute logs, as the UI shows them: written by the run to SeaweedFS, read by the webserver
        events = _graphql(p, GRAPHQL_LOGS, {"runId": run["run_id"]})["logsForRun"]["events"]
        keys = [e["fileKey"] for e in events if e["__typename"] == "LogsCapturedEvent"]
        assert keys, "no compute logs were captured"
        captured = _graphql(p, GRAPHQL_CAPTURED, {"key": [run["run_id"], "compute_logs", keys[0]]})["capturedLogs"]
        assert (captured["stdout"] or "") + (captured["stderr"] or ""), "the webserver could not read the logs"

    # the curated layer ran on vps_2: Spark Connect's calls passed its TLS sidecar
    assert p.edge.env["PLATFORM_ENV"] == "prod"
    assert "ExecutePlan" in (p.root / "vps_2" / "nginx" / "access.log").read_text()

    p.edge.processes["dagster-daemon"].terminate()  # no new runs; those the daemon launched finish
    wait_for(lambda: _idle(p), 600, "runs in progress to finish", interval=5)
    marts = _marts(p)
    for mart in TPCH:
        expected = reference_answer(mart.tpch_query, SCALE_FACTOR, TEST_DATA / "duckdb_extensions")
        assert mismatches(expected, marts[mart.name]) == [], mart.name
