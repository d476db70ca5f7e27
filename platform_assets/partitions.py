"""Daily partitions keyed by the change date (the day of ``updated_at``), shared by raw, curated and warehouse.

A partition holds the rows whose latest change happened that day, plus that day's deletes. The first partition is
the day the OLTP was seeded (the initial load); the simulator and production write the days after it. The current
day (UTC) is a partition too (``end_offset=1``): what an application commits now is loaded within a sensor tick, and
today's partition is re-run, replacing itself, as more changes arrive.
"""

from __future__ import annotations

import warnings
from datetime import date, datetime, timedelta

import dagster as dg

from platform_assets.oltp.seed import SEED_TIMESTAMP

DAILY = dg.DailyPartitionsDefinition(start_date=SEED_TIMESTAMP.strftime("%Y-%m-%d"), timezone="UTC", end_offset=1)

# Each run handles its whole partition range in one step: a backfill of n days is one extract, one Spark job and
# one ClickHouse insert, and gives the same result as n daily runs.
SINGLE_RUN = dg.BackfillPolicy.single_run()
# backfill_policy is marked beta; it is the documented way to get single-run backfills, so say it once, not per asset
warnings.filterwarnings("ignore", message=r"Parameter `backfill_policy`", category=dg.BetaWarning)


# A run over a range of days is one run (the assets' single-run backfill policy): Dagster's range tags.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def days_of(context: dg.AssetExecutionContext) -> list[date]:
    """Every day of the run's partition range (one day for a daily run, n for a backfill)."""
    window = context.partition_time_window
    return days_between(window.start, window.end)


def days_between(start: datetime, end: datetime) -> list[date]:
    """The days of a daily partitions' time window [start, end) (also what Pipes hands a batch pod)."""
    return [(start + timedelta(days=i)).date() for i in range((end - start).days)]


def span(days: list[date] | tuple[date, date]) -> str:
    """How a run's days are written in messages and run keys: ``1998-08-04`` or ``1998-08-04..1998-08-10``."""
    first, last = days[0], days[-1]
    return str(first) if first == last else f"{first}..{last}"


def day_bounds(day: date) -> tuple[str, str]:
    """[start, end) of a change day as UTC timestamps, for index-friendly range predicates."""
    return f"{day.isoformat()} 00:00:00+00", f"{(day + timedelta(days=1)).isoformat()} 00:00:00+00"


# Partitioned layers follow a newly materialized upstream day (e.g. a raw day re-run from the UI or landed files),
# for any day, not only the latest time window as ``eager()`` alone would.
ON_NEW_PARENT = dg.AutomationCondition.eager().without(dg.AutomationCondition.in_latest_time_window())

# Models and marts read every day of their partitioned inputs: "any input partition missing" would hold them back
# forever (most days of the calendar never have changes), so they refresh whenever any input is updated.
ON_ANY_INPUT_UPDATE = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())
