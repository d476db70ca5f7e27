"""Checks fail when their condition breaks; bad input fails loudly and keeps what was already loaded."""

import datetime as dt

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from platform_assets.catalog import TABLES_BY_NAME, arrow_schema
from platform_assets.definitions import defs
from platform_assets.paths import curated_prefix, raw_prefix
from platform_assets.raw.extract import SchemaMismatchError, conform_batch, extract_table
from platform_assets.warehouse.load import WarehouseSchemaError, check_schema, load_table, local_name
from resources.settings import data_dir

REGION = TABLES_BY_NAME["region"]


def run_checks(asset: list[str]) -> dict[str, dg.AssetCheckEvaluation]:
    """Execute only the checks of one asset (not the asset itself) through Dagster."""
    d = defs()
    result = dg.materialize(
        [*d.assets, *d.asset_checks],
        resources=d.resources,
        selection=dg.AssetSelection.checks_for_assets(dg.AssetKey(asset)),
        raise_on_error=False,
    )
    assert not result.get_asset_materialization_events()
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def test_raw_count_check_fails_when_oltp_and_raw_diverge(lineage, oltp):
    assert run_checks(["raw", "region"])["row_count_matches_oltp"].passed
    with oltp.connect(autocommit=True) as conn:
        conn.execute("INSERT INTO region VALUES (99, 'ATLANTIS', 'sunk', now())")
    try:
        check = run_checks(["raw", "region"])["row_count_matches_oltp"]
        assert not check.passed
        assert check.description == "region: OLTP has 6 rows, raw has 5"
    finally:
        with oltp.connect(autocommit=True) as conn:
            conn.execute("DELETE FROM region WHERE r_regionkey = 99")


def test_warehouse_checks_fail_on_duplicates_and_recover_on_reload(lineage, resources, clickhouse, object_store):
    local = local_name(TABLES_BY_NAME["nation"], clickhouse.cluster)
    clickhouse.command(f"INSERT INTO warehouse.{local} SELECT * FROM warehouse.{local} WHERE n_nationkey < 3")
    checks = run_checks(["warehouse", "nation"])
    assert not checks["primary_key_unique"].passed
    assert checks["primary_key_unique"].description == "warehouse.nation: 3 duplicate row(s) on (n_nationkey)"
    load_table(clickhouse, object_store, TABLES_BY_NAME["nation"])  # re-materializing repairs it
    assert all(c.passed for c in run_checks(["warehouse", "nation"]).values())


def test_rematerializing_gives_the_same_objects_and_tables(lineage, resources, clickhouse, object_store):
    keys = [dg.AssetKey([layer, "orders"]) for layer in ("raw", "curated", "warehouse")]
    before_raw = object_store.list_keys(raw_prefix("orders"))
    before = clickhouse.rows("SELECT count(), sum(o_totalprice), uniqExact(o_orderkey) FROM warehouse.orders")
    d = defs()
    for _ in range(2):
        result = d.resolve_implicit_global_asset_job_def().execute_in_process(asset_selection=keys)
        assert result.success
    after_raw = object_store.list_keys(raw_prefix("orders"))
    assert len(after_raw) == len(before_raw) and [s for _, s in after_raw] == [s for _, s in before_raw]
    assert clickhouse.rows("SELECT count(), sum(o_totalprice), uniqExact(o_orderkey) FROM warehouse.orders") == before


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
        ("ADD COLUMN r_extra integer", "DROP COLUMN r_extra", r"schema drift, column\(s\) added \['r_extra'\]"),
        (
            "ALTER COLUMN r_comment TYPE bytea USING convert_to(r_comment, 'UTF8')",
            "ALTER COLUMN r_comment TYPE text USING convert_from(r_comment, 'UTF8')",
            "column r_comment: expected string, got binary",
        ),
    ],
    ids=["column-added", "column-retyped"],
)
def test_schema_drift_in_oltp_fails_the_extract_and_keeps_raw_objects(
    lineage, oltp, object_store, change, undo, message
):
    before = object_store.list_keys(raw_prefix("region"))
    with oltp.connect(autocommit=True) as conn:
        snapshot = conn.execute("SELECT * FROM region ORDER BY r_regionkey").fetchall()
        conn.execute(f"ALTER TABLE region {change}")
    try:
        with pytest.raises(SchemaMismatchError, match=f"table region, partition full.*{message}"):
            extract_table(oltp, object_store, REGION, data_dir() / "duckdb_extensions")
    finally:
        with oltp.connect(autocommit=True) as conn:
            conn.execute(f"ALTER TABLE region {undo}")
            assert conn.execute("SELECT * FROM region ORDER BY r_regionkey").fetchall() == snapshot
    assert object_store.list_keys(raw_prefix("region")) == before


def test_bad_curated_parquet_fails_the_load_and_keeps_the_warehouse_table(lineage, clickhouse, object_store):
    spec = TABLES_BY_NAME["region"]
    rows_before = clickhouse.scalar("SELECT count() FROM warehouse.region")
    stamp = pa.array([dt.datetime(2020, 1, 1, tzinfo=dt.UTC)], pa.timestamp("us", tz="UTC"))
    bad = pa.table({"r_regionkey": ["not-a-number"], "r_name": ["X"], "r_comment": ["c"], "updated_at": stamp})
    key = f"{curated_prefix('region')}zz-bad.parquet"
    pq.write_table(bad, f"{object_store.bucket}/{key}", filesystem=object_store.arrow_fs())
    try:
        with pytest.raises(Exception, match="region"):
            load_table(clickhouse, object_store, spec)
    finally:
        object_store.client().delete_object(Bucket=object_store.bucket, Key=key)
    assert clickhouse.scalar("SELECT count() FROM warehouse.region") == rows_before
    assert clickhouse.scalar("SELECT count() FROM system.tables WHERE name LIKE '%staging%'") == 0


def test_warehouse_schema_check_names_table_and_column():
    cols = [(c.name, "String") for c in REGION.all_columns]
    with pytest.raises(WarehouseSchemaError, match="table region, column r_regionkey: expected Int32, got String"):
        check_schema(REGION, cols)
