"""Checks fail when their condition breaks; bad input fails loudly and keeps what was already loaded."""

import dataclasses
import datetime as dt
import re

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from platform_assets.catalog import TABLES_BY_NAME, Model, arrow_schema
from platform_assets.definitions import INCREMENTAL_JOB, defs
from platform_assets.marts.assets import build_mart, read_mart
from platform_assets.marts.queries import MARTS
from platform_assets.paths import curated_prefix, raw_prefix
from platform_assets.raw.extract import SchemaMismatchError, conform_batch, extract_days
from platform_assets.warehouse.checks import reconcile_check, unique_check
from platform_assets.warehouse.load import WarehouseSchemaError, check_schema, load_days, local_name
from platform_assets.warehouse.reconcile import warehouse_latest_change
from resources.settings import data_dir
from tests.shared_platform import instance_with_days

REGION = TABLES_BY_NAME["region"]


SEED_DAY = "1998-08-03"


def run_partition(keys: list[list[str]], partition: str = SEED_DAY) -> dg.ExecuteInProcessResult:
    d = defs()
    return d.resolve_job_def(INCREMENTAL_JOB).execute_in_process(
        partition_key=partition, asset_selection=[dg.AssetKey(k) for k in keys], raise_on_error=False,
        instance=instance_with_days(partition),
    )  # fmt: skip


