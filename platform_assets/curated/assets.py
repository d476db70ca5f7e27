"""Curated layer (Spark on vps_2): typed tables with one row per primary key and change day.

Spark runs where the ``spark`` resource points (a local session, or Spark Connect on vps_2). For long batch jobs the
same build runs as a Kubernetes pod on vps_2 through Dagster Pipes instead: per run (the launchpad's
``runner: k8s-pipes``) or by default where the ``k8s_batch`` resource says so (``CURATED_RUNNER=k8s-pipes``). The
asset graph is the same either way.
"""

import inspect
import time
from typing import Literal

import dagster as dg

from platform_assets.catalog import DELETED_COLUMN, TABLES, Table
from platform_assets.column_lineage import same_columns_lineage
from platform_assets.curated import transforms
from platform_assets.metadata import OWNERS, code_version, column_schema, describe, node_tags, timing
from platform_assets.partitions import CHANGE_DAYS, ON_NEW_PARENT, SINGLE_RUN, days_of
from platform_assets.paths import curated_prefix
from platform_assets.retries import retried_if_transient
from resources.k8s_batch import K8sBatchResource
from resources.object_store import ObjectStoreResource
from resources.spark import SparkResource

KINDS = {"spark", "s3", "parquet"}


def written_metadata(store: ObjectStoreResource, prefixes: list[str], schema, started: float) -> dict:
    """Metadata of what was just written, from the object store (Parquet footers), not another Spark job."""
    rows = sum(store.parquet_rows(p) for p in prefixes)
    return {
        **timing(rows, sum(store.prefix_bytes(p) for p in prefixes), time.perf_counter() - started),
        "path": dg.MetadataValue.path(store.s3_uri(prefixes[0])),
        "dagster/column_schema": column_schema(schema),
    }


def _spec(table: Table) -> dict:
    return {
        "name": table.name,
        "key_prefix": "curated",
        "deps": [dg.AssetKey(["raw", table.name])],
        "group_name": "curated",
        "kinds": KINDS,
        "owners": OWNERS,
        "tags": node_tags("vps_2"),
        "code_version": code_version(table, inspect.getsource(transforms)),
        "description": describe(
            f"`{table.name}` typed and deduplicated by Spark per change day: one row per primary key and day, the "
            f"latest `{table.cursor_column}` wins; deleted keys are kept as rows with `{DELETED_COLUMN} = 1` so the "
            f"warehouse can drop them. Written to `curated/{table.name}/change_date=<day>/`.",
            table,
        ),
        "partitions_def": CHANGE_DAYS,
        "backfill_policy": SINGLE_RUN,
        "automation_condition": ON_NEW_PARENT,
    }


class CuratedConfig(dg.Config):
    """``runner``: where this run builds the table — ``spark`` (the spark resource), ``k8s-pipes`` (a batch pod on
    vps_2), or the environment's choice (``k8s_batch.default_runner``)."""

    runner: Literal["default", "spark", "k8s-pipes"] = "default"


def curated_asset(table: Table) -> dg.AssetsDefinition:
    @dg.asset(**_spec(table))
    @retried_if_transient
    def _curated(
        context: dg.AssetExecutionContext, config: CuratedConfig, spark: SparkResource, k8s_batch: K8sBatchResource
    ) -> dg.MaterializeResult:
        runner = k8s_batch.default_runner if config.runner == "default" else config.runner
        if runner == "k8s-pipes":  # the pod reports its materialization back through the object store
            return k8s_batch.run(context, table.name).get_materialize_result()
        started = time.perf_counter()
        store = spark.object_store
        days = days_of(context)
        with spark.unavailable_if_lost():
            built = transforms.build_days(spark.session, store, table, days)
        prefixes = [curated_prefix(table.name, d) for d, has_rows in built.items() if has_rows]
        fields = [(c.name, c.type) for c in table.all_columns] + [(DELETED_COLUMN, "int8")]
        context.log.info(f"curated/{table.name}: {len(prefixes)} of {len(days)} day(s) had changes")
        if not prefixes:
            metadata = {**timing(0, 0, time.perf_counter() - started), "days": len(days)}
        else:
            metadata = written_metadata(store, prefixes, fields, started)
        lineage = same_columns_lineage([c.name for c in table.all_columns], "raw", table.name)
        return dg.MaterializeResult(metadata={**metadata, "dagster/column_lineage": lineage, **spark.provenance()})

    return _curated


curated_assets = [curated_asset(t) for t in TABLES]

defs = dg.Definitions(assets=curated_assets)
