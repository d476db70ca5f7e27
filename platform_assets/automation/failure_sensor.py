"""Report every failed run (job, partition, failed steps with asset keys and root error) to the log and a webhook.

The report names assets (what people know) rather than op/step keys alone, and the user's error rather than Dagster's
"Error occurred while executing op" wrapper, so a reader can act on it without opening the UI.
"""

# No `from __future__ import annotations`: Dagster reads the sensor's parameter annotations at definition time.

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._utils.error import SerializableErrorInfo

from platform_assets.partitions import RANGE_END_TAG, RANGE_START_TAG, span
from resources.webhook import WebhookResource

PARTITION_TAG = "dagster/partition"
# what Dagster wraps an error in once a step's retries ran out: ours (RetryRequested) or a RetryPolicy's
RETRY_WRAPPERS = {"RetryRequested", "RetryRequestedFromPolicy"}


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0].strip() if lines else ""


def partition_of(tags: Mapping[str, str]) -> str | None:
    """The run's partition key, or ``start..end`` for a backfill of a partition range in one run."""
    if tags.get(PARTITION_TAG):
        return tags[PARTITION_TAG]
    if tags.get(RANGE_START_TAG) and tags.get(RANGE_END_TAG):
        return span((tags[RANGE_START_TAG], tags[RANGE_END_TAG]))
    return None


def root_error(error: SerializableErrorInfo) -> tuple[str, str]:
    """``(class name, first line of message)`` of the user's error, unwrapping Dagster's own wrapper errors
    (``DagsterExecutionStepExecutionError``, and ``RetryRequested`` or ``RetryRequestedFromPolicy`` once a step's
    retries ran out)."""
    while error.cause is not None and (
        error.message.startswith("dagster._core.errors.") or error.cls_name in RETRY_WRAPPERS
    ):
        error = error.cause
    line = _first_line(error.message)
    # format_exception_only prefixes the (possibly module-qualified) class name: keep the bare message.
    head, sep, rest = line.partition(": ")
    if sep and head.rsplit(".", 1)[-1] == error.cls_name:
        line = rest
    return error.cls_name, line


def step_asset_keys(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dict[str, list[str]]:
    """Step key -> asset keys (``a/b``) the step materializes, from the run's execution plan snapshot."""
    if not run.execution_plan_snapshot_id:
        return {}
    plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    selected = run.asset_selection or set()
    keys: dict[str, list[str]] = {}
    for step in plan.steps:
        assets = [
            out.properties.asset_key
            for out in step.outputs
            if out.properties and out.properties.asset_key and out.properties.asset_check_key is None
        ]
        # A subsetted multi-asset step only materializes the selected part of its outputs.
        if selected:
            assets = [a for a in assets if a in selected] or assets
        keys[step.key] = sorted(a.to_user_string() for a in assets)
    return keys


def failure_report(context: dg.RunFailureSensorContext) -> dict[str, Any]:
    """The JSON payload: plain strings and lists only, so any webhook (chat, incident tool) can render it."""
    run = context.dagster_run
    assets_by_step = step_asset_keys(context.instance, run)
    failed_steps = []
    for event in context.get_step_failure_events():
        error = event.step_failure_data.error
        error_class, message = root_error(error) if error else ("", "")
        failed_steps.append(
            {
                "step_key": event.step_key,
                "asset_keys": assets_by_step.get(event.step_key or "", []),
                "error_class": error_class,
                "error": message,
            }
        )
    step_assets = {key for step in failed_steps for key in step["asset_keys"]}
    return {
        "event": "dagster_run_failure",
        "sensor": context.sensor_name,
        "job": run.job_name,
        "run_id": run.run_id,
        "run_path": f"/runs/{run.run_id}",  # append to the Dagster UI's base URL for a link
        "partition": partition_of(run.tags),
        "asset_keys": sorted(step_assets or (a.to_user_string() for a in run.asset_selection or ())),
        "failed_steps": failed_steps,
        "run_error": _first_line(context.failure_event.message),
    }


def log_line(report: Mapping[str, Any]) -> str:
    """One readable line: run, job, partition, then ``step [assets] Class: message`` per failed step."""
    partition = f" partition {report['partition']}" if report["partition"] else ""
    steps = "; ".join(
        f"{s['step_key']} [{', '.join(s['asset_keys']) or 'no asset'}] {s['error_class']}: {s['error']}"
        for s in report["failed_steps"]
    )
    return f"Run {report['run_id']} of job {report['job']} failed{partition}: {steps or report['run_error']}"


@dg.run_failure_sensor(
    name="report_failed_runs",
    monitor_all_code_locations=False,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Logs each failed run of this code location (job, partition, failed steps with asset keys and root error) "
        "and posts it as JSON to the failure webhook (FAILURE_WEBHOOK_URL) when one is configured."
    ),
)
def failure_sensor(context: dg.RunFailureSensorContext, failure_webhook: WebhookResource) -> None:
    report = failure_report(context)
    # Log before posting: the report must survive an unreachable webhook (whose error then fails the sensor tick).
    context.log.error(log_line(report))
    if failure_webhook.post(report):
        context.log.info(f"Reported failed run {report['run_id']} to the failure webhook at {failure_webhook.host}")


defs = dg.Definitions(sensors=[failure_sensor])
