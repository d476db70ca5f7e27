"""Entry point of a curated build run outside the orchestrator process (a Kubernetes pod, via Dagster Pipes).

    python -m platform_assets.curated.batch_job <table>

It runs the same ``transforms.build`` as the in-process asset and reports the materialization back through
the object store, the channel the Pipes client on vps_1 reads.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime

from dagster_pipes import PipesS3MessageWriter, open_dagster_pipes

from platform_assets.curated import transforms
from platform_assets.metadata import timing
from platform_assets.partitions import days_between
from platform_assets.paths import curated_prefix
from resources.environments import object_store_resource, spark_resource
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
        window = pipes.partition_time_window  # the run's change days
        days = days_between(datetime.fromisoformat(window["start"]), datetime.fromisoformat(window["end"]))
        transforms.build(spark.session, store, name, days)
        prefixes = [curated_prefix(name, d) for d in days]
        seconds = time.perf_counter() - started
        pipes.report_asset_materialization(
            metadata={
                **timing(
                    sum(store.parquet_rows(p) for p in prefixes), sum(store.prefix_bytes(p) for p in prefixes), seconds
                ),
                "path": {"raw_value": store.s3_uri(prefixes[0]), "type": "path"},
                **spark.provenance(),
            }
        )


if __name__ == "__main__":
    main(sys.argv[1])
