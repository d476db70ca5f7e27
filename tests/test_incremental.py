"""The incremental platform end to end on the real engines and a real Dagster instance.

seed (the lineage fixture's full load) → simulated OLTP days with updates and deletes → the change sensor's run →
declarative automation → the warehouse equals the OLTP and every mart equals its query on the OLTP. Then: re-runs
change nothing, a backfill equals day-by-day runs, schema drift fails a check and keeps the data, landed files are
ingested once. These tests change the shared OLTP, lake and warehouse: they start from and give back the
pristine platform through ``changing_platform`` (see tests/shared_platform.py).
"""

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from platform_assets.automation.landing_sensor import SENSOR as LANDING_SENSOR
from platform_assets.automation.local_runs import Applied, evaluate_sensor, execute_requests, run_automation
from platform_assets.automation.oltp_changes import SENSOR
from platform_assets.catalog import MODELS, TABLES, TABLES_BY_NAME, arrow_schema
from platform_assets.definitions import defs
from platform_assets.jobs import INCREMENTAL_JOB, LINEAGE_JOB, range_tags, table_keys
from platform_assets.marts.assets import read_mart
from platform_assets.marts.queries import TPCH
from platform_assets.oltp.simulate import simulate
from platform_assets.partitions import add_days
from platform_assets.paths import curated_prefix, landing_prefix, raw_prefix
from platform_assets.warehouse import reconcile as rc
from platform_assets.warehouse.models import MODEL_SQL, apply_changes, fingerprint, stored_fingerprint
from resources.settings import data_dir
from tests.oltp_queries import CUSTOMER_FEATURES, CUSTOMER_FEATURES_MART, tpch_on_oltp
from tests.tpch_reference import mismatches

SEED_DAY = date(1998, 8, 3)
DAYS = 3
LAST_DAY = SEED_DAY + timedelta(days=DAYS)
CHANGING = ("lineitem", "orders")  # the tables the simulator writes


def tables_in(request: dg.RunRequest) -> set[dg.AssetKey]:
    """The tables' own layers a run request selects (raw, curated, warehouse; not the models and marts)."""
    models = {m.name for m in MODELS}
    return {k for k in request.asset_selection if k.path[0] != "marts" and k.path[-1] not in models}


chain = table_keys


def run(platform, partition: str | None = None, keys=None, tags=None):
    job = platform.defs.resolve_job_def(INCREMENTAL_JOB)
    add_days(platform.instance, [partition] if partition else [])  # a range's days: made partitions by its caller
    return job.execute_in_process(
        instance=platform.instance, partition_key=partition, asset_selection=keys, tags=tags, raise_on_error=False
    )


def warehouse_state(clickhouse, tables=TABLES) -> dict:
    return {t.name: rc.warehouse_fingerprint(clickhouse, t) for t in tables}


def oltp_state(oltp, tables=TABLES) -> dict:
    return {t.name: rc.oltp_fingerprint(oltp, t) for t in tables}


def curated_days(clickhouse, object_store, table: str, days) -> dict:
    """Rows and an order-independent checksum of each curated day, computed by ClickHouse from the Parquet."""
    out = {}
    for d in days:
        src = object_store.clickhouse_s3(curated_prefix(table, d) + "*.parquet")
        out[d] = tuple(clickhouse.rows(f"SELECT count(), sum(cityHash64(*)) FROM {src}")[0])
    return out


def oltp_rows(oltp, table: str) -> int:
    with oltp.connect() as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def materialized(result) -> list[tuple[str, str | None, dict]]:
    return Applied([result]).materialized()


def failed_checks(results) -> list[str]:
    evaluations = [c for r in results for c in r.get_asset_check_evaluations()]
    return [f"{c.asset_key.to_user_string()}:{c.check_name} {c.description}" for c in evaluations if not c.passed]


@pytest.fixture(scope="module")
def platform(changing_platform, tmp_path_factory):
    assert changing_platform.success
    with dg.instance_for_test(temp_dir=str(tmp_path_factory.mktemp("dagster-instance"))) as instance:
        definitions = defs()
        # a platform that has been running: the models have a first build (a rebuild) on this instance
        first = definitions.resolve_job_def(LINEAGE_JOB).execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey(["warehouse", m.name]) for m in MODELS]
        )
        assert first.success and failed_checks([first]) == []
        yield SimpleNamespace(defs=definitions, instance=instance, state={})


