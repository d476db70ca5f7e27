"""Schedules, sensors and automation conditions as declared (no stack): what runs on its own, and when."""

from datetime import UTC, datetime

import dagster as dg

from platform_assets.automation.landing_sensor import run_requests as landing_requests
from platform_assets.automation.oltp_changes import Changes, run_request
from platform_assets.definitions import INCREMENTAL_JOB, defs
from platform_assets.raw.landing import parse_landing_key


def test_daily_schedule_requests_yesterdays_partition():
    d = defs()
    schedule = d.resolve_schedule_def("daily_changes")
    assert schedule.job_name == INCREMENTAL_JOB and schedule.cron_schedule == "30 0 * * *"
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(1998, 8, 5, 0, 30, tzinfo=UTC)
        )
        data = schedule.evaluate_tick(context)
    assert [r.partition_key for r in data.run_requests] == ["1998-08-04"]


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


def test_change_sensor_request_covers_the_changed_days_in_one_run():
    changes = Changes()
    changes.days[datetime(1998, 8, 6).date()] = {"orders": [3, 1]}
    changes.days[datetime(1998, 8, 4).date()] = {"lineitem": [10, 0], "orders": [2, 0]}
    changes.cursor = {"orders": {"updated_at": "1998-08-06T12:00:00+00:00"}}
    request = run_request(changes)
    assert request.tags["dagster/asset_partition_range_start"] == "1998-08-04"
    assert request.tags["dagster/asset_partition_range_end"] == "1998-08-06"
    assert {k.to_user_string() for k in request.asset_selection} == {
        f"{layer}/{t}" for t in ("lineitem", "orders") for layer in ("raw", "curated", "warehouse")
    }
    assert run_request(changes).run_key == request.run_key  # same changes, same key: deduplicated
    changes.cursor["orders"]["updated_at"] = "1998-08-06T13:00:00+00:00"
    assert run_request(changes).run_key != request.run_key
    # days a fresh sensor finds already materialized are not requested again
    assert run_request(changes, skip={"orders": {"1998-08-04", "1998-08-06"}, "lineitem": {"1998-08-04"}}) is None


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
    assert [(r.partition_key, r.tags["platform/landing_keys"]) for r in requests] == [
        ("1998-08-05", "landing/orders/1998-08-05/a.parquet,landing/orders/1998-08-05/b.csv"),
        ("1998-08-06", "landing/region/1998-08-06/c.parquet"),
    ]
