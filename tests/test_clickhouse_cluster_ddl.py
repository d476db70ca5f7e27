"""The prod (2-shard, ON CLUSTER) load, as the statements it issues.

No ClickHouse server can run here, so the prod path is recorded, not executed: the same ``load_table`` that
the tests run for real on chDB's one-shard cluster issues these statements against vps_3.
"""

import re

from pydantic import PrivateAttr

from platform_assets.catalog import TABLES_BY_NAME, clickhouse_type
from platform_assets.warehouse.load import load_table
from resources.clickhouse import ClickHouseResource
from resources.environments import resource_defs
from resources.object_store import ObjectStoreResource


class RecordingClickHouse(ClickHouseResource):
    """Records the SQL instead of sending it; answers DESCRIBE with the catalog's own columns."""

    _sql: list[str] = PrivateAttr(default_factory=list)

    def command(self, sql, parameters=None):
        self._sql.append(sql)

    def rows(self, sql, parameters=None):
        self._sql.append(sql)
        if sql.startswith("DESCRIBE"):
            return [(c.name, clickhouse_type(c.type)) for c in TABLES_BY_NAME["lineitem"].all_columns]
        if "system.tables" in sql:
            return [(6_000_000, 123, 2)]
        return []

    def columns(self, database, table):
        return []


def test_prod_load_is_sharded_and_issued_on_cluster(monkeypatch):
    for var in ("CLICKHOUSE_HOST", "CLICKHOUSE_PORT", "CLICKHOUSE_CLUSTER", "S3_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    prod = resource_defs("prod")
    ch_cfg = prod["clickhouse"]
    assert (ch_cfg.cluster, ch_cfg.ddl_on_cluster) == ("platform", True)
    ch = RecordingClickHouse(host=ch_cfg.host, port=ch_cfg.port, cluster="platform", password="x")
    store = ObjectStoreResource(endpoint_url=prod["object_store"].endpoint_url, bucket="lake",
                                aws_access_key_id="k", aws_secret_access_key="s")  # fmt: skip
    result = load_table(ch, store, TABLES_BY_NAME["lineitem"])
    sql = ch._sql
    ddl = [s for s in sql if re.match(r"(CREATE|DROP|EXCHANGE)", s)]
    assert ddl and all(" ON CLUSTER platform" in s for s in ddl), ddl
    text = "\n".join(sql)
    assert "CREATE TABLE warehouse.lineitem_local__staging ON CLUSTER platform\n(\n  `l_orderkey` Int64," in text
    assert "ENGINE = ReplacingMergeTree(updated_at) ORDER BY (l_orderkey, l_linenumber)" in text
    assert (
        "CREATE OR REPLACE TABLE warehouse.lineitem__staging_dist ON CLUSTER platform AS "
        "warehouse.lineitem_local__staging ENGINE = Distributed(platform, warehouse, lineitem_local__staging, "
        "cityHash64(l_orderkey))"
    ) in sql
    inserts = [s for s in sql if s.startswith("INSERT")]
    assert len(inserts) == 1 and inserts[0].startswith("INSERT INTO warehouse.lineitem__staging_dist SELECT * FROM s3(")
    assert "http://10.104.0.2:8333/lake/curated/lineitem/*.parquet" in inserts[0]
    assert "distributed_foreground_insert = 1" in inserts[0]
    # each shard swaps its slice in atomically, then the Distributed table points at the new local tables
    exchange = sql.index(
        "EXCHANGE TABLES warehouse.lineitem_local__staging AND warehouse.lineitem_local ON CLUSTER platform"
    )
    final = sql.index(
        "CREATE OR REPLACE TABLE warehouse.lineitem ON CLUSTER platform AS warehouse.lineitem_local "
        "ENGINE = Distributed(platform, warehouse, lineitem_local, cityHash64(l_orderkey))"
    )
    assert sql.index(inserts[0]) < exchange < final
    # rows and bytes are summed over every shard
    assert any("clusterAllReplicas(platform, system.tables)" in s for s in sql)
    assert result.rows == 6_000_000
