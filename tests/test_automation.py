"""Schedules, sensors and automation conditions as declared (no stack): what runs on its own, and when."""

import json
import os
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from platform_assets.automation.landing_sensor import run_requests as landing_requests
from platform_assets.automation.oltp_changes import Changes, run_requests, split_by_partition
from platform_assets.definitions import INCREMENTAL_JOB, defs
from platform_assets.jobs import per_day_checks, with_downstream
from platform_assets.partitions import CHANGE_DAYS, change_day, ordered_runs
from platform_assets.raw.landing import parse_landing_key


def test_daily_schedule_requests_yesterdays_partition():
    d = defs()
    schedule = d.resolve_schedule_def("daily_changes")
    assert schedule.job_name == INCREMENTAL_JOB and schedule.cron_schedule == "30 0 * * *"
    repository = d.get_repository_def()
    for tick, yesterday in ((datetime(1998, 8, 5, 0, 30, tzinfo=UTC), "1998-08-04"), (None, None)):
        now = tick or datetime.now(UTC).replace(hour=0, minute=30)
        with (
            dg.instance_for_test() as instance,
            dg.build_schedule_context(instance, scheduled_execution_time=now, repository_def=repository) as context,
        ):
            data = schedule.evaluate_tick(context)
            # the day before the tick, also on the wall clock, made a partition first (no run of an unknown key)
            want = yesterday or (now - timedelta(days=1)).date().isoformat()
            assert [r.partition_key for r in data.run_requests] == [want]
            assert instance.get_dynamic_partitions(CHANGE_DAYS.name) == [want]


def test_what_runs_on_its_own():
    d = defs()
    running = dg.DefaultSensorStatus.RUNNING
    sensors = {s.name: s for s in d.sensors}
    assert {"oltp_changes", "landing_files", "report_failed_runs", "automation"} <= set(sensors)
    assert all(sensors[n].default_status == running for n in ("oltp_changes", "landing_files", "automation"))
    specs = {s.key: s for s in d.resolve_all_asset_specs()}
    for key, spec in specs.items():
        layer = key.path[0]
        if layer in ("curated", "warehouse", "marts"):
            assert spec.automation_condition is not None, key
        if layer in ("warehouse", "marts"):
            assert spec.freshness_policy is not None, key


def test_the_change_sensor_ticks_every_30_s_unless_configured():
    import subprocess
    import sys

    assert defs().resolve_sensor_def("oltp_changes").minimum_interval_seconds == 30
    code = (
        "from platform_assets.definitions import defs; print(defs().resolve_sensor_def('oltp_changes')"
        ".minimum_interval_seconds)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OLTP_CHANGES_INTERVAL_SECONDS": "5"})  # fmt: skip
    assert out.stdout.split()[-1] == "5"


def test_change_sensor_requests_one_run_per_range_of_changed_days_next_to_each_other_among_the_partitions():
    changes = Changes(since="100:180:", until="180:181:", latest_xid=170)
    changes.days[date(1998, 8, 6)] = {"orders": [3, 1]}
    changes.days[date(1998, 8, 4)] = {"lineitem": [10, 0], "orders": [2, 0]}
    changes.days[date(1998, 8, 5)] = {"orders": [1, 0]}
    changes.days[date(2026, 12, 1)] = {"customer": [20, 0]}  # an application writing today
    (everything,) = run_requests(changes)  # days without changes are no partitions: nothing lies between these
    assert everything.tags["dagster/asset_partition_range_start"] == "1998-08-04"
    assert everything.tags["dagster/asset_partition_range_end"] == "2026-12-01"
    # a partition without new changes between them (2026-11-30) splits the days in two runs
    order = ["1998-08-03", "1998-08-04", "1998-08-05", "1998-08-06", "2026-11-30", "2026-12-01"]
    first, today = run_requests(changes, order=order)
    assert first.tags["dagster/asset_partition_range_start"] == "1998-08-04"
    assert first.tags["dagster/asset_partition_range_end"] == "1998-08-06"
    assert {k.to_user_string() for k in first.asset_selection} == {
        f"{layer}/{t}" for t in ("lineitem", "orders") for layer in ("raw", "curated", "warehouse")
    }
    assert today.partition_key == "2026-12-01" and today.tags["platform/tables"] == "customer"
    assert [r.run_key for r in run_requests(changes, order=order)] == [first.run_key, today.run_key]  # same keys
    changes.latest_xid = 175  # a later transaction among the changes: new work, new keys
    assert {r.run_key for r in run_requests(changes, order=order)}.isdisjoint({first.run_key, today.run_key})
    # days a fresh sensor finds already materialized are not requested again
    loaded = {"1998-08-04", "1998-08-05", "1998-08-06", "2026-12-01"}
    assert run_requests(changes, skip={"orders": loaded, "lineitem": loaded, "customer": loaded}) == []


