"""The code location: every domain's definitions, merged with the environment's resources and executor."""

from __future__ import annotations

import dagster as dg

from platform_assets.curated.assets import defs as curated_defs
from platform_assets.marts.assets import defs as marts_defs
from platform_assets.oltp.assets import defs as oltp_defs
from platform_assets.raw.assets import defs as raw_defs
from platform_assets.warehouse.assets import defs as warehouse_defs
from resources.environments import executor_def, resource_defs

LINEAGE_JOB = "full_lineage"

full_lineage_job = dg.define_asset_job(
    LINEAGE_JOB,
    selection=dg.AssetSelection.all(),
    description="Materialize the whole lineage: OLTP → raw → curated → warehouse → marts.",
)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        oltp_defs,
        raw_defs,
        curated_defs,
        warehouse_defs,
        marts_defs,
        dg.Definitions(jobs=[full_lineage_job], resources=resource_defs(), executor=executor_def()),
    )
