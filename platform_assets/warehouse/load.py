"""ClickHouse tables built from curated Parquet: ClickHouse pulls the objects itself with ``s3()``.

The table's columns must equal the catalog's (checked against the curated Parquet with ``DESCRIBE s3(...)``).
Each run upserts its change days: every row carries its version (``updated_at``) and delete marker into a
``ReplacingMergeTree``, so re-running a day changes nothing queries see (``FINAL``).

With a cluster (prod: 2 shards; locally: a one-shard cluster in chDB) each table is a local table on every shard
(``<name>_local``) plus a Distributed table ``<name>`` sharded by the catalog's key; rows are inserted through the
Distributed table, so ClickHouse routes each row to its shard.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date

from platform_assets.catalog import AUDIT_COLUMN, DELETED_COLUMN, Model, Table, clickhouse_type
from platform_assets.partitions import span
from platform_assets.paths import curated_prefix
from resources.clickhouse import ClickHouseResource
from resources.object_store import ObjectStoreResource

DATABASE = "warehouse"
PARQUET_READ = (
    "schema_inference_make_columns_nullable = 0, input_format_parquet_allow_missing_columns = 0, "
    "use_hive_partitioning = 0"
)


class WarehouseSchemaError(ValueError):
    pass


@dataclass
class LoadResult:
    table: str
    rows: int
    bytes: int
    columns: list[tuple[str, str]]
    seconds: float


def engine(spec: Table | Model) -> str:
    """Tables and models keep every version and delete marker; merges and ``FINAL`` keep the latest version per
    key and drop keys whose latest version is a delete."""
    return f"ReplacingMergeTree({AUDIT_COLUMN}, {DELETED_COLUMN}) ORDER BY ({', '.join(spec.sort_key)})"


def table_columns(table: Table) -> list[tuple[str, str]]:
    """The warehouse columns of a catalog table: the catalog's, plus the delete marker."""
    return [(c.name, clickhouse_type(c.type)) for c in table.all_columns] + [(DELETED_COLUMN, "UInt8")]


def local_name(spec: Table | Model, cluster: str | None) -> str:
    """The table that holds the rows: ``<name>_local`` on each shard with a cluster, else ``<name>`` itself."""
    return f"{spec.name}_local" if cluster else spec.name


def create_sql(table: str, columns: list[tuple[str, str]], engine_clause: str, on_cluster: str = "") -> str:
    cols = ",\n  ".join(f"`{n}` {t}" for n, t in columns)
    return f"CREATE TABLE {table}{on_cluster}\n(\n  {cols}\n)\nENGINE = {engine_clause}"


def distributed_sql(spec: Table | Model, cluster: str, local: str, table: str, on_cluster: str = "") -> str:
    """A Distributed table over ``local`` on every shard, rows placed by the catalog's sharding key."""
    return (
        f"CREATE OR REPLACE TABLE {DATABASE}.{table}{on_cluster} AS {DATABASE}.{local} "
        f"ENGINE = Distributed({cluster}, {DATABASE}, {local}, {spec.shard_key})"
    )


def check_schema(spec: Table, actual: list[tuple[str, str]], where: str = "") -> None:
    """Tables must arrive with exactly the catalog's ClickHouse types."""
    expected = [(c.name, clickhouse_type(c.type)) for c in spec.all_columns] + [(DELETED_COLUMN, "Int8")]
    got = dict(actual)
    for name, typ in expected:
        if name not in got:
            raise WarehouseSchemaError(f"table {spec.name}{where}, column {name}: missing in curated Parquet")
        if got[name] != typ:
            raise WarehouseSchemaError(f"table {spec.name}{where}, column {name}: expected {typ}, got {got[name]}")
    extra = [n for n, _ in actual if n not in dict(expected)]
    if extra:
        raise WarehouseSchemaError(f"table {spec.name}{where}: unexpected column(s) {extra} in curated Parquet")


def source_columns(ch: ClickHouseResource, spec: Table, src: str) -> list[tuple[str, str]]:
    try:
        rows = ch.rows(f"DESCRIBE TABLE {src} SETTINGS {PARQUET_READ}")
    except Exception as exc:
        raise WarehouseSchemaError(f"table {spec.name}: cannot read {curated_prefix(spec.name)}: {exc}") from None
    return [(r[0], r[1]) for r in rows]


