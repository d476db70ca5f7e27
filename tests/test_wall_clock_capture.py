"""Change capture against writers that behave like applications, on the wall clock (today is a partition).

Each test writes the way applications do — their own transactions, plain DML, ``updated_at`` set or forgotten —
then lets the change sensor (on a real instance) and the runs it requests, plus the automation, follow; the
warehouse must then equal the OLTP row for row in every column. Then divergence behind the platform's back is found
by ``matches_oltp`` and repaired by ``repair_warehouse``. These tests change the shared OLTP, lake and warehouse,
so they take them through ``changing_platform``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import dagster as dg
import psycopg
import pytest

from platform_assets.automation.local_runs import Applied, evaluate_sensor, execute_requests, run_automation
from platform_assets.automation.oltp_changes import SENSOR, current_cursor
from platform_assets.catalog import MODELS, TABLES, TABLES_BY_NAME
from platform_assets.definitions import defs
from platform_assets.jobs import LINEAGE_JOB
from platform_assets.partitions import add_days
from platform_assets.paths import raw_prefix
from platform_assets.warehouse.divergence import REPAIR_JOB
from platform_assets.warehouse.load import DATABASE
from platform_assets.warehouse.models import MODEL_SQL, fingerprint, stored_fingerprint
from platform_assets.warehouse.table_diff import MATCHES_OLTP, diff_table
from tests.conftest import REPO

IN_STEP = "in_step_with_oltp"

WRITTEN = ("customer", "orders", "lineitem")  # the tables the application writes


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def oltp_rows(oltp, table: str) -> list[tuple]:
    t = TABLES_BY_NAME[table]
    cols, pk = ", ".join(c.name for c in t.all_columns), ", ".join(t.primary_key)
    with oltp.connect() as conn:
        return [tuple(r) for r in conn.execute(f"SELECT {cols} FROM {table} ORDER BY {pk}")]


def warehouse_rows(clickhouse, table: str) -> list[tuple]:
    t = TABLES_BY_NAME[table]
    cols, pk = ", ".join(c.name for c in t.all_columns), ", ".join(t.primary_key)
    rows = clickhouse.rows(f"SELECT {cols} FROM {DATABASE}.{table} FINAL WHERE is_deleted = 0 ORDER BY {pk}")
    # chDB hands out naive UTC timestamps and plain decimals: give them PostgreSQL's shape
    return [
        tuple(v.replace(tzinfo=UTC) if isinstance(v, datetime) and v.tzinfo is None else v for v in r) for r in rows
    ]


def assert_warehouse_equals_oltp(oltp, clickhouse, tables=WRITTEN) -> None:
    """Row for row, every column — and the platform's own whole-table comparison agrees."""
    for name in tables:
        want, got = oltp_rows(oltp, name), warehouse_rows(clickhouse, name)
        assert len(got) == len(want), f"{name}: warehouse {len(got)} rows, OLTP {len(want)}"
        differing = [(w, g) for w, g in zip(want, got, strict=True) if w != g]
        assert differing == [], f"{name}: {len(differing)} row(s) differ, first {differing[:2]}"
        assert diff_table(oltp, clickhouse, TABLES_BY_NAME[name]).equal


def failed_checks(applied: Applied) -> list[str]:
    return [f"{c.asset_key.to_user_string()}:{c.check_name} {c.description}" for c in applied.checks() if not c.passed]


@pytest.fixture(scope="module")
def live(changing_platform, oltp, tmp_path_factory):
    """A running platform on its own instance: the models built once, the sensor's cursor at 'everything read'."""
    assert changing_platform.success
    with dg.instance_for_test(temp_dir=str(tmp_path_factory.mktemp("wall-clock-instance"))) as instance:
        definitions = defs()
        first = definitions.resolve_job_def(LINEAGE_JOB).execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey(["warehouse", m.name]) for m in MODELS]
        )
        assert first.success
        automation = dg.evaluate_automation_conditions(defs=definitions, instance=instance).cursor
        yield SimpleNamespace(
            defs=definitions, instance=instance, cursor=json.dumps(current_cursor(oltp)), automation=automation
        )


