"""One Spark code path, two ways to run it: the stack's Spark Connect server (from the pyspark wheel, warm for every
run, the default as on vps_2) and a local session in the run's process (``SPARK_MASTER``: notebooks, one-off
scripts, the batch pods). Both build the same curated layer."""

import dagster as dg
import pytest

from platform_assets.curated.assets import curated_assets
from platform_assets.paths import curated_prefix
from resources.environments import spark_remote
from resources.errors import ServiceUnavailableError
from resources.settings import data_dir, local_spark_connect_url, s3a_jars_dir
from resources.spark import SparkResource
from tests.shared_platform import instance_with_days


@pytest.fixture(scope="module")
def spark_connect(stack) -> str:
    """The stack's server (``make up`` and the test stack start it): what local runs use by default."""
    assert spark_remote("local") == local_spark_connect_url()
    return local_spark_connect_url()


def fingerprint(clickhouse, object_store, name: str) -> tuple:
    """Rows and an order-independent checksum of a curated prefix, computed by ClickHouse from the Parquet."""
    src = object_store.clickhouse_s3(curated_prefix(name) + "**.parquet")
    return tuple(clickhouse.rows(f"SELECT count(), sum(cityHash64(*)) FROM {src}")[0])


def curated_provenance(result: dg.ExecuteInProcessResult) -> dict[str, set[tuple[str, str]]]:
    """Per curated asset: the Spark endpoints and application ids its materializations' metadata name."""
    found: dict[str, set[tuple[str, str]]] = {}
    for event in result.get_asset_materialization_events():
        if event.asset_key.path[0] == "curated":
            md = event.event_specific_data.materialization.metadata
            where = (md["spark_endpoint"].value, md["spark_app_id"].value)
            found.setdefault(event.asset_key.to_user_string(), set()).add(where)
    return found


def server_app_id(resources) -> str:
    """The stack's Spark Connect server's application id, asked of the server itself."""
    with resources["spark"].process_config_and_initialize_cm() as spark:
        return spark.session.conf.get("spark.app.id")


def test_the_lineage_ran_on_the_warm_server(lineage, resources, spark_connect):
    """Every curated table of the run was built by the one application the server keeps for its life — not by a
    local JVM the run would have started (its endpoint would read ``local[…]``, its id another)."""
    ran_on = curated_provenance(lineage)
    assert sorted(ran_on) == sorted(a.key.to_user_string() for a in curated_assets)
    assert set().union(*ran_on.values()) == {(spark_connect, server_app_id(resources))}


def test_a_local_session_builds_the_same_curated_layer_as_spark_connect(lineage, resources, spark_connect,
                                                                         clickhouse, object_store):  # fmt: skip
    names = ["region", "nation", "customer", "orders", "lineitem"]
    before = {n: fingerprint(clickhouse, object_store, n) for n in names}  # built on Spark Connect by the lineage
    local = SparkResource(object_store=resources["object_store"], master="local[2]", s3a_jars_dir=str(s3a_jars_dir()),
                          local_dir=str(data_dir() / "spark-local"))  # fmt: skip
    result = dg.materialize(
        curated_assets,
        resources={"spark": local, "k8s_batch": resources["k8s_batch"]},
        selection=dg.AssetSelection.assets(*[dg.AssetKey(["curated", n]) for n in names]),
        partition_key="1998-08-03",
        instance=instance_with_days("1998-08-03"),
    )
    assert result.success
    ((endpoint, app),) = set().union(*curated_provenance(result).values())  # one local application built all five
    assert endpoint == "local[2]"
    assert app != server_app_id(resources)
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
