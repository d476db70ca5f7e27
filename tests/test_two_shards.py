"""The warehouse on two shards, as production runs it, against the same work on one shard.

``tests/shard_scenario.py`` runs a full load, two days of changes plus renamed reference data (the change sensor's
run: tables, models incrementally, marts, per-run checks), both models rebuilt whole, and every check — once on
the in-process engine as one shard and once as two emulated shards, side by side, each with its own OLTP copy,
bucket and engine. What queries see must be the same on both, and the rows must really be split.

One shard cannot catch a distributed-query mistake (it answers a missing ``GLOBAL`` correctly); two shards do: they
refuse a subquery over a Distributed table that is not ``GLOBAL``, and a scratch table read on the shards without
``GLOBAL`` misses shard 2's rows (tests/test_chdb_cluster.py shows the emulation doing both).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tests.shared_platform import PRISTINE, clone_database, drop_database


@pytest.fixture(scope="module")
def results(seeded, oltp, tmp_path_factory) -> dict[int, dict]:
    runs, out = {}, {}
    started = time.perf_counter()
    try:
        for shards in (1, 2):
            folder = tmp_path_factory.mktemp(f"shards{shards}")
            database = f"tpch_shards{shards}"
            clone_database(oltp, PRISTINE, database)
            env = {
                **os.environ,
                "OLTP_DB": database,
                "S3_BUCKET": f"shards{shards}",
                "CLICKHOUSE_SHARDS": str(shards),
                "CLICKHOUSE_DSN": f"chdb://{folder / 'clickhouse'}",
                "DAGSTER_HOME": str(folder),
            }
            log = open(folder / "scenario.log", "w")  # noqa: SIM115 (closed below)
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.shard_scenario", str(folder / "result.json")],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            runs[shards] = (proc, folder, log)
        for shards, (proc, folder, log) in runs.items():
            code = proc.wait(timeout=1200)
            log.close()
            tail = (folder / "scenario.log").read_text()[-3000:]
            assert code == 0, f"the {shards}-shard scenario failed:\n{tail}"
            out[shards] = json.loads((folder / "result.json").read_text())
        print(f"\n1- and 2-shard scenarios side by side: {time.perf_counter() - started:.0f} s")
        yield out
    finally:
        for proc, _, log in runs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
        for shards in (1, 2):
            drop_database(oltp, f"tpch_shards{shards}")


def test_every_step_succeeds_on_two_shards(results):
    assert results[2]["success"] == {"full load": True, "changes": True, "rebuild": True, "checks": True}
    assert [c for c in results[2]["checks"] if not c[3]] == []
    # the changes reached both models incrementally (dim_customer through the renamed nation and region)
    incremental = {m: keys for label, m, mode, keys in results[2]["model_runs"] if mode == "incremental"}
    assert incremental["warehouse/fct_lineitem"] > 0 and incremental["warehouse/dim_customer"] > 0


def test_the_rows_are_split_across_the_two_shards(results):
    for name, per_shard in results[2]["shards"].items():
        assert set(per_shard) == {"1", "2"}, name
        assert sum(per_shard.values()) == results[1]["shards"][name]["1"], name
    assert results[1]["shards"]["lineitem"].keys() == {"1"}


def test_two_shards_give_what_one_shard_gives(results):
    one, two = results[1], results[2]
    assert two["tables"] == one["tables"] == two["oltp"]  # the warehouse equals the OLTP, on both
    assert two["models"] == one["models"]
    assert two["model_runs"] == one["model_runs"]
    for mart, rows in one["marts"].items():
        assert rows and two["marts"][mart] == rows, mart
    assert two["checks"] == one["checks"]  # every verdict and count (orphans, rows, keys) alike


def test_a_rebuild_switches_each_model_to_its_other_generation(results):
    # first build into generation a, the full refresh into b (a dropped): readers moved in one statement
    assert results[2]["generations"] == {"fct_lineitem": "fct_lineitem_local_b", "dim_customer": "dim_customer_local_b"}
