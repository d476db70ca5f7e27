"""References for the extract (OLTP table -> Parquet): the naive pandas way and what the engines can do.

* naive: ``pandas.read_sql`` (SQLAlchemy + psycopg2) then ``DataFrame.to_parquet``, table by table;
* limit: DuckDB's postgres scanner ``COPY (SELECT ...) TO 'file.parquet'`` on local disk, 2 threads, zstd
  (the fastest whole-table copy to Parquet measured on this machine, RECIPES.md);
* server: ``COPY ... TO STDOUT (FORMAT binary)`` read and dropped by the client, the server's raw speed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.common import dir_bytes, extension_dir, oltp, parquet_rows
from platform_assets.catalog import TABLES


def limit(out: Path) -> dict[str, Any]:
    from platform_assets.oltp.seed import duckdb_with_extensions

    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    con = duckdb_with_extensions(extension_dir(), "postgres_scanner")
    con.execute("SET threads = 2")
    oltp().attach(con, "oltp")
    for t in TABLES:
        cols = ", ".join(c.name for c in t.all_columns)
        con.execute(
            f"COPY (SELECT {cols} FROM oltp.public.{t.name}) TO '{out / t.name}.parquet' "
            "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)"
        )
    con.close()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": parquet_rows(out), "bytes": dir_bytes(out)}


def server_copy() -> dict[str, Any]:
    started = time.perf_counter()
    nbytes = 0
    with oltp().connect() as conn, conn.cursor() as cur:
        for t in TABLES:
            cols = ", ".join(c.name for c in t.all_columns)
            with cur.copy(f"COPY (SELECT {cols} FROM {t.name}) TO STDOUT (FORMAT binary)") as copy:
                for chunk in copy:
                    nbytes += len(chunk)
    return {"seconds": time.perf_counter() - started, "bytes": nbytes}


def naive(out: Path) -> dict[str, Any]:
    import pandas as pd
    import sqlalchemy as sa

    out.mkdir(parents=True, exist_ok=True)
    r = oltp()
    url = sa.URL.create("postgresql+psycopg2", r.user, r.password, r.host, r.port, r.database)
    started = time.perf_counter()
    engine = sa.create_engine(url)
    rows = 0
    for t in TABLES:
        df = pd.read_sql(f"SELECT * FROM {t.name}", engine)
        df.to_parquet(out / f"{t.name}.parquet")
        rows += len(df)
        del df
    engine.dispose()
    return {"seconds": time.perf_counter() - started, "rows": rows, "bytes": dir_bytes(out)}