def tick(live) -> tuple[list[dg.RunRequest], Applied]:
    """One tick of the change sensor, the runs it requests, then the automation: as the daemon does, in process."""
    requests, live.cursor = evaluate_sensor(live.defs, SENSOR, live.instance, live.cursor)
    applied = execute_requests(live.defs, live.instance, requests)
    automated, live.automation = run_automation(live.defs, live.instance, live.automation)
    return requests, Applied(applied.results + automated.results)


class App:
    """An application writing to the OLTP: its own connections and transactions, ``now()``, no platform settings."""

    def __init__(self, oltp):
        self.conninfo = oltp.conninfo()

    def transaction(self) -> psycopg.Connection:
        return psycopg.connect(self.conninfo)  # `with` commits at the end, rolls back on an error

    def keys(self, sql: str) -> list:
        with self.transaction() as conn:
            return [r[0] if len(r) == 1 else tuple(r) for r in conn.execute(sql)]

    def place_orders(self, conn, n: int, lines: int = 3) -> list[int]:
        first = conn.execute("SELECT max(o_orderkey) + 1 FROM orders").fetchone()[0]
        cust = conn.execute("SELECT min(c_custkey) FROM customer").fetchone()[0]
        parts = conn.execute("SELECT ps_partkey, ps_suppkey FROM partsupp ORDER BY 1, 2 LIMIT %s", (lines,)).fetchall()
        for key in range(first, first + n):
            conn.execute(
                "INSERT INTO orders (o_orderkey, o_custkey, o_orderstatus, o_totalprice, o_orderdate, "
                "o_orderpriority, o_clerk, o_shippriority, o_comment) "
                "VALUES (%s, %s, 'O', 321.09, current_date, '2-HIGH', 'Clerk#000000042', 0, 'placed by the app')",
                (key, cust),
            )
            for number, (part, supp) in enumerate(parts, start=1):
                self.add_line(conn, key, number, part, supp, "new line")
        return list(range(first, first + n))

    @staticmethod
    def add_line(conn, order: int, number: int, part: int, supp: int, comment: str, qty: int = 2) -> None:
        conn.execute(
            "INSERT INTO lineitem (l_orderkey, l_partkey, l_suppkey, l_linenumber, l_quantity, l_extendedprice, "
            "l_discount, l_tax, l_returnflag, l_linestatus, l_shipdate, l_commitdate, l_receiptdate, "
            "l_shipinstruct, l_shipmode, l_comment) VALUES (%s, %s, %s, %s, %s, 19.99, 0.05, 0.02, 'N', 'O', "
            "current_date + 2, current_date + 4, current_date + 6, 'NONE', 'TRUCK', %s)",
            (order, part, supp, number, qty, comment),
        )


