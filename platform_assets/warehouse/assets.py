"""Warehouse layer (ClickHouse on vps_3): one table per curated table/model, loaded by ClickHouse itself."""

import dagster as dg

from platform_assets.catalog import WAREHOUSE_TABLES, Model, Table
from platform_assets.metadata import OWNERS, column_schema, describe, node_tags, timing
from platform_assets.paths import curated_prefix
from platform_assets.warehouse.load import DATABASE, engine, load_table, source
from resources.clickhouse import ClickHouseResource
from resources.object_store import ObjectStoreResource


def warehouse_asset(spec: Table | Model) -> dg.AssetsDefinition:
    @dg.asset(
        name=spec.name,
        key_prefix="warehouse",
        deps=[dg.AssetKey(["curated", spec.name])],
        group_name="warehouse",
        kinds={"clickhouse", "s3"},
        owners=OWNERS,
        tags=node_tags("vps_3"),
        code_version="1",
        description=describe(
            f"ClickHouse table `{DATABASE}.{spec.name}` ({engine(spec)}), loaded by ClickHouse from "
            f"`{curated_prefix(spec.name)}` with `s3()` and swapped in atomically. {spec.description}",
            spec if isinstance(spec, Table) else None,
        ),
        metadata={"dagster/table_name": f"{DATABASE}.{spec.name}"},
    )
    def _warehouse(
        context: dg.AssetExecutionContext, clickhouse: ClickHouseResource, object_store: ObjectStoreResource
    ) -> dg.MaterializeResult:
        result = load_table(clickhouse, object_store, spec)
        context.log.info(f"{result.table}: {result.rows} rows in {result.seconds:.2f} s")
        return dg.MaterializeResult(
            metadata={
                **timing(result.rows, result.bytes, result.seconds),
                "dagster/table_name": result.table,
                "dagster/column_schema": column_schema(result.columns),
            }
        )

    return _warehouse


def warehouse_checks(spec: Table | Model) -> list[dg.AssetChecksDefinition]:
    key = dg.AssetKey(["warehouse", spec.name])
    table = f"{DATABASE}.{spec.name}"

    @dg.asset_check(
        asset=key,
        name="row_count_matches_curated",
        description="Rows in the ClickHouse table equal rows in the curated Parquet it was loaded from.",
    )
    def _count(clickhouse: ClickHouseResource, object_store: ObjectStoreResource) -> dg.AssetCheckResult:
        curated = int(clickhouse.scalar(f"SELECT count() FROM {source(object_store, spec.name)}"))
        loaded = int(clickhouse.scalar(f"SELECT count() FROM {table} FINAL"))
        return dg.AssetCheckResult(
            passed=curated == loaded,
            description=None if curated == loaded else f"{table}: curated has {curated} rows, warehouse {loaded}",
            metadata={"curated_rows": curated, "warehouse_rows": loaded},
        )

    @dg.asset_check(
        asset=key,
        name="primary_key_unique",
        blocking=True,
        description=f"No two rows share the primary key ({', '.join(spec.primary_key)}).",
    )
    def _unique(clickhouse: ClickHouseResource) -> dg.AssetCheckResult:
        pk = ", ".join(spec.primary_key)
        rows, keys = clickhouse.rows(f"SELECT count(), uniqExact({pk}) FROM {table}")[0]
        return dg.AssetCheckResult(
            passed=rows == keys,
            description=None if rows == keys else f"{table}: {rows - keys} duplicate row(s) on ({pk})",
            metadata={"rows": int(rows), "distinct_keys": int(keys)},
        )

    return [_count, _unique]


warehouse_assets = [warehouse_asset(s) for s in WAREHOUSE_TABLES]
warehouse_asset_checks = [c for s in WAREHOUSE_TABLES for c in warehouse_checks(s)]

defs = dg.Definitions(assets=warehouse_assets, asset_checks=warehouse_asset_checks)
