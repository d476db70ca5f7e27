"""References for the transform (raw Parquet -> curated Parquet), on a local copy of the same raw objects.

* limit: the pipeline's own Spark code (``transforms.build``, per change day for every table) in a
  plain local[2] SparkSession with the resource's settings (shuffle partitions, driver memory), reading and writing
  local files through ``LocalStore`` (the three object-store calls ``build`` makes), no Dagster, no s3a;
* naive: pandas with default dtypes: concat the day files, sort + ``drop_duplicates`` per key and day, Hive-style
  ``to_parquet(partition_cols=...)``.

The conformed models are not Spark's work: ClickHouse maintains them in the warehouse (``warehouse/models.py``).
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import dir_bytes, parquet_rows
from platform_assets.catalog import AUDIT_COLUMN, DELETED_COLUMN, TABLES
from platform_assets.paths import DELETE_FILES

CHANGE_DATE = "change_date"


class LocalStore:
    """``list_keys``/``s3a_uri``/``delete_keys`` of the object store resource over local folders.

    ``roots`` maps a key prefix (``raw/``, ``curated/``) to the folder that holds those keys, so the raw mirror is
    read where it lies and the curated output goes to the reference's own folder.
    """

    def __init__(self, roots: dict[str, Path]):
        self.roots = roots

    def _root(self, key: str) -> Path:
        for prefix, root in self.roots.items():
            if key.startswith(prefix):
                return root
        raise KeyError(f"no local folder for key {key!r}")

    def list_keys(self, prefix: str) -> list[tuple[str, int]]:
        root = self._root(prefix)
        folder = root / prefix.rsplit("/", 1)[0]
        if not folder.is_dir():
            return []
        keys = ((p.relative_to(root).as_posix(), p) for p in folder.rglob("*") if p.is_file())
        return sorted((k, p.stat().st_size) for k, p in keys if k.startswith(prefix))

    def s3a_uri(self, key: str) -> str:
        return str(self._root(key) / key)

    def delete_keys(self, keys: list[str]) -> None:
        for key in keys:
            (self._root(key) / key).unlink(missing_ok=True)


def change_days(mirror: Path) -> list[date]:
    """Every day from the first to the last raw day folder (the range ``full_lineage`` ran over)."""
    found = sorted({date.fromisoformat(d.name) for d in (mirror / "raw").glob("*/*") if d.is_dir()})
    if not found:
        raise FileNotFoundError(f"no raw day folders under {mirror / 'raw'}")
    return [found[0] + timedelta(days=i) for i in range((found[-1] - found[0]).days + 1)]


def limit(mirror: Path, out: Path) -> dict[str, Any]:
    """``mirror`` holds ``raw/<table>/<day>/*.parquet``; curated output goes to ``out/curated/``."""
    from pyspark.sql import SparkSession

    from benchmarks.common import object_store
    from platform_assets.curated import transforms
    from resources.environments import spark_resource
    from resources.settings import platform_env

    res = spark_resource(platform_env(), object_store())
    local_dir = out / "spark-local"
    local_dir.mkdir(parents=True, exist_ok=True)
    days = change_days(mirror)
    store = LocalStore({"raw/": mirror, "curated/": out})
    started = time.perf_counter()
    spark = (
        SparkSession.builder.master(res.master)
        .appName("bench-transform-limit")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.memory", res.driver_memory)
        .config("spark.sql.shuffle.partitions", str(res.shuffle_partitions))
        .config("spark.sql.adaptive.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.local.dir", str(local_dir))
        .config("spark.driver.extraJavaOptions", f"-Djava.io.tmpdir={local_dir} -XX:-UsePerfData")
        .getOrCreate()
    )
    session_s = time.perf_counter() - started
    seconds_by_name = {}
    for t in TABLES:
        t0 = time.perf_counter()
        transforms.build(spark, store, t.name, days)
        seconds_by_name[t.name] = time.perf_counter() - t0
    seconds = time.perf_counter() - started
    spark.stop()
    curated = out / "curated"
    return {
        "seconds": seconds,
        "session_start_s": session_s,
        "seconds_by_name": seconds_by_name,
        "days": [str(days[0]), str(days[-1])],
        "rows": parquet_rows(curated),
        "bytes": dir_bytes(curated),
    }


def _day_files(mirror: Path, table: str):
    import pandas as pd

    for day_dir in sorted(p for p in (mirror / "raw" / table).iterdir() if p.is_dir()):
        for f in sorted(day_dir.glob("*.parquet")):
            df = pd.read_parquet(f)
            df[DELETED_COLUMN] = 1 if f.name.startswith(DELETE_FILES) else 0
            df[CHANGE_DATE] = day_dir.name
            yield df


def naive(mirror: Path, out: Path) -> dict[str, Any]:
    import pandas as pd

    curated = out / "curated"
    curated.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def latest(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
        order = [*keys, AUDIT_COLUMN, DELETED_COLUMN]
        df = df.sort_values(order, ascending=[True] * len(keys) + [False, True])
        return df.drop_duplicates(subset=keys, keep="first")

    for t in TABLES:
        df = pd.concat(list(_day_files(mirror, t.name)), ignore_index=True)
        df = latest(df, [CHANGE_DATE, *t.primary_key])
        df.to_parquet(curated / t.name, partition_cols=[CHANGE_DATE], index=False)
        del df

    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": parquet_rows(curated), "bytes": dir_bytes(curated)}
