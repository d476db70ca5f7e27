"""What every benchmark process shares: the environment, the initialized resources and the scratch folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

from resources.settings import REPO_ROOT, data_dir, local_dagster_home


def load_environment() -> None:
    """The same set-up as ``platform_assets.cli``: ``.env`` (never overriding the shell) and the local instance."""
    load_dotenv(REPO_ROOT / ".env", override=False)
    os.environ.setdefault("DAGSTER_HOME", str(local_dagster_home()))


def bench_dir() -> Path:
    path = data_dir() / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def scratch_dir(sf: float) -> Path:
    """Local copies and the references' outputs for one run (removed at the end)."""
    return bench_dir() / f"scratch-sf{sf:g}"


def extension_dir() -> Path:
    return data_dir() / "duckdb_extensions"


def oltp() -> Any:
    """The OLTP as its superuser: the benchmarks seed, write and read it."""
    from resources.environments import oltp_resource
    from resources.settings import platform_env

    return oltp_resource(platform_env(), "admin").process_config_and_initialize()


def object_store() -> Any:
    from resources.environments import object_store_resource
    from resources.settings import platform_env

    return object_store_resource(platform_env()).process_config_and_initialize()


def clickhouse() -> Any:
    from resources.environments import clickhouse_resource
    from resources.settings import platform_env

    return clickhouse_resource(platform_env()).process_config_and_initialize()


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def parquet_rows(path: Path) -> int:
    """Rows in every ``*.parquet`` under ``path``, from the footers."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in path.rglob("*.parquet"))