def test_first_tick_requests_each_unloaded_day_once_and_remembers_it(platform):
    requests, cursor = evaluate_sensor(platform.defs, SENSOR, platform.instance, None)
    assert len(requests) == 1
    assert requests[0].partition_key == SEED_DAY.isoformat()
    assert tables_in(requests[0]) == set(chain(*(t.name for t in TABLES)))
    assert {"warehouse/fct_lineitem", "marts/tpch_q01_pricing_summary"} <= {
        k.to_user_string() for k in requests[0].asset_selection
    }
    # the next tick starts from the stored cursor: nothing new, nothing requested, cursor unchanged
    again, cursor_after = evaluate_sensor(platform.defs, SENSOR, platform.instance, cursor)
    assert again == [] and json.loads(cursor_after) == json.loads(cursor)
    # a sensor started without a cursor does not reload days the instance already has
    for t in TABLES:
        platform.instance.report_runless_asset_event(
            dg.AssetMaterialization(dg.AssetKey(["raw", t.name]), partition=SEED_DAY.isoformat())
        )
    assert evaluate_sensor(platform.defs, SENSOR, platform.instance, None)[0] == []
    platform.state["cursor"] = cursor


def test_simulated_days_reach_the_warehouse_and_marts_through_sensor_and_automation(
    platform, oltp, clickhouse, object_store
):
    automation_cursor = dg.evaluate_automation_conditions(defs=platform.defs, instance=platform.instance).cursor
    report = simulate(oltp, DAYS, seed=11, change_rate=0.02)
    assert [d.day for d in report.days] == [SEED_DAY + timedelta(days=i + 1) for i in range(DAYS)]
    assert sum(d.deleted_orders for d in report.days) > 0 and sum(d.corrections for d in report.days) > 0

    freshness = platform.defs.resolve_job_def("check_freshness")
    stale = freshness.execute_in_process(instance=platform.instance, raise_on_error=False)
    behind = {c.asset_key.path[-1] for c in stale.get_asset_check_evaluations() if not c.passed}
    assert set(CHANGING) <= behind  # the warehouse is behind the OLTP: its freshness checks fail

    requests, cursor = evaluate_sensor(platform.defs, SENSOR, platform.instance, platform.state["cursor"])
    assert len(requests) == 1
    request = requests[0]
    assert request.tags["dagster/asset_partition_range_start"] == "1998-08-04"
    assert request.tags["dagster/asset_partition_range_end"] == LAST_DAY.isoformat()
    assert tables_in(request) == set(chain(*CHANGING))
    assert evaluate_sensor(platform.defs, SENSOR, platform.instance, cursor)[0] == []  # never the same work twice
    replay, _ = evaluate_sensor(platform.defs, SENSOR, platform.instance, platform.state["cursor"])
    assert replay[0].run_key == request.run_key  # a replayed tick is deduplicated by its run key

    applied = execute_requests(platform.defs, platform.instance, requests)
    assert applied.success and failed_checks(applied.results) == []
    days_loaded = {(k, p) for k, p, _ in applied.materialized()}
    assert ("warehouse/orders", LAST_DAY.isoformat()) in days_loaded and len(applied.results) == 1

    # the same run carried the days to the models and marts; the automation finds nothing left to do
    refreshed = {k: md for k, _, md in applied.materialized()}
    assert {"warehouse/fct_lineitem", "marts/tpch_q01_pricing_summary", "marts/customer_features"} <= set(refreshed)
    automated, _ = run_automation(platform.defs, platform.instance, automation_cursor)
    assert automated.success and automated.materialized() == []
    # the model applied only the orders the days changed, deletes included, and still equals a rebuild
    fct = refreshed["warehouse/fct_lineitem"]
    assert fct["mode"] == "incremental" and 0 < fct["changed_keys"] < oltp_rows(oltp, "orders")
    assert fct["delete_markers"] > 0 and json.loads(json.dumps(fct["input_days"]))["orders"][-1] == LAST_DAY.isoformat()
    spec = MODEL_SQL["fct_lineitem"]
    assert stored_fingerprint(clickhouse, spec) == fingerprint(clickhouse, spec.live(None), spec)

    assert warehouse_state(clickhouse) == oltp_state(oltp)
    fresh = freshness.execute_in_process(instance=platform.instance, raise_on_error=False)
    assert failed_checks([fresh]) == []
    platform.state["cursor"] = cursor

    # deleted orders are kept as delete markers but invisible to queries
    with oltp.connect() as conn:
        gone = conn.execute(
            "SELECT (pk->>'o_orderkey')::bigint FROM deleted_rows WHERE table_name = 'orders' LIMIT 5"
        ).fetchall()
    keys = ", ".join(str(k) for (k,) in gone)
    assert clickhouse.scalar(f"SELECT count() FROM warehouse.orders FINAL WHERE o_orderkey IN ({keys})") == 0
    assert clickhouse.scalar(f"SELECT countIf(is_deleted = 1) FROM warehouse.orders WHERE o_orderkey IN ({keys})")


