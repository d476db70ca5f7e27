"""The prod (2-shard, ON CLUSTER) loads, as the statements they issue.

No ClickHouse server can run here, so the prod path is recorded, not executed: the same ``load_days``,
``rebuild`` and ``apply_changes`` that the tests run for real on chDB (one shard, and two emulated in
``test_two_shards.py``, where the engine's parser checks every ``ON CLUSTER`` statement) issue these statements
against vps_3. Here: which statements, in which order, and what a shard that differs does to them.
"""

import dataclasses
import re
from datetime import date

import pytest
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
    """Records the SQL instead of sending it; answers DESCRIBE with the curated Parquet's columns and keeps track of
    what each Distributed table reads (the generation switch of a model rebuild)."""

    _sql: list[str] = PrivateAttr(default_factory=list)
    _targets: dict[str, tuple[str, str]] = PrivateAttr(default_factory=dict)
    _shards: list[dict[int, list]] = PrivateAttr(default_factory=list)  # shard_columns answers, in order

    def command(self, sql, parameters=None):
        self._sql.append(sql)
        switch = re.match(
            r"CREATE OR REPLACE TABLE warehouse\.(\w+) ON CLUSTER platform AS warehouse\.\w+ "
            r"ENGINE = Distributed\(platform, warehouse, (\w+), (.+)\)$",
            sql,
        )
        if switch:
            self._targets[switch[1]] = (switch[2], switch[3])

    def rows(self, sql, parameters=None):
        self._sql.append(sql)
        if sql.startswith("DESCRIBE"):
            return [(c.name, clickhouse_type(c.type)) for c in LINEITEM.all_columns] + [("is_deleted", "Int8")]
        if "formatQuerySingleLine" in sql:  # same_expression: the engine's formatting, here the text itself
            return [(parameters["a"].replace(" ", "") == parameters["b"].replace(" ", ""),)]
        if "system.tables" in sql:
            return [(6_000_000, 123, 2)]
        if sql.startswith("SELECT count()"):
            return [(1234,)]
        return []

    def columns(self, database, table):
        return []

    def shard_columns(self, database, table):
        return self._shards.pop(0) if self._shards else {1: [], 2: []}

    def distributed_target(self, database, table):
        return self._targets.get(table)


class ListingStore(ObjectStoreResource):
    """Lists one curated object for each of two change days (no S3 server needed)."""

    def list_keys(self, prefix):
        return [(f"{prefix}part-0.parquet", 10)] if "change_date=1998-08-0" in prefix else []


