"""References for the load (curated Parquet -> ClickHouse) and the marts, on a local copy of the same Parquet.

Each runs in its own chDB engine folder (one engine path per process), never the pipeline's:
* load limit: ``INSERT INTO <MergeTree> SELECT * FROM file('<local>/*.parquet')``, the engine reading local disk;
* load naive: ``pandas.read_parquet`` then clickhouse-connect ``insert_df`` into the same MergeTree table;
* marts limit: the marts' own SQL over those plain MergeTree tables (no FINAL, no Distributed, no Dagster).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from platform_assets.catalog import WAREHOUSE_TABLES
from platform_assets.warehouse.load import DATABASE, INFER


def _client(engine_dir: Path):
    import clickhouse_connect

    return clickhouse_connect.get_client(dsn=f"chdb://{engine_dir}")


def _source(mirror: Path, name: str) -> str:
    return f"file('{mirror / 'curated' / name}/*.parquet', Parquet)"


def _create(client, mirror: Path, spec) -> None:
    client.command(f"DROP TABLE IF EXISTS {DATABASE}.{spec.name} SYNC")
    client.command(
        f"CREATE TABLE {DATABASE}.{spec.name} ENGINE = MergeTree ORDER BY ({', '.join(spec.sort_key)}) "
        f"EMPTY AS SELECT * FROM {_source(mirror, spec.name)} SETTINGS {INFER}"
    )


def _stats(client) -> tuple[int, int]:
    rows, nbytes = client.query(
        f"SELECT sum(total_rows), sum(total_bytes) FROM system.tables WHERE database = '{DATABASE}'"
    ).result_rows[0]
    return int(rows or 0), int(nbytes or 0)


def load_limit(mirror: Path, engine_dir: Path) -> dict[str, Any]:
    client = _client(engine_dir)
    started = time.perf_counter()
    client.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    for spec in WAREHOUSE_TABLES:
        _create(client, mirror, spec)
        source = _source(mirror, spec.name)
        client.command(f"INSERT INTO {DATABASE}.{spec.name} SELECT * FROM {source} SETTINGS {INFER}")
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
        client.insert_df(f"{DATABASE}.{spec.name}", df)
        del df
    seconds = time.perf_counter() - started
    rows, nbytes = _stats(client)
    return {"seconds": seconds, "rows": rows, "bytes": nbytes}


def marts_limit(engine_dir: Path) -> dict[str, Any]:
    """Run after ``load_limit`` on the same engine folder."""
    from platform_assets.marts.queries import MARTS

    client = _client(engine_dir)
    started = time.perf_counter()
    client.command("CREATE DATABASE IF NOT EXISTS marts")
    for mart in MARTS:
        client.command(f"DROP TABLE IF EXISTS marts.{mart.name} SYNC")
        client.command(
            f"CREATE TABLE marts.{mart.name} ENGINE = MergeTree ORDER BY tuple() AS {mart.sql} "
            "SETTINGS join_use_nulls = 1"
        )
    seconds = time.perf_counter() - started
    rows = client.query("SELECT sum(total_rows), sum(total_bytes) FROM system.tables WHERE database = 'marts'")
    n, nbytes = rows.result_rows[0]
    return {"seconds": seconds, "rows": int(n or 0), "bytes": int(nbytes or 0)}
