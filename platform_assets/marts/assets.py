"""Marts (ClickHouse SQL on vps_3): TPC-H reports and a customer feature table over the warehouse."""

import time

import dagster as dg

from platform_assets.marts.queries import MARTS, SETTINGS, Mart
from platform_assets.metadata import OWNERS, column_schema, describe, markdown_preview, node_tags, timing, version_of
from resources.clickhouse import ClickHouseResource

DATABASE = "marts"


def read_mart(clickhouse: ClickHouseResource, mart: Mart, limit: int | None = None) -> tuple[list[str], list[tuple]]:
    """The mart's rows in the query's own order (a table does not keep ORDER BY)."""
    sql = f"SELECT * FROM {DATABASE}.{mart.name} ORDER BY {mart.order_by}" + (f" LIMIT {limit}" if limit else "")
    result = clickhouse.client().query(sql)
    return list(result.column_names), result.result_rows


def mart_asset(mart: Mart) -> dg.AssetsDefinition:
    @dg.asset(
        name=mart.name,
        key_prefix="marts",
        deps=[dg.AssetKey(["warehouse", d]) for d in mart.depends_on],
        group_name="marts",
        kinds={"clickhouse", "sql"},
        owners=OWNERS,
        tags=node_tags("vps_3"),
        code_version=version_of(mart.sql),
        description=describe(
            f"**{mart.title}** — table `{DATABASE}.{mart.name}`.", extra=f"```sql\n{mart.sql.strip()}\n```"
        ),
        metadata={"dagster/table_name": f"{DATABASE}.{mart.name}"},
    )
    def _mart(clickhouse: ClickHouseResource) -> dg.MaterializeResult:
        started = time.perf_counter()
        with clickhouse.replacing(DATABASE, mart.name) as staging:
            clickhouse.command(
                f"CREATE TABLE {staging} ENGINE = MergeTree ORDER BY tuple() AS {mart.sql} SETTINGS {SETTINGS}"
            )
        rows, nbytes = clickhouse.table_stats(DATABASE, mart.name)
        header, preview = read_mart(clickhouse, mart, limit=10)
        return dg.MaterializeResult(
            metadata={
                **timing(rows, nbytes, time.perf_counter() - started),
                "dagster/table_name": f"{DATABASE}.{mart.name}",
                "dagster/column_schema": column_schema(clickhouse.columns(DATABASE, mart.name)),
                "preview": dg.MetadataValue.md(markdown_preview(header, preview)),
            }
        )

    return _mart


mart_assets = [mart_asset(m) for m in MARTS]

defs = dg.Definitions(assets=mart_assets)
