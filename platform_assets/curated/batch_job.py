"""Entry point of a curated build run outside the orchestrator process (a Kubernetes pod, via Dagster Pipes).

    python -m platform_assets.curated.batch_job <table>

It runs the same ``transforms.build`` as the in-process asset and reports the materialization back through
the object store, the channel the Pipes client on vps_1 reads.
"""

from __future__ import annotations

import sys
import time
from datetime import date

from dagster_pipes import PipesS3MessageWriter, open_dagster_pipes

from platform_assets.curated import transforms
from platform_assets.metadata import timing
from platform_assets.paths import curated_prefix
from resources.environments import object_store_resource, spark_resource
from resources.k8s_batch import CHANGE_DAYS_EXTRA
from resources.settings import platform_env


def main(name: str) -> None:
    env = platform_env()
    store_def = object_store_resource(env)
    with (
        store_def.process_config_and_initialize_cm() as store,
        open_dagster_pipes(message_writer=PipesS3MessageWriter(client=store.client())) as pipes,
        spark_resource("local", store_def).process_config_and_initialize_cm() as spark,
    ):
        started = time.perf_counter()
        pipes.log.info(f"building curated/{name} with Spark {spark.session.version}")
        days = [date.fromisoformat(d) for d in pipes.get_extra(CHANGE_DAYS_EXTRA)]  # a backfill's range too
        built = transforms.build(spark.session, store, name, days)
        prefixes = [curated_prefix(name, d) for d, has_rows in built.items() if has_rows]
        seconds = time.perf_counter() - started
        rows, size = sum(store.parquet_rows(p) for p in prefixes), sum(store.prefix_bytes(p) for p in prefixes)
        path = {"path": {"raw_value": store.s3_uri(prefixes[0]), "type": "path"}} if prefixes else {}
        pipes.log.info(f"curated/{name}: {len(prefixes)} of {len(days)} day(s) had changes")
        pipes.report_asset_materialization(
            metadata={**timing(rows, size, seconds), "days": len(days), **path, **spark.provenance()}
        )


if __name__ == "__main__":
    main(sys.argv[1])
