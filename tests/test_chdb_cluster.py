"""The in-process engine as a cluster: one shard, or two emulated (resources/chdb_cluster.py).

Each case runs in a process of its own (a chDB engine is one per process, and the suite's is the one-shard one):
the emulation must behave as two servers would where the warehouse's SQL depends on it, or the 2-shard tests
prove nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from resources.chdb_cluster import EmulatedCluster

PROBE = """
import json, sys
from resources.clickhouse import ClickHouseResource

ch = ClickHouseResource(dsn="chdb://" + sys.argv[1], cluster="platform", shards=int(sys.argv[2]),
                        sharded_tables={"w.t_local": "cityHash64(k)", "w.u_local": "cityHash64(k)"},
                        node_local_databases=["scratch"])
out = {}
def attempt(name, sql):
    try:
        out[name] = ch.rows(sql)[0][0]
    except Exception as exc:
        out[name] = "error " + str(exc).split("DB::Exception: ")[-1][:80]

ch.command("CREATE DATABASE w ON CLUSTER platform")
for t in ("t", "u"):
    ch.command(f"CREATE TABLE w.{t}_local ON CLUSTER platform (k Int64, v Int64) ENGINE = MergeTree ORDER BY k")
    ch.command(f"CREATE TABLE w.{t} ON CLUSTER platform AS w.{t}_local "
               f"ENGINE = Distributed(platform, w, {t}_local, cityHash64(k))")
    ch.command(f"INSERT INTO w.{t} SELECT number, number FROM numbers(1000) SETTINGS distributed_foreground_insert = 1")
ch.command("CREATE DATABASE scratch")
ch.command("CREATE TABLE scratch.keys ENGINE = Memory AS SELECT number AS k FROM numbers(1000)")
out["per_shard"] = dict(ch.rows("SELECT _shard_num, count() FROM w.t GROUP BY 1 ORDER BY 1"))
attempt("total", "SELECT count() FROM w.t")
attempt("local_read", "SELECT count() FROM w.t_local")
attempt("in_without_global", "SELECT count() FROM w.t WHERE k IN (SELECT k FROM w.u)")
attempt("in_global", "SELECT count() FROM w.t WHERE k GLOBAL IN (SELECT k FROM w.u)")
attempt("join_without_global", "SELECT count() FROM w.t AS a JOIN w.u AS b ON a.k = b.k")
attempt("mode_global", "SELECT count() FROM w.t WHERE k IN (SELECT k FROM w.u) "
        "SETTINGS distributed_product_mode = 'global'")
attempt("scratch_without_global", "SELECT count() FROM w.t WHERE k IN (SELECT k FROM scratch.keys)")
attempt("scratch_global", "SELECT count() FROM w.t WHERE k GLOBAL IN (SELECT k FROM scratch.keys)")
out["stats"] = list(ch.table_stats("w", "t_local"))
out["shard_columns"] = {str(s): c for s, c in ch.shard_columns("w", "t_local").items()}
out["target"] = list(ch.distributed_target("w", "t"))
from platform_assets.warehouse.load import same_expression
out["same_key"] = [same_expression(ch, "cityHash64(k)", "cityHash64( `k` )"),
                   same_expression(ch, "cityHash64(k)", "cityHash64(v)")]
try:
    ch.command("CREATE TABLE w.bad (a Int8) ON CLUSTER platform ENGINE = Memory")
    out["misplaced_on_cluster"] = "accepted"
except ValueError as exc:
    out["misplaced_on_cluster"] = str(exc).splitlines()[0]
print(json.dumps(out))
"""


def probe(tmp_path, shards: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROBE), str(tmp_path / "ch"), str(shards)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_two_emulated_shards_behave_as_two_servers(tmp_path):
    out = probe(tmp_path, 2)
    # a Distributed insert splits rows by the sharding key; a read sees each row once
    assert set(out["per_shard"]) == {"1", "2"} and all(n > 300 for n in out["per_shard"].values())
    assert out["total"] == 1000
    # the node clients talk to is shard 1: reading its local table directly gives its rows only
    assert out["local_read"] == out["per_shard"]["1"]
    # a subquery over a Distributed table without GLOBAL is refused, as by a real cluster (deny, error 288)
    assert out["in_without_global"].startswith("error Double-distributed IN/JOIN subqueries is denied")
    assert out["join_without_global"].startswith("error Double-distributed IN/JOIN subqueries is denied")
    assert out["in_global"] == out["mode_global"] == 1000
    # a table created on one node only (scratch): shard 2 does not have it unless it is shipped (GLOBAL)
    assert out["scratch_without_global"] == out["per_shard"]["1"] and out["scratch_global"] == 1000
    # the emulated shards are one server: its table counts once; each shard reports its columns
    assert out["stats"][0] == 1000
    assert set(out["shard_columns"]) == {"1", "2"} and out["shard_columns"]["2"] == [["k", "Int64"], ["v", "Int64"]]
    assert out["target"] == ["t_local", "cityHash64(k)"]
    assert out["same_key"] == [True, False]  # a catalog's shard key compared as the engine reads it
    assert out["misplaced_on_cluster"].startswith("ClickHouse cannot parse: CREATE TABLE w.bad (a Int8) ON CLUSTER")


def test_one_shard_answers_what_two_shards_refuse(tmp_path):
    """Why the warehouse runs on two emulated shards in the tests too: one shard hides a missing GLOBAL."""
    out = probe(tmp_path, 1)
    assert out["per_shard"] == {"1": 1000} and out["local_read"] == 1000
    assert out["in_without_global"] == out["join_without_global"] == out["scratch_without_global"] == 1000
    assert out["misplaced_on_cluster"].startswith("ClickHouse cannot parse")  # one shard checks ON CLUSTER too


def test_on_cluster_statements_are_checked_then_applied_once():
    cluster = EmulatedCluster("platform", 2)
    checked: list[str] = []
    sql = "ALTER TABLE w.t_local ON CLUSTER platform ADD COLUMN IF NOT EXISTS `x` Int8 AFTER `k`"
    assert cluster.local_ddl(sql, checked.append) == "ALTER TABLE w.t_local ADD COLUMN IF NOT EXISTS `x` Int8 AFTER `k`"
    assert checked == [sql]
    assert cluster.local_ddl("INSERT INTO w.t VALUES (1, 2)", checked.append) == "INSERT INTO w.t VALUES (1, 2)"
    assert checked == [sql]  # a statement without ON CLUSTER goes as it is
    with pytest.raises(ValueError, match="1 or 2 shards"):
        EmulatedCluster("platform", 3)


def test_the_users_file_gives_each_sharded_table_its_shard_filter():
    users = EmulatedCluster("platform", 2, {"warehouse.lineitem_local": "cityHash64(l_orderkey)"}, ("scratch",))
    xml = users.users_xml()
    assert (
        '<table name="lineitem_local">\n            <filter>(cityHash64(l_orderkey)) % 2 = '
        "if(shardNum() = 0, 1, shardNum()) - 1</filter>" in xml
    )
    assert '<table name="">\n            <filter>if(shardNum() = 0, 1, shardNum()) = 1</filter>' in xml
    assert "<apply_row_policy_after_final>0</apply_row_policy_after_final>" in xml
