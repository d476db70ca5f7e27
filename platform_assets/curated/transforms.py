"""Spark transformations of the curated layer (plain DataFrame code: local session or Spark Connect)."""

from __future__ import annotations

from types import SimpleNamespace

from pyspark.sql import DataFrame, SparkSession

from platform_assets.catalog import AUDIT_COLUMN, MODELS, TABLES_BY_NAME, Table
from platform_assets.paths import curated_prefix, raw_prefix


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


def latest_per_key(df: DataFrame, table: Table) -> DataFrame:
    """One row per primary key: the version with the latest ``updated_at`` wins (ties broken deterministically)."""
    api = _api(df)
    F, Window = api.F, api.Window
    order = [F.col(table.cursor_column).desc(), *(F.col(c.name).asc() for c in table.columns)]
    w = Window.partitionBy(*table.primary_key).orderBy(*order)
    return df.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")


def typed(df: DataFrame, table: Table) -> DataFrame:
    """Select exactly the catalog's columns in order (the raw layer already enforced the types)."""
    return df.select(*(c.name for c in table.all_columns))


def fct_lineitem(lineitem: DataFrame, orders: DataFrame) -> DataFrame:
    F = _api(lineitem).F
    o = orders.select(
        "o_orderkey", "o_custkey", "o_orderdate", "o_orderstatus", "o_orderpriority", "o_shippriority",
        F.col(AUDIT_COLUMN).alias("_o_updated_at"),
    )  # fmt: skip
    joined = lineitem.join(o, lineitem.l_orderkey == o.o_orderkey, "inner").drop("o_orderkey")
    net = (F.col("l_extendedprice") * (F.lit(1) - F.col("l_discount"))).cast("decimal(18,4)")
    return (
        joined.withColumn("l_net_revenue", net)
        .withColumn(AUDIT_COLUMN, F.greatest(F.col(AUDIT_COLUMN), F.col("_o_updated_at")))
        .drop("_o_updated_at")
    )


def dim_customer(customer: DataFrame, nation: DataFrame, region: DataFrame) -> DataFrame:
    F = _api(customer).F
    n = nation.select("n_nationkey", "n_name", "n_regionkey", F.col(AUDIT_COLUMN).alias("_n_updated_at"))
    r = region.select("r_regionkey", "r_name", F.col(AUDIT_COLUMN).alias("_r_updated_at"))
    return (
        customer.join(n, customer.c_nationkey == n.n_nationkey, "left")
        .join(r, F.col("n_regionkey") == r.r_regionkey, "left")
        .drop("n_nationkey", "n_regionkey", "r_regionkey")
        .withColumn(AUDIT_COLUMN, F.greatest(AUDIT_COLUMN, "_n_updated_at", "_r_updated_at"))
        .drop("_n_updated_at", "_r_updated_at")
    )


def read_parquet(spark: SparkSession, uri: str) -> DataFrame:
    return spark.read.parquet(uri)


def write_parquet(df: DataFrame, uri: str, files: int = 2) -> None:
    """Overwrite the whole prefix (Spark's overwrite replaces, never appends)."""
    df.coalesce(files).write.mode("overwrite").option("compression", "zstd").parquet(uri)


def build(spark: SparkSession, s3a_uri, name: str) -> None:
    """Build one curated table or model: the whole job of a curated asset, wherever Spark runs.

    ``s3a_uri`` maps an object key to the URI Spark reads (the object store resource's ``s3a_uri``).
    """
    if name in TABLES_BY_NAME:
        table = TABLES_BY_NAME[name]
        raw = read_parquet(spark, s3a_uri(raw_prefix(name)))
        write_parquet(latest_per_key(typed(raw, table), table), s3a_uri(curated_prefix(name)))
        return
    model = next((m for m in MODELS if m.name == name), None)
    if model is None:
        raise KeyError(f"{name!r} is neither a catalog table nor a conformed model")
    inputs = [read_parquet(spark, s3a_uri(curated_prefix(d))) for d in model.depends_on]
    write_parquet(globals()[name](*inputs), s3a_uri(curated_prefix(name)))
