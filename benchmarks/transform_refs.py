"""References for the transform (raw Parquet -> curated Parquet), on a local copy of the same raw objects.

* limit: the pipeline's own Spark code (``transforms.build``) in a plain local[2] SparkSession with the
  resource's settings (shuffle partitions, driver memory), reading and writing local files, no Dagster, no s3a;
* naive: pandas with default dtypes: sort + ``drop_duplicates`` per key, ``merge`` for the two models.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.common import dir_bytes, parquet_rows
from platform_assets.catalog import AUDIT_COLUMN, MODELS, TABLES


def limit(mirror: Path, out: Path) -> dict[str, Any]:
    """``mirror`` holds ``raw/<table>/full/*.parquet``; curated output goes to ``out/curated/<name>/``."""
    from pyspark.sql import SparkSession

    from benchmarks.common import object_store
    from platform_assets.curated import transforms
    from resources.environments import spark_resource
    from resources.settings import platform_env

    res = spark_resource(platform_env(), object_store())
    local_dir = out / "spark-local"
    local_dir.mkdir(parents=True, exist_ok=True)
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

    def uri(key: str) -> str:
        return str((mirror if key.startswith("raw/") else out) / key)

    for name in (*(t.name for t in TABLES), *(m.name for m in MODELS)):
        transforms.build(spark, uri, name)
    seconds = time.perf_counter() - started
    spark.stop()
    curated = out / "curated"
    return {
        "seconds": seconds,
        "session_start_s": session_s,
        "rows": parquet_rows(curated),
        "bytes": dir_bytes(curated),
    }


def naive(mirror: Path, out: Path) -> dict[str, Any]:
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows = 0
    for t in TABLES:
        df = pd.read_parquet(mirror / "raw" / t.name / "full")
        order = [AUDIT_COLUMN, *t.primary_key]
        df = df.sort_values(order, ascending=[False] + [True] * len(t.primary_key))
        df = df.drop_duplicates(subset=list(t.primary_key), keep="first")
        df.to_parquet(out / f"{t.name}.parquet", index=False)
        rows += len(df)
        del df
    lineitem = pd.read_parquet(out / "lineitem.parquet")
    orders = pd.read_parquet(out / "orders.parquet")[
        ["o_orderkey", "o_custkey", "o_orderdate", "o_orderstatus", "o_orderpriority", "o_shippriority", AUDIT_COLUMN]
    ].rename(columns={AUDIT_COLUMN: "_o_updated_at"})
    fct = lineitem.merge(orders, left_on="l_orderkey", right_on="o_orderkey").drop(columns="o_orderkey")
    del lineitem, orders
    fct["l_net_revenue"] = fct["l_extendedprice"] * (1 - fct["l_discount"])
    fct[AUDIT_COLUMN] = fct[[AUDIT_COLUMN, "_o_updated_at"]].max(axis=1)
    fct = fct.drop(columns="_o_updated_at")
    fct.to_parquet(out / "fct_lineitem.parquet", index=False)
    rows += len(fct)
    del fct
    customer = pd.read_parquet(out / "customer.parquet")
    nation = pd.read_parquet(out / "nation.parquet")[["n_nationkey", "n_name", "n_regionkey", AUDIT_COLUMN]]
    region = pd.read_parquet(out / "region.parquet")[["r_regionkey", "r_name", AUDIT_COLUMN]]
    dim = customer.merge(
        nation.rename(columns={AUDIT_COLUMN: "_n"}), left_on="c_nationkey", right_on="n_nationkey", how="left"
    ).merge(region.rename(columns={AUDIT_COLUMN: "_r"}), left_on="n_regionkey", right_on="r_regionkey", how="left")
    dim[AUDIT_COLUMN] = dim[[AUDIT_COLUMN, "_n", "_r"]].max(axis=1)
    dim = dim.drop(columns=["n_nationkey", "n_regionkey", "r_regionkey", "_n", "_r"])
    dim.to_parquet(out / "dim_customer.parquet", index=False)
    rows += len(dim)
    return {"seconds": time.perf_counter() - started, "rows": rows, "bytes": dir_bytes(out)}
