"""Raw layer: each OLTP table's daily changes extracted to Parquet in the object store, exact types, bounded memory."""

import time

import dagster as dg

from platform_assets.catalog import AUDIT_COLUMN, TABLES, Table
from platform_assets.column_lineage import same_columns_lineage
from platform_assets.metadata import OWNERS, catalog_columns, code_version, column_schema, describe, node_tags, timing
from platform_assets.oltp.seed import SEED_TIMESTAMP
from platform_assets.partitions import CHANGE_DAYS, SINGLE_RUN, day_bounds, days_of, span
from platform_assets.paths import ROW_FILES, raw_prefix
from platform_assets.raw.extract import SchemaMismatchError, extract_days, rows_sql, schema_drift, tombstones_sql
from platform_assets.raw.landing import LandedFile, ingest, parse_landing_key
from platform_assets.retries import permanent, retried_if_transient
from resources.object_store import ObjectStoreResource
from resources.oltp_postgres import OltpPostgresResource
from resources.settings import data_dir

FIRST_DAY = SEED_TIMESTAMP.date()  # any fixed day: the SQL's shape is what versions the asset
SCHEMA_CHECK = "schema_matches_catalog"
COUNT_CHECK = "row_count_matches_oltp"


class RawConfig(dg.Config):
    """``landed_files``: keys under ``landing/`` to ingest instead of reading the OLTP (the landing sensor's runs)."""

    landed_files: list[str] = []


def _spec(table: Table) -> dict:
    key = dg.AssetKey(["raw", table.name])
    return {
        "key": key,
        "deps": [dg.AssetKey(["oltp", table.name])],
        "partitions_def": CHANGE_DAYS,
        "backfill_policy": SINGLE_RUN,
        "group_name": "raw",
        "kinds": {"postgres", "s3", "parquet"},
        "owners": OWNERS,
        "tags": node_tags("vps_1"),
        "code_version": code_version(table, rows_sql(table, FIRST_DAY), tombstones_sql(table, FIRST_DAY)),
        "description": describe(
            f"Daily changes of `{table.name}`: the rows whose `{table.cursor_column}` falls on the partition's day "
            f"(`raw/{table.name}/<day>/part-*`) and the keys deleted that day (`deleted-*`), as Parquet (zstd), "
            "streamed in bounded Arrow batches. Re-running a day replaces its objects.",
            table,
        ),
        "metadata": {"dagster/column_schema": column_schema(catalog_columns(table))},
        "check_specs": [
            dg.AssetCheckSpec(
                SCHEMA_CHECK,
                asset=key,
                blocking=True,
                description="The OLTP table has exactly the catalog's columns and types (drift stops the load).",
            ),
            dg.AssetCheckSpec(COUNT_CHECK, asset=key, description="Rows extracted per day equal the OLTP's rows."),
        ],
    }


def raw_asset(table: Table) -> dg.AssetsDefinition:
    @dg.asset(**_spec(table))
    @retried_if_transient
    def _raw(
        context: dg.AssetExecutionContext,
        config: RawConfig,
        oltp: OltpPostgresResource,
        object_store: ObjectStoreResource,
    ):
        if config.landed_files:  # a run for files dropped under landing/: ingest them instead of the OLTP
            files = [parse_landing_key(k) for k in config.landed_files]
            yield from ingest_landed(context, table, object_store, oltp, files)
        else:
            yield from extract_from_oltp(context, table, oltp, object_store)

    return _raw


def _schema_failure(table: Table, days, exc: SchemaMismatchError):
    """Record the failed check, then stop: nothing is written, what was loaded stays as it is."""
    yield dg.AssetCheckResult(
        check_name=SCHEMA_CHECK, passed=False, severity=dg.AssetCheckSeverity.ERROR, description=str(exc)
    )
    raise permanent(f"raw/{table.name} partition {span(days)}: {exc}") from None


