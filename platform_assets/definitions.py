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
from platform_assets.warehouse.lag import FRESHNESS
from resources.environments import executor_def, resource_defs

__all__ = ["INCREMENTAL_JOB", "LINEAGE_JOB", "defs"]

FRESH_GROUPS = ("warehouse", "marts")  # what users query: late data there is an incident


def with_freshness(spec: dg.AssetSpec) -> dg.AssetSpec:
    """The freshness policy, applied in one place to every asset users query (the UI shows each one's state)."""
    return spec.replace_attributes(freshness_policy=FRESHNESS) if spec.group_name in FRESH_GROUPS else spec


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
    ).map_asset_specs(func=with_freshness)