def test_a_days_run_carries_the_changed_tables_through_to_the_models_and_marts_that_read_them():
    d = defs()
    with dg.build_sensor_context(definitions=d) as context:
        downstream, checks = with_downstream(context), per_day_checks(context)
    changes = Changes(since="100:180:", until="180:181:", latest_xid=170)
    changes.days[date(1998, 8, 4)] = {"customer": [1, 0]}
    changes.days[date(2026, 12, 1)] = {"lineitem": [10, 0], "orders": [2, 1]}
    order = ["1998-08-04", "1998-08-05", "2026-12-01"]  # 1998-08-05 lies between: two runs
    first, today = run_requests(changes, checks=checks, downstream=downstream, order=order)
    # only the last range's run carries the models and marts (the first's changes reach them through it)
    assert {k.path[0] for k in first.asset_selection} == {"raw", "curated", "warehouse"}
    keys = {k.to_user_string() for k in today.asset_selection}
    marts = {k.to_user_string() for k in d.resolve_asset_graph().get_all_asset_keys() if k.path[0] == "marts"}
    assert {"warehouse/lineitem", "warehouse/fct_lineitem"} | marts <= keys
    assert not {k for k in keys if k.startswith(("raw/", "curated/"))} - {
        f"{layer}/{t}" for layer in ("raw", "curated") for t in ("lineitem", "orders")
    }
    # their checks ride along, but not those that read whole tables on their own cadence
    names = {c.name for c in today.asset_check_keys}
    assert "up_to_date_with_warehouse" in names and not names & {"matches_oltp", "matches_full_rebuild"}
    # the job the sensor targets holds every asset and check it asks for (the daemon refuses a run otherwise)
    job = d.resolve_job_def(INCREMENTAL_JOB)
    job.get_subset(asset_selection=set(today.asset_selection), asset_check_selection=set(today.asset_check_keys))


def test_change_days_outside_the_partitions_are_held_or_reported():
    changes = Changes(since="5:9:", until="9:10:", latest_xid=8)
    for day in (date(1998, 8, 2), date(2026, 12, 1), date(2026, 12, 2)):
        changes.days[day] = {"orders": [1, 0]}
    loadable, ahead, before = split_by_partition(changes, date(1998, 8, 3), date(2026, 12, 1))
    assert (
        list(loadable.days) == [date(2026, 12, 1)] and list(ahead) == ["2026-12-02"] and list(before) == ["1998-08-02"]
    )


def test_a_change_day_lies_between_the_seed_day_and_today():
    today = datetime.now(UTC).date()
    assert change_day(today.isoformat()) == today and change_day("1998-08-03") == date(1998, 8, 3)
    for key, why in (
        ((today + timedelta(days=1)).isoformat(), "is not a change day (1998-08-03.."),
        ("1998-08-02", "is not a change day"),
        ("2099-01-01", "is not a change day"),
        ("1998-8-3", "is not a day (YYYY-MM-DD)"),  # one day, one key
        ("yesterday", "is not a day (YYYY-MM-DD)"),
    ):
        try:
            change_day(key)
        except ValueError as exc:
            assert f"partition {key!r} {why}" in str(exc)
        else:
            raise AssertionError(f"{key} was taken for a change day")


def test_a_range_run_holds_exactly_the_keys_between_its_ends_in_the_partitions_order():
    order = ["1998-08-04", "2026-12-01", "1998-08-05", "1998-08-06", "2026-12-02"]  # 1998-08-05 added late
    assert ordered_runs(order, order) == [("1998-08-04", "2026-12-01"), ("1998-08-05", "2026-12-02")]
    assert ordered_runs(order, ["1998-08-04", "1998-08-06", "2026-12-02"]) == [
        ("1998-08-04", "1998-08-04"),
        ("1998-08-06", "2026-12-02"),
    ]
    assert ordered_runs(order, []) == []