@pytest.mark.parametrize("mart", TPCH, ids=lambda m: m.name)
def test_each_mart_equals_its_query_on_the_oltp(platform, oltp, clickhouse, mart):
    expected = tpch_on_oltp(oltp, mart.tpch_query, data_dir() / "duckdb_extensions")
    _, rows = read_mart(clickhouse, mart)
    assert rows and mismatches(expected, rows) == []


def test_customer_features_equal_the_same_query_on_the_oltp(platform, oltp, clickhouse):
    with oltp.connect() as conn:
        expected = [tuple(r) for r in conn.execute(CUSTOMER_FEATURES).fetchall()]
    actual = clickhouse.rows(CUSTOMER_FEATURES_MART)
    norm = [tuple(Decimal(str(v)) if isinstance(v, Decimal | float) else v for v in row) for row in actual]
    assert len(norm) == len(expected) > 0 and norm == expected


def test_a_model_applied_again_or_rebuilt_whole_stays_the_same(platform, clickhouse, object_store):
    spec = MODEL_SQL["fct_lineitem"]
    before = stored_fingerprint(clickhouse, spec)
    days = [SEED_DAY + timedelta(days=i + 1) for i in range(DAYS)]
    again = apply_changes(clickhouse, object_store, spec, {"lineitem": days, "orders": days})
    assert again.mode == "incremental" and again.keys > 0 and again.deleted == 0  # markers exist already
    assert stored_fingerprint(clickhouse, spec) == before
    key = dg.AssetKey(["warehouse", "fct_lineitem"])
    rebuilt = platform.defs.resolve_job_def(LINEAGE_JOB).execute_in_process(
        instance=platform.instance,
        asset_selection=[key],
        run_config={"ops": {"warehouse__fct_lineitem": {"config": {"full_refresh": True}}}},
    )
    md = {k: v for k, _, v in materialized(rebuilt) if k == key.to_user_string()}
    assert md and md[key.to_user_string()]["mode"] == "rebuild"
    assert stored_fingerprint(clickhouse, spec) == before and failed_checks([rebuilt]) == []


def test_rerunning_a_partition_twice_leaves_the_warehouse_unchanged(platform, oltp, clickhouse, object_store):
    day = (SEED_DAY + timedelta(days=2)).isoformat()
    before = warehouse_state(clickhouse)
    raw_before = sorted(k for k, _ in object_store.list_keys(raw_prefix("orders", day)))
    for _ in range(2):
        result = run(platform, day, chain(*CHANGING))
        assert result.success and failed_checks([result]) == []
    assert warehouse_state(clickhouse) == before == oltp_state(oltp)
    raw_after = sorted(k for k, _ in object_store.list_keys(raw_prefix("orders", day)))
    assert len(raw_after) == len(raw_before) and raw_after != raw_before  # objects replaced, never added


