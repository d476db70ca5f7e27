"""Curated layer (Spark on vps_2): typed tables with one row per primary key, plus conformed models."""

import time

import dagster as dg

from platform_assets.catalog import MODELS, TABLES, Model, Table
from platform_assets.curated import transforms as tr
from platform_assets.metadata import OWNERS, column_schema, describe, node_tags, timing
from platform_assets.paths import curated_prefix, raw_prefix
from resources.spark import SparkResource

KINDS = {"spark", "s3", "parquet"}


def _written(spark: SparkResource, name: str, started: float) -> dg.MaterializeResult:
    """Metadata of what was just written, from the object store (Parquet footers), not another Spark job."""
    store = spark.object_store
    prefix = curated_prefix(name)
    rows = store.parquet_rows(prefix)
    schema = spark.session.read.parquet(store.s3a_uri(prefix)).schema
    return dg.MaterializeResult(
        metadata={
            **timing(rows, store.prefix_bytes(prefix), time.perf_counter() - started),
            "path": dg.MetadataValue.path(store.s3_uri(prefix)),
            "dagster/column_schema": column_schema((f.name, f.dataType.simpleString()) for f in schema.fields),
        }
    )


def curated_table(table: Table) -> dg.AssetsDefinition:
    @dg.asset(
        name=table.name,
        key_prefix="curated",
        deps=[dg.AssetKey(["raw", table.name])],
        group_name="curated",
        kinds=KINDS,
        owners=OWNERS,
        tags=node_tags("vps_2"),
        code_version="1",
        description=describe(
            f"`{table.name}` typed and deduplicated by Spark: one row per primary key, the latest "
            f"`{table.cursor_column}` wins. Written to `curated/{table.name}/`.",
            table,
        ),
    )
    def _curated(spark: SparkResource) -> dg.MaterializeResult:
        started = time.perf_counter()
        store = spark.object_store
        raw = tr.read_parquet(spark.session, store.s3a_uri(raw_prefix(table.name)))
        tr.write_parquet(tr.latest_per_key(tr.typed(raw, table), table), store.s3a_uri(curated_prefix(table.name)))
        return _written(spark, table.name, started)

    return _curated


def curated_model(model: Model) -> dg.AssetsDefinition:
    build = getattr(tr, model.name)

    @dg.asset(
        name=model.name,
        key_prefix="curated",
        deps=[dg.AssetKey(["curated", d]) for d in model.depends_on],
        group_name="curated",
        kinds=KINDS,
        owners=OWNERS,
        tags=node_tags("vps_2"),
        code_version="1",
        description=describe(
            f"Conformed model `{model.name}`: {model.description} "
            f"Built by Spark from {', '.join(f'`{d}`' for d in model.depends_on)}; "
            f"key `{', '.join(model.primary_key)}`."
        ),
    )
    def _model(spark: SparkResource) -> dg.MaterializeResult:
        started = time.perf_counter()
        store = spark.object_store
        inputs = [tr.read_parquet(spark.session, store.s3a_uri(curated_prefix(d))) for d in model.depends_on]
        tr.write_parquet(build(*inputs), store.s3a_uri(curated_prefix(model.name)))
        return _written(spark, model.name, started)

    return _model


curated_assets = [curated_table(t) for t in TABLES] + [curated_model(m) for m in MODELS]

defs = dg.Definitions(assets=curated_assets)