def prod_resources(monkeypatch):
    for var in ("CLICKHOUSE_HOST", "CLICKHOUSE_PORT", "CLICKHOUSE_CLUSTER", "S3_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    prod = resource_defs("prod")
    ch_cfg = prod["clickhouse"]
    assert ch_cfg.cluster == "platform" and ch_cfg.dsn is None  # a real cluster: ON CLUSTER runs there
    ch = RecordingClickHouse(host=ch_cfg.host, port=ch_cfg.port, cluster="platform", password="x")
    store = ListingStore(endpoint_url=prod["object_store"].endpoint_url, bucket="lake",
                         aws_access_key_id="k", aws_secret_access_key="s")  # fmt: skip
    return ch, store


def ddl(sql: list[str]) -> list[str]:
    return [s for s in sql if re.match(r"(CREATE|DROP|EXCHANGE|ALTER)", s)]


def test_prod_daily_upsert_is_sharded_and_issued_on_cluster(monkeypatch):
    from platform_assets.warehouse.load import table_columns

    ch, store = prod_resources(monkeypatch)
    ch._shards = [{1: [], 2: []}, {1: table_columns(LINEITEM), 2: table_columns(LINEITEM)}]  # before, after
    result = load_days(ch, store, LINEITEM, [date(1998, 8, 4), date(1998, 8, 5), date(1998, 8, 20)])
    sql = ch._sql
    assert ddl(sql) and all(" ON CLUSTER platform" in s for s in ddl(sql)), ddl(sql)
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


def test_a_loaded_table_is_checked_on_every_shard_and_its_distributed_table_left_alone(monkeypatch):
    from platform_assets.warehouse.load import table_columns

    ch, store = prod_resources(monkeypatch)
    ch._targets["lineitem"] = ("lineitem_local", "cityHash64(l_orderkey)")
    ch._shards = [{1: table_columns(LINEITEM), 2: table_columns(LINEITEM)}]
    monkeypatch.setattr(RecordingClickHouse, "columns", lambda self, db, table: table_columns(LINEITEM))
    load_days(ch, store, LINEITEM, [date(1998, 8, 4)])
    # nothing to repair; the Distributed table only where a node lacks it (never re-created under readers)
    assert ddl(ch._sql) == [
        "CREATE TABLE IF NOT EXISTS warehouse.lineitem ON CLUSTER platform AS warehouse.lineitem_local "
        "ENGINE = Distributed(platform, warehouse, lineitem_local, cityHash64(l_orderkey))"
    ]


def test_prod_model_rebuild_fills_the_other_generation_on_every_shard_then_switches(monkeypatch):
    ch, _ = prod_resources(monkeypatch)
    first = rebuild(ch, FCT)
    assert first.mode == "rebuild" and first.rows == 6_000_000
    assert ch.distributed_target("warehouse", "fct_lineitem")[0] == "fct_lineitem_local_a"
    ch._sql.clear()
    rebuild(ch, FCT)
    sql = ch._sql
    steps = [s for s in sql if re.match(r"(CREATE|DROP|EXCHANGE|INSERT)", s)]
    loader = next(s.split()[4] for s in steps if s.startswith("CREATE OR REPLACE TABLE scratch."))
    assert steps[0] == "CREATE DATABASE IF NOT EXISTS warehouse ON CLUSTER platform"
    assert steps[1] == "DROP TABLE IF EXISTS warehouse.fct_lineitem_local_b ON CLUSTER platform SYNC"
    assert steps[2].startswith(
        "CREATE TABLE warehouse.fct_lineitem_local_b ON CLUSTER platform\n(\n  `l_orderkey` Int64,"
    )
    assert "ENGINE = ReplacingMergeTree(updated_at, is_deleted) ORDER BY (l_orderkey, l_linenumber)" in steps[2]
    # the rows reach each shard's new generation through a Distributed table on this node only
    assert steps[4] == (
        f"CREATE OR REPLACE TABLE {loader} AS warehouse.fct_lineitem_local_b "
        "ENGINE = Distributed(platform, warehouse, fct_lineitem_local_b, cityHash64(l_orderkey))"
    )
    assert steps[5].startswith(f"INSERT INTO {loader} (`l_orderkey`,")
    # the whole join of the warehouse tables' current state
    assert "FROM warehouse.lineitem WHERE is_deleted = 0" in steps[5] and "FROM warehouse.orders" in steps[5]
    assert "final = 1" in steps[5] and "distributed_foreground_insert = 1" in steps[5]
    assert steps[6] == f"DROP TABLE IF EXISTS {loader} SYNC"
    # one statement per node switches readers from the whole old model to the whole new one; then the old goes
    assert steps[7] == (
        "CREATE OR REPLACE TABLE warehouse.fct_lineitem ON CLUSTER platform AS warehouse.fct_lineitem_local_b "
        "ENGINE = Distributed(platform, warehouse, fct_lineitem_local_b, cityHash64(l_orderkey))"
    )
    assert steps[8:] == ["DROP TABLE IF EXISTS warehouse.fct_lineitem_local_a ON CLUSTER platform SYNC"]
    assert not any("EXCHANGE" in s for s in sql)  # EXCHANGE would swap each shard on its own


def test_a_failed_rebuild_leaves_readers_on_the_old_generation(monkeypatch):
    ch, _ = prod_resources(monkeypatch)
    rebuild(ch, FCT)
    ch._sql.clear()

    def failing_insert(self, sql, parameters=None):
        if sql.startswith("INSERT"):
            raise RuntimeError("shard 2 unreachable")
        RecordingClickHouse.command(self, sql, parameters)

    monkeypatch.setattr(RecordingClickHouse, "command", failing_insert)
    try:
        rebuild(ch, FCT)
    except RuntimeError:
        pass
    else:
        raise AssertionError("the insert's failure was swallowed")
    assert ch.distributed_target("warehouse", "fct_lineitem")[0] == "fct_lineitem_local_a"
    assert not any(s.startswith("DROP TABLE IF EXISTS warehouse.fct_lineitem_local_a") for s in ch._sql)


class ExistingTablesClickHouse(RecordingClickHouse):
    def columns(self, database, table):
        return [("l_orderkey", "Int64")]


def test_prod_model_changes_go_through_the_distributed_table(monkeypatch):
    ch, store = prod_resources(monkeypatch)
    ch = ExistingTablesClickHouse(host=ch.host, port=ch.port, cluster="platform", password="x")
    ch._targets["fct_lineitem"] = ("fct_lineitem_local_a", "cityHash64(l_orderkey)")
    result = apply_changes(ch, store, FCT, {"lineitem": [date(1998, 8, 4)], "orders": [date(1998, 8, 5)]})
    sql = ch._sql
    assert result.mode == "incremental" and result.keys == 1234
    # the run's keys live in a scratch table on the node running the statements, shipped to the shards (GLOBAL)
    created = [s for s in sql if s.startswith("CREATE TABLE scratch.`fct_lineitem__changes_")]
    assert len(created) == 1 and "ON CLUSTER" not in created[0] and "ENGINE = Memory" in created[0]
    assert "curated/lineitem/change_date={1998-08-04}/*.parquet" in created[0]
    assert "curated/orders/change_date={1998-08-05}/*.parquet" in created[0]
    changes = created[0].split()[2]
    inserts = [s for s in sql if s.startswith("INSERT")]
    assert len(inserts) == 2 and all(s.startswith("INSERT INTO warehouse.fct_lineitem (`l_orderkey`,") for s in inserts)
    assert f"l_orderkey GLOBAL IN (SELECT key FROM {changes})" in inserts[0]
    assert f"GLOBAL INNER JOIN {changes} AS c" in inserts[1] and "GLOBAL NOT IN" in inserts[1]  # delete markers
    assert not any("distributed_product_mode" in s for s in sql)  # every GLOBAL is written where it is needed
    assert not any(re.match(r"(EXCHANGE|CREATE OR REPLACE)", s) for s in sql)  # changes never swap the table
    assert f"DROP TABLE IF EXISTS {changes} SYNC" in sql


def test_a_model_whose_shard_key_changed_is_rebuilt_to_move_every_row(monkeypatch):
    ch, store = prod_resources(monkeypatch)
    ch = ExistingTablesClickHouse(host=ch.host, port=ch.port, cluster="platform", password="x")
    ch._targets["fct_lineitem"] = ("fct_lineitem_local_a", "cityHash64(l_partkey)")
    result = apply_changes(ch, store, FCT, {"lineitem": [date(1998, 8, 4)]})
    assert result.mode == "rebuild"
    assert ch.distributed_target("warehouse", "fct_lineitem") == ("fct_lineitem_local_b", "cityHash64(l_orderkey)")


CUSTOMER = TABLES_BY_NAME["customer"]


def grown_customer():
    import dataclasses

    from platform_assets.catalog import Column

    return dataclasses.replace(CUSTOMER, columns=(*CUSTOMER.columns, Column("c_loyalty", "int32")))


def test_a_column_added_to_the_catalog_is_added_on_every_shard(monkeypatch):
    from platform_assets.warehouse.load import ensure_table, table_columns

    ch, _ = prod_resources(monkeypatch)
    grown = grown_customer()
    ch._targets["customer"] = ("customer_local", "cityHash64(c_custkey)")
    ch._shards = [
        {1: table_columns(CUSTOMER), 2: table_columns(CUSTOMER)},
        {1: table_columns(grown), 2: table_columns(grown)},
    ]
    assert ensure_table(ch, grown) == "warehouse.customer"
    sql = ch._sql
    assert (
        "ALTER TABLE warehouse.customer_local ON CLUSTER platform ADD COLUMN IF NOT EXISTS `c_loyalty` Int32 "
        "AFTER `c_comment`"
    ) in sql
    # the Distributed table is re-created with the new column on every node
    assert any(s.startswith("CREATE OR REPLACE TABLE warehouse.customer ON CLUSTER platform AS") for s in sql)


def test_a_shard_that_missed_a_change_is_repaired_and_named_when_it_cannot_be(monkeypatch):
    from platform_assets.warehouse.load import WarehouseSchemaError, ensure_table, table_columns

    ch, _ = prod_resources(monkeypatch)
    grown = grown_customer()
    have, behind = table_columns(grown), table_columns(CUSTOMER)
    # shard 2 missed the ALTER (queued or failed there): re-issued ON CLUSTER, a no-op on shard 1
    ch._shards = [{1: have, 2: behind}, {1: have, 2: have}]
    ensure_table(ch, grown)
    assert any(s.startswith("ALTER TABLE warehouse.customer_local ON CLUSTER platform ADD COLUMN IF NOT EXISTS")
               for s in ch._sql)  # fmt: skip
    # shard 2 has no table at all: CREATE … IF NOT EXISTS on the cluster creates it there only
    ch._sql.clear()
    ch._shards = [{1: have, 2: []}, {1: have, 2: have}]
    ensure_table(ch, grown)
    assert any(s.startswith("CREATE TABLE IF NOT EXISTS warehouse.customer_local ON CLUSTER platform") for s in ch._sql)
    # the repair did not take: the load stops, naming the shard, before a row is routed there
    ch._shards = [{1: have, 2: behind}, {1: have, 2: behind}]
    with pytest.raises(WarehouseSchemaError, match=r"warehouse.customer_local on shard 2: still differs"):
        ensure_table(ch, grown)
    # a shard whose column was retyped cannot be repaired by a statement: named, nothing issued
    ch._sql.clear()
    retyped = [(n, "String" if n == "c_acctbal" else t) for n, t in have]
    ch._shards = [{1: have, 2: retyped}]
    with pytest.raises(WarehouseSchemaError, match=r"warehouse.customer_local on shard 2: columns differ"):
        ensure_table(ch, grown)
    assert not [s for s in ch._sql if s.startswith(("ALTER", "CREATE"))]
    # a dropped column on every shard is not added back: it needs the table rebuilt
    shrunk = dataclasses.replace(CUSTOMER, columns=CUSTOMER.columns[:-1])
    ch._shards = [{1: behind, 2: behind}]
    with pytest.raises(WarehouseSchemaError, match="columns differ from the catalog"):
        ensure_table(ch, shrunk)


def test_a_changed_shard_key_of_a_table_is_refused_naming_the_table(monkeypatch):
    from platform_assets.warehouse.load import WarehouseSchemaError, ensure_table, table_columns

    ch, _ = prod_resources(monkeypatch)
    ch._targets["customer"] = ("customer_local", "cityHash64(c_custkey)")
    ch._shards = [{1: table_columns(CUSTOMER), 2: table_columns(CUSTOMER)}]
    moved = dataclasses.replace(CUSTOMER, shard_key="cityHash64(c_nationkey)")
    with pytest.raises(WarehouseSchemaError, match=r"table warehouse.customer: the catalog's shard_key is "
                       r"cityHash64\(c_nationkey\), the table is sharded by cityHash64\(c_custkey\)"):  # fmt: skip
        ensure_table(ch, moved)
    assert not [s for s in ch._sql if "Distributed" in s]  # nothing re-created: the rows stay readable
