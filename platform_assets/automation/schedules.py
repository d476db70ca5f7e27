"""Time-based automation: the daily partition of the incremental job, declarative automation for what follows,
and the freshness checks' own schedule."""

import dagster as dg

from platform_assets.jobs import incremental_job
from platform_assets.marts.assets import mart_freshness_checks
from platform_assets.warehouse.assets import freshness_checks

# Every night, yesterday's changes in full: the safety net under the change sensor (late commits, missed ticks).
daily_schedule = dg.build_schedule_from_partitioned_job(
    incremental_job,
    name="daily_changes",
    hour_of_day=0,
    minute_of_hour=30,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Applies yesterday's OLTP changes to raw, curated and the warehouse.",
)

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
