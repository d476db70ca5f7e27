"""Load TPC-H, generated offline by DuckDB's dbgen, into the OLTP database.

Deterministic: the same scale factor always gives the same rows, and every row's ``updated_at`` is the
day after TPC-H's last order date, so re-seeding gives the same source of truth.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from platform_assets.catalog import TABLES
from platform_assets.oltp.roles import migrate
from platform_assets.oltp.schema import constraint_sql, create_table_sql, drop_all_sql
from resources.oltp_postgres import OltpPostgresResource

SEED_TIMESTAMP = datetime(1998, 8, 3, tzinfo=UTC)


def duckdb_with_extensions(extension_dir: Path, *names: str) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with extensions installed from their PyPI wheels (no download at run time)."""
    import importlib

    extension_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"extension_directory": str(extension_dir)})
    for name in names:
        module = importlib.import_module(f"duckdb_extension_{name}")
        files = list(Path(module.__file__).parent.glob(f"extensions/*/{name}.duckdb_extension"))
        if not files:
            raise RuntimeError(f"duckdb extension {name} not found in {module.__file__}")
        con.install_extension(str(files[0]))
        con.load_extension(name)
    return con


@dataclass
class SeedReport:
    scale_factor: float
    rows: dict[str, int]
    seconds: float


def seed_tpch(
    oltp: OltpPostgresResource, scale_factor: float, extension_dir: Path, passwords: dict[str, str] | None = None
) -> SeedReport:
    """Create and load the tables as the superuser ``oltp``, then migrate (``roles.migrate``: ``passwords`` or the
    roles' variables)."""
    started = time.perf_counter()
    con = duckdb_with_extensions(extension_dir, "tpch", "postgres_scanner")
    con.execute(f"CALL dbgen(sf={float(scale_factor)})")
    with oltp.connect(autocommit=True) as pg:
        for sql in drop_all_sql():
            pg.execute(sql)
        for t in TABLES:
            pg.execute(create_table_sql(t))
    oltp.attach(con, "oltp", read_only=False)
    rows: dict[str, int] = {}
    stamp = SEED_TIMESTAMP.isoformat()
    for t in TABLES:
        cols = ", ".join(c.name for c in t.columns)
        con.execute(
            f"INSERT INTO oltp.public.{t.name} ({cols}, updated_at) "
            f"SELECT {cols}, TIMESTAMPTZ '{stamp}' FROM main.{t.name}"
        )
        rows[t.name] = con.execute(f"SELECT count(*) FROM main.{t.name}").fetchone()[0]
    con.execute("DETACH oltp")
    con.close()
    with oltp.connect(autocommit=True) as pg:
        for t in TABLES:
            for sql in constraint_sql(t):
                pg.execute(sql)
    migrate(oltp, passwords)  # change capture, the roles and their grants
    with oltp.connect(autocommit=True) as pg:
        for t in TABLES:
            pg.execute(f"VACUUM ANALYZE {t.name}")
    return SeedReport(scale_factor, rows, time.perf_counter() - started)
