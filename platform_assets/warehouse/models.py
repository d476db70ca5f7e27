"""Conformed models, maintained by ClickHouse from the warehouse tables' current state.

A model is a join of catalog tables (``fct_lineitem`` = lineitem ⋈ orders, ``dim_customer`` = customer ⋈ nation ⋈
region). Rebuilding it whole on every change costs the size of the tables; instead each run applies only the keys
its inputs changed:

1. the **affected grain keys** (``l_orderkey`` for ``fct_lineitem``, ``c_custkey`` for ``dim_customer``) come from
   the inputs' curated change days the run covers (``s3()`` over ``curated/<t>/change_date=<day>/``), each with the
   latest change time seen for it;
2. the model's rows of those keys are computed again from the inputs' current state (``FINAL``), read through the
   tables' primary-key index (``ORDER BY l_orderkey`` / ``c_custkey``), and inserted with version
   ``greatest(<inputs' updated_at>)``;
3. rows of those keys that no longer exist (a line or its order deleted) get a delete marker whose version is at
   least the deletion's.

The model table is a ``ReplacingMergeTree(updated_at, is_deleted)`` like the tables, so applying the same changes
again adds nothing a query can see, and the order in which days are applied does not matter: every application
writes the current state of its keys. A first build (or ``full_refresh``, or changes touching most keys) builds a
fresh table from the whole join and swaps it in atomically: on a cluster, the model's other generation of local
tables is filled on every shard and the Distributed table is switched to it in one statement (see ``sharding.py``).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import date

from platform_assets.catalog import AUDIT_COLUMN, DELETED_COLUMN, MODELS, TABLES_BY_NAME, Model, clickhouse_type
from platform_assets.warehouse.load import (
    PARQUET_READ,
    LoadResult,
    create_sql,
    days_source,
    distributed_sql,
    engine,
    same_expression,
)
from platform_assets.warehouse.sharding import DATABASE, SCRATCH, generations, local_name
from resources.clickhouse import ClickHouseResource
from resources.object_store import ObjectStoreResource

CONSISTENT = "matches_full_rebuild"  # the check that compares a model with a rebuild from its inputs (whole tables)
# `final = 1`: every input is read as its current state (latest version per key, deleted keys gone). On a cluster,
# a subquery or join over a Distributed table or a scratch table is written GLOBAL (evaluated once, shipped to the
# shards); the default `distributed_product_mode = 'deny'` refuses one that is not.
READ_CURRENT = "final = 1"
# Changes touching at least this share of a model's rows rebuild it whole instead (a full load, a large backfill).
REBUILD_SHARE = 0.5


@dataclass(frozen=True)
class ModelSql:
    """How one model is computed: its columns, the join, and which grain keys each input's changes affect."""

    model: Model
    grain: str  # model column whose keys are rebuilt together (all lines of an order; one customer)
    grain_table: str  # the input table with one row per grain key
    columns: tuple[tuple[str, str], ...]  # output columns and ClickHouse types (version column included)
    select: str  # SELECT of the live rows, in column order; ``{keys}`` filters each input to affected grain keys
    affected: dict[str, str]  # input table -> SELECT key, changed_at over that input's changes ``{changes}``

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def table_columns(self) -> list[tuple[str, str]]:
        return [*self.columns, (DELETED_COLUMN, "UInt8")]

    def live(self, keys: str | None) -> str:
        """The model's live rows; only those of grain keys in table ``keys`` when given, else all of them."""
        return self.select.format(keys=f"GLOBAL IN (SELECT key FROM {keys})" if keys else "IS NOT NULL")


def _typed(table: str, *names: str) -> list[tuple[str, str]]:
    t = TABLES_BY_NAME[table]
    return [(n, clickhouse_type(t.column(n).type)) for n in names]


