"""The prod (2-shard, ON CLUSTER) loads, as the statements they issue.

No ClickHouse server can run here, so the prod path is recorded, not executed: the same ``load_days``,
``rebuild`` and ``apply_changes`` that the tests run for real on chDB's one-shard cluster issue these statements
against vps_3.
"""

import re
from datetime import date

from pydantic import PrivateAttr

from platform_assets.catalog import TABLES_BY_NAME, clickhouse_type
from platform_assets.warehouse.load import load_days
from platform_assets.warehouse.models import MODEL_SQL, apply_changes, rebuild
from resources.clickhouse import ClickHouseResource
from resources.environments import resource_defs
from resources.object_store import ObjectStoreResource

LINEITEM = TABLES_BY_NAME["lineitem"]
FCT = MODEL_SQL["fct_lineitem"]


class RecordingClickHouse(ClickHouseResource):
    """Records the SQL instead of sending it; answers DESCRIBE with the curated Parquet's columns."""

    _sql: list[str] = PrivateAttr(default_factory=list)

    def command(self, sql, parameters=None):
        self._sql.append(sql)

    def rows(self, sql, parameters=None):
        self._sql.append(sql)
        if sql.startswith("DESCRIBE"):
            return [(c.name, clickhouse_type(c.type)) for c in LINEITEM.all_columns] + [("is_deleted", "Int8")]
        if "system.tables" in sql:
            return [(6_000_000, 123, 2)]
        if sql.startswith("SELECT count()"):
            return [(1234,)]
        return []

    def columns(self, database, table):
        return []


class ListingStore(ObjectStoreResource):
    """Lists one curated object for each of two change days (no S3 server needed)."""

    def list_keys(self, prefix):
        return [(f"{prefix}part-0.parquet", 10)] if "change_date=1998-08-0" in prefix else []


