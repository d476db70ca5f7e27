"""Entry point of a curated build run outside the orchestrator process (a Kubernetes pod, via Dagster Pipes).

    python -m platform_assets.curated.batch_job <table-or-model>

It runs the same ``transforms.build`` as the in-process asset and reports the materialization back through
the object store, the channel the Pipes client on vps_1 reads.
"""

from __future__ import annotations

import sys
import time

import boto3
from dagster_pipes import PipesS3MessageWriter, open_dagster_pipes

from platform_assets.curated import transforms as tr
from platform_assets.paths import curated_prefix
from resources.environments import object_store_resource, spark_resource
from resources.settings import platform_env


def main(name: str) -> None:
    env = platform_env()
    store_def = object_store_resource(env)
    with store_def.process_config_and_initialize_cm() as store:
        s3 = boto3.client(
            "s3",
            endpoint_url=store.endpoint_url,
            aws_access_key_id=store.aws_access_key_id,
            aws_secret_access_key=store.aws_secret_access_key,
            region_name=store.region_name,
        )
        with (
            open_dagster_pipes(message_writer=PipesS3MessageWriter(client=s3)) as pipes,
            spark_resource("local", store_def).process_config_and_initialize_cm() as spark,
        ):
            started = time.perf_counter()
            pipes.log.info(f"building curated/{name} with Spark {spark.session.version}")
            tr.build(spark.session, store.s3a_uri, name)
            prefix = curated_prefix(name)
            rows = store.parquet_rows(prefix)
            seconds = time.perf_counter() - started
            pipes.report_asset_materialization(
                metadata={
                    "dagster/row_count": rows,
                    "bytes": store.prefix_bytes(prefix),
                    "seconds": round(seconds, 3),
                    "path": {"raw_value": store.s3_uri(prefix), "type": "path"},
                }
            )


if __name__ == "__main__":
    main(sys.argv[1])
