"""Curated-layer Spark code on a real local SparkSession: latest version per key wins."""

import datetime as dt
from decimal import Decimal

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


def test_fct_lineitem_carries_order_and_net_revenue(spark):
    t = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    li = spark.createDataFrame(
        [(7, 1, Decimal("100.00"), Decimal("0.10"), t)],
        "l_orderkey bigint, l_linenumber bigint, l_extendedprice decimal(15,2), l_discount decimal(15,2), "
        "updated_at timestamp",
    )
    later = dt.datetime(2020, 1, 5, tzinfo=dt.UTC)
    orders = spark.createDataFrame(
        [(7, 42, dt.date(1995, 1, 1), "O", "1-URGENT", 0, later)],
        "o_orderkey bigint, o_custkey bigint, o_orderdate date, o_orderstatus string, o_orderpriority string, "
        "o_shippriority int, updated_at timestamp",
    )
    row = tr.fct_lineitem(li, orders).collect()[0]
    assert row.o_custkey == 42 and row.l_net_revenue == Decimal("90.0000")
    assert row.updated_at.replace(tzinfo=dt.UTC) == later or row.updated_at == later.replace(tzinfo=None)