def prod_resources(monkeypatch):
    for var in ("CLICKHOUSE_HOST", "CLICKHOUSE_PORT", "CLICKHOUSE_CLUSTER", "S3_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    prod = resource_defs("prod")
    ch_cfg = prod["clickhouse"]
    assert (ch_cfg.cluster, ch_cfg.ddl_on_cluster) == ("platform", True)
    ch = RecordingClickHouse(host=ch_cfg.host, port=ch_cfg.port, cluster="platform", password="x")
    store = ListingStore(endpoint_url=prod["object_store"].endpoint_url, bucket="lake",
                         aws_access_key_id="k", aws_secret_access_key="s")  # fmt: skip
    return ch, store


def test_prod_daily_upsert_is_sharded_and_issued_on_cluster(monkeypatch):
    ch, store = prod_resources(monkeypatch)
    result = load_days(ch, store, LINEITEM, [date(1998, 8, 4), date(1998, 8, 5), date(1998, 8, 20)])
    sql = ch._sql
    ddl = [s for s in sql if re.match(r"(CREATE|DROP|EXCHANGE)", s)]
    assert ddl and all(" ON CLUSTER platform" in s for s in ddl), ddl
    text = "\n".join(sql)
    assert "CREATE TABLE IF NOT EXISTS warehouse.lineitem_local ON CLUSTER platform\n(\n  `l_orderkey` Int64," in text
    assert (
        "`is_deleted` UInt8\n)\nENGINE = ReplacingMergeTree(updated_at, is_deleted) ORDER BY (l_orderkey, l_linenumber)"
        in text
    )
    assert (
        "CREATE OR REPLACE TABLE warehouse.lineitem ON CLUSTER platform AS warehouse.lineitem_local "
        "ENGINE = Distributed(platform, warehouse, lineitem_local, cityHash64(l_orderkey))"
    ) in sql
    inserts = [s for s in sql if s.startswith("INSERT")]
    assert len(inserts) == 1 and inserts[0].startswith("INSERT INTO warehouse.lineitem (`l_orderkey`,")
    # one insert for the days that have objects; ClickHouse routes each row to its shard
    assert "http://10.104.0.2:8333/lake/curated/lineitem/change_date={1998-08-04,1998-08-05}/*.parquet" in inserts[0]
    assert "toUInt8(`is_deleted`)" in inserts[0] and "distributed_foreground_insert = 1" in inserts[0]
    assert not any("EXCHANGE" in s or "DROP" in s for s in sql)  # upserts never drop or swap the table
    assert result.rows == 1234


def test_prod_model_rebuild_swaps_each_shard_on_cluster(monkeypatch):
    ch, _ = prod_resources(monkeypatch)
    result = rebuild(ch, FCT)
    sql = ch._sql
    ddl = [s for s in sql if re.match(r"(CREATE|DROP|EXCHANGE)", s)]
    assert ddl and all(" ON CLUSTER platform" in s for s in ddl), ddl
    text = "\n".join(sql)
    assert "CREATE TABLE warehouse.fct_lineitem_local__staging ON CLUSTER platform\n(\n  `l_orderkey` Int64," in text
    assert "ENGINE = ReplacingMergeTree(updated_at, is_deleted) ORDER BY (l_orderkey, l_linenumber)" in text
    inserts = [s for s in sql if s.startswith("INSERT")]
    assert len(inserts) == 1
    assert inserts[0].startswith("INSERT INTO warehouse.fct_lineitem__staging_dist (`l_orderkey`,")
    # the whole join of the warehouse tables' current state; subqueries over Distributed tables shipped once
    assert "FROM warehouse.lineitem WHERE is_deleted = 0" in inserts[0] and "FROM warehouse.orders" in inserts[0]
    assert "final = 1, distributed_product_mode = 'global'" in inserts[0]
    exchange = sql.index(
        "EXCHANGE TABLES warehouse.fct_lineitem_local__staging AND warehouse.fct_lineitem_local ON CLUSTER platform"
    )
    final = sql.index(
        "CREATE OR REPLACE TABLE warehouse.fct_lineitem ON CLUSTER platform AS warehouse.fct_lineitem_local "
        "ENGINE = Distributed(platform, warehouse, fct_lineitem_local, cityHash64(l_orderkey))"
    )
    assert sql.index(inserts[0]) < exchange < final
    assert any("clusterAllReplicas(platform, system.tables)" in s for s in sql)
    assert result.rows == 6_000_000 and result.mode == "rebuild"


class ExistingTablesClickHouse(RecordingClickHouse):
    def columns(self, database, table):
        return [("l_orderkey", "Int64")]


def test_prod_model_changes_go_through_the_distributed_table(monkeypatch):
    ch, store = prod_resources(monkeypatch)
    ch = ExistingTablesClickHouse(host=ch.host, port=ch.port, cluster="platform", password="x")
    result = apply_changes(ch, store, FCT, {"lineitem": [date(1998, 8, 4)], "orders": [date(1998, 8, 5)]})
    sql = ch._sql
    assert result.mode == "incremental" and result.keys == 1234
    # the run's keys live in a table on the node running the statements, shipped to the shards (GLOBAL)
    created = [s for s in sql if s.startswith("CREATE TABLE warehouse.`fct_lineitem__changes_")]
    assert len(created) == 1 and "ON CLUSTER" not in created[0] and "ENGINE = Memory" in created[0]
    assert "curated/lineitem/change_date={1998-08-04}/*.parquet" in created[0]
    assert "curated/orders/change_date={1998-08-05}/*.parquet" in created[0]
    changes = created[0].split()[2]
    inserts = [s for s in sql if s.startswith("INSERT")]
    assert len(inserts) == 2 and all(s.startswith("INSERT INTO warehouse.fct_lineitem (`l_orderkey`,") for s in inserts)
    assert f"l_orderkey GLOBAL IN (SELECT key FROM {changes})" in inserts[0]
    assert f"GLOBAL INNER JOIN {changes} AS c" in inserts[1] and "GLOBAL NOT IN" in inserts[1]  # delete markers
    assert not any(re.match(r"(EXCHANGE|CREATE OR REPLACE)", s) for s in sql)  # changes never swap the table
    assert f"DROP TABLE IF EXISTS {changes} SYNC" in sql


def test_a_column_added_to_the_catalog_is_added_on_every_shard(monkeypatch):
    import dataclasses

    from platform_assets.catalog import Column
    from platform_assets.warehouse.load import ensure_table, table_columns

    ch, _ = prod_resources(monkeypatch)
    customer = TABLES_BY_NAME["customer"]
    grown = dataclasses.replace(customer, columns=(*customer.columns, Column("c_loyalty", "int32")))
    monkeypatch.setattr(RecordingClickHouse, "columns", lambda self, db, table: table_columns(customer))
    assert ensure_table(ch, grown) == "warehouse.customer"
    sql = ch._sql
    assert sql[0] == (
        "ALTER TABLE warehouse.customer_local ON CLUSTER platform ADD COLUMN IF NOT EXISTS `c_loyalty` Int32 "
        "AFTER `c_comment`"
    )
    assert any(s.startswith("CREATE OR REPLACE TABLE warehouse.customer ON CLUSTER platform AS") for s in sql)
    # a dropped or retyped column is not added: it needs the table rebuilt
    shrunk = dataclasses.replace(customer, columns=customer.columns[:-1])
    try:
        ensure_table(ch, shrunk)
    except ValueError as exc:
        assert "columns differ from the catalog" in str(exc)
    else:
        raise AssertionError("a dropped column was accepted")