def test_every_write_pattern_reaches_the_warehouse_within_one_tick(live, oltp, clickhouse, object_store):
    app = App(oltp)
    orders = app.keys("SELECT o_orderkey FROM orders ORDER BY o_orderkey LIMIT 40 OFFSET 200")
    customers = app.keys("SELECT c_custkey FROM customer ORDER BY c_custkey LIMIT 25 OFFSET 100")
    updated, deleted, renumbered, churned = orders[:10], orders[10:20], orders[20:25], orders[25:30]
    with app.transaction() as conn:  # INSERT
        placed = app.place_orders(conn, 10)
    with app.transaction() as conn:  # UPDATE that sets updated_at itself
        conn.execute("UPDATE orders SET o_comment = 'app update', updated_at = now() WHERE o_orderkey = ANY(%s)",
                     (updated,))  # fmt: skip
    with app.transaction() as conn:  # UPDATE that forgets updated_at
        conn.execute("UPDATE customer SET c_acctbal = c_acctbal + 7.25, c_comment = 'no updated_at' "
                     "WHERE c_custkey = ANY(%s)", (customers[:20],))  # fmt: skip
    with app.transaction() as conn:  # DELETE (lines first: foreign key)
        conn.execute("DELETE FROM lineitem WHERE l_orderkey = ANY(%s)", (deleted,))
        conn.execute("DELETE FROM orders WHERE o_orderkey = ANY(%s)", (deleted,))
    with app.transaction() as conn:  # UPDATE of a primary key
        conn.execute("UPDATE lineitem SET l_linenumber = l_linenumber + 10 WHERE l_orderkey = ANY(%s)", (renumbered,))
    line = app.keys(f"SELECT l_partkey, l_suppkey FROM lineitem WHERE l_orderkey = {churned[0]} AND l_linenumber = 1")
    with app.transaction() as conn:  # delete, then re-insert the same key in a later transaction
        conn.execute("DELETE FROM lineitem WHERE l_orderkey = %s AND l_linenumber = 1", (churned[0],))
    with app.transaction() as conn:
        app.add_line(conn, churned[0], 1, *line[0], "re-inserted later", qty=9)
    with app.transaction() as conn:  # delete and re-insert in one transaction, several changes of one key
        conn.execute("DELETE FROM lineitem WHERE l_orderkey = %s AND l_linenumber = 1", (churned[1],))
        app.add_line(conn, churned[1], 1, *line[0], "re-inserted at once", qty=11)
        for step in range(3):
            conn.execute("UPDATE customer SET c_acctbal = c_acctbal + 1, c_comment = %s WHERE c_custkey = %s",
                         (f"changed {step + 1} times in one transaction", customers[20]))  # fmt: skip
    committed = time.perf_counter()
    first_commit = app.keys("SELECT min(updated_at) FROM orders WHERE o_comment IN ('placed by the app', 'app update')")

    requests, applied = tick(live)
    assert [r.partition_key for r in requests] == [today()]  # the current day is a partition
    assert set(requests[0].tags["platform/tables"].split(",")) == set(WRITTEN)
    # the run names its checks: the per-day ones, never the whole-table comparison (a bare asset selection would
    # bring every check of the assets, matches_oltp included, into a day's run)
    named = {k.name for k in requests[0].asset_check_keys}
    assert {"primary_key_unique_not_null", "reconciles_with_oltp"} <= named and MATCHES_OLTP not in named
    assert applied.success and failed_checks(applied) == []
    seconds = time.perf_counter() - committed
    assert_warehouse_equals_oltp(oltp, clickhouse)
    print(f"\ncommit -> warehouse and marts in process: {seconds:.1f} s")  # the note's in-process figure
    # the lag each materialization records (the UI plots it): from the newest change it holds, an app's commit now
    since_first = (datetime.now(UTC) - first_commit[0]).total_seconds()
    for key in (["warehouse", "orders"], ["warehouse", "fct_lineitem"], ["marts", "tpch_q03_shipping_priority"]):
        event = live.instance.get_latest_materialization_event(dg.AssetKey(key))
        lag = event.asset_materialization.metadata["lag_seconds"].value
        assert 0 <= lag <= since_first, (key, lag, since_first)
    assert clickhouse.scalar(f"SELECT count() FROM {DATABASE}.orders FINAL WHERE o_orderkey IN {tuple(placed)}") == 10
    spec = MODEL_SQL["fct_lineitem"]
    assert stored_fingerprint(clickhouse, spec) == fingerprint(clickhouse, spec.live(None), spec)
    assert evaluate_sensor(live.defs, SENSOR, live.instance, live.cursor)[0] == []  # nothing applied twice

    # more changes today: today's partition runs again and replaces itself
    before = {k for k, _ in object_store.list_keys(raw_prefix("orders", today()))}
    with app.transaction() as conn:
        conn.execute("UPDATE orders SET o_totalprice = o_totalprice + 1 WHERE o_orderkey = ANY(%s)", (placed[:3],))
    requests, applied = tick(live)
    assert [r.partition_key for r in requests] == [today()] and applied.success
    after = {k for k, _ in object_store.list_keys(raw_prefix("orders", today()))}
    assert after and not after & before  # replaced, not added to
    assert_warehouse_equals_oltp(oltp, clickhouse)


