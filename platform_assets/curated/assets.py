"""Curated layer (Spark on vps_2): typed tables with one row per primary key, plus conformed models.

Spark runs where the ``spark`` resource points (a local session, or Spark Connect on vps_2). For long batch
jobs, ``CURATED_RUNNER=k8s-pipes`` runs the same build as a Kubernetes pod through Dagster Pipes instead.
"""

import os
import time

import dagster as dg

from platform_assets.catalog import MODELS, TABLES, Model, Table
from platform_assets.curated import transforms as tr
from platform_assets.metadata import OWNERS, column_schema, describe, node_tags, timing
from platform_assets.paths import curated_prefix
from resources.k8s_batch import K8sBatchResource
from resources.object_store import ObjectStoreResource
from resources.spark import SparkResource

KINDS = {"spark", "s3", "parquet"}


def written_metadata(store: ObjectStoreResource, name: str, schema, started: float) -> dict:
    """Metadata of what was just written, from the object store (Parquet footers), not another Spark job."""
    prefix = curated_prefix(name)
    rows = store.parquet_rows(prefix)
    return {
        **timing(rows, store.prefix_bytes(prefix), time.perf_counter() - started),
        "path": dg.MetadataValue.path(store.s3_uri(prefix)),
        "dagster/column_schema": column_schema(schema),
    }


def _spec(spec: Table | Model) -> dict:
    if isinstance(spec, Table):
        deps = [dg.AssetKey(["raw", spec.name])]
        text = describe(
            f"`{spec.name}` typed and deduplicated by Spark: one row per primary key, the latest "
            f"`{spec.cursor_column}` wins. Written to `curated/{spec.name}/`.",
            spec,
        )
    else:
        deps = [dg.AssetKey(["curated", d]) for d in spec.depends_on]
        text = describe(
            f"Conformed model `{spec.name}`: {spec.description} Built by Spark from "
            f"{', '.join(f'`{d}`' for d in spec.depends_on)}; key `{', '.join(spec.primary_key)}`."
        )
    return {
        "name": spec.name,
        "key_prefix": "curated",
        "deps": deps,
        "group_name": "curated",
        "kinds": KINDS,
        "owners": OWNERS,
        "tags": node_tags("vps_2"),
        "code_version": "1",
        "description": text,
    }


def curated_asset(spec: Table | Model) -> dg.AssetsDefinition:
    @dg.asset(**_spec(spec))
    def _curated(spark: SparkResource) -> dg.MaterializeResult:
        started = time.perf_counter()
        store = spark.object_store
        tr.build(spark.session, store.s3a_uri, spec.name)
        schema = spark.session.read.parquet(store.s3a_uri(curated_prefix(spec.name))).schema
        fields = [(f.name, f.dataType.simpleString()) for f in schema.fields]
        return dg.MaterializeResult(metadata=written_metadata(store, spec.name, fields, started))

    return _curated


def curated_asset_on_k8s(spec: Table | Model) -> dg.AssetsDefinition:
    """The same build in a pod on vps_2 (dagster-k8s Pipes); the pod reports its materialization back."""

    @dg.asset(**_spec(spec))
    def _curated(context: dg.AssetExecutionContext, k8s_batch: K8sBatchResource):
        return k8s_batch.run(context, spec.name).get_materialize_result()

    return _curated


CURATED_SPECS: tuple[Table | Model, ...] = (*TABLES, *MODELS)
RUNNER = os.environ.get("CURATED_RUNNER", "spark")
if RUNNER not in ("spark", "k8s-pipes"):
    raise ValueError(f"CURATED_RUNNER={RUNNER!r}: expected 'spark' or 'k8s-pipes'")
curated_assets = [(curated_asset_on_k8s if RUNNER == "k8s-pipes" else curated_asset)(s) for s in CURATED_SPECS]

defs = dg.Definitions(assets=curated_assets)
