"""The simulation's ClickHouse HTTP stand-in (``deploy/sim/clickhouse_http.py``) with vps_3's generated users file,
in a namespace at vps_3's address, queried by clickhouse-connect's HTTP client as Jupyter's notebooks query it: the
analyst reads, cannot write, and is refused with a wrong password or from outside the VPC."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from deploy.clickhouse_config import ANALYST_PASSWORD_ENV, ANALYST_USER, USER
from deploy.sim import clickhouse_http
from deploy.sim.edge_containers import DAGSTER_UID as RUNS_UID
from deploy.sim.netns import Lab
from resources.topology import service
from tests.deploy._helpers import DEPLOY

FILL = """
import sys, chdb
conn = chdb.connect(sys.argv[1])
conn.query("CREATE DATABASE IF NOT EXISTS marts")
conn.query("CREATE TABLE marts.m (x UInt64) ENGINE = MergeTree ORDER BY x")
conn.query("INSERT INTO marts.m SELECT number FROM numbers(7)")
conn.close()
"""
CLIENT = """
import json, sys, clickhouse_connect
_, host, port, user, password = sys.argv
port = int(port)
out = {}
try:
    client = clickhouse_connect.get_client(host=host, port=port, username=user, password=password)
    out["count"] = client.query("SELECT count() FROM marts.m").result_rows[0][0]
    out["frame"] = client.query_df("SELECT x FROM marts.m ORDER BY x LIMIT 2")["x"].tolist()
    try:
        client.command("CREATE TABLE marts.forged (x UInt8) ENGINE = Memory")
        out["create"] = "done"
    except Exception as e:
        out["create"] = str(e)[:3000]
except Exception as e:
    out["login"] = str(e)[:300]
print(json.dumps(out))
"""


def test_the_analyst_reads_the_warehouse_folder_over_http_and_writes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "disk" / "chdb"
    folder.parent.mkdir()
    subprocess.run([sys.executable, "-c", FILL, str(folder)], check=True, timeout=120)
    for path in [folder.parent, folder, *folder.rglob("*")]:  # the runs' uid owns the warehouse, as on vps_1's disk
        os.lchown(path, RUNS_UID, RUNS_UID)
    stack = tmp_path / "vps_3"
    shutil.copytree(DEPLOY / "vps_3", stack)
    passwords = {name: secrets.token_urlsafe(12) for name in ("CLICKHOUSE_PASSWORD", ANALYST_PASSWORD_ENV)}
    env = {**passwords, "CLICKHOUSE_CLUSTER_SECRET": secrets.token_urlsafe(12)}
    (stack / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    http = service("clickhouse-shard1-http")
    with Lab() as lab:
        vpc = lab.switch("vpc")
        server, notebook, stranger = lab.namespace("vps3"), lab.namespace("vps2"), lab.namespace("other")
        vpc.attach(server, f"{http.host}/16")
        vpc.attach(notebook, "10.104.0.3/16")
        vpc.attach(stranger, "10.104.7.9/16")  # outside the VPC's /24, which the users' networks admit
        clickhouse_http.start(server, stack, folder, tmp_path / "standin.log")

        def query(ns, user: str, password: str) -> dict:
            out = ns.run(sys.executable, "-c", CLIENT, http.host, str(http.port), user, password, timeout=300)
            return json.loads(out.stdout.splitlines()[-1])

        analyst = query(notebook, ANALYST_USER, passwords[ANALYST_PASSWORD_ENV])
        platform = query(notebook, USER, passwords["CLICKHOUSE_PASSWORD"])
        wrong = query(notebook, ANALYST_USER, "wrong")
        outside = query(stranger, ANALYST_USER, passwords[ANALYST_PASSWORD_ENV])
    assert analyst["count"] == 7 and analyst["frame"] == [0, 1], analyst
    assert "READONLY" in analyst["create"], analyst  # the profile's readonly, which a request cannot lift
    assert platform["create"] == "done", platform  # the application user's default profile writes
    assert "516" in wrong["login"] and "516" in outside["login"], (wrong, outside)
    # what the engine wrote as root (the stand-in's uid) was given back: the next run opens the folder as its own uid
    assert [p for p in [folder, *folder.rglob("*")] if p.lstat().st_uid != RUNS_UID] == []