def test_a_long_transaction_is_applied_on_the_tick_after_its_commit_without_holding_back_others(live, oltp, clickhouse):
    app = App(oltp)
    slow_keys, quick_keys = app.keys("SELECT o_orderkey FROM orders ORDER BY o_orderkey LIMIT 10 OFFSET 400")[:5], []
    slow = psycopg.connect(app.conninfo)
    try:
        slow.execute("UPDATE orders SET o_comment = 'long transaction' WHERE o_orderkey = ANY(%s)", (slow_keys,))
        with app.transaction() as conn:  # starts later, commits first
            quick_keys = app.place_orders(conn, 2)
        requests, applied = tick(live)
        assert len(requests) == 1 and applied.success
        in_warehouse = f"SELECT count() FROM {DATABASE}.orders FINAL WHERE o_comment = 'long transaction'"
        assert clickhouse.scalar(f"SELECT count() FROM {DATABASE}.orders FINAL WHERE o_orderkey IN {tuple(quick_keys)}")
        assert clickhouse.scalar(in_warehouse) == 0
        assert tick(live)[0] == []  # still open across another tick: nothing to do, nothing lost
    finally:
        slow.commit()
        slow.close()
    requests, applied = tick(live)
    assert len(requests) == 1 and applied.success and failed_checks(applied) == []
    assert clickhouse.scalar(in_warehouse) == len(slow_keys)
    assert_warehouse_equals_oltp(oltp, clickhouse)


def test_concurrent_writers_while_the_sensor_ticks(live, oltp, clickhouse):
    app = App(oltp)
    pool = app.keys("SELECT o_orderkey FROM orders ORDER BY o_orderkey LIMIT 400 OFFSET 1000")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        rng = random.Random(n)
        mine = pool[n::4]  # disjoint keys: the writers never wait for each other's locks
        try:
            for i in range(15):
                with app.transaction() as conn:
                    keys = rng.sample(mine, 5)
                    price = Decimal("0.01") * (i + 1)
                    conn.execute("UPDATE orders SET o_totalprice = o_totalprice + %s, o_comment = %s "
                                 "WHERE o_orderkey = ANY(%s)", (price, f"writer {n}", keys))  # fmt: skip
                    if i % 5 == 4:
                        gone = mine.pop()
                        conn.execute("DELETE FROM lineitem WHERE l_orderkey = %s", (gone,))
                        conn.execute("DELETE FROM orders WHERE o_orderkey = %s", (gone,))
                time.sleep(0.05)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    ticks = 0
    while any(t.is_alive() for t in threads) or ticks < 2:
        _, applied = tick(live)
        assert applied.success
        ticks += 1
    for t in threads:
        t.join()
    assert errors == []
    tick(live)
    assert tick(live)[0] == []
    assert_warehouse_equals_oltp(oltp, clickhouse)


def test_truncate_and_a_reload_of_half_the_table(live, oltp, clickhouse):
    cols = ", ".join(c.name for c in TABLES_BY_NAME["lineitem"].columns)
    with App(oltp).transaction() as conn:  # an application reloading a table: TRUNCATE, then some rows back
        conn.execute(f"CREATE TEMP TABLE keep AS SELECT {cols} FROM lineitem WHERE l_orderkey % 2 = 0")
        conn.execute("TRUNCATE lineitem")
        conn.execute(f"INSERT INTO lineitem ({cols}) SELECT {cols} FROM keep")
    requests, applied = tick(live)
    assert [r.partition_key for r in requests] == [today()] and applied.success
    assert failed_checks(applied) == []
    assert (
        clickhouse.scalar(f"SELECT countIf(l_orderkey % 2 = 1) FROM {DATABASE}.lineitem FINAL WHERE is_deleted = 0")
        == 0
    )
    assert_warehouse_equals_oltp(oltp, clickhouse, ("lineitem", "orders"))


