"""The code location: every domain's definitions, merged with the environment's resources and executor."""

from __future__ import annotations

import dagster as dg

from platform_assets.automation.failure_sensor import defs as failure_defs
from platform_assets.automation.landing_sensor import landing_sensor
from platform_assets.automation.oltp_changes import oltp_changes_sensor
from platform_assets.automation.schedules import defs as schedule_defs
from platform_assets.curated.assets import defs as curated_defs
from platform_assets.jobs import INCREMENTAL_JOB, LINEAGE_JOB, full_lineage_job, incremental_job
from platform_assets.marts.assets import defs as marts_defs
from platform_assets.oltp.assets import defs as oltp_defs
from platform_assets.raw.assets import defs as raw_defs
from platform_assets.warehouse.assets import defs as warehouse_defs
from platform_assets.warehouse.divergence import defs as divergence_defs
from resources.environments import executor_def, resource_defs

__all__ = ["INCREMENTAL_JOB", "LINEAGE_JOB", "defs"]


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        oltp_defs,
        raw_defs,
        curated_defs,
        warehouse_defs,
        divergence_defs,
        marts_defs,
        schedule_defs,
        failure_defs,
        dg.Definitions(
            jobs=[full_lineage_job, incremental_job],
            sensors=[oltp_changes_sensor, landing_sensor],
            resources=resource_defs(),
            executor=executor_def(),
        ),
    )
