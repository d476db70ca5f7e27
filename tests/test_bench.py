"""The benchmark's own arithmetic (no stack): memory of a process tree, ratios, targets, the overhead account,
the incremental day against the full load."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import dagster as dg

from benchmarks import day_account, report
from benchmarks.measure import Measured, tree_rss


def test_tree_rss_includes_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "x = bytearray(300 * 2**20); import time; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 15
        while tree_rss(os.getpid()) < 300 * 2**20 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tree_rss(os.getpid()) >= 300 * 2**20
    finally:
        child.kill()
        child.wait()


def _ours(layer: str, seconds: float, rows: int) -> Measured:
    asset = {"step": f"{layer}__t", "seconds": seconds, "rows": rows, "bytes": rows * 10}
    return Measured("ours", seconds + 1, 2**30, {"assets": {f"{layer}/t": asset}, "engine_s": seconds})


def _ref(seconds: float) -> Measured:
    return Measured("ref", seconds + 1, 2**29, {"seconds": seconds})


def test_report_ratios_targets_and_overhead() -> None:
    ours = {layer: _ours(layer, 10.0, 1000) for _, layer in report.STAGES}
    refs = {stage: {"limit": _ref(8.0), "naive": _ref(100.0)} for stage, _ in report.STAGES}
    refs["marts"]["naive"] = None
    rows = report.stage_rows(ours, refs)
    assert rows[0]["ours_over_limit"] == 1.25 and rows[0]["naive_over_ours"] == 10.0
    e2e = Measured(
        "ours",
        60.0,
        2**31,
        {
            "assets": {f"{layer}/t": {"seconds": 10.0} for _, layer in report.STAGES},
            "engine_s": 40.0,
            "check_steps_s": 5.0,
            "in_step_checks_s": 1.5,  # checks a warehouse step ran itself: check work, not Dagster's
            "asset_steps_s": 42.0,
            "execute_in_process_s": 50.0,
            "checks_passed": 3,
            "checks_total": 3,
        },
    )
    summary = report.end_to_end(e2e, rows)
    assert summary["dagster_overhead_s"] == 13.5 and summary["check_steps_s"] == 6.5
    assert sum(summary["overhead_breakdown_s"].values()) == 13.5
    assert summary["overhead_breakdown_s"]["inside asset steps, outside the engine call and its checks"] == 0.5
    text = report.render(0.1, rows, summary, {"server_copy": None, "extract_memory": None})
    assert "within 1.5x of limit: MET (1.25x)" in text
    assert report.NOT_MEASURED in text


def _inc_run(assets: dict[str, float], checks_s: float, in_step_s: float = 0.0) -> dict:
    return {
        "assets": {k: {"step": f"r:{k}", "seconds": s, "rows": 100, "bytes": 1000} for k, s in assets.items()},
        "check_steps_s": checks_s,
        "in_step_checks_s": in_step_s,
        "checks_passed": 2,
        "checks_total": 2,
        "failed_checks": [],
        "run_ids": ["r"],
    }


def test_incremental_day_against_the_full_load() -> None:
    e2e = Measured(
        "ours",
        130.0,
        2**31,
        {"assets": {"raw/orders": {"seconds": 5.0, "rows": 150_000}, "raw/lineitem": {"seconds": 9.0, "rows": 850_000}},
         "execute_in_process_s": 100.0},
    )  # fmt: skip
    inc = Measured(
        "incremental",
        45.0,
        2**30,
        {
            "day": "1998-08-04",
            "change_rate": 0.01,
            "rows_changed": 5_000,
            "changed": {"orders": {"rows": 1_500, "deletes": 10}, "lineitem": {"rows": 3_450, "deletes": 40}},
            "wall_s": 25.0,
            "sensor_s": 1.0,
            "tables_run_s": 14.0,
            "automation_s": 10.0,
            "simulate_s": 12.5,
            "tables": _inc_run({"raw/orders": 1.0, "curated/orders": 4.0, "warehouse/orders": 0.5}, 2.0, 0.25),
            "models": _inc_run({"curated/fct_lineitem": 5.0, "marts/q1": 1.0}, 0.5),
        },
    )
    summary = report.incremental(inc, e2e)
    assert summary["full_load_rows"] == 1_000_000 and summary["changed_share"] == 0.005
    assert summary["ratio_vs_full_load"] == 0.25 and summary["full_load_s"] == 100.0
    tables, models = summary["parts"]["partitioned_tables"], summary["parts"]["models_and_marts"]
    assert tables["wall_s"] == 15.0 and tables["share_of_day"] == 0.6 and models["share_of_day"] == 0.4
    assert tables["engine_s_by_layer"] == {"raw": 1.0, "curated": 4.0, "warehouse": 0.5}
    assert tables["check_steps_s"] == 2.25 and models["check_steps_s"] == 0.5  # check steps + checks inside steps
    assert models["engine_s_by_layer"] == {"curated": 5.0, "marts": 1.0}
    assert summary["checks"] == "4/4 passed" and summary["rows_per_s"] == 200.0
    text = "\n".join(report.incremental_lines(summary))
    assert "5,000 OLTP rows changed (0.50% of the full load's 1,000,000)" in text
    assert "= 0.25x the full load's run (100.0 s" in text
    assert (
        "the change run: tables, models, marts (sensor tick 1.0 s + incremental_changes run 14.0 s, 3 assets): "
        "15.0 s (60%)" in text
    )
    assert "then the automation (what it still found: 1 run(s), 2 assets): 10.0 s (40%)" in text
    assert "not part of the day: simulating it in the OLTP 12.5 s; the measuring process 45.0 s in all" in text
    assert report.incremental_lines(None) == [f"{'incr. day':10s} {report.NOT_MEASURED}"]


def test_spark_fixed_cost_from_the_transform_limit() -> None:
    limit = Measured("transform_limit", 60.0, 2**30, {"session_start_s": 20.0, "seconds_by_name": {"region": 9.0}})
    assert report.spark_fixed(limit) == {"session_start_s": 20.0, "first": "region", "first_s": 9.0}
    assert report.spark_fixed(None) is None and report.spark_fixed(_ref(1.0)) is None


def test_the_deployed_path_table_reports_p50_and_max_per_kind_of_round() -> None:
    from benchmarks.deployed import Round, render, summarize

    def round_(kind: str, tick: float, marts: float, startups: list[float]) -> Round:
        runs = [{"job": "incremental_changes", "startup_s": s} for s in startups]
        return Round(kind, "d", 2000, tick, tick + 1, tick + 2, tick + marts, marts, runs)

    rounds = [round_("full load", 3.0, 20.0, [2.0])]
    rounds += [round_("simulated day", t, m, [1.5]) for t, m in ((30.0, 10.0), (4.0, 12.0), (10.0, 11.0))]
    rounds.append(round_("wall clock", 5.0, 9.0, [1.0, 4.0]))
    summary = summarize(rounds)
    day = summary["simulated day"]
    assert day["n"] == 3 and day["commit_to_tick_s_p50"] == 10.0 and day["commit_to_tick_s_max"] == 30.0
    assert day["tick_to_marts_s_p50"] == 11.0 and day["commit_to_marts_s_max"] == 40.0
    assert summary["run_startup_s"] == {"n": 6, "p50": 1.5, "max": 4.0}
    for r, engine in zip(rounds[1:4], (2.0, 4.0, 3.0), strict=True):  # the days' accounts: engine work 3 s of 10
        busy = _phases(0.0, 1.0, 2.0, 9.0, 10.0, engine_s=engine, asset_steps_s=7.0)
        r.account = day_account.account(0.0, 10.0, [busy]).as_dict()
    table = render({"scale_factor": 0.01, "change_rate": 0.01, "sensor_interval_s": 30, "summary": summary,
                    "rounds": [asdict(r) for r in rounds]}, {"full_load_s": 50.0, "day_s": 12.5})  # fmt: skip
    assert "| where a simulated day's time goes (median of 3) | s | share |" in table
    assert "| · engine work (DuckDB, Spark, ClickHouse as recorded) | 3.0 | 30% |" in table
    assert "| not engine work nor checks (ours and Dagster's) | 7.0 | 70% |" in table
    assert "full load's time" not in table  # no account recorded for it
    assert "| simulated day (p50 / max) | 3 | 2,000 | 10.0 / 30.0 | 11.0 / 31.0 |" in table
    assert "| full load | 1 | 2,000 | 3.0 | 4.0 | 5.0 | 23.0 | 20.0 |" in table
    assert "in-process" in table and "12.5 s" in table


def _deployed(day_s: float, startup_s: float) -> dict:
    summary = {"simulated day": {"tick_to_marts_s_p50": day_s, "tick_to_marts_s_max": day_s + 1},
               "full load": {"tick_to_marts_s_p50": 10 * day_s},
               "run_startup_s": {"p50": startup_s, "max": startup_s + 0.5}}  # fmt: skip
    return {"deployed": {"summary": summary}}


def test_side_by_side_alternates_and_reports_medians_and_ratios() -> None:
    from benchmarks import against

    assert against.order(3) == [0, 1, 1, 0, 0, 1]  # each tree starts half the rounds
    base = against.Tree("abc123", Path("/x"), sys.executable, [_deployed(20, 4), _deployed(22, 4), _deployed(30, 5)])
    work = against.Tree("working tree", Path("/y"), sys.executable, [_deployed(10, 2), _deployed(11, 2)])
    text = against.table(base, work)
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in text.splitlines()[2:]}
    assert rows["simulated day, tick → marts p50 (s)"] == ["22.0", "10.5", "0.48 |"]
    assert rows["full load, tick → marts (s)"] == ["220.0", "105.0", "0.48 |"]
    assert rows["run start-up, launch → first step max (s)"] == ["4.5", "2.5", "0.56 |"]
    assert rows["wall-clock round, tick → marts p50 (s)"] == ["n/a", "n/a", "n/a |"]  # no such round: not invented


def test_the_commit_to_compare_is_checked_out_beside_the_working_tree() -> None:
    from benchmarks import against
    from resources.settings import REPO_ROOT

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    tree = against.checkout("HEAD")
    try:
        assert tree.label == head.stdout.strip()[:12] and tree.path != REPO_ROOT
        shown = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tree.path, capture_output=True, text=True)
        assert shown.stdout == head.stdout and (tree.path / "benchmarks" / "run.py").is_file()
        assert tree.python == sys.executable  # same requirements.lock: this interpreter, PYTHONPATH on its tree
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree.path)], cwd=REPO_ROOT, check=True)


def _phases(created, launched, first, last, ended, **steps) -> day_account.RunPhases:

    return day_account.RunPhases(created, launched, first, last, ended, **steps)


def test_a_rounds_time_is_charged_once_to_the_runs_phases_and_the_gaps_between_them() -> None:
    """A change run, a wait for the automation's tick, an automation run: every second of tick → marts charged
    once, the steps split into engine work, checks and the rest."""

    change = _phases(0.0, 0.5, 2.5, 8.0, 8.5, engine_s=3.0, in_step_checks_s=0.5, asset_steps_s=5.0, check_steps_s=0.5)
    automation = _phases(12.0, 12.3, 14.0, 17.0, 17.4, engine_s=1.5, asset_steps_s=2.5, check_steps_s=0.5)
    got = day_account.account(0.0, 17.0, [change, automation])
    want = {"between runs": 3.5, "steps": 8.5, "start-up": 3.7, "run end": 0.5, "queued": 0.8}
    assert {k: round(v, 6) for k, v in got.timeline_s.items()} == want
    assert sum(got.timeline_s.values()) == got.wall_s == 17.0
    assert [round(x, 6) for x in (got.engine_s, got.checks_s, got.steps_rest_s, got.ours_s)] == [4.5, 1.5, 2.5, 11.0]


def test_overlapping_runs_are_charged_once_and_their_steps_work_scaled_to_the_time_in_steps() -> None:

    a = _phases(0.0, 0.0, 0.0, 4.0, 4.0, engine_s=4.0, asset_steps_s=4.0)
    b = _phases(1.0, 2.0, 3.0, 6.0, 6.0, engine_s=3.0, asset_steps_s=3.0)  # queued and starting while a works
    got = day_account.account(0.0, 6.0, [a, b])
    assert got.timeline_s["steps"] == 6.0 and sum(got.timeline_s.values()) == 6.0
    assert abs(got.engine_s - 6.0) < 1e-9 and got.steps_rest_s == 0.0


def test_a_runs_phases_come_from_its_event_log_with_each_materializations_engine_seconds() -> None:
    import dagster as dg

    from platform_assets.metadata import CHECK_SECONDS

    @dg.asset
    def table() -> dg.MaterializeResult:
        time.sleep(0.3)
        return dg.MaterializeResult(metadata={"seconds": 0.25, CHECK_SECONDS: 0.05})

    @dg.asset_check(asset=table)
    def nonempty():
        time.sleep(0.2)
        return dg.AssetCheckResult(passed=True)

    with dg.instance_for_test() as instance:
        result = dg.materialize([table, nonempty], instance=instance)
        record = instance.get_run_record_by_id(result.run_id)
        got = day_account.run_phases(instance, result.run_id, 0.0, 0.0, record.end_time)
    assert (got.engine_s, got.in_step_checks_s) == (0.25, 0.05)
    assert got.asset_steps_s >= 0.3 and got.check_steps_s >= 0.2
    assert got.first_step is not None and got.first_step < got.last_step_end <= got.ended


def test_the_local_deployment_writes_our_bytecode_before_its_processes_start():
    """Each run is a new process importing our packages; with PYTHONDONTWRITEBYTECODE (this machine, CI) nothing else
    writes their bytecode, so every run compiled them again. The image compiles at its build; this is the same."""
    import importlib.util

    from deploy.local.daemon import PACKAGES, compile_bytecode
    from tests.conftest import REPO

    sources = [path for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))]
    bytecode = {src: Path(importlib.util.cache_from_source(str(src))) for src in sources}
    bytecode[sources[0]].unlink(missing_ok=True)
    compile_bytecode()
    assert not [src for src, pyc in bytecode.items() if not pyc.exists()], "sources left to compile at each run"