def _fct_lineitem() -> ModelSql:
    lineitem = [c.name for c in TABLES_BY_NAME["lineitem"].all_columns]
    order_cols = ("o_custkey", "o_orderdate", "o_orderstatus", "o_orderpriority", "o_shippriority")
    line_select = ", ".join(
        f"greatest(l.{AUDIT_COLUMN}, o.{AUDIT_COLUMN}) AS {AUDIT_COLUMN}" if c == AUDIT_COLUMN else f"l.{c} AS {c}"
        for c in lineitem
    )
    return ModelSql(
        model=next(m for m in MODELS if m.name == "fct_lineitem"),
        grain="l_orderkey",
        grain_table="orders",
        columns=(
            *_typed("lineitem", *lineitem),
            *_typed("orders", *order_cols),
            ("l_net_revenue", "Decimal(18, 4)"),
        ),
        select=f"""
SELECT {line_select}, {", ".join(f"o.{c} AS {c}" for c in order_cols)},
       CAST(l.l_extendedprice * (1 - l.l_discount) AS Decimal(18, 4)) AS l_net_revenue
FROM (SELECT * FROM {DATABASE}.lineitem WHERE is_deleted = 0 AND l_orderkey {{keys}}) AS l
INNER JOIN (
    SELECT o_orderkey, {", ".join(order_cols)}, {AUDIT_COLUMN} FROM {DATABASE}.orders
    WHERE is_deleted = 0 AND o_orderkey {{keys}}
) AS o ON l.l_orderkey = o.o_orderkey""",
        affected={
            "lineitem": f"SELECT l_orderkey AS key, {AUDIT_COLUMN} AS changed_at FROM {{changes}}",
            "orders": f"SELECT o_orderkey AS key, {AUDIT_COLUMN} AS changed_at FROM {{changes}}",
        },
    )


def _dim_customer() -> ModelSql:
    customer = [c.name for c in TABLES_BY_NAME["customer"].all_columns]
    cust_select = ", ".join(
        f"greatest(c.{AUDIT_COLUMN}, n.{AUDIT_COLUMN}, r.{AUDIT_COLUMN}) AS {AUDIT_COLUMN}"
        if col == AUDIT_COLUMN
        else f"c.{col} AS {col}"
        for col in customer
    )
    # a customer whose nation (or region) is missing keeps its row, with empty names (left joins)
    return ModelSql(
        model=next(m for m in MODELS if m.name == "dim_customer"),
        grain="c_custkey",
        grain_table="customer",
        columns=(*_typed("customer", *customer), *_typed("nation", "n_name"), *_typed("region", "r_name")),
        select=f"""
SELECT {cust_select}, n.n_name AS n_name, r.r_name AS r_name
FROM (SELECT * FROM {DATABASE}.customer WHERE is_deleted = 0 AND c_custkey {{keys}}) AS c
LEFT JOIN (SELECT * FROM {DATABASE}.nation WHERE is_deleted = 0) AS n ON c.c_nationkey = n.n_nationkey
LEFT JOIN (SELECT * FROM {DATABASE}.region WHERE is_deleted = 0) AS r ON n.n_regionkey = r.r_regionkey""",
        affected={
            "customer": f"SELECT c_custkey AS key, {AUDIT_COLUMN} AS changed_at FROM {{changes}}",
            # a nation or region renamed changes every customer in it
            "nation": f"SELECT c.c_custkey AS key, n.{AUDIT_COLUMN} AS changed_at FROM {DATABASE}.customer AS c "
            "INNER JOIN {changes} AS n ON c.c_nationkey = n.n_nationkey",
            "region": f"SELECT c.c_custkey AS key, r.{AUDIT_COLUMN} AS changed_at FROM {DATABASE}.customer AS c "
            f"GLOBAL INNER JOIN {DATABASE}.nation AS n ON c.c_nationkey = n.n_nationkey "
            "INNER JOIN {changes} AS r ON n.n_regionkey = r.r_regionkey",
        },
    )


MODEL_SQL: dict[str, ModelSql] = {m.name: m for m in (_fct_lineitem(), _dim_customer())}
if set(MODEL_SQL) != {m.name for m in MODELS}:
    raise RuntimeError("every catalog model needs its SQL in platform_assets/warehouse/models.py")


@dataclass
class ModelResult(LoadResult):
    mode: str = "incremental"  # or "rebuild"
    keys: int = 0  # affected grain keys
    deleted: int = 0  # delete markers written
    scope: str = ""  # SQL condition selecting the model rows this run wrote ("" = all)