def test_landing_keys_are_validated_and_grouped_per_table_and_day():
    assert parse_landing_key("landing/orders/1998-08-05/batch-1.csv").table.name == "orders"
    for bad, message in (
        ("landing/orders/batch.csv", "expected landing/<table>/<YYYY-MM-DD>/"),
        ("landing/planets/1998-08-05/x.parquet", "table 'planets' is not in the catalog"),
        ("landing/orders/1998-02-30/x.parquet", "'1998-02-30' is not a day"),
    ):
        try:
            parse_landing_key(bad)
        except ValueError as exc:
            assert message in str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")
    requests = landing_requests(
        {
            "landing/orders/1998-08-05/a.parquet": "e1",
            "landing/orders/1998-08-05/b.csv": "e2",
            "landing/region/1998-08-06/c.parquet": "e3",
            "landing/nowhere.txt": "e4",
        }
    )
    # the files reach the raw step as its typed config (RawConfig), not as a string in a tag
    assert [(r.partition_key, r.run_config["ops"]) for r in requests] == [
        ("1998-08-05", {"raw__orders": {"config": {"landed_files": ["landing/orders/1998-08-05/a.parquet",
                                                                    "landing/orders/1998-08-05/b.csv"]}}}),
        ("1998-08-06", {"raw__region": {"config": {"landed_files": ["landing/region/1998-08-06/c.parquet"]}}}),
    ]  # fmt: skip
    job = defs().resolve_job_def(INCREMENTAL_JOB)  # the config the sensor writes is one the job accepts
    for r in requests:
        dg.validate_run_config(job.get_subset(asset_selection=set(r.asset_selection)), r.run_config)
    try:
        dg.validate_run_config(job, {"ops": {"raw__orders": {"config": {"landed_file": ["x"]}}}})
    except dg.DagsterInvalidConfigError as exc:
        assert "landed_file" in str(exc)
    else:
        raise AssertionError("a misspelt config key was accepted")


def test_a_landed_file_outside_the_change_days_is_skipped_and_never_stalls_the_sensor():
    """A supplier's file stamped 2099 (or before the seed day) once failed every tick: the cursor never moved."""
    from platform_assets.automation.landing_sensor import SENSOR
    from resources.object_store import ObjectStoreResource

    objects = {
        "landing/orders/2099-01-01/x.parquet": "e1",
        "landing/orders/1990-01-01/y.parquet": "e2",
        "landing/orders/1998-08-05/z.parquet": "e3",
    }

    class ListedStore(ObjectStoreResource):
        def list_objects(self, prefix):
            return [{"Key": k, "ETag": f'"{e}"'} for k, e in objects.items()]

    definitions = defs()
    store = ListedStore(endpoint_url="http://127.0.0.1:9", bucket="lake", aws_access_key_id="k",
                        aws_secret_access_key="s")  # fmt: skip
    warned: list[str] = []

    def tick(cursor):
        with dg.instance_for_test() as instance, dg.build_sensor_context(
            instance=instance, instance_ref=instance.get_ref(), cursor=cursor, definitions=definitions,
            sensor_name=SENSOR,
            resources={**definitions.resources, "object_store": store},
        ) as context:  # fmt: skip
            context.log.warning = warned.append
            return definitions.resolve_sensor_def(SENSOR).evaluate_tick(context)

    first = tick(None)
    assert [(r.partition_key, r.run_config["ops"]) for r in first.run_requests] == [
        ("1998-08-05", {"raw__orders": {"config": {"landed_files": ["landing/orders/1998-08-05/z.parquet"]}}})
    ]
    assert [list(r.partition_keys) for r in first.dynamic_partitions_requests] == [["1998-08-05"]]  # 2099: no
    assert sorted(w.split(":")[1].removeprefix(" skipped ") for w in warned) == sorted(
        k for k in objects if "1998" not in k
    )
    assert "table orders, day 2099-01-01 is not a change day (1998-08-03.." in " ".join(warned)
    assert set(json.loads(first.cursor)) == set(objects)  # the cursor moved past all three
    warned.clear()
    again = tick(first.cursor)
    assert again.run_requests in (None, []) and warned == []  # reported once, not every tick
