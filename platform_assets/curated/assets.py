"""Curated layer (Spark on vps_2): typed tables with one row per primary key and change day.

Spark runs where the ``spark`` resource points (a local session, or Spark Connect on vps_2). For long batch
jobs, ``CURATED_RUNNER=k8s-pipes`` runs the same build as a Kubernetes pod through Dagster Pipes instead.
"""

import os
import time

import dagster as dg

from platform_assets.catalog import DELETED_COLUMN, TABLES, Table
from platform_assets.curated import transforms as tr
from platform_assets.metadata import OWNERS, column_schema, describe, node_tags, timing
from platform_assets.partitions import DAILY, ON_NEW_PARENT, SINGLE_RUN, days_of
from platform_assets.paths import curated_prefix
from platform_assets.retries import TRANSIENT
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
        "code_version": "2",
        "description": describe(
            f"`{table.name}` typed and deduplicated by Spark per change day: one row per primary key and day, the "
            f"latest `{table.cursor_column}` wins; deleted keys are kept as rows with `{DELETED_COLUMN} = 1` so the "
            f"warehouse can drop them. Written to `curated/{table.name}/change_date=<day>/`.",
            table,
        ),
        "partitions_def": DAILY,
        "backfill_policy": SINGLE_RUN,
        "retry_policy": TRANSIENT,
        "automation_condition": ON_NEW_PARENT,
    }


def curated_asset(table: Table) -> dg.AssetsDefinition:
    @dg.asset(**_spec(table))
    def _curated(context: dg.AssetExecutionContext, spark: SparkResource) -> dg.MaterializeResult:
        started = time.perf_counter()
        store = spark.object_store
        days = days_of(context)
        with spark.unavailable_if_lost():
            built = tr.build_days(spark.session, store, table, days)
        prefixes = [curated_prefix(table.name, d) for d, has_rows in built.items() if has_rows]
        fields = [(c.name, c.type) for c in table.all_columns] + [(DELETED_COLUMN, "int8")]
        context.log.info(f"curated/{table.name}: {len(prefixes)} of {len(days)} day(s) had changes")
        if not prefixes:
            return dg.MaterializeResult(metadata={**timing(0, 0, time.perf_counter() - started), "days": len(days)})
        return dg.MaterializeResult(metadata=written_metadata(store, prefixes, fields, started))

    return _curated


def curated_asset_on_k8s(table: Table) -> dg.AssetsDefinition:
    """The same build in a pod on vps_2 (dagster-k8s Pipes); the pod reports its materialization back."""

    @dg.asset(**_spec(table))
    def _curated(context: dg.AssetExecutionContext, k8s_batch: K8sBatchResource):
        return k8s_batch.run(context, table.name).get_materialize_result()

    return _curated


RUNNER = os.environ.get("CURATED_RUNNER", "spark")
if RUNNER not in ("spark", "k8s-pipes"):
    raise ValueError(f"CURATED_RUNNER={RUNNER!r}: expected 'spark' or 'k8s-pipes'")
curated_assets = [(curated_asset_on_k8s if RUNNER == "k8s-pipes" else curated_asset)(s) for s in TABLES]

defs = dg.Definitions(assets=curated_assets)
