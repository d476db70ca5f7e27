"""Spark transformations of the curated layer (plain DataFrame code: local session or Spark Connect)."""

from __future__ import annotations

import functools
from datetime import date
from types import SimpleNamespace

from pyspark.sql import DataFrame, SparkSession

from platform_assets.catalog import DELETED_COLUMN, TABLES_BY_NAME, Table, spark_type
from platform_assets.paths import DELETE_FILES, LANDED_FILES, ROW_FILES, curated_prefix, raw_prefix

CHANGE_DATE = "change_date"  # the Hive partition column of curated tables (directory name, not stored in files)


def _api(df: DataFrame) -> SimpleNamespace:
    """Column functions and Window of the DataFrame's own flavour (classic or Spark Connect).

    pyspark picks the flavour from process-wide state; choosing it from the DataFrame keeps these transforms
    correct in a process that talks to a local session and to a Connect server (tests, notebooks, tools).
    """
    if type(df).__module__.startswith("pyspark.sql.connect"):
        from pyspark.sql.connect.functions import builtin as functions
        from pyspark.sql.connect.window import Window
    else:
        from pyspark.sql.classic.window import Window
        from pyspark.sql.functions import builtin as functions
    return SimpleNamespace(F=functions, Window=Window)


def latest_per_key(df: DataFrame, table: Table, within: tuple[str, ...] = ()) -> DataFrame:
    """One row per primary key (per ``within`` group): the latest ``updated_at`` wins, a live row beats a delete
    of the same instant, and remaining ties are broken by every column, so the result is deterministic.

    The rows are first hash-partitioned by the primary key alone (which also groups every ``within`` value of a
    key), so the top-1 window needs one shuffle and one sort; left to itself Spark 4 sorts twice, around a partial
    top-1 before the shuffle that only pays off with many versions per key (figures in benchmarks/README.md; an
    aggregation of ``min(struct(...))`` is a sort aggregate here and no faster than the window).
    """
    api = _api(df)
    F, Window = api.F, api.Window
    order = [F.col(table.cursor_column).desc()]
    if DELETED_COLUMN in df.columns:
        order.append(F.col(DELETED_COLUMN).asc())
    order += [F.col(c.name).asc() for c in table.columns]
    w = Window.partitionBy(*table.primary_key, *within).orderBy(*order)
    by_key = df.repartition(*table.primary_key)
    return by_key.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")


def typed(df: DataFrame, table: Table) -> DataFrame:
    """Select exactly the catalog's columns in order (the raw layer already enforced the types)."""
    return df.select(*(c.name for c in table.all_columns))


def read_parquet(spark: SparkSession, uri: str | list[str]) -> DataFrame:
    return spark.read.parquet(*([uri] if isinstance(uri, str) else uri))


def changes_of_day(spark: SparkSession, store, table: Table, day: date) -> DataFrame | None:
    """The raw objects of one day as one frame: rows (extracted and landed) with ``is_deleted = 0`` and
    tombstones (key + ``updated_at``, other columns null) with ``is_deleted = 1``; None for an empty day."""
    names = {k: k.rsplit("/", 1)[-1] for k, _ in store.list_keys(raw_prefix(table.name, day)) if k.endswith(".parquet")}
    rows = [store.s3a_uri(k) for k, n in names.items() if n.startswith((ROW_FILES, LANDED_FILES))]
    tombs = [store.s3a_uri(k) for k, n in names.items() if n.startswith(DELETE_FILES)]
    frames = []  # (frame, is_deleted)
    if rows:
        frames.append((typed(read_parquet(spark, rows), table), 0))
    if tombs:
        df = read_parquet(spark, tombs)
        F = _api(df).F
        keep = (*table.primary_key, table.cursor_column)
        cols = [F.col(c.name) if c.name in keep else F.lit(None).cast(spark_type(c.type)) for c in table.all_columns]
        frames.append((df.select(*cols).toDF(*(c.name for c in table.all_columns)), 1))
    if not frames:
        return None
    F = _api(frames[0][0]).F
    flagged = [f.withColumn(DELETED_COLUMN, F.lit(flag).cast("tinyint")) for f, flag in frames]
    out = functools.reduce(lambda a, b: a.unionByName(b), flagged)
    return out.select(*(c.name for c in table.all_columns), DELETED_COLUMN).withColumn(CHANGE_DATE, F.lit(str(day)))


def build_days(spark: SparkSession, store, table: Table, days: list[date]) -> dict[date, bool]:
    """Rebuild ``curated/<table>/change_date=<day>/`` for each day from that day's raw objects, in one Spark job.

    Spark's dynamic partition overwrite replaces exactly the days that have changes; days without any lose their
    earlier objects, so a re-run or a backfill leaves each day as a single daily run would.
    """
    per_day = {day: changes_of_day(spark, store, table, day) for day in days}
    frames = [f for f in per_day.values() if f is not None]
    if frames:
        changes = functools.reduce(lambda a, b: a.unionByName(b), frames)
        (
            latest_per_key(changes, table, within=(CHANGE_DATE,))
            .coalesce(2)
            .write.mode("overwrite")
            .option("partitionOverwriteMode", "dynamic")
            .option("compression", "zstd")
            .partitionBy(CHANGE_DATE)
            .parquet(store.s3a_uri(curated_prefix(table.name)))
        )
    empty = [d for d, f in per_day.items() if f is None]
    for day in empty:
        store.delete_keys([k for k, _ in store.list_keys(curated_prefix(table.name, day))])
    return {d: f is not None for d, f in per_day.items()}


def build(spark: SparkSession, store, name: str, days: list[date]) -> dict[date, bool]:
    """Build one curated table for ``days``: the whole job of a curated asset, wherever Spark runs. ``store`` is
    the object store resource (keys, s3a URIs, deletes). Which days had changes."""
    if name not in TABLES_BY_NAME:
        raise KeyError(f"{name!r} is not a catalog table; known: {sorted(TABLES_BY_NAME)}")
    if not days:
        raise ValueError(f"curated table {name} is built per change day: give the days to build")
    return build_days(spark, store, TABLES_BY_NAME[name], days)