def _retried_steps(applied: Applied) -> set[str]:
    return {e.step_key for r in applied.results for e in r.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"}


def _once_a_step_met_it(instance: dg.DagsterInstance, action, timeout: float = 120.0) -> threading.Thread:
    """``action`` (the service back) once a step of the next run has met the outage and asked for its retry, or
    after ``timeout``. A fixed delay (3 s) let a loaded machine start the run after the service was back."""
    before = {r.dagster_run.run_id for r in instance.get_run_records(limit=10)}

    def met() -> bool:
        runs = [r.dagster_run.run_id for r in instance.get_run_records(limit=10)]
        return any(instance.all_logs(run, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
                   for run in runs if run not in before)  # fmt: skip

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not met():
            time.sleep(0.2)
        action()

    thread = threading.Thread(target=watch)
    thread.start()
    return thread


def test_postgres_and_seaweedfs_restarting_during_a_run_are_retried_and_lose_nothing(live, oltp, clickhouse):
    from deploy.local import stack

    app = App(oltp)
    for outage, (down, up) in {
        "postgres": (stack.postgres_down, stack.postgres_up),
        "seaweedfs": (stack.seaweedfs_down, stack.seaweedfs_up),
    }.items():
        with app.transaction() as conn:
            conn.execute(f"UPDATE customer SET c_comment = 'before a {outage} outage' WHERE c_custkey % 50 = 3")
        requests, live.cursor = evaluate_sensor(live.defs, SENSOR, live.instance, live.cursor)
        assert [r.partition_key for r in requests] == [today()]
        down()
        back = _once_a_step_met_it(live.instance, up)  # the service returns while the run's steps retry
        try:
            applied = execute_requests(live.defs, live.instance, requests)
        finally:
            back.join()
        assert applied.success and failed_checks(applied) == [], outage
        assert _retried_steps(applied), f"no step met the {outage} outage"
        automated, live.automation = run_automation(live.defs, live.instance, live.automation)
        assert automated.success
        assert_warehouse_equals_oltp(oltp, clickhouse, ("customer",))


RUN_TODAY = """
import os, sys, time
import dagster as dg
from platform_assets.definitions import defs
from platform_assets.raw import assets as raw_assets
from platform_assets.warehouse import assets as warehouse_assets
# HOLD_STEP: the lineitem extract (raw) or load (warehouse) waits before its engine work, so a kill sent once the
# step has started lands inside it (a small day's load can finish between two polls of the killer)
hold = {"raw__lineitem": (raw_assets, "extract_days"), "warehouse__lineitem": (warehouse_assets, "load_days")}
if os.environ.get("HOLD_STEP") in hold:
    module, name = hold[os.environ["HOLD_STEP"]]
    real = getattr(module, name)
    def held(*args, **kwargs):
        if args[2].name == "lineitem":
            time.sleep(10)
        return real(*args, **kwargs)
    setattr(module, name, held)
from platform_assets.jobs import INCREMENTAL_JOB
from platform_assets.partitions import add_days
keys = [dg.AssetKey([layer, t]) for t in sys.argv[2].split(",") for layer in ("raw", "curated", "warehouse")]
# the checks each step runs itself; not those that compare the whole warehouse, which holds just this one day
own = ("schema_matches_catalog", "row_count_matches_oltp", "primary_key_unique_not_null", "reconciles_with_oltp")
d = defs()
checks = {k for k in d.resolve_asset_graph().get_check_keys_for_assets(set(keys)) if k.name in own}
with dg.DagsterInstance.get() as instance:
    add_days(instance, [sys.argv[1]])
    job = d.resolve_job_def(INCREMENTAL_JOB).get_subset(asset_selection=set(keys), asset_check_selection=checks)
    result = job.execute_in_process(instance=instance, partition_key=sys.argv[1], raise_on_error=False)
sys.exit(0 if result.success else 1)
"""
VERIFY_TODAY = """
import json, sys
from datetime import date
from platform_assets.catalog import TABLES_BY_NAME
from platform_assets.warehouse import reconcile as rc
from resources.environments import resource_defs
r = resource_defs("local")
day = [date.fromisoformat(sys.argv[1])]
with r["oltp"].process_config_and_initialize_cm() as oltp, r["clickhouse"].process_config_and_initialize_cm() as ch:
    def exact(fingerprint):  # Decimal('0.00') and Decimal('0') are one value: compare values, not spellings
        return [str(v.normalize()) for v in fingerprint]
    tables = [TABLES_BY_NAME[t] for t in sys.argv[2].split(",")]
    print(json.dumps({t.name: [exact(rc.oltp_fingerprint(oltp, t, day)), exact(rc.warehouse_fingerprint(ch, t, day))]
                      for t in tables}))
"""


def test_a_run_killed_in_the_extract_or_the_load_is_rerun_to_the_same_warehouse(live, tmp_path):
    """``kill -9`` of a run process when its lineitem extract, then its lineitem load starts; the next run of the
    day leaves the warehouse equal to the OLTP's rows of that day (a warehouse of its own: the run processes
    cannot share this process's in-process ClickHouse)."""
    from dagster._core.instance.ref import InstanceRef

    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "CLICKHOUSE_DSN": f"chdb://{tmp_path / 'clickhouse'}"}
    args = [sys.executable, "-c", RUN_TODAY, today(), ",".join(WRITTEN)]
    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    for step in ("raw__lineitem", "warehouse__lineitem"):
        log = tmp_path / f"{step}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(args, env={**env, "HOLD_STEP": step}, cwd=tmp_path, stdout=out,
                                    stderr=subprocess.STDOUT)  # fmt: skip
        started = None
        deadline = time.monotonic() + 300
        while started is None and proc.poll() is None and time.monotonic() < deadline:
            for run in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
                records = instance.all_logs(run.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_START)
                if any(r.dagster_event.step_key == step for r in records):
                    started = run.dagster_run.run_id
            time.sleep(0.05)
        proc.kill()  # SIGKILL: no cleanup, no failure event
        proc.wait()
        assert started, f"the run ended before {step} started: {log.read_text()[-3000:]}"
        steps = instance.all_logs(started, of_type=dg.DagsterEventType.STEP_SUCCESS)
        assert step not in {r.dagster_event.step_key for r in steps}  # killed before the step finished
    rerun = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    verify = [sys.executable, "-c", VERIFY_TODAY, today(), ",".join(WRITTEN)]
    out = subprocess.run(verify, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    for table, (want, got) in json.loads(out.stdout.strip().splitlines()[-1]).items():
        assert want == got, f"{table}: OLTP {want}, warehouse {got}"


def _check(live, table: str, name: str = MATCHES_OLTP):
    key = dg.AssetKey(["warehouse", table])
    job = live.defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(), asset_check_selection={dg.AssetCheckKey(key, name)}
    )
    result = job.execute_in_process(instance=live.instance, raise_on_error=False)
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def test_a_change_waiting_longer_than_the_freshness_policy_fails_the_check_until_it_is_loaded(live, oltp):
    """Changes wait in the OLTP while the pipeline is stopped (the warehouse's nation still holds the seed's day):
    past the policy's warn window the check warns, past its fail window it fails naming the table; loaded, it passes.
    The waits are made by stamping the changes in the past (``platform.change_time``), not by waiting days."""
    app = App(oltp)
    keys = app.keys("SELECT n_nationkey FROM nation ORDER BY n_nationkey LIMIT 2")
    assert _check(live, "nation", IN_STEP).passed

    def change_at(hours_ago: int, key: int) -> None:
        stamp = datetime.now(UTC) - timedelta(hours=hours_ago)
        with app.transaction() as conn:
            conn.execute("SELECT set_config('platform.change_time', %s, true)", (stamp.isoformat(),))
            conn.execute("UPDATE nation SET n_comment = %s WHERE n_nationkey = %s", (f"{hours_ago} h ago", key))

    change_at(30, keys[0])
    warned = _check(live, "nation", IN_STEP)
    assert not warned.passed and warned.severity == dg.AssetCheckSeverity.WARN
    change_at(72, keys[1])
    failed = _check(live, "nation", IN_STEP)
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    assert failed.description.startswith("warehouse.nation lags the OLTP: its oldest change not loaded")
    assert 72 * 3600 <= failed.metadata["lag_seconds"].value < 73 * 3600

    requests, applied = tick(live)  # the sensor requests those days; the warehouse catches up
    assert applied.success and requests  # one run for the two days (a range)
    assert _check(live, "nation", IN_STEP).passed


