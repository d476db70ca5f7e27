"""Change days as partitions, shared by raw, curated and warehouse: a partition holds the rows whose latest change
happened that day, plus that day's deletes.

The partitions are the days that have changes, added as they are found (``DynamicPartitionsDefinition``): by the
change sensor, the landing sensor, the nightly schedule and a run asked for a day (the CLI, a full load). A calendar
of every day since the seed (1998, TPC-H's) would be 28 years of days almost all empty, and the UI would summarise a
fully loaded table as "0% filled"; here "100% filled" means every day with changes is loaded. A day is a partition
only between the seed day and today (UTC): a stamp in 2099 or before the seed never becomes one.

Keys are added in calendar order (each sensor tick adds its new days sorted), and a run over a range covers the keys
between its first and last in the order they were added: ``days_of`` refuses a range whose days are not in calendar
order (a day added after later ones, e.g. a late landed file), so such days are run one by one.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from platform_assets.oltp.seed import SEED_TIMESTAMP

CHANGE_DAYS = dg.DynamicPartitionsDefinition(name="change_days")
FIRST_DAY = SEED_TIMESTAMP.date()  # the OLTP's initial load: no change is older


def last_day(now: datetime | None = None) -> date:
    """The latest day that can be a partition: today (UTC), where an application's commits of now are stamped."""
    return (now or datetime.now(UTC)).astimezone(UTC).date()


def change_day(key: str, now: datetime | None = None) -> date:
    """The day a partition key names, or a ValueError naming the key and why it is not a change day."""
    try:
        day = date.fromisoformat(key)
    except ValueError:
        raise ValueError(f"partition {key!r} is not a day (YYYY-MM-DD)") from None
    if key != day.isoformat() or not FIRST_DAY <= day <= last_day(now):
        raise ValueError(f"partition {key!r} is not a change day ({FIRST_DAY}..{last_day(now)})")
    return day


def add_days(instance: dg.DagsterInstance, days: Iterable[date | str]) -> list[str]:
    """Make the days partitions (in calendar order, those not yet one); the keys added."""
    keys = sorted({change_day(str(d)).isoformat() for d in days})
    new = [k for k in keys if not instance.has_dynamic_partition(CHANGE_DAYS.name, k)]
    if new:
        instance.add_dynamic_partitions(CHANGE_DAYS.name, new)
    return new


def ordered_runs(order: list[str], wanted: Iterable[str]) -> list[tuple[str, str]]:
    """``wanted`` keys as (first, last) ranges of one run each: keys next to each other in the partitions' order
    (``order``) and in calendar order, so each range's keys are exactly the wanted days between its ends."""
    want = set(wanted)
    runs: list[list[str]] = []
    previous = None
    for i, key in enumerate(order):
        if key not in want:
            continue
        if runs and previous == i - 1 and key > runs[-1][-1]:
            runs[-1].append(key)
        else:
            runs.append([key])
        previous = i
    return [(r[0], r[-1]) for r in runs]


# Each run handles its whole partition range in one step: a backfill of n days is one extract, one Spark job and
# one ClickHouse insert, and gives the same result as n daily runs.
SINGLE_RUN = dg.BackfillPolicy.single_run()
# backfill_policy is marked beta; it is the documented way to get single-run backfills, so say it once, not per asset
warnings.filterwarnings("ignore", message=r"Parameter `backfill_policy`", category=dg.BetaWarning)


# A run over a range of days is one run (the assets' single-run backfill policy): Dagster's range tags.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def days_of(context: dg.AssetExecutionContext) -> list[date]:
    """Every day of the run's partitions (one for a daily run, n for a backfill), in calendar order."""
    keys = list(context.partition_keys)
    days = [change_day(k) for k in keys]
    if days != sorted(set(days)):
        raise ValueError(
            f"partitions {span(keys)}: the range holds days out of calendar order ({', '.join(keys)}): a day was "
            "added after later ones; run those days one by one"
        )
    return days


def span(days: list[date] | tuple[date, date]) -> str:
    """How a run's days are written in messages and run keys: ``1998-08-04`` or ``1998-08-04..1998-08-10``."""
    first, last = days[0], days[-1]
    return str(first) if first == last else f"{first}..{last}"


def day_bounds(day: date) -> tuple[str, str]:
    """[start, end) of a change day as UTC timestamps, for index-friendly range predicates."""
    return f"{day.isoformat()} 00:00:00+00", f"{(day + timedelta(days=1)).isoformat()} 00:00:00+00"


# Partitioned layers follow a newly materialized upstream day (e.g. a raw day re-run from the UI or landed files),
# for any day (with time-window partitions ``eager()`` alone would take only the latest).
ON_NEW_PARENT = dg.AutomationCondition.eager().without(dg.AutomationCondition.in_latest_time_window())

# Models and marts read every day of their partitioned inputs: "any input partition missing" would hold them back
# forever (most days of the calendar never have changes), so they refresh whenever any input is updated.
ON_ANY_INPUT_UPDATE = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())
