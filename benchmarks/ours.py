"""Our pipeline, measured by running the real assets through Dagster (a layer, or the whole ``full_lineage`` job).

Per asset it reads the materialization metadata the asset wrote itself (``seconds`` around the engine work,
``dagster/row_count``, ``bytes``); per step it reads STEP_START/STEP_SUCCESS from the run's event log, so the
time Dagster spends outside the engines can be told apart from the work.
"""

from __future__ import annotations

import time
from typing import Any

LAYERS = ("raw", "curated", "warehouse", "marts")
_END_EVENTS = {"STEP_SUCCESS", "STEP_FAILURE"}


def _job(layer: str | None):
    import dagster as dg

    from platform_assets.definitions import LINEAGE_JOB, defs

    d = defs()
    if layer is None:
        return d.resolve_job_def(LINEAGE_JOB)
    job = dg.define_asset_job(f"bench_{layer}", selection=dg.AssetSelection.groups(layer))
    return dg.Definitions.merge(d, dg.Definitions(jobs=[job])).resolve_job_def(job.name)


def run_layer(layer: str | None, worker_started: float) -> dict[str, Any]:
    """Materialize one layer (``None``: the whole lineage) on the local instance; report assets and steps."""
    import dagster as dg

    job = _job(layer)
    defs_loaded = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=True)
        run_done = time.perf_counter()
        logs = instance.all_logs(result.run_id)
    assets: dict[str, dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        md = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
        assets[mat.asset_key.to_user_string()] = {
            "step": event.step_key,
            "seconds": float(md.get("seconds", 0.0)),
            "rows": int(md.get("dagster/row_count", 0)),
            "bytes": int(md.get("bytes", 0)),
        }
    starts: dict[str, float] = {}
    steps: dict[str, float] = {}
    run_span = [None, None]
    for entry in logs:
        ev = entry.dagster_event
        if ev is None:
            continue
        kind = ev.event_type_value
        if kind == "STEP_START":
            starts[ev.step_key] = entry.timestamp
        elif kind in _END_EVENTS and ev.step_key in starts:
            steps[ev.step_key] = entry.timestamp - starts[ev.step_key]
        elif kind == "RUN_START":
            run_span[0] = entry.timestamp
        elif kind in ("RUN_SUCCESS", "RUN_FAILURE"):
            run_span[1] = entry.timestamp
    asset_steps = {a["step"] for a in assets.values()}
    checks = result.get_asset_check_evaluations()
    return {
        "layer": layer or "all",
        "assets": assets,
        "engine_s": sum(a["seconds"] for a in assets.values()),
        "asset_steps_s": sum(s for k, s in steps.items() if k in asset_steps),
        "check_steps_s": sum(s for k, s in steps.items() if k not in asset_steps),
        "steps": len(steps),
        "imports_and_definitions_s": defs_loaded - worker_started,
        "execute_in_process_s": run_done - defs_loaded,
        "run_events_span_s": (run_span[1] - run_span[0]) if None not in run_span else None,
        "checks_passed": sum(c.passed for c in checks),
        "checks_total": len(checks),
        "run_id": result.run_id,
    }
