"""The control plane (issue #7) against a real ``dagster-webserver`` on workspace.yaml over the test stack.

The webserver runs in its own process group with its own instance; the code location it spawns inherits the
test stack's environment, so a run launched through GraphQL really extracts from the seeded OLTP database.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.local.daemon import asset_graph_loaded, free_port, stop_group
from resources.settings import UNQUEUED_INSTANCE_YAML
from tests.conftest import REPO, TEST_DATA

PLATFORM = Path(sys.executable).parent / "platform"
# The webserver launches runs itself (DefaultRunCoordinator): no daemon needed, as with `make dev`'s instance.
INSTANCE_YAML = UNQUEUED_INSTANCE_YAML


@pytest.fixture(scope="module")
def webserver(seeded) -> Iterator[str]:
    home = TEST_DATA / "dagster-cp"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        # one chDB engine path per process: never the folder the test process may hold
        "CLICKHOUSE_DSN": f"chdb://{TEST_DATA / 'clickhouse-cp'}",
    }
    for name in ("DAGSTER_URL", "DAGSTER_USER", "DAGSTER_PASSWORD"):
        env.pop(name, None)
    webserver_bin = Path(sys.executable).parent / "dagster-webserver"
    cmd = [str(webserver_bin), "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)]
    log = open(home / "webserver.log", "wb")  # noqa: SIM115 — closed at teardown
    # cwd=home: the Dagster CLI would load a developer's .env from the repo
    proc = subprocess.Popen(cmd, cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        ours = f"Serving dagster-webserver on {url} in process {proc.pid}"  # not another session's server
        while ours not in (home / "webserver.log").read_text(errors="replace") or not asset_graph_loaded(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"dagster-webserver did not serve the asset graph: {(home / 'webserver.log').read_text()[-2000:]}"
                )
            time.sleep(1)
        yield url
    finally:
        stop_group(proc)
        log.close()


def platform(*args: str, url: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """The installed console script, as an agent runs it (JSON because stdout is not a terminal)."""
    return subprocess.run(
        [str(PLATFORM), *args], env={**os.environ, "DAGSTER_URL": url, **env},
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_describe_lists_topology_catalog_and_every_asset(webserver):
    from platform_assets.catalog import TABLES
    from platform_assets.definitions import defs

    proc = platform("describe", url=webserver)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [n["name"] for n in out["topology"]["nodes"]] == ["vps_1", "vps_2", "vps_3"]
    assert sorted(t["name"] for t in out["catalog"]["tables"]) == sorted(t.name for t in TABLES)
    assert len(out["catalog"]["tables"]) == 8
    expected = {k.to_user_string() for k in defs().resolve_asset_graph().get_all_asset_keys()}
    assert {a["key"] for a in out["assets"]} == expected
    region = next(a for a in out["assets"] if a["key"] == "raw/region")
    assert region["node"] == "vps_1" and region["deps"] == ["oltp/region"]
    assert sorted(region["checks"]) == ["row_count_matches_oltp", "schema_matches_catalog"]
    table = platform("--format", "table", "describe", url=webserver)
    assert table.returncode == 0 and "raw/region" in table.stdout and "vps_3" in table.stdout


def test_materialize_status_and_checks_through_the_webserver(webserver):
    proc = platform("materialize", "raw/region", "--partition", "1998-08-03", url=webserver)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "SUCCESS" and result["failure"] is None
    progress = proc.stderr
    assert f"launched run {result['run_id']}" in progress
    assert "STEP_START raw__region" in progress and "MATERIALIZED raw/region" in progress
    assert "CHECK PASSED raw/region:row_count_matches_oltp" in progress

    status = platform("status", result["run_id"], url=webserver)
    assert status.returncode == 0, status.stderr
    run = json.loads(status.stdout)
    assert run["status"] == "SUCCESS" and run["assets"] == ["raw/region"]
    assert run["tags"]["platform/launched_by"] == "control_plane"

    checks = platform("checks", "raw/region", url=webserver)
    assert checks.returncode == 0, checks.stderr
    check = next(c for c in json.loads(checks.stdout)["checks"] if c["check"] == "row_count_matches_oltp")
    assert check["check"] == "row_count_matches_oltp" and check["status"] == "SUCCEEDED" and check["passed"] is True
    assert check["run_id"] == result["run_id"] and check["metadata"]["raw_rows"] == 5

    described = json.loads(platform("describe", url=webserver).stdout)
    region = next(a for a in described["assets"] if a["key"] == "raw/region")
    assert region["last_run_id"] == result["run_id"] and region["last_materialization"]

    # the column lineage the run attached, as the UI reads it: raw/region's columns come from the OLTP's
    lineage = platform("lineage", "raw/region.r_name", url=webserver)
    assert lineage.returncode == 0, lineage.stderr
    out = json.loads(lineage.stdout)
    assert out["upstream"] == [{"asset": "oltp/region", "column": "r_name", "depth": 1}]
    assert "curated/region" in out["unmaterialized"] or out["downstream"]
    assert "no column 'r_nam'" in one_error_line(platform("lineage", "raw/region.r_nam", url=webserver))


def test_unknown_asset_is_one_line_and_nonzero(webserver):
    for args in (("materialize", "raw/no_such_table"), ("checks", "raw/no_such_table")):
        assert "raw/no_such_table" in one_error_line(platform(*args, url=webserver))
    assert "unknown run" in one_error_line(platform("status", "00000000-0000-0000-0000-000000000000", url=webserver))


def test_partition_options_on_unpartitioned_asset_refused(webserver):
    mart = "marts/tpch_q06_forecast_revenue_change"
    line = one_error_line(platform("materialize", mart, "--partition", "1998-08-03", url=webserver))
    assert f"asset {mart} is not partitioned" in line


def test_unreachable_webserver_is_one_line_naming_the_url():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    line = one_error_line(platform("describe", url=url, timeout=60))
    assert url in line and "unreachable" in line


class _BasicAuthGate(http.server.BaseHTTPRequestHandler):
    """Stands in for vps_1's proxy: 401 for every request, remembering the Authorization header it got."""

    seen: list[str | None] = []

    def do_POST(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="dagster"')
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_basic_auth_is_sent_and_401_is_one_clear_line():
    server = http.server.HTTPServer(("127.0.0.1", 0), _BasicAuthGate)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        proc = platform("status", url=url, timeout=60, DAGSTER_USER="agent", DAGSTER_PASSWORD="wrong-password")
    finally:
        server.shutdown()
        server.server_close()
    line = one_error_line(proc)
    assert "authentication failed" in line and url in line and "agent" in line
    assert "wrong-password" not in proc.stderr + proc.stdout
    assert _BasicAuthGate.seen == ["Basic " + base64.b64encode(b"agent:wrong-password").decode()]
