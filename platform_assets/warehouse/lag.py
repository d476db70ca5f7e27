"""Lag: how far the warehouse and the marts are behind the OLTP, in seconds, where users look for it.

Every materialization of a warehouse table, model or mart records ``lag_seconds``: from the newest change it holds
(the capture trigger's ``updated_at``: the writing statement's clock, the commit to within the transaction's
length) to now, so the Dagster UI plots it over the materializations. With an application writing all day it is the
commit → warehouse (or → marts) latency; on a source that has been quiet it grows, which is the data's true age.

The freshness check judges what is *missing* instead: the oldest change the OLTP holds newer than the newest one the
warehouse loaded (none: caught up, whatever the data's age). Past the policy's warn window it warns, past its fail
window it fails. The stamps come from the database's clock, so a change committed later never carries an earlier
stamp than one loaded, except the simulator's backdated days (``platform.change_time``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from platform_assets.warehouse import reconcile
from platform_assets.warehouse.load import DATABASE
from resources.clickhouse import ClickHouseResource

# A warehouse table or mart not refreshed for a day is late; two days, failed.
WARN_AFTER = timedelta(hours=24)
FAIL_AFTER = timedelta(hours=48)
FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=FAIL_AFTER, warn_window=WARN_AFTER)
LAG = "lag_seconds"
NEWEST = "newest_change"


def newest_change(clickhouse: ClickHouseResource, tables: list[str]) -> datetime | None:
    """The newest change any of ``tables`` holds (deletes included)."""
    held = [name for name in tables if clickhouse.columns(DATABASE, name)]
    stamps = [reconcile.warehouse_latest_change(clickhouse, name) for name in held]
    return max((s for s in stamps if s is not None), default=None)


def lag_metadata(newest: datetime | None, now: datetime | None = None) -> dict[str, dg.MetadataValue]:
    """``lag_seconds`` (a float the UI plots) and the change it is measured from; none for an empty table."""
    if newest is None:
        return {}
    lag = ((now or datetime.now(UTC)) - newest).total_seconds()
    return {LAG: dg.MetadataValue.float(round(lag, 3)), NEWEST: dg.MetadataValue.text(newest.isoformat())}


def verdict(oldest_missing: datetime | None, now: datetime | None = None) -> tuple[bool, dg.AssetCheckSeverity, float]:
    """(passed, severity, seconds the oldest missing change has waited) against the freshness policy."""
    waited = 0.0 if oldest_missing is None else ((now or datetime.now(UTC)) - oldest_missing).total_seconds()
    if waited > FAIL_AFTER.total_seconds():
        return False, dg.AssetCheckSeverity.ERROR, waited
    if waited > WARN_AFTER.total_seconds():
        return False, dg.AssetCheckSeverity.WARN, waited
    return True, dg.AssetCheckSeverity.ERROR, waited
