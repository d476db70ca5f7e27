"""References for the load (curated Parquet -> ClickHouse tables -> conformed models) and the marts, on a local
copy of the same Parquet.

Each runs in its own chDB engine folder (one engine path per process), never the pipeline's:
* load limit: the warehouse's own table definitions (``ReplacingMergeTree`` with version and delete marker)
  filled by ``INSERT … SELECT FROM file('<local>/…/*.parquet')``, the engine reading local disk, then the models
  built by the warehouse's own model SQL (``models.rebuild``'s join) over those tables;
* load naive: ``pandas.read_parquet`` then clickhouse-connect ``insert_df`` into the same tables, the models joined
  in pandas (current state per key, ``merge``) and inserted the same way;
* marts limit: the marts' own SQL and settings (``final = 1``: one row per key, deletes dropped, as the marts read
  the warehouse) over those local tables, with no Distributed table and no Dagster.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from platform_assets.catalog import AUDIT_COLUMN, DELETED_COLUMN, MODELS, TABLES
from platform_assets.warehouse.load import DATABASE, PARQUET_READ, create_sql, engine, table_columns
from platform_assets.warehouse.models import MODEL_SQL, READ_CURRENT


def _client(engine_dir: Path):
    import clickhouse_connect

    return clickhouse_connect.get_client(dsn=f"chdb://{engine_dir}")


def _source(mirror: Path, name: str) -> str:
    """Every change day of a catalog table (Hive folders)."""
    return f"file('{mirror / 'curated' / name}/change_date=*/*.parquet', Parquet)"


def _create(client) -> None:
    """The warehouse's own DDL for every table and model."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    for spec in TABLES:
        client.command(f"DROP TABLE IF EXISTS {DATABASE}.{spec.name} SYNC")
        client.command(create_sql(f"{DATABASE}.{spec.name}", table_columns(spec), engine(spec)))
    for m in MODELS:
        client.command(f"DROP TABLE IF EXISTS {DATABASE}.{m.name} SYNC")
        client.command(create_sql(f"{DATABASE}.{m.name}", MODEL_SQL[m.name].table_columns, engine(m)))


def _stats(client, database: str = DATABASE) -> tuple[int, int]:
    rows, nbytes = client.query(
        f"SELECT sum(total_rows), sum(total_bytes) FROM system.tables WHERE database = '{database}'"
    ).result_rows[0]
    return int(rows or 0), int(nbytes or 0)


def load_limit(mirror: Path, engine_dir: Path) -> dict[str, Any]:
    client = _client(engine_dir)
    started = time.perf_counter()
    _create(client)
    for t in TABLES:
        cols = ", ".join(f"`{c.name}`" for c in t.all_columns) + f", toUInt8(`{DELETED_COLUMN}`)"
        client.command(
            f"INSERT INTO {DATABASE}.{t.name} SELECT {cols} FROM {_source(mirror, t.name)} SETTINGS {PARQUET_READ}"
        )
    for m in MODELS:
        spec = MODEL_SQL[m.name]
        client.command(f"INSERT INTO {DATABASE}.{m.name} SELECT *, 0 FROM ({spec.live(None)}) SETTINGS {READ_CURRENT}")
    seconds = time.perf_counter() - started
    rows, nbytes = _stats(client)
    return {"seconds": seconds, "rows": rows, "bytes": nbytes}


def _naive_models(frames: dict) -> dict:
    """The two models in pandas from the loaded tables' frames: current state per key, then ``merge``."""

    def current(name: str):
        table = next(t for t in TABLES if t.name == name)
        df = frames[name].sort_values([*table.primary_key, AUDIT_COLUMN, DELETED_COLUMN])
        df = df.drop_duplicates(subset=list(table.primary_key), keep="last")
        return df[df[DELETED_COLUMN] == 0]

    orders = current("orders")[
        ["o_orderkey", "o_custkey", "o_orderdate", "o_orderstatus", "o_orderpriority", "o_shippriority", AUDIT_COLUMN]
    ].rename(columns={AUDIT_COLUMN: "_o"})
    fct = current("lineitem").merge(orders, left_on="l_orderkey", right_on="o_orderkey").drop(columns="o_orderkey")
    fct["l_net_revenue"] = fct["l_extendedprice"] * (1 - fct["l_discount"])
    fct[AUDIT_COLUMN] = fct[[AUDIT_COLUMN, "_o"]].max(axis=1)
    nation = current("nation")[["n_nationkey", "n_name", "n_regionkey", AUDIT_COLUMN]]
    nation = nation.rename(columns={AUDIT_COLUMN: "_n"})
    region = current("region")[["r_regionkey", "r_name", AUDIT_COLUMN]].rename(columns={AUDIT_COLUMN: "_r"})
    dim = current("customer").merge(nation, left_on="c_nationkey", right_on="n_nationkey", how="left")
    dim = dim.merge(region, left_on="n_regionkey", right_on="r_regionkey", how="left")
    dim[AUDIT_COLUMN] = dim[[AUDIT_COLUMN, "_n", "_r"]].max(axis=1)
    out = {}
    for name, df in (("fct_lineitem", fct), ("dim_customer", dim)):
        out[name] = df[[c for c, _ in MODEL_SQL[name].table_columns]]
    return out


def load_naive(mirror: Path, engine_dir: Path) -> dict[str, Any]:
    import pandas as pd

    client = _client(engine_dir)
    _create(client)  # the tables themselves are not what is measured
    started = time.perf_counter()
    frames = {}
    for t in TABLES:
        df = pd.read_parquet(mirror / "curated" / t.name)
        # the Hive folder name comes back as a column; the table wants UInt8
        df = df.drop(columns="change_date")
        df[DELETED_COLUMN] = df[DELETED_COLUMN].astype("uint8")
        client.insert_df(f"{DATABASE}.{t.name}", df)
        if t.name in {d for m in MODELS for d in m.depends_on}:
            frames[t.name] = df
        del df
    for name, df in _naive_models(frames).items():
        client.insert_df(f"{DATABASE}.{name}", df.assign(**{DELETED_COLUMN: 0}).astype({DELETED_COLUMN: "uint8"}))
    seconds = time.perf_counter() - started
    rows, nbytes = _stats(client)
    return {"seconds": seconds, "rows": rows, "bytes": nbytes}


def marts_limit(engine_dir: Path, final: bool = True) -> dict[str, Any]:
    """Run after ``load_limit`` on the same engine folder. ``final=False`` is the old, unfair reference (it read
    unmerged parts: every version of a key, deletes included), kept to measure what ``FINAL`` costs."""
    from platform_assets.marts.queries import MART_SETTINGS, MARTS

    settings = MART_SETTINGS if final else MART_SETTINGS.replace("final = 1", "final = 0")
    client = _client(engine_dir)
    started = time.perf_counter()
    client.command("CREATE DATABASE IF NOT EXISTS marts")
    for mart in MARTS:
        client.command(f"DROP TABLE IF EXISTS marts.{mart.name} SYNC")
        client.command(
            f"CREATE TABLE marts.{mart.name} ENGINE = MergeTree ORDER BY tuple() AS {mart.sql} SETTINGS {settings}"
        )
    seconds = time.perf_counter() - started
    rows, nbytes = _stats(client, "marts")
    return {"seconds": seconds, "rows": rows, "bytes": nbytes, "final": final}