def extract_from_oltp(
    context: dg.AssetExecutionContext, table: Table, oltp: OltpPostgresResource, object_store: ObjectStoreResource
):
    """The partition's days of ``table`` from the OLTP, after its schema is checked against the catalog; the row
    count check compares the OLTP's changed rows with what the objects hold."""
    days = days_of(context)
    run_days = span(days)
    drift = schema_drift(oltp, table)
    if drift:
        yield from _schema_failure(table, days, SchemaMismatchError("; ".join(drift)))
    try:
        result = extract_days(oltp, object_store, table, days, data_dir() / "duckdb_extensions")
    except SchemaMismatchError as exc:  # a value the catalog does not allow (a null, a retyped column)
        raise permanent(f"raw/{table.name}: {exc}") from None
    context.log.info(
        f"{table.name} {run_days}: {result.rows} rows, {result.deleted} deletes "
        f"in {len(result.files)} file(s), {result.seconds:.2f} s"
    )
    with oltp.connect() as conn:  # day by day: a range's days need not follow each other in the calendar
        count = f"SELECT count(*) FROM {table.name} WHERE {AUDIT_COLUMN} >= %s AND {AUDIT_COLUMN} < %s"
        source = sum(conn.execute(count, day_bounds(d)).fetchone()[0] for d in days)
    extracted = sum(object_store.parquet_rows(raw_prefix(table.name, d), ROW_FILES) for d in days)
    yield dg.MaterializeResult(
        metadata={
            **timing(result.rows, result.bytes, result.seconds),
            "deleted_keys": result.deleted,
            "days": len(days),
            "path": dg.MetadataValue.path(object_store.s3_uri(raw_prefix(table.name, days[0]))),
            "files": len(result.files),
            "dagster/column_schema": column_schema(catalog_columns(table)),
            "dagster/column_lineage": same_columns_lineage([c.name for c in table.all_columns], "oltp", table.name),
        },
        check_results=[
            dg.AssetCheckResult(check_name=SCHEMA_CHECK, passed=True),
            dg.AssetCheckResult(
                check_name=COUNT_CHECK,
                passed=source == extracted,
                severity=dg.AssetCheckSeverity.ERROR,
                description=None
                if source == extracted
                else f"{table.name} {run_days}: OLTP has {source} changed rows, raw has {extracted}",
                metadata={"oltp_rows": source, "raw_rows": extracted},
            ),
        ],
    )


def ingest_landed(
    context: dg.AssetExecutionContext,
    table: Table,
    store: ObjectStoreResource,
    oltp: OltpPostgresResource,
    files: list[LandedFile],
):
    """The landed files of ``table`` on the partition's days, checked against the catalog as they are read."""
    started = time.perf_counter()
    days = set(days_of(context))
    mine = [f for f in files if f.table.name == table.name and f.day in days]
    try:
        written = [ingest(store, oltp, f) for f in mine]
    except SchemaMismatchError as exc:
        yield from _schema_failure(table, sorted(days), exc)
    rows = sum(n for _, n in written)
    stored = sum(store.parquet_rows(key) for key, _ in written)
    context.log.info(f"{table.name}: ingested {len(mine)} landed file(s), {rows} rows")
    yield dg.MaterializeResult(
        metadata={
            **timing(rows, sum(store.prefix_bytes(k) for k, _ in written), time.perf_counter() - started),
            "landed_files": dg.MetadataValue.json([f.key for f in mine]),
        },
        check_results=[
            dg.AssetCheckResult(check_name=SCHEMA_CHECK, passed=True, description="landed files match the catalog"),
            dg.AssetCheckResult(
                check_name=COUNT_CHECK,
                passed=stored == rows,
                description=f"{rows} landed row(s) read, {stored} stored (landed data is not in the OLTP)",
                metadata={"landed_rows": rows, "raw_rows": stored},
            ),
        ],
    )


raw_assets = [raw_asset(t) for t in TABLES]

defs = dg.Definitions(assets=raw_assets)
