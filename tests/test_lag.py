"""Lag as users see it: the seconds a materialization records, and the freshness check's verdict (no stack)."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from platform_assets.warehouse.lag import FAIL_AFTER, LAG, NEWEST, WARN_AFTER, lag_metadata, verdict

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def test_lag_is_the_age_of_the_newest_change_held():
    meta = lag_metadata(NOW - timedelta(seconds=42.5), now=NOW)
    assert meta[LAG] == dg.MetadataValue.float(42.5)  # a float: the UI plots it over the materializations
    assert meta[NEWEST].value == "2026-12-02T11:59:17.500000+00:00"
    assert lag_metadata(None, now=NOW) == {}  # an empty table has no lag to plot


def test_the_check_judges_the_oldest_missing_change_against_the_policy():
    assert verdict(None, now=NOW) == (True, dg.AssetCheckSeverity.ERROR, 0.0)  # caught up, whatever the data's age
    assert verdict(NOW - timedelta(minutes=5), now=NOW)[0] is True
    passed, severity, waited = verdict(NOW - WARN_AFTER - timedelta(minutes=1), now=NOW)
    assert (passed, severity) == (False, dg.AssetCheckSeverity.WARN) and waited == WARN_AFTER.total_seconds() + 60
    passed, severity, _ = verdict(NOW - FAIL_AFTER - timedelta(seconds=1), now=NOW)
    assert (passed, severity) == (False, dg.AssetCheckSeverity.ERROR)