def ensure_table(ch: ClickHouseResource, table: Table) -> str:
    """Create the table (per shard, plus its Distributed table) once; an existing one must match the catalog.

    Returns the table to insert into (the Distributed table with a cluster).
    """
    cluster, on_cluster = ch.cluster, ch.on_cluster()
    local = local_name(table, cluster)
    expected = table_columns(table)
    existing = ch.columns(DATABASE, local)
    if existing and existing != expected:
        added = added_columns(existing, expected)
        if added is None:
            diff = [f"{n} {t}" for n, t in expected if (n, t) not in existing] or [f"{n} {t}" for n, t in existing]
            raise WarehouseSchemaError(
                f"table {DATABASE}.{local}: columns differ from the catalog ({', '.join(diff)}); "
                "drop it and backfill to rebuild"
            )
        # rows loaded before get the type's default
        for sql in add_column_sql(f"{DATABASE}.{local}", added, on_cluster):
            ch.command(sql)
    ch.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}{on_cluster}")
    if not existing:
        ch.command(
            create_sql(f"{DATABASE}.{local}", expected, engine(table), on_cluster).replace(
                "CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1
            )
        )
    if cluster:
        ch.command(distributed_sql(table, cluster, local, table.name, on_cluster))
    return f"{DATABASE}.{table.name}"


def added_columns(existing: list[tuple[str, str]], expected: list[tuple[str, str]]) -> list[tuple] | None:
    """The columns the catalog added to an existing table, each with the column it follows; None if the table
    differs otherwise (a column dropped, retyped or moved: that needs a rebuild)."""
    if [c for c in expected if c in existing] != existing:
        return None
    out, previous = [], None
    for column in expected:
        if column not in existing:
            out.append((*column, previous))
        previous = column[0]
    return out


def add_column_sql(table: str, added: list[tuple], on_cluster: str = "") -> list[str]:
    return [
        f"ALTER TABLE {table}{on_cluster} ADD COLUMN IF NOT EXISTS `{n}` {t} AFTER `{after}`" for n, t, after in added
    ]


def days_source(store: ObjectStoreResource, table: Table, days: list[date]) -> tuple[str | None, list[date]]:
    """``s3()`` over the curated objects of the days that have any, and those days (None if no day has)."""
    present = [
        d for d in days if any(k.endswith(".parquet") for k, _ in store.list_keys(curated_prefix(table.name, d)))
    ]
    if not present:
        return None, []
    glob = curated_prefix(table.name) + "change_date={" + ",".join(str(d) for d in present) + "}/*.parquet"
    return store.clickhouse_s3(glob), present


def null_keys(ch: ClickHouseResource, src: str, table: Table) -> dict[str, int]:
    """Null primary-key values per column in curated Parquet (read as nullable; a null key cannot be upserted)."""
    counts = ", ".join(f"countIf(isNull(`{k}`))" for k in table.primary_key)
    row = ch.rows(
        f"SELECT {counts} FROM {src} SETTINGS schema_inference_make_columns_nullable = 1, use_hive_partitioning = 0"
    )[0]
    return {k: int(n) for k, n in zip(table.primary_key, row, strict=True) if n}


def load_days(
    ch: ClickHouseResource,
    store: ObjectStoreResource,
    table: Table,
    days: list[date],
    source: tuple[str | None, list[date]] | None = None,
) -> LoadResult:
    """Upsert the curated changes of ``days`` into the table: one ``INSERT … SELECT FROM s3()`` for all of them
    (``source``: :func:`days_source` of those days, when the caller has it already).

    Every row carries its version (``updated_at``) and delete marker, so inserting a day again adds nothing a query
    can see: ``FINAL`` (and background merges) keep one row per key, the latest, and drop deleted keys.
    """
    started = time.perf_counter()
    target = ensure_table(ch, table)
    src, present = source or days_source(store, table, days)
    rows = 0
    if src:
        check_schema(table, source_columns(ch, table, src), f", partition {span(present)}")
        cols = ", ".join(f"`{n}`" for n, _ in table_columns(table))
        select = ", ".join(f"`{c.name}`" for c in table.all_columns) + f", toUInt8(`{DELETED_COLUMN}`)"
        settings = f"{PARQUET_READ}, distributed_foreground_insert = 1"
        rows = int(ch.scalar(f"SELECT count() FROM {src} SETTINGS {PARQUET_READ}"))
        ch.command(f"INSERT INTO {target} ({cols}) SELECT {select} FROM {src} SETTINGS {settings}")
    stats = ch.table_stats(DATABASE, local_name(table, ch.cluster))
    return LoadResult(target, rows, stats[1], ch.columns(DATABASE, table.name), time.perf_counter() - started)