def test_backfill_in_one_run_equals_day_by_day_runs(platform, oltp, clickhouse, object_store):
    days = [SEED_DAY + timedelta(days=i) for i in range(DAYS + 1)]
    curated = chain(*CHANGING)[1::3]
    warehouse = chain(*CHANGING)[2::3]
    tables = [TABLES_BY_NAME[t] for t in CHANGING]

    def drop_warehouse():
        for t in CHANGING:
            for name in (t, f"{t}_local"):
                clickhouse.command(f"DROP TABLE IF EXISTS warehouse.{name} SYNC")

    drop_warehouse()
    daily = [run(platform, d.isoformat(), curated + warehouse) for d in days]
    assert all(r.success for r in daily) and len({r.run_id for r in daily}) == len(days)
    by_day = {t: curated_days(clickhouse, object_store, t, days) for t in CHANGING}
    by_day_warehouse = warehouse_state(clickhouse, tables)

    drop_warehouse()
    backfill = run(platform, None, curated + warehouse, range_tags(days[0], days[-1]))
    assert backfill.success
    partitions = {(e.asset_key.to_user_string(), e.partition) for e in backfill.get_asset_materialization_events()}
    assert len(partitions) == len(days) * len(curated + warehouse)  # every day of every asset, in one run
    assert {t: curated_days(clickhouse, object_store, t, days) for t in CHANGING} == by_day
    assert warehouse_state(clickhouse, tables) == by_day_warehouse == oltp_state(oltp, tables)


@pytest.mark.parametrize(
    ("change", "undo", "column", "word"),
    [
        (
            "ALTER TABLE customer ADD COLUMN c_loyalty integer NOT NULL DEFAULT 0",
            "ALTER TABLE customer DROP COLUMN c_loyalty",
            "c_loyalty",
            "added",
        ),
        (
            "ALTER TABLE customer ALTER COLUMN c_acctbal TYPE numeric(18,4)",
            "ALTER TABLE customer ALTER COLUMN c_acctbal TYPE numeric(15,2)",
            "c_acctbal",
            "retyped",
        ),
        (
            "ALTER TABLE customer RENAME COLUMN c_comment TO c_note",
            "ALTER TABLE customer RENAME COLUMN c_note TO c_comment",
            "c_comment",
            "dropped",
        ),
    ],
    ids=["added", "retyped", "removed"],
)
def test_schema_drift_fails_a_check_naming_table_and_column_and_keeps_the_data(
    platform, oltp, clickhouse, object_store, change, undo, column, word
):
    customer = TABLES_BY_NAME["customer"]
    before = rc.warehouse_fingerprint(clickhouse, customer)
    raw_before = object_store.list_keys(raw_prefix("customer", SEED_DAY))
    with oltp.connect(autocommit=True) as conn:
        conn.execute(change)
    try:
        result = run(platform, SEED_DAY.isoformat(), chain("customer"))
    finally:
        with oltp.connect(autocommit=True) as conn:
            conn.execute(undo)
    assert not result.success
    failed = [c for c in result.get_asset_check_evaluations() if not c.passed]
    assert [c.check_name for c in failed] == ["schema_matches_catalog"]
    assert f"table customer, column {column}" in failed[0].description and word in failed[0].description
    assert rc.warehouse_fingerprint(clickhouse, customer) == before == rc.oltp_fingerprint(oltp, customer)
    assert object_store.list_keys(raw_prefix("customer", SEED_DAY)) == raw_before
    assert run(platform, SEED_DAY.isoformat(), chain("customer")).success  # fixed source: loads again


def _land(object_store, key: str, table: pa.Table, fmt: str = "parquet") -> None:
    fs, path = object_store.arrow_fs(), f"{object_store.bucket}/{key}"
    if fmt == "parquet":
        pq.write_table(table, path, filesystem=fs)
    else:
        import pyarrow.csv as pacsv

        with fs.open_output_stream(path) as out:
            pacsv.write_csv(table, out)


