"""Our pipeline, measured by running the real assets through Dagster: the ``full_lineage`` job over the changed
days (a full load), one layer of it, or an incremental day (sensor tick, ``incremental_changes`` run, automation).

Per asset it reads the materialization metadata the asset wrote itself (``seconds`` around the engine work,
``dagster/row_count``, ``bytes``); per step it reads STEP_START/STEP_SUCCESS from the run's event log, so the
time Dagster spends outside the engines can be told apart from the work.
"""

from __future__ import annotations

import json
import time
from typing import Any

LAYERS = ("raw", "curated", "warehouse", "marts")
_END_EVENTS = {"STEP_SUCCESS", "STEP_FAILURE"}
SIMULATION_SEED = 42  # the seed `make demo`'s second day uses


def _job(definitions, layer: str | None):
    import dagster as dg

    from platform_assets.definitions import LINEAGE_JOB

    if layer is None:
        return definitions.resolve_job_def(LINEAGE_JOB)
    job = dg.define_asset_job(f"bench_{layer}", selection=dg.AssetSelection.groups(layer))
    return dg.Definitions.merge(definitions, dg.Definitions(jobs=[job])).resolve_job_def(job.name)


def summarize(results, instance) -> dict[str, Any]:
    """Assets (metadata they wrote), asset-step and check-step seconds (event log) of finished in-process runs.

    Checks an asset's own step runs (``check_seconds``: the warehouse's null-key scan, uniqueness and
    reconciliation) count as checks, not as Dagster's time inside the step."""
    from platform_assets.metadata import CHECK_SECONDS

    assets: dict[str, dict[str, Any]] = {}
    steps: dict[str, float] = {}
    checks: list = []
    for result in results:
        for event in result.get_asset_materialization_events():
            mat = event.event_specific_data.materialization
            md = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
            # a range run records the same result once per day of the range: one entry per asset
            assets[mat.asset_key.to_user_string()] = {
                "step": f"{result.run_id}:{event.step_key}",
                "seconds": float(md.get("seconds", 0.0)),
                "rows": int(md.get("rows_written", md.get("dagster/row_count", 0))),  # a model: what it wrote
                "bytes": int(md.get("bytes", 0)),
                "check_seconds": float(md.get(CHECK_SECONDS, 0.0)),  # checks the asset's step ran itself
            }
        starts: dict[str, float] = {}
        for entry in instance.all_logs(result.run_id):
            ev = entry.dagster_event
            if ev is None:
                continue
            key = f"{result.run_id}:{ev.step_key}"
            if ev.event_type_value == "STEP_START":
                starts[key] = entry.timestamp
            elif ev.event_type_value in _END_EVENTS and key in starts:
                steps[key] = entry.timestamp - starts[key]
        checks.extend(result.get_asset_check_evaluations())
    asset_steps = {a["step"] for a in assets.values()}
    return {
        "assets": assets,
        "engine_s": sum(a["seconds"] for a in assets.values()),
        "asset_steps_s": sum(s for k, s in steps.items() if k in asset_steps),
        "check_steps_s": sum(s for k, s in steps.items() if k not in asset_steps),
        "in_step_checks_s": sum(a["check_seconds"] for a in assets.values()),
        "steps": len(steps),
        "checks_passed": sum(c.passed for c in checks),
        "checks_total": len(checks),
        "failed_checks": [f"{c.asset_key.to_user_string()}:{c.check_name}" for c in checks if not c.passed],
        "run_ids": [r.run_id for r in results],
    }


def run_layer(layer: str | None, worker_started: float) -> dict[str, Any]:
    """Materialize one layer (``None``: the whole lineage) over every changed day, as ``cli.run_lineage`` does."""
    import dagster as dg

    from benchmarks.common import oltp
    from platform_assets.definitions import defs
    from platform_assets.jobs import full_load_tags
    from platform_assets.partitions import RANGE_END_TAG, RANGE_START_TAG

    definitions = defs()
    job = _job(definitions, layer)
    defs_loaded = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        tags = full_load_tags(instance, oltp())
        first, last = tags[RANGE_START_TAG], tags[RANGE_END_TAG]
        tags = tags if job.partitions_def is not None else {}  # marts alone: unpartitioned
        result = job.execute_in_process(instance=instance, tags=tags, raise_on_error=True)
        run_done = time.perf_counter()
        summary = summarize([result], instance)
    return {
        "layer": layer or "all",
        "days": [str(first), str(last)],
        **summary,
        "imports_and_definitions_s": defs_loaded - worker_started,
        "execute_in_process_s": run_done - defs_loaded,
        "run_id": result.run_id,
    }


def _changed_rows(changes) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for per_table in changes.days.values():
        for table, (rows, deletes) in per_table.items():
            t = out.setdefault(table, {"rows": 0, "deletes": 0})
            t["rows"] += rows
            t["deletes"] += deletes
    return out


def incremental_day(change_rate: float, worker_started: float) -> dict[str, Any]:
    """One simulated day applied the way the platform does (``cli.second_day``): take the sensor's and the
    automation's cursors as they stand after the full load, simulate the day in the OLTP (not timed), then time
    the sensor tick, the ``incremental_changes`` run it requests (raw → curated → warehouse of the changed tables)
    and the automation that follows (models and marts), all through Dagster on the local instance."""
    import dataclasses

    import dagster as dg

    from benchmarks.common import oltp
    from platform_assets.automation.local_runs import evaluate_sensor, execute_requests, run_automation
    from platform_assets.automation.oltp_changes import SENSOR, current_cursor, scan
    from platform_assets.definitions import defs
    from platform_assets.oltp.simulate import simulate

    definitions = defs()
    pg = oltp()
    defs_loaded = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        before = current_cursor(pg)  # the sensor's view right after the full load
        automation = dg.evaluate_automation_conditions(defs=definitions, instance=instance).cursor
        cursors_s = time.perf_counter() - defs_loaded

        sim_started = time.perf_counter()
        day = simulate(pg, 1, SIMULATION_SEED, change_rate).days[0]
        simulate_s = time.perf_counter() - sim_started

        t0 = time.perf_counter()
        requests, _ = evaluate_sensor(definitions, SENSOR, instance, json.dumps(before))
        t1 = time.perf_counter()
        applied = execute_requests(definitions, instance, requests)
        t2 = time.perf_counter()
        automated, _ = run_automation(definitions, instance, automation)
        t3 = time.perf_counter()

        tables = summarize(applied.results, instance)
        models = summarize(automated.results, instance)
    if not requests:
        raise RuntimeError("the OLTP change sensor requested no run for the simulated day")
    if not (applied.success and automated.success):
        raise RuntimeError(f"incremental runs failed: {tables['run_ids'] + models['run_ids']}")
    changed = _changed_rows(scan(pg, before))
    return {
        "day": str(day.day),
        "change_rate": change_rate,
        "simulated": {k: v for k, v in dataclasses.asdict(day).items() if k != "day"},
        "changed": changed,
        "rows_changed": sum(t["rows"] + t["deletes"] for t in changed.values()),
        "wall_s": t3 - t0,
        "sensor_s": t1 - t0,
        "tables_run_s": t2 - t1,
        "automation_s": t3 - t2,
        "tables": tables,
        "models": models,
        "requested": [[k.to_user_string() for k in r.asset_selection or []] for r in requests],
        "simulate_s": simulate_s,
        "cursors_s": cursors_s,
        "imports_and_definitions_s": defs_loaded - worker_started,
    }
