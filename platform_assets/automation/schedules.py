"""Time-based automation: the daily partition of the incremental job, declarative automation for what follows,
and the freshness checks' own schedule."""

from datetime import UTC, timedelta

import dagster as dg

from platform_assets.jobs import incremental_job
from platform_assets.marts.assets import mart_freshness_checks
from platform_assets.partitions import add_days
from platform_assets.warehouse.checks import freshness_checks


@dg.schedule(
    name="daily_changes",
    job=incremental_job,
    cron_schedule="30 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Applies yesterday's OLTP changes to raw, curated and the warehouse in full.",
)
def daily_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Every night, the day that just ended in full: a safety net under the change sensor (e.g. a sensor that was
    switched off). Today's partition is the sensor's; the schedule takes the day before its tick."""
    day = (context.scheduled_execution_time.astimezone(UTC) - timedelta(days=1)).date().isoformat()
    add_days(context.instance, [day])  # a schedule cannot return partitions to add, as a sensor does
    return dg.RunRequest(run_key=f"daily_changes:{day}", partition_key=day)


# Models and marts (and partitioned layers after a manual or landed raw day) follow their inputs.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Declarative automation: models and marts refresh when their inputs change.",
)

freshness_job = dg.define_asset_job(
    "check_freshness",
    selection=dg.AssetSelection.checks(*freshness_checks, *mart_freshness_checks),
    description="Is every warehouse table in step with the OLTP, every mart with the warehouse? Stale data fails.",
)
freshness_schedule = dg.ScheduleDefinition(
    name="freshness_checks_hourly",
    job=freshness_job,
    cron_schedule="15 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

defs = dg.Definitions(schedules=[daily_schedule, freshness_schedule], sensors=[automation_sensor], jobs=[freshness_job])