def checks_of(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def test_reconciliation_fails_when_the_warehouse_diverges_and_a_rerun_repairs_it(lineage, oltp, clickhouse):
    local = local_name(REGION, clickhouse.cluster)
    # same key and version, another value: the last insert wins under FINAL, as a corrupted load would
    clickhouse.command(
        f"INSERT INTO warehouse.{local} SELECT r_regionkey, 'TAMPERED', r_comment, updated_at, is_deleted "
        f"FROM warehouse.{local} FINAL WHERE r_regionkey = 1"
    )
    loaded = warehouse_latest_change(clickhouse, REGION)
    failed = reconcile_check(clickhouse, oltp, REGION, [dt.date(1998, 8, 3)], loaded)
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    assert "warehouse.region partition 1998-08-03 differs from the OLTP" in failed.description
    result = run_partition([["warehouse", "region"]], SEED_DAY)  # re-inserting the day puts the OLTP row last
    assert result.success and checks_of(result)["reconciles_with_oltp"].passed
    assert clickhouse.scalar("SELECT r_name FROM warehouse.region FINAL WHERE r_regionkey = 1") == "AMERICA"


def test_unique_key_check_fails_when_the_sort_key_does_not_match_the_primary_key(lineage, clickhouse):
    """FINAL collapses rows by the table's sort key; a table sorted by more than its key keeps duplicates."""
    probe = Model("probe_dupes", primary_key=("k",), shard_key="k", depends_on=(), description="")
    clickhouse.command("DROP TABLE IF EXISTS warehouse.probe_dupes SYNC")
    clickhouse.command(
        "CREATE TABLE warehouse.probe_dupes (k Int32, v String, updated_at DateTime64(6, 'UTC'), is_deleted UInt8) "
        "ENGINE = ReplacingMergeTree(updated_at, is_deleted) ORDER BY (k, v)"
    )
    try:
        clickhouse.command(
            "INSERT INTO warehouse.probe_dupes VALUES (1, 'a', now(), 0), (1, 'b', now(), 0), (2, 'c', now(), 0)"
        )
        check = unique_check(clickhouse, probe)
        assert not check.passed
        assert check.description == "warehouse.probe_dupes: 1 duplicate key(s) on (k)"
        clickhouse.command("DELETE FROM warehouse.probe_dupes WHERE v = 'b'")
        assert unique_check(clickhouse, probe).passed
    finally:
        clickhouse.command("DROP TABLE IF EXISTS warehouse.probe_dupes SYNC")


def test_null_keys_in_curated_input_fail_the_check_and_load_nothing(lineage, clickhouse, object_store):
    day = "1998-09-01"
    before = clickhouse.rows("SELECT count(), sum(r_regionkey) FROM warehouse.region")
    stamp = pa.array([dt.datetime(1998, 9, 1, tzinfo=dt.UTC)] * 2, pa.timestamp("us", tz="UTC"))
    rows = pa.table(
        {
            "r_regionkey": pa.array([None, 42], pa.int32()),
            "r_name": ["NOKEY", "OK"],
            "r_comment": ["c", "c"],
            "updated_at": stamp,
            "is_deleted": pa.array([0, 0], pa.int8()),
        }
    )
    key = f"{curated_prefix('region', day)}part-bad.parquet"
    pq.write_table(rows, f"{object_store.bucket}/{key}", filesystem=object_store.arrow_fs())
    try:
        result = run_partition([["warehouse", "region"]], day)
    finally:
        object_store.delete_keys([key])
    assert not result.success
    check = checks_of(result)["primary_key_unique_not_null"]
    assert not check.passed and "column r_regionkey: 1 null key(s)" in check.description
    assert clickhouse.rows("SELECT count(), sum(r_regionkey) FROM warehouse.region") == before


def test_conform_batch_names_table_column_and_partition():
    schema = arrow_schema(REGION)
    good = {"r_regionkey": pa.array([1], pa.int32()), "r_name": ["X"], "r_comment": ["c"],
            "updated_at": pa.array([dt.datetime(2020, 1, 1, tzinfo=dt.UTC)], pa.timestamp("us", tz="UTC"))}  # fmt: skip
    assert conform_batch(pa.RecordBatch.from_pydict(good), REGION, schema, "2020-01-01").num_rows == 1
    with pytest.raises(SchemaMismatchError, match=r"table region, partition 2020-01-01, column r_name: 1 null"):
        conform_batch(pa.RecordBatch.from_pydict({**good, "r_name": [None]}), REGION, schema, "2020-01-01")
    with pytest.raises(
        SchemaMismatchError, match=r"table region, partition p, column r_regionkey: expected int32, got string"
    ):
        conform_batch(pa.RecordBatch.from_pydict({**good, "r_regionkey": ["one"]}), REGION, schema, "p")
    with pytest.raises(SchemaMismatchError, match=r"table region, partition p: columns missing \['r_comment'\]"):
        conform_batch(pa.RecordBatch.from_pydict({k: v for k, v in good.items() if k != "r_comment"}), REGION,
                      schema, "p")  # fmt: skip


@pytest.mark.parametrize(
    ("change", "undo", "message"),
    [
        ("ADD COLUMN r_extra integer", "DROP COLUMN r_extra", "column r_extra: added in the OLTP"),
        (
            "ALTER COLUMN r_comment TYPE bytea USING convert_to(r_comment, 'UTF8')",
            "ALTER COLUMN r_comment TYPE text USING convert_from(r_comment, 'UTF8')",
            "column r_comment: retyped in the OLTP, catalog text, OLTP bytea",
        ),
    ],
    ids=["column-added", "column-retyped"],
)
def test_schema_drift_in_oltp_fails_the_extract_and_keeps_raw_objects(
    lineage, oltp, object_store, change, undo, message
):
    before = object_store.list_keys(raw_prefix("region", SEED_DAY))
    with oltp.connect(autocommit=True) as conn:
        snapshot = conn.execute("SELECT * FROM region ORDER BY r_regionkey").fetchall()
        conn.execute(f"ALTER TABLE region {change}")
    try:
        with pytest.raises(
            SchemaMismatchError, match=re.escape(f"partition 1998-08-03: schema drift: table region, {message}")
        ):
            extract_days(oltp, object_store, REGION, [dt.date(1998, 8, 3)], data_dir() / "duckdb_extensions")
    finally:
        with oltp.connect(autocommit=True) as conn:
            conn.execute(f"ALTER TABLE region {undo}")
            assert conn.execute("SELECT * FROM region ORDER BY r_regionkey").fetchall() == snapshot
    assert object_store.list_keys(raw_prefix("region", SEED_DAY)) == before


def test_bad_curated_parquet_fails_the_load_and_keeps_the_warehouse_table(lineage, clickhouse, object_store):
    day = dt.date(1998, 9, 2)
    rows_before = clickhouse.rows("SELECT count(), sum(r_regionkey) FROM warehouse.region")
    stamp = pa.array([dt.datetime(1998, 9, 2, tzinfo=dt.UTC)], pa.timestamp("us", tz="UTC"))
    bad = pa.table(
        {"r_regionkey": ["not-a-number"], "r_name": ["X"], "r_comment": ["c"], "updated_at": stamp,
         "is_deleted": pa.array([0], pa.int8())}
    )  # fmt: skip
    key = f"{curated_prefix('region', day)}zz-bad.parquet"
    pq.write_table(bad, f"{object_store.bucket}/{key}", filesystem=object_store.arrow_fs())
    try:
        with pytest.raises(
            WarehouseSchemaError, match=re.escape("table region, partition 1998-09-02, column r_regionkey")
        ):
            load_days(clickhouse, object_store, REGION, [day])
    finally:
        object_store.delete_keys([key])
    assert clickhouse.rows("SELECT count(), sum(r_regionkey) FROM warehouse.region") == rows_before


def test_warehouse_schema_check_names_table_and_column():
    cols = [(c.name, "String") for c in REGION.all_columns]
    with pytest.raises(WarehouseSchemaError, match="table region, column r_regionkey: expected Int32, got String"):
        check_schema(REGION, cols)


def test_a_failing_mart_query_keeps_the_previous_mart(lineage, clickhouse):
    """A mart is replaced in one statement; when its query fails mid-way the readers keep the last good table."""
    good = MARTS[0]
    _, rows_before = read_mart(clickhouse, good)
    assert rows_before
    failing = dataclasses.replace(good, sql=f"SELECT *, throwIf(count() OVER () > 0, 'boom') AS x FROM ({good.sql})")
    with pytest.raises(Exception, match="boom"):
        build_mart(clickhouse, failing)
    assert read_mart(clickhouse, good)[1] == rows_before
    tables = {r[0] for r in clickhouse.rows("SELECT name FROM system.tables WHERE database = 'marts'")}
    assert tables <= {m.name for m in MARTS}, f"a failed build left tables behind: {tables}"
    build_mart(clickhouse, good)  # and a rebuild writes the same rows
    assert read_mart(clickhouse, good)[1] == rows_before
