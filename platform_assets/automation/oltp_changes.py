"""Sensor on the OLTP: finds the days with newly committed changes per table and requests the runs that apply them.

Changes are read by transaction id (``oltp/capture.py``): the cursor is the PostgreSQL snapshot the last tick read
with, and each tick asks only for rows and tombstones written by transactions that snapshot did not see (an index
range on ``change_xid`` from its oldest running transaction), so the cost follows the changes. A long transaction
is read on the tick after it commits, whatever its ``updated_at``, and does not hold back the transactions that
committed while it ran. The cursor is stored by Dagster with each tick, so a restarted daemon continues where it
stopped, and the run key is derived from the changes themselves, so a replayed tick never requests the same work
twice.

Change days are partitions (``partitions.CHANGE_DAYS``); each tick adds the new days with changes, sorted, and
requests one run per range of days next to each other among the partitions (a day without changes is no partition
and separates nothing): the days between a simulated 1998 and today are not worth visiting.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

import dagster as dg

from platform_assets.catalog import TABLES
from platform_assets.jobs import incremental_job, per_day_checks, range_tags, table_keys, with_downstream
from platform_assets.oltp.capture import NOTHING_SEEN, SNAPSHOT_SQL, changes_by_day_sql, snapshot_xmin
from platform_assets.partitions import CHANGE_DAYS, FIRST_DAY, last_day, ordered_runs, span
from resources.oltp_postgres import OltpPostgresResource

SENSOR = "oltp_changes"
SNAPSHOT = "snapshot"  # the cursor's one field: the snapshot the last tick read with
# how often the daemon looks for commits: the floor of commit -> warehouse latency (read when the code loads)
INTERVAL_SECONDS = int(os.environ.get("OLTP_CHANGES_INTERVAL_SECONDS") or 30)


@dataclass
class Changes:
    """What was committed between two snapshots: day -> table -> [rows, deletes], and the cursor after it."""

    since: str = NOTHING_SEEN
    until: str = NOTHING_SEEN
    latest_xid: int = 0  # the newest writing transaction among the changes (0: none)
    days: dict[date | str, dict[str, list[int]]] = field(default_factory=lambda: defaultdict(dict))

    @property
    def cursor(self) -> dict[str, str]:
        return {SNAPSHOT: self.until}

    @property
    def tables(self) -> list[str]:
        return sorted({t for per_table in self.days.values() for t in per_table})

    def summary(self) -> str:
        return ", ".join(
            f"{day}: " + " ".join(f"{t}+{r}/-{d}" for t, (r, d) in sorted(per.items()))
            for day, per in sorted(self.days.items(), key=lambda item: str(item[0]))
        )


def seen(cursor: dict | None) -> str:
    """The cursor's snapshot; one that saw nothing (read everything) without a cursor or for an older format."""
    return str(cursor.get(SNAPSHOT, NOTHING_SEEN)) if isinstance(cursor, dict) else NOTHING_SEEN


def scan(oltp: OltpPostgresResource, cursor: dict | None) -> Changes:
    """Changes per day and table committed since the cursor's snapshot, read in one new snapshot."""
    out = Changes(since=seen(cursor))
    with oltp.connect() as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        out.until = conn.execute(SNAPSHOT_SQL).fetchone()[0]
        params = {"seen": out.since, "xmin": snapshot_xmin(out.since)}
        for table in TABLES:
            for day, slot, n, latest in conn.execute(changes_by_day_sql(table), params).fetchall():
                out.days[as_day(day)].setdefault(table.name, [0, 0])[slot] += n
                out.latest_xid = max(out.latest_xid, latest)
    return out