def test_divergence_behind_the_platforms_back_is_found_and_repaired(live, oltp, clickhouse):
    for name in WRITTEN:
        assert _check(live, name).passed
    orders = App(oltp).keys("SELECT DISTINCT l_orderkey FROM lineitem ORDER BY 1 LIMIT 3 OFFSET 2000")
    with oltp.connect(autocommit=True) as conn:  # the OLTP changed with its triggers off (a restore, a bulk tool)
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE customer SET c_phone = '00-000-000-0000' WHERE c_custkey = 77")
        conn.execute("DELETE FROM lineitem WHERE l_orderkey = %s", (orders[0],))
    # the warehouse changed behind the pipeline: a value, a row that never existed, a row removed
    for change, key in (("'tampered' AS o_comment", orders[1]), ("o_orderkey + 900000000 AS o_orderkey", orders[1]),
                        ("1 AS is_deleted", orders[2])):  # fmt: skip
        clickhouse.command(
            f"INSERT INTO {DATABASE}.orders SELECT * REPLACE ({change}) FROM (SELECT * FROM {DATABASE}.orders FINAL "
            f"WHERE o_orderkey = {key}) SETTINGS distributed_foreground_insert = 1"
        )
    found = {name: _check(live, name) for name in WRITTEN}
    assert not any(c.passed for c in found.values()), {n: c.description for n, c in found.items()}
    assert all(c.severity == dg.AssetCheckSeverity.ERROR for c in found.values())
    assert "customer" in found["customer"].description and "(first: 77)" in found["customer"].description
    described = found["orders"].description
    assert f"{orders[1] + 900000000}" in described and str(orders[1]) in described and str(orders[2]) in described
    assert (
        f"({orders[0]}, 1)" in found["lineitem"].description and "deleted in the OLTP" in found["lineitem"].description
    )

    repaired = live.defs.resolve_job_def(REPAIR_JOB).execute_in_process(instance=live.instance)
    assert repaired.success
    counts = repaired.output_for_node("repair_tables")
    assert counts["customer"]["touched"] == 1 and counts["orders"] == {
        "differing_keys": 3,
        "touched": 2,
        "tombstones": 1,
    }
    requests, applied = tick(live)  # the re-captured keys travel the normal path
    assert [r.partition_key for r in requests] == [today()] and applied.success and failed_checks(applied) == []
    assert all(_check(live, name).passed for name in WRITTEN)
    assert_warehouse_equals_oltp(oltp, clickhouse, TABLES_BY_NAME.keys() - {"region", "nation"})
    spec = MODEL_SQL["fct_lineitem"]
    assert stored_fingerprint(clickhouse, spec) == fingerprint(clickhouse, spec.live(None), spec)