def rebuild(ch: ClickHouseResource, spec: ModelSql) -> ModelResult:
    """The whole model from the inputs' current state, swapped in atomically (on a cluster: for every shard at once)."""
    started = time.perf_counter()
    if ch.cluster:
        local = rebuild_generation(ch, spec)
    else:
        local = spec.name
        with ch.replacing(DATABASE, local) as staging:
            ch.command(create_sql(staging, spec.table_columns, engine(spec.model)))
            ch.command(f"INSERT INTO {staging} {insert_live(spec)}")
    rows, size = ch.table_stats(DATABASE, local)
    seconds = time.perf_counter() - started
    return ModelResult(f"{DATABASE}.{spec.name}", rows, size, ch.columns(DATABASE, spec.name), seconds, mode="rebuild")


def insert_live(spec: ModelSql) -> str:
    cols = ", ".join(f"`{n}`" for n, _ in spec.table_columns)
    return f"({cols}) SELECT *, 0 FROM ({spec.live(None)}) SETTINGS {READ_CURRENT}, distributed_foreground_insert = 1"


def rebuild_generation(ch: ClickHouseResource, spec: ModelSql) -> str:
    """Fill the model's generation the Distributed table does not read, on every shard; then switch the Distributed
    table to it (one statement per node: its readers see the old model or the new one, whole, on every shard); then
    drop the old generation. Returns the new generation's local table.

    A failure before the switch leaves readers on the old generation; the next rebuild drops what was left.
    """
    cluster, on_cluster = ch.cluster, ch.on_cluster()
    current = ch.distributed_target(DATABASE, spec.name)
    active = current[0] if current else None
    fresh = next(g for g in generations(spec.model) if g != active)
    ch.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}{on_cluster}")
    ch.command(f"DROP TABLE IF EXISTS {DATABASE}.{fresh}{on_cluster} SYNC")
    ch.command(create_sql(f"{DATABASE}.{fresh}", spec.table_columns, engine(spec.model), on_cluster))
    # rows reach their shard's fresh table through a Distributed table on this node only
    loader = f"{SCRATCH}.`{spec.name}__rebuild_{uuid.uuid4().hex[:8]}`"
    ch.command(f"CREATE DATABASE IF NOT EXISTS {SCRATCH}")
    ch.command(distributed_sql(spec.model, cluster, fresh, loader))
    try:
        ch.command(f"INSERT INTO {loader} {insert_live(spec)}")
    finally:
        ch.command(f"DROP TABLE IF EXISTS {loader} SYNC")
    ch.command(distributed_sql(spec.model, cluster, fresh, spec.name, on_cluster))  # the switch
    switched = ch.distributed_target(DATABASE, spec.name)
    if not switched or switched[0] != fresh:
        raise RuntimeError(f"{DATABASE}.{spec.name} still reads {switched} after the switch to {fresh}")
    if active:
        ch.command(f"DROP TABLE IF EXISTS {DATABASE}.{active}{on_cluster} SYNC")
    return fresh


def model_target(ch: ClickHouseResource, spec: ModelSql) -> tuple[str, str] | None:
    """(local table holding the model's rows, the shard key they were placed by) — on a cluster the generation its
    Distributed table reads; None before the first build."""
    if not ch.cluster:
        return (spec.name, spec.model.shard_key) if ch.columns(DATABASE, spec.name) else None
    return ch.distributed_target(DATABASE, spec.name)


def model_local(ch: ClickHouseResource, spec: ModelSql) -> str | None:
    target = model_target(ch, spec)
    return target[0] if target else None


def affected_sql(ch: ClickHouseResource, store: ObjectStoreResource, spec: ModelSql, days: dict[str, list[date]]):
    """SELECT key, changed_at over every input's curated changes of its ``days`` (None if there are none)."""
    parts = []
    for table, sql in spec.affected.items():
        src, _ = days_source(store, TABLES_BY_NAME[table], days.get(table, []))
        if src:
            parts.append(sql.format(changes=src))
    if not parts:
        return None
    return f"SELECT key, max(changed_at) AS changed_at FROM ({' UNION ALL '.join(parts)}) GROUP BY key"