def test_landed_files_are_ingested_once_through_raw_curated_and_warehouse(platform, clickhouse, object_store):
    day = "1998-08-10"
    stamp = pa.array([datetime(1998, 8, 10, 9, 0, tzinfo=UTC)], pa.timestamp("us", "UTC"))
    region = pa.table(
        {
            "r_regionkey": pa.array([100], pa.int32()),
            "r_name": ["ATLANTIS"],
            "r_comment": ["landed"],
            "updated_at": stamp,
        },
        schema=arrow_schema(TABLES_BY_NAME["region"]),
    )
    nation = pa.table(
        {
            "n_nationkey": pa.array([100], pa.int32()),
            "n_name": ["POSEIDONIA"],
            "n_regionkey": pa.array([100], pa.int32()),
            "n_comment": ["landed as CSV"],
            "updated_at": stamp,
        },
        schema=arrow_schema(TABLES_BY_NAME["nation"]),
    )
    bad = region.drop_columns(["r_comment"])
    # a supplier's row for a key the OLTP holds (region 1 is AMERICA): it must not replace the OLTP's row
    hijack = region.set_column(0, "r_regionkey", pa.array([1], pa.int32())).set_column(1, "r_name", pa.array(["X"]))
    hijack = hijack.set_column(
        3, "updated_at", pa.array([datetime(1998, 8, 12, 9, 0, tzinfo=UTC)], pa.timestamp("us", "UTC"))
    )
    _land(object_store, f"{landing_prefix('region')}1998-08-12/hijack.parquet", hijack)
    _land(object_store, f"{landing_prefix('region')}{day}/atlantis.parquet", region)
    _land(object_store, f"{landing_prefix('nation')}{day}/poseidonia.csv", nation, "csv")
    _land(object_store, f"{landing_prefix('region')}1998-08-11/broken.parquet", bad)
    _land(object_store, f"{landing_prefix('unknown')}{day}/x.parquet", region)

    requests, cursor = evaluate_sensor(platform.defs, LANDING_SENSOR, platform.instance, None)
    assert sorted((r.partition_key, r.asset_selection[0].path[-1]) for r in requests) == [
        (day, "nation"),
        (day, "region"),
        ("1998-08-11", "region"),
        ("1998-08-12", "region"),
    ]
    assert evaluate_sensor(platform.defs, LANDING_SENSOR, platform.instance, cursor)[0] == []  # picked up once

    applied = execute_requests(platform.defs, platform.instance, requests)
    ok = [r for r in applied.results if r.success]
    assert len(ok) == 2
    failed = [c.description for r in applied.results if not r.success for c in r.get_asset_check_evaluations()
              if not c.passed]  # fmt: skip
    assert any("broken.parquet" in d and "r_comment" in d for d in failed)
    assert any(
        "hijack.parquet (table region, partition 1998-08-12), column r_regionkey: 1 key(s) the OLTP holds (1)" in d
        for d in failed
    ), failed
    assert clickhouse.rows("SELECT r_name FROM warehouse.region FINAL WHERE r_regionkey = 1") == [("AMERICA",)]
    assert not object_store.list_keys(raw_prefix("region", "1998-08-12"))  # refused whole: nothing of it written
    assert clickhouse.rows("SELECT r_name FROM warehouse.region FINAL WHERE r_regionkey = 100") == [("ATLANTIS",)]
    assert clickhouse.rows("SELECT n_name, n_regionkey FROM warehouse.nation FINAL WHERE n_nationkey = 100") == [
        ("POSEIDONIA", 100)
    ]
    # ingesting the same file again replaces its raw object
    assert len(object_store.list_keys(raw_prefix("region", day))) == 1
    execute_requests(platform.defs, platform.instance, requests[:1])
    assert len(object_store.list_keys(raw_prefix("region", day))) == 1


def test_a_landed_row_that_replaced_an_oltp_row_is_a_divergence(platform, oltp, clickhouse, object_store):
    """Landed keys are left out of matches_oltp, but not those the OLTP holds: such a row (landed before keys were
    checked at ingestion) is reported as differing, so repair_warehouse puts the OLTP's row back."""
    from platform_assets.warehouse.divergence import landed_keys
    from platform_assets.warehouse.table_diff import diff_table

    region = TABLES_BY_NAME["region"]
    stamp = pa.array([datetime(1998, 8, 13, 9, 0, tzinfo=UTC)], pa.timestamp("us", "UTC"))
    row = pa.table({"r_regionkey": pa.array([2], pa.int32()), "r_name": ["X"], "r_comment": ["landed"],
                    "updated_at": stamp}, schema=arrow_schema(region))  # fmt: skip
    key = f"{raw_prefix('region', '1998-08-13')}landed-legacy.parquet"
    pq.write_table(row, f"{object_store.bucket}/{key}", filesystem=object_store.arrow_fs())
    assert run(platform, "1998-08-13", chain("region")[1:]).success  # curated and warehouse of that day
    assert clickhouse.scalar("SELECT r_name FROM warehouse.region FINAL WHERE r_regionkey = 2") == "X"
    skipped = landed_keys(object_store, clickhouse, oltp, region)
    assert (100,) in skipped and (2,) not in skipped  # landed keys the OLTP does not hold stay out
    assert diff_table(oltp, clickhouse, region, skipped).changed == [(2,)]
