"""ClickHouse tables built from curated Parquet: ClickHouse pulls the objects itself with ``s3()``.

A load builds a staging table, fills it with ``INSERT … SELECT FROM s3(...)``, checks its schema and
swaps it in atomically with ``EXCHANGE TABLES``: re-materializing gives the same table, never duplicates,
and a failed load leaves the previous table untouched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from platform_assets.catalog import AUDIT_COLUMN, Model, Table, clickhouse_type
from platform_assets.paths import curated_prefix
from resources.clickhouse import ClickHouseResource
from resources.object_store import ObjectStoreResource

DATABASE = "warehouse"
INFER = "schema_inference_make_columns_nullable = 0, input_format_parquet_allow_missing_columns = 0"


class WarehouseSchemaError(ValueError):
    pass


@dataclass
class LoadResult:
    table: str
    rows: int
    bytes: int
    columns: list[tuple[str, str]]
    seconds: float


def source(store: ObjectStoreResource, name: str) -> str:
    return store.clickhouse_s3(curated_prefix(name) + "*.parquet")


def engine(spec: Table | Model) -> str:
    return f"ReplacingMergeTree({AUDIT_COLUMN}) ORDER BY ({', '.join(spec.sort_key)})"


def check_schema(spec: Table | Model, actual: list[tuple[str, str]]) -> None:
    """Base tables must arrive with exactly the catalog's ClickHouse types (models are Spark-defined)."""
    if not isinstance(spec, Table):
        return
    expected = [(c.name, clickhouse_type(c.type)) for c in spec.all_columns]
    got = dict(actual)
    for name, typ in expected:
        if name not in got:
            raise WarehouseSchemaError(f"table {spec.name}, column {name}: missing in curated Parquet")
        if got[name] != typ:
            raise WarehouseSchemaError(f"table {spec.name}, column {name}: expected {typ}, got {got[name]}")
    extra = [n for n, _ in actual if n not in dict(expected)]
    if extra:
        raise WarehouseSchemaError(f"table {spec.name}: unexpected column(s) {extra} in curated Parquet")


def load_table(ch: ClickHouseResource, store: ObjectStoreResource, spec: Table | Model) -> LoadResult:
    started = time.perf_counter()
    src = source(store, spec.name)
    with ch.replacing(DATABASE, spec.name) as staging:
        ch.command(f"CREATE TABLE {staging} ENGINE = {engine(spec)} EMPTY AS SELECT * FROM {src} SETTINGS {INFER}")
        check_schema(spec, ch.columns(DATABASE, staging.split(".", 1)[1]))
        ch.command(f"INSERT INTO {staging} SELECT * FROM {src} SETTINGS {INFER}")
    rows, size = ch.table_stats(DATABASE, spec.name)
    return LoadResult(
        f"{DATABASE}.{spec.name}", rows, size, ch.columns(DATABASE, spec.name), time.perf_counter() - started
    )