def as_day(text: str) -> date | str:
    """A change day; a stamp no day can hold (``infinity``, year 10000 and later) stays text, to be reported."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        return text


def current_cursor(oltp: OltpPostgresResource) -> dict[str, str]:
    """The cursor of a sensor that has read everything committed so far (e.g. right after a full load)."""
    with oltp.connect() as conn:
        return {SNAPSHOT: conn.execute(SNAPSHOT_SQL).fetchone()[0]}


def run_requests(
    changes: Changes,
    skip: dict[str, set[str]] | None = None,
    checks: Callable[[list[dg.AssetKey]], list[dg.AssetCheckKey]] | None = None,
    downstream: Callable[[list[dg.AssetKey]], list[dg.AssetKey]] | None = None,
    order: list[str] | None = None,
) -> list[dg.RunRequest]:
    """One run per range of changed days next to each other in the partitions' ``order`` (by default: the changed
    days, sorted), for the tables that changed in it.

    ``skip`` drops days a table already has materialized (used on a first evaluation without a cursor); ``checks``
    names the checks each run executes (by default Dagster runs every check of the selected assets);
    ``downstream`` adds the models and marts to the last range's run (the others' changes reach them through it,
    or through the automation if that run finishes first).
    """
    wanted: dict[str, set[str]] = {}
    for day, per_table in changes.days.items():
        tables = {t for t in per_table if day.isoformat() not in (skip or {}).get(t, set())}
        if tables:
            wanted[day.isoformat()] = tables
    out = []
    runs = ordered_runs(order if order is not None else sorted(wanted), wanted)
    for first, last in runs:
        inside = [k for k in wanted if first <= k <= last]
        tables = sorted(set().union(*(wanted[k] for k in inside)))
        keys = table_keys(*tables)
        if downstream and (first, last) == runs[-1]:
            keys = downstream(keys)
        tags = {"platform/trigger": SENSOR, "platform/tables": ",".join(tables)}
        run_key = f"{SENSOR}:{span((first, last))}:{snapshot_xmin(changes.since)}:{changes.latest_xid}"
        scope = {"partition_key": first} if first == last else {"tags": {**tags, **range_tags(first, last)}}
        out.append(
            dg.RunRequest(
                run_key=run_key,
                asset_selection=keys,
                asset_check_keys=checks(keys) if checks else None,
                **{"tags": tags, **scope},
            )
        )
    return out


def split_by_partition(changes: Changes, first: date, last: date) -> tuple[Changes, dict, dict]:
    """(changes on days that can be partitions, those of the day after the last, changes no partition will hold).

    The day after the last (the database's clock a little ahead of the daemon's at midnight) is read again on the
    next tick. A day before the first, a later day (a stamp in year 9999) or no day at all (``infinity``) can never
    be loaded: reported, and the cursor moves on, so one bad stamp holds nothing back.
    """
    loadable = Changes(changes.since, changes.until, changes.latest_xid)
    ahead, unloadable = {}, {}
    for day, per_table in changes.days.items():
        key = day.isoformat() if isinstance(day, date) else day
        if not isinstance(day, date) or day < first or day > last + timedelta(days=1):
            unloadable[key] = per_table
        elif day > last:
            ahead[key] = per_table
        else:
            loadable.days[day] = per_table
    return loadable, ahead, unloadable


def days_already_loaded(instance: dg.DagsterInstance) -> set[str]:
    """Days some raw table has materialized: the partitions of a deployment upgraded from calendar partitions."""
    return {k for t in TABLES for k in instance.get_materialized_partitions(dg.AssetKey(["raw", t.name]))}


def new_partitions(instance: dg.DagsterInstance | None, days: list[date]) -> tuple[list[str], list[str]]:
    """(the partitions' order once ``days`` are added, the keys to add): new days sorted, after the existing."""
    existing = list(instance.get_dynamic_partitions(CHANGE_DAYS.name)) if instance is not None else []
    if instance is not None and not existing:  # first tick, or the first since an upgrade: what is loaded counts
        days = [*days, *(date.fromisoformat(k) for k in days_already_loaded(instance))]
    have = set(existing)
    new = sorted({d.isoformat() for d in days} - have)
    return existing + new, new


@dg.sensor(
    name=SENSOR,
    job=incremental_job,
    minimum_interval_seconds=INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests the change days with newly committed OLTP changes (rows and deletes, read by transaction "
    "id) as runs of raw → curated → warehouse and the models and marts that read the changed tables.",
)
def oltp_changes_sensor(context: dg.SensorEvaluationContext, oltp: OltpPostgresResource):
    previous = json.loads(context.cursor) if context.cursor else None
    changes = scan(oltp, previous)
    last = last_day()
    loadable, ahead, unloadable = split_by_partition(changes, FIRST_DAY, last)
    if unloadable:  # per day: table -> [rows, deletes]; matches_oltp names their keys, repair_warehouse restamps them
        context.log.error(f"changes stamped outside the change days {FIRST_DAY}..{last} cannot be loaded: {unloadable}")
    skip = None
    if previous is None and context.instance is not None:  # first tick: days already loaded need no run
        skip = {t: set(context.instance.get_materialized_partitions(dg.AssetKey(["raw", t]))) for t in loadable.tables}
    order, new = new_partitions(context.instance, list(loadable.days))
    requests = run_requests(loadable, skip, per_day_checks(context), with_downstream(context), order)
    added = [CHANGE_DAYS.build_add_request(new)] if new else []
    # changes on a day that is not a partition yet: read them again next tick (the cursor stays where it was)
    cursor = json.dumps(changes.cursor if not ahead else {SNAPSHOT: changes.since})
    if ahead:
        context.log.warning(f"changes on days after today {last}, read again next tick: {ahead}")
    if not requests:
        reason = "no new OLTP changes" + (" to load" if changes.days else "")
        return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=cursor, dynamic_partitions_requests=added)
    context.log.info(f"new OLTP changes: {loadable.summary()}")
    return dg.SensorResult(run_requests=requests, cursor=cursor, dynamic_partitions_requests=added)
