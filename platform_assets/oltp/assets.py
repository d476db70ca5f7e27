"""The OLTP tables on vps_1 as external assets: the root of the lineage (written by applications, not us)."""

import dagster as dg

from platform_assets.catalog import TABLES
from platform_assets.metadata import OWNERS, catalog_columns, column_schema, describe, node_tags

oltp_tables = [
    dg.AssetSpec(
        key=["oltp", t.name],
        group_name="oltp",
        kinds={"postgres"},
        owners=OWNERS,
        tags=node_tags("vps_1"),
        description=describe(f"OLTP table `{t.name}` on vps_1 — the source of truth. {t.description}", t),
        metadata={
            "dagster/table_name": f"oltp.public.{t.name}",
            "dagster/column_schema": column_schema(catalog_columns(t)),
        },
    )
    for t in TABLES
]

defs = dg.Definitions(assets=oltp_tables)
