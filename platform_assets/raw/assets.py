"""Raw layer: each OLTP table extracted to Parquet in the object store, exact types, bounded memory."""

import dagster as dg

from platform_assets.catalog import TABLES, Table
from platform_assets.metadata import OWNERS, catalog_columns, column_schema, describe, node_tags, timing
from platform_assets.paths import raw_prefix
from platform_assets.raw.extract import extract_table
from resources.object_store import ObjectStoreResource
from resources.oltp_postgres import OltpPostgresResource
from resources.settings import data_dir


def raw_asset(table: Table) -> dg.AssetsDefinition:
    @dg.asset(
        name=table.name,
        key_prefix="raw",
        deps=[dg.AssetKey(["oltp", table.name])],
        group_name="raw",
        kinds={"postgres", "s3", "parquet"},
        owners=OWNERS,
        tags=node_tags("vps_1"),
        code_version="1",
        description=describe(
            f"`{table.name}` copied from the OLTP database to `raw/{table.name}/` as Parquet (zstd), "
            "streamed in bounded Arrow batches; decimals stay decimal128.",
            table,
        ),
        metadata={"dagster/column_schema": column_schema(catalog_columns(table))},
    )
    def _raw(
        context: dg.AssetExecutionContext, oltp: OltpPostgresResource, object_store: ObjectStoreResource
    ) -> dg.MaterializeResult:
        result = extract_table(oltp, object_store, table, data_dir() / "duckdb_extensions")
        context.log.info(f"{table.name}: {result.rows} rows in {len(result.files)} file(s), {result.seconds:.2f} s")
        return dg.MaterializeResult(
            metadata={
                **timing(result.rows, result.bytes, result.seconds),
                "path": dg.MetadataValue.path(object_store.s3_uri(raw_prefix(table.name))),
                "files": len(result.files),
                "dagster/column_schema": column_schema(catalog_columns(table)),
            }
        )

    return _raw


def raw_row_count_check(table: Table) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(["raw", table.name]),
        name="row_count_matches_oltp",
        description=f"Rows in raw/{table.name} equal rows in the OLTP table.",
    )
    def _check(oltp: OltpPostgresResource, object_store: ObjectStoreResource) -> dg.AssetCheckResult:
        with oltp.connect() as conn:
            source = conn.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0]
        raw = object_store.parquet_rows(raw_prefix(table.name))
        return dg.AssetCheckResult(
            passed=source == raw,
            severity=dg.AssetCheckSeverity.ERROR,
            description=None if source == raw else f"{table.name}: OLTP has {source} rows, raw has {raw}",
            metadata={"oltp_rows": source, "raw_rows": raw},
        )

    return _check


raw_assets = [raw_asset(t) for t in TABLES]
raw_checks = [raw_row_count_check(t) for t in TABLES]

defs = dg.Definitions(assets=raw_assets, asset_checks=raw_checks)