def test_whole_table_checks_stay_out_of_the_daily_runs(live):
    for name in ("incremental_changes", LINEAGE_JOB):
        job = live.defs.resolve_job_def(name)
        names = {k.name for k in job.asset_layer.asset_graph.asset_check_keys}
        assert MATCHES_OLTP not in names and "primary_key_unique_not_null" in names, name
    assert {t.name for t in TABLES} == {
        k.asset_key.path[-1] for k in live.defs.resolve_asset_graph().asset_check_keys if k.name == MATCHES_OLTP
    }


def test_a_column_added_to_a_catalog_table_reaches_the_warehouse_without_a_reload(live, oltp, clickhouse):
    from platform_assets.catalog import Column
    from platform_assets.curated.assets import curated_asset
    from platform_assets.raw.assets import raw_asset
    from platform_assets.raw.extract import schema_drift
    from platform_assets.warehouse.assets import warehouse_table_asset
    from platform_assets.warehouse.divergence import recapture
    from platform_assets.warehouse.load import ensure_table

    customer = TABLES_BY_NAME["customer"]
    grown = dataclasses.replace(customer, columns=(*customer.columns, Column("c_loyalty", "int32")))

    def load_today(table) -> int:
        """Today's partition of ``table`` through raw, curated and the warehouse; the rows the warehouse took."""
        assets = [raw_asset(table), curated_asset(table), warehouse_table_asset(table)]
        add_days(live.instance, [today()])
        result = dg.materialize(assets, partition_key=today(), instance=live.instance, resources=live.defs.resources)
        assert result.success and not [c for c in result.get_asset_check_evaluations() if not c.passed]
        (loaded,) = [m for k, _, m in Applied([result]).materialized() if k == "warehouse/customer"]
        return loaded["dagster/row_count"]

    with oltp.connect(autocommit=True) as conn:  # the application's migration: existing rows get the default
        conn.execute("ALTER TABLE customer ADD COLUMN c_loyalty integer NOT NULL DEFAULT 3")
    try:
        (drift,) = schema_drift(oltp, customer)  # before the catalog knows it: drift, with the way forward
        assert "column c_loyalty: added in the OLTP" in drift and "add it to the catalog" in drift
        with App(oltp).transaction() as conn:
            conn.execute("UPDATE customer SET c_loyalty = 5 WHERE c_custkey IN (11, 12, 13)")
        loaded = load_today(grown)  # the catalog entry now has the column: ALTER TABLE … ADD COLUMN, today's rows
        assert ("c_loyalty", "Int32") in clickhouse.columns(DATABASE, "customer")
        assert clickhouse.rows(f"SELECT c_custkey, c_loyalty FROM {DATABASE}.customer FINAL "
                               "WHERE c_custkey IN (11, 12, 13) ORDER BY 1") == [(11, 5), (12, 5), (13, 5)]  # fmt: skip
        with oltp.connect() as conn:
            today_rows = conn.execute("SELECT count(*) FROM customer WHERE updated_at >= %s", (today(),)).fetchone()[0]
        assert loaded == today_rows < oltp_rows_count(oltp, "customer")  # today's changes, not a reload
        # rows loaded before hold the type's default, the OLTP its own: the comparison finds them, re-capture fills
        diff = diff_table(oltp, clickhouse, grown)
        assert len(diff.changed) == oltp_rows_count(oltp, "customer") - loaded and not diff.only_in_oltp
        recapture(oltp, grown, diff)
        load_today(grown)
        assert diff_table(oltp, clickhouse, grown).equal
    finally:
        with oltp.connect(autocommit=True) as conn:
            conn.execute("ALTER TABLE customer DROP COLUMN IF EXISTS c_loyalty")
        clickhouse.command(f"ALTER TABLE {DATABASE}.customer_local DROP COLUMN IF EXISTS c_loyalty")
        ensure_table(clickhouse, customer)
    load_today(customer)
    assert diff_table(oltp, clickhouse, customer).equal


def oltp_rows_count(oltp, table: str) -> int:
    with oltp.connect() as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
