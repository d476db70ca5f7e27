"""Carry out, in this process, what sensors and declarative automation request — as the daemon does in a
deployment. Used by ``make demo`` and the tests, so both exercise the real sensor and automation code."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TextIO

import dagster as dg

from platform_assets.jobs import INCREMENTAL_JOB
from platform_assets.progress import with_progress


@dataclass
class Applied:
    results: list[dg.ExecuteInProcessResult] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return all(r.success for r in self.results)

    def materialized(self) -> list[tuple[str, str | None, dict]]:
        out = []
        for r in self.results:
            for event in r.get_asset_materialization_events():
                mat = event.event_specific_data.materialization
                md = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
                out.append((mat.asset_key.to_user_string(), mat.partition, md))
        return out

    def checks(self) -> list:
        return [c for r in self.results for c in r.get_asset_check_evaluations()]


def evaluate_sensor(defs: dg.Definitions, name: str, instance: dg.DagsterInstance, cursor: str | None):
    """One tick of a sensor against a real instance: (run requests, new cursor)."""
    sensor = defs.resolve_sensor_def(name)
    with dg.build_sensor_context(  # the ref lets Dagster check the run requests' partitions as the daemon does
        instance=instance,
        instance_ref=instance.get_ref(),
        cursor=cursor,
        definitions=defs,
        sensor_name=name,
        resources=defs.resources,
    ) as context:
        data = sensor.evaluate_tick(context)
    for request in data.dynamic_partitions_requests or []:  # as the daemon does before it launches the runs
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
    return list(data.run_requests or []), data.cursor


def _execute(job: dg.JobDefinition, progress: TextIO | None, run_config: dict | None = None, **kwargs):
    """One run in this process; with ``progress``, its materializations are printed there as they happen."""
    if progress is not None:
        job, logging_config = with_progress(job, progress)
        run_config = {**(run_config or {}), **logging_config}
    return job.execute_in_process(run_config=run_config, raise_on_error=False, **kwargs)


def execute_requests(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    requests,
    job_name: str = INCREMENTAL_JOB,
    progress: TextIO | None = None,
):
    applied = Applied()
    job = defs.resolve_job_def(job_name)
    for request in requests:
        selection = list(request.asset_selection or [])
        run_job, subset = job, request.asset_check_keys is not None
        if subset:  # the checks the request names, as the daemon runs them (all of the assets' by default)
            checks = set(request.asset_check_keys)
            run_job = job.get_subset(asset_selection=set(selection), asset_check_selection=checks)
        applied.results.append(
            _execute(
                run_job,
                progress,
                request.run_config,
                instance=instance,
                partition_key=request.partition_key,
                tags={**(request.tags or {}), "dagster/run_key": request.run_key or ""},
                asset_selection=None if subset else selection,
            )
        )
    return applied


def run_automation(
    defs: dg.Definitions, instance: dg.DagsterInstance, cursor=None, rounds: int = 4, progress: TextIO | None = None
):
    """Evaluate the automation conditions and materialize what they request, until nothing more is requested."""
    applied = Applied()
    global_job = defs.resolve_implicit_global_asset_job_def()
    graph = defs.resolve_asset_graph()
    for _ in range(rounds):
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        cursor = result.cursor
        if not result.total_requested:
            break
        by_partition: dict[str | None, list[dg.AssetKey]] = defaultdict(list)
        for key in graph.get_all_asset_keys():
            for partition in result.get_requested_partitions(key):
                by_partition[partition].append(key)
        for partition, keys in by_partition.items():
            # as the daemon does: checks with their own automation condition do not ride along
            checks = graph.get_check_keys_for_assets(set(keys))
            riding = {k for k in checks if graph.get(k).automation_condition is None}
            job = global_job.get_subset(asset_selection=set(keys), asset_check_selection=riding)
            applied.results.append(_execute(job, progress, instance=instance, partition_key=partition))
    return applied, cursor
