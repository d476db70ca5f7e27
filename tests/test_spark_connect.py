"""The Spark assets run unchanged on a real Spark Connect server (started from the pyspark wheel)."""

import dagster as dg
import pytest

from deploy.local import stack as local_stack
from platform_assets.curated.assets import curated_assets
from platform_assets.paths import curated_prefix
from resources.errors import ServiceUnavailableError
from resources.spark import SparkResource


@pytest.fixture(scope="module")
def spark_connect(stack):
    local_stack.spark_connect_up()
    yield local_stack.spark_connect_url()
    local_stack.spark_connect_down()


def fingerprint(clickhouse, object_store, name: str) -> tuple:
    """Rows and an order-independent checksum of a curated prefix, computed by ClickHouse from the Parquet."""
    src = object_store.clickhouse_s3(curated_prefix(name) + "**.parquet")
    return tuple(clickhouse.rows(f"SELECT count(), sum(cityHash64(*)) FROM {src}")[0])


def test_curated_layer_on_spark_connect_equals_local_session(lineage, resources, spark_connect, clickhouse,
                                                              object_store):  # fmt: skip
    names = ["region", "nation", "customer", "orders", "lineitem"]
    before = {n: fingerprint(clickhouse, object_store, n) for n in names}
    connect = SparkResource(
        object_store=resources["object_store"],
        remote=spark_connect,
        token=dg.EnvVar("SPARK_CONNECT_TOKEN"),
    )
    result = dg.materialize(
        curated_assets,
        resources={"spark": connect},
        selection=dg.AssetSelection.assets(*[dg.AssetKey(["curated", n]) for n in names]),
        partition_key="1998-08-03",
    )
    assert result.success
    after = {n: fingerprint(clickhouse, object_store, n) for n in names}
    assert after == before
    assert all(rows > 0 for rows, _ in after.values())


def test_spark_connect_with_a_wrong_token_names_vps_2(resources, spark_connect):
    wrong = SparkResource(object_store=resources["object_store"], remote=spark_connect, token="not-the-token")
    with (
        wrong.process_config_and_initialize_cm() as spark,
        pytest.raises(ServiceUnavailableError, match=rf"spark-connect on vps_2 .* {spark_connect}"),
    ):
        spark.ping()
