"""Curated-layer Spark code on a real local SparkSession: latest version per key wins."""

import datetime as dt

import pytest

from platform_assets.catalog import TABLES_BY_NAME
from platform_assets.curated import transforms as tr


@pytest.fixture(scope="session")
def spark(resources):
    with resources["spark"].process_config_and_initialize_cm() as res:
        yield res.session


def test_latest_per_key_keeps_the_newest_version(spark):
    region = TABLES_BY_NAME["region"]
    t1, t2 = dt.datetime(2020, 1, 1, tzinfo=dt.UTC), dt.datetime(2020, 1, 2, tzinfo=dt.UTC)
    df = spark.createDataFrame(
        [(1, "OLD", "c", t1), (1, "NEW", "c", t2), (2, "ONLY", "c", t1)],
        "r_regionkey int, r_name string, r_comment string, updated_at timestamp",
    )
    out = sorted(tr.latest_per_key(df, region).select("r_regionkey", "r_name").collect())
    assert [tuple(r) for r in out] == [(1, "NEW"), (2, "ONLY")]
