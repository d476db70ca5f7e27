"""Sensor on the OLTP: finds the days with new changes per table and requests one run that applies them.

The cursor keeps, per table, the latest ``updated_at`` and the latest delete it has seen; each evaluation asks
PostgreSQL only for changes after those (index range scans, so the cost follows the changes, not the table). The
cursor is stored by Dagster with each tick, so a restarted daemon continues where it stopped, and the run key is
derived from the changes themselves, so the same work is never requested twice.

A transaction that commits after the sensor has passed its timestamps is caught by the daily schedule, which
re-applies yesterday's partition in full.
"""

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date

import dagster as dg

from platform_assets.catalog import AUDIT_COLUMN, TABLES
from platform_assets.jobs import incremental_job, range_tags
from platform_assets.oltp.schema import TOMBSTONES
from resources.oltp_postgres import OltpPostgresResource

SENSOR = "oltp_changes"


@dataclass
class Changes:
    """What changed since a cursor: day -> table -> (rows, deletes), and the cursor after it."""

    days: dict[date, dict[str, list[int]]] = field(default_factory=lambda: defaultdict(dict))
    cursor: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def tables(self) -> list[str]:
        return sorted({t for per_table in self.days.values() for t in per_table})


def scan(oltp: OltpPostgresResource, cursor: dict[str, dict[str, str]]) -> Changes:
    """Changes per day and table after the cursor's timestamps (everything for a table the cursor lacks)."""
    out = Changes(cursor={t: dict(v) for t, v in cursor.items()})
    epoch = "-infinity"
    with oltp.connect() as conn:
        for table in TABLES:
            seen = cursor.get(table.name, {})
            queries = (
                (AUDIT_COLUMN, f"SELECT {AUDIT_COLUMN} AS ts FROM {table.name} WHERE {AUDIT_COLUMN} > %s", (), 0),
                (
                    "deleted_at",
                    f"SELECT deleted_at AS ts FROM {TOMBSTONES} WHERE table_name = %s AND deleted_at > %s",
                    (table.name,),
                    1,
                ),
            )
            for mark, sql, args, slot in queries:
                rows = conn.execute(
                    f"SELECT (ts AT TIME ZONE 'UTC')::date, count(*), max(ts) FROM ({sql}) c GROUP BY 1 ORDER BY 1",
                    (*args, seen.get(mark, epoch)),
                ).fetchall()
                for day, n, latest in rows:
                    counts = out.days[day].setdefault(table.name, [0, 0])
                    counts[slot] += n
                    current = out.cursor.setdefault(table.name, {}).get(mark)
                    stamp = latest.astimezone(UTC).isoformat()
                    if current is None or stamp > current:
                        out.cursor[table.name][mark] = stamp
    return out


def run_request(changes: Changes, skip: dict[str, set[str]] | None = None) -> dg.RunRequest | None:
    """One run over the changed days (first to last, a single-run range) for the tables that changed.

    ``skip`` drops days a table already has materialized (used on a first evaluation without a cursor).
    """
    wanted: dict[date, set[str]] = {}
    for day, per_table in changes.days.items():
        tables = {t for t in per_table if day.isoformat() not in (skip or {}).get(t, set())}
        if tables:
            wanted[day] = tables
    if not wanted:
        return None
    first, last = min(wanted), max(wanted)
    tables = sorted(set().union(*wanted.values()))
    digest = hashlib.sha1(json.dumps(changes.cursor, sort_keys=True).encode()).hexdigest()[:12]
    keys = [dg.AssetKey([layer, t]) for t in tables for layer in ("raw", "curated", "warehouse")]
    tags = {"platform/trigger": SENSOR, "platform/tables": ",".join(tables)}
    if first == last:
        return dg.RunRequest(
            run_key=f"{SENSOR}:{first}:{digest}", partition_key=first.isoformat(), asset_selection=keys, tags=tags
        )
    return dg.RunRequest(
        run_key=f"{SENSOR}:{first}..{last}:{digest}", asset_selection=keys, tags={**tags, **range_tags(first, last)}
    )


@dg.sensor(
    name=SENSOR,
    job=incremental_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests the days with new OLTP changes (rows and deletes, per table since its cursor) as one run "
    "of raw → curated → warehouse; models and marts follow through automation.",
)
def oltp_changes_sensor(context: dg.SensorEvaluationContext, oltp: OltpPostgresResource):
    cursor = json.loads(context.cursor) if context.cursor else {}
    changes = scan(oltp, cursor)
    skip = None
    if not context.cursor and context.instance is not None:  # first tick: days already loaded need no run
        skip = {t: set(context.instance.get_materialized_partitions(dg.AssetKey(["raw", t]))) for t in changes.tables}
    request = run_request(changes, skip)
    summary = ", ".join(
        f"{day}: " + " ".join(f"{t}+{r}/-{d}" for t, (r, d) in sorted(per.items()))
        for day, per in sorted(changes.days.items())
    )
    if request is None:
        return dg.SensorResult(
            skip_reason=dg.SkipReason(f"no new OLTP changes{' to load' if summary else ''}"),
            cursor=json.dumps(changes.cursor, sort_keys=True),
        )
    context.log.info(f"new OLTP changes: {summary}")
    return dg.SensorResult(run_requests=[request], cursor=json.dumps(changes.cursor, sort_keys=True))
