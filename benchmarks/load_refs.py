"""References for the load (curated Parquet -> ClickHouse) and the marts, on a local copy of the same Parquet.

Each runs in its own chDB engine folder (one engine path per process), never the pipeline's:
* load limit: the warehouse's own table definitions (``ReplacingMergeTree`` with version and delete marker for
  the catalog tables) filled by ``INSERT … SELECT FROM file('<local>/…/*.parquet')``, the engine reading local disk;
* load naive: ``pandas.read_parquet`` then clickhouse-connect ``insert_df`` into the same tables;
* marts limit: the marts' own SQL and settings (``final = 1``: one row per key, deletes dropped, as the marts read
  the warehouse) over those local tables, with no Distributed table and no Dagster.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from platform_assets.catalog import DELETED_COLUMN, WAREHOUSE_TABLES, Table
from platform_assets.warehouse.load import DATABASE, INFER, create_sql, engine, table_columns


def _client(engine_dir: Path):
    import clickhouse_connect

    return clickhouse_connect.get_client(dsn=f"chdb://{engine_dir}")


def _source(mirror: Path, spec) -> str:
    """Every change day of a catalog table (Hive folders), or a model's files."""
    days = "change_date=*/" if isinstance(spec, Table) else ""
    return f"file('{mirror / 'curated' / spec.name}/{days}*.parquet', Parquet)"


def _create(client, mirror: Path, spec) -> None:
    client.command(f"DROP TABLE IF EXISTS {DATABASE}.{spec.name} SYNC")
    if isinstance(spec, Table):  # the warehouse's own DDL for a catalog table
        client.command(create_sql(f"{DATABASE}.{spec.name}", table_columns(spec), engine(spec)))
    else:  # models: columns from the Parquet, as load_table does
        client.command(
            f"CREATE TABLE {DATABASE}.{spec.name} ENGINE = {engine(spec)} "
            f"EMPTY AS SELECT * FROM {_source(mirror, spec)} SETTINGS {INFER}"
        )


def _insert_select(spec) -> str:
    if not isinstance(spec, Table):
        return "*"
    return ", ".join(f"`{c.name}`" for c in spec.all_columns) + f", toUInt8(`{DELETED_COLUMN}`)"


def _stats(client, database: str = DATABASE) -> tuple[int, int]:
    rows, nbytes = client.query(
        f"SELECT sum(total_rows), sum(total_bytes) FROM system.tables WHERE database = '{database}'"
    ).result_rows[0]
    return int(rows or 0), int(nbytes or 0)


def load_limit(mirror: Path, engine_dir: Path) -> dict[str, Any]:
    client = _client(engine_dir)
    started = time.perf_counter()
    client.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    for spec in WAREHOUSE_TABLES:
        _create(client, mirror, spec)
        client.command(
            f"INSERT INTO {DATABASE}.{spec.name} SELECT {_insert_select(spec)} FROM {_source(mirror, spec)} "
            f"SETTINGS {INFER}"
        )
    seconds = time.perf_counter() - started
    rows, nbytes = _stats(client)
    return {"seconds": seconds, "rows": rows, "bytes": nbytes}


def load_naive(mirror: Path, engine_dir: Path) -> dict[str, Any]:
    import pandas as pd

    client = _client(engine_dir)
    client.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    for spec in WAREHOUSE_TABLES:  # the tables themselves are not what is measured
        _create(client, mirror, spec)
    started = time.perf_counter()
    for spec in WAREHOUSE_TABLES:
        df = pd.read_parquet(mirror / "curated" / spec.name)
        if isinstance(spec, Table):  # the Hive folder name comes back as a column; the table wants UInt8
            df = df.drop(columns="change_date")
            df[DELETED_COLUMN] = df[DELETED_COLUMN].astype("uint8")
        client.insert_df(f"{DATABASE}.{spec.name}", df)
        del df
    seconds = time.perf_counter() - started
    rows, nbytes = _stats(client)
    return {"seconds": seconds, "rows": rows, "bytes": nbytes}


def marts_limit(engine_dir: Path, final: bool = True) -> dict[str, Any]:
    """Run after ``load_limit`` on the same engine folder. ``final=False`` is the old, unfair reference (it read
    unmerged parts: every version of a key, deletes included), kept to measure what ``FINAL`` costs."""
    from platform_assets.marts.queries import MARTS, SETTINGS

    settings = SETTINGS if final else SETTINGS.replace("final = 1", "final = 0")
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