def apply_changes(
    ch: ClickHouseResource, store: ObjectStoreResource, spec: ModelSql, days: dict[str, list[date]]
) -> ModelResult:
    """Bring the model's rows of every grain key its inputs changed on ``days`` (per input) to their current state."""
    started = time.perf_counter()
    target = f"{DATABASE}.{spec.name}"
    current = model_target(ch, spec)
    # first build, or the catalog's shard key changed (a rebuild moves every row)
    if current is None or (ch.cluster and not same_expression(ch, current[1], spec.model.shard_key)):
        return rebuild(ch, spec)
    local = current[0]
    select = affected_sql(ch, store, spec, days)
    if select is None:
        _, size = ch.table_stats(DATABASE, local)
        return ModelResult(target, 0, size, ch.columns(DATABASE, spec.name), time.perf_counter() - started, scope="0")
    changed = f"{SCRATCH}.`{spec.name}__changes_{uuid.uuid4().hex[:8]}`"  # this run's keys, on the node running it
    ch.command(f"CREATE DATABASE IF NOT EXISTS {SCRATCH}")
    ch.command(f"CREATE TABLE {changed} ENGINE = Memory AS {select} SETTINGS {PARQUET_READ}, {READ_CURRENT}")
    try:
        keys = int(ch.scalar(f"SELECT count() FROM {changed}"))
        # grain keys in the warehouse (row versions, from table metadata: no scan)
        grains, _ = ch.table_stats(DATABASE, local_name(TABLES_BY_NAME[spec.grain_table], ch.cluster))
        if keys and keys >= REBUILD_SHARE * grains:
            result = rebuild(ch, spec)
            result.keys = keys
            return result
        written, deleted = upsert_keys(ch, spec, changed)
    finally:
        ch.command(f"DROP TABLE IF EXISTS {changed} SYNC")
    _, size = ch.table_stats(DATABASE, local)
    return ModelResult(
        target, written, size, ch.columns(DATABASE, spec.name), time.perf_counter() - started, keys=keys,
        deleted=deleted, scope=f"{spec.grain} GLOBAL IN (SELECT key FROM ({select}))",
    )  # fmt: skip


def upsert_keys(ch: ClickHouseResource, spec: ModelSql, changed: str) -> tuple[int, int]:
    """Upsert the current rows of the grain keys in table ``changed`` (key, changed_at); mark vanished rows deleted.

    Returns (rows written, of which delete markers).
    """
    target = f"{DATABASE}.{spec.name}"
    cols = ", ".join(f"`{n}`" for n, _ in spec.table_columns)
    settings = f"SETTINGS {READ_CURRENT}, distributed_foreground_insert = 1"
    live = spec.live(changed)
    upserted = int(ch.scalar(f"SELECT count() FROM ({live}) SETTINGS {READ_CURRENT}"))
    ch.command(f"INSERT INTO {target} ({cols}) SELECT *, 0 FROM ({live}) {settings}")
    # rows of the affected keys that are gone: a delete marker, versioned at the latest change of their key
    pk = ", ".join(spec.model.primary_key)
    gone = ", ".join(
        f"greatest(f.{AUDIT_COLUMN}, c.changed_at)" if n == AUDIT_COLUMN else f"f.{n}" for n, _ in spec.columns
    )
    markers = (
        f"SELECT {gone}, 1 FROM {target} AS f GLOBAL INNER JOIN {changed} AS c ON f.{spec.grain} = c.key "
        f"WHERE f.{DELETED_COLUMN} = 0 AND f.{spec.grain} GLOBAL IN (SELECT key FROM {changed}) "
        f"AND ({', '.join(f'f.{k}' for k in spec.model.primary_key)}) "
        f"GLOBAL NOT IN (SELECT {pk} FROM ({live}))"
    )
    deleted = int(ch.scalar(f"SELECT count() FROM ({markers}) SETTINGS {READ_CURRENT}"))
    if deleted:
        ch.command(f"INSERT INTO {target} ({cols}) {markers} {settings}")
    return upserted + deleted, deleted


def fingerprint(ch: ClickHouseResource, sql: str, spec: ModelSql) -> tuple[int, int]:
    """(rows, order-independent hash of every column) of ``sql``'s live model rows."""
    cols = ", ".join(n for n, _ in spec.columns)
    row = ch.rows(f"SELECT count(), sum(cityHash64({cols})) FROM ({sql}) SETTINGS {READ_CURRENT}")[0]
    return int(row[0]), int(row[1])


def stored_fingerprint(ch: ClickHouseResource, spec: ModelSql) -> tuple[int, int]:
    return fingerprint(ch, f"SELECT * FROM {DATABASE}.{spec.name} WHERE {DELETED_COLUMN} = 0", spec)
