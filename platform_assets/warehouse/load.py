"""ClickHouse tables built from curated Parquet: ClickHouse pulls the objects itself with ``s3()``.

The table's columns must equal the catalog's (checked against the curated Parquet with ``DESCRIBE s3(...)``).
Each run upserts its change days: every row carries its version (``updated_at``) and delete marker into a
``ReplacingMergeTree``, so re-running a day changes nothing queries see (``FINAL``).

With a cluster (prod: 2 shards; locally chDB as one shard or two emulated ones) each table is a local table on every
shard (``<name>_local``) plus a Distributed table ``<name>`` sharded by the catalog's key; rows are inserted through
the Distributed table, so ClickHouse routes each row to its shard. Each load checks the local table's columns on
every shard (and repairs a shard that missed an ``ON CLUSTER`` change) and refuses a changed sharding key.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date

from platform_assets.catalog import AUDIT_COLUMN, DELETED_COLUMN, Model, Table, clickhouse_type
from platform_assets.partitions import span
from platform_assets.paths import curated_prefix
from platform_assets.warehouse.sharding import DATABASE, local_name
from resources.clickhouse import ClickHouseResource
from resources.object_store import ObjectStoreResource

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


def create_sql(table: str, columns: list[tuple[str, str]], engine_clause: str, on_cluster: str = "") -> str:
    cols = ",\n  ".join(f"`{n}` {t}" for n, t in columns)
    return f"CREATE TABLE {table}{on_cluster}\n(\n  {cols}\n)\nENGINE = {engine_clause}"


def distributed_sql(spec: Table | Model, cluster: str, local: str, table: str, on_cluster: str = "") -> str:
    """A Distributed table ``table`` (in the warehouse unless qualified) over ``local`` on every shard, rows placed
    by the catalog's sharding key."""
    qualified = table if "." in table else f"{DATABASE}.{table}"
    return (
        f"CREATE OR REPLACE TABLE {qualified}{on_cluster} AS {DATABASE}.{local} "
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
    """Create the table (per shard, plus its Distributed table) once; an existing one must match the catalog on
    every shard. A shard without the table, or without columns the catalog added, gets them (the ``ON CLUSTER``
    statements are idempotent, so re-issuing them repairs only the shards that missed them).

    Returns the table to insert into (the Distributed table with a cluster).
    """
    cluster, on_cluster = ch.cluster, ch.on_cluster()
    local = local_name(table, cluster)
    expected = table_columns(table)
    shards = ch.shard_columns(DATABASE, local)
    repairs = schema_repairs(local, expected, engine(table), shards, on_cluster)
    if repairs:
        for sql in [f"CREATE DATABASE IF NOT EXISTS {DATABASE}{on_cluster}", *repairs]:
            ch.command(sql)
        if cluster:  # the repair must have reached every shard before rows are routed there
            schema_repairs(local, expected, engine(table), ch.shard_columns(DATABASE, local), on_cluster, final=True)
    if cluster:
        ensure_distributed(ch, table, local, expected)
    return f"{DATABASE}.{table.name}"


def schema_repairs(
    local: str,
    expected: list[tuple[str, str]],
    engine_clause: str,
    shards: dict[int, list[tuple[str, str]]],
    on_cluster: str,
    final: bool = False,
) -> list[str]:
    """The statements that bring every shard's ``local`` table to the catalog's columns; raises, naming the shard,
    when a shard differs in a way no statement repairs (a column dropped, retyped or moved), or when ``final``
    (after the repair) and a shard still differs."""
    table = f"{DATABASE}.{local}"
    missing = [s for s, cols in shards.items() if not cols]
    behind: dict[int, list[tuple]] = {}
    for shard, existing in shards.items():
        if existing and existing != expected:
            added = added_columns(existing, expected)
            if added is None:
                diff = [f"{n} {t}" for n, t in expected if (n, t) not in existing] or [f"{n} {t}" for n, t in existing]
                raise WarehouseSchemaError(
                    f"table {table}{on_shard(shard, shards)}: columns differ from the catalog ({', '.join(diff)}); "
                    "drop it and backfill to rebuild"
                )
            behind[shard] = added
    if final and (missing or behind):
        where = ", ".join(f"shard {s}" for s in sorted([*missing, *behind]))
        raise WarehouseSchemaError(f"table {table} on {where}: still differs from the catalog after the repair")
    out = []
    if missing:  # first load, or a shard that missed the CREATE
        out.append(create_sql(table, expected, engine_clause, on_cluster).replace(
            "CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1
        ))  # fmt: skip
    if behind:  # rows loaded before get the type's default
        added = max(behind.values(), key=len)
        out += add_column_sql(table, added, on_cluster)
    return out


def on_shard(shard: int, shards: dict) -> str:
    return f" on shard {shard}" if len(shards) > 1 else ""


def ensure_distributed(ch: ClickHouseResource, table: Table, local: str, columns: list[tuple[str, str]]) -> None:
    """The Distributed table over ``local`` on every node, sharded by the catalog's key, with ``columns`` (re-created
    after the catalog added one). A table already sharded by another key is refused: its rows stay where the old
    key put them, so new versions of a key would land on another shard (``FINAL`` would show both, a delete would
    miss the old one)."""
    current = ch.distributed_target(DATABASE, table.name)
    if current and not same_expression(ch, current[1], table.shard_key):
        raise WarehouseSchemaError(
            f"table {DATABASE}.{table.name}: the catalog's shard_key is {table.shard_key}, the table is sharded by "
            f"{current[1]}; its rows stay on the shards {current[1]} chose. Keep {current[1]} in the catalog, or "
            f"drop {DATABASE}.{table.name} and {DATABASE}.{local} on every shard (ON CLUSTER) and backfill every day "
            "to move every row"
        )
    sql = distributed_sql(table, ch.cluster, local, table.name, ch.on_cluster())
    if current and ch.columns(DATABASE, table.name) == columns:  # as it should be: only where a node misses it
        sql = sql.replace("CREATE OR REPLACE TABLE", "CREATE TABLE IF NOT EXISTS", 1)
    ch.command(sql)


def same_expression(ch: ClickHouseResource, a: str, b: str) -> bool:
    """Two SQL expressions, as the engine formats them, are the same (spacing and quoting aside)."""
    return bool(
        ch.scalar(
            "SELECT formatQuerySingleLine('SELECT ' || {a:String}) = formatQuerySingleLine('SELECT ' || {b:String})",
            {"a": a, "b": b},
        )
    )


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
