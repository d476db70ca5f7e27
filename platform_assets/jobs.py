"""The jobs: the whole lineage, and the incremental changes that sensors and the daily schedule launch."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date

import dagster as dg

from platform_assets.catalog import AUDIT_COLUMN, MODELS, TABLES
from platform_assets.oltp.capture import TOMBSTONE_TABLE
from platform_assets.partitions import (
    CHANGE_DAYS,
    FIRST_DAY,
    RANGE_END_TAG,
    RANGE_START_TAG,
    add_days,
    last_day,
    ordered_runs,
)
from platform_assets.warehouse.models import CONSISTENT
from platform_assets.warehouse.table_diff import MATCHES_OLTP
from resources.oltp_postgres import OltpPostgresResource

LINEAGE_JOB = "full_lineage"
INCREMENTAL_JOB = "incremental_changes"

# Whole-table comparisons with the OLTP run on their own cadence (daily, on demand), never in a run of the lineage.
WHOLE_TABLE_CHECK_KEYS = frozenset(dg.AssetCheckKey(dg.AssetKey(["warehouse", t.name]), MATCHES_OLTP) for t in TABLES)
WHOLE_TABLE_CHECKS = dg.AssetSelection.checks(*WHOLE_TABLE_CHECK_KEYS)
# A model against its rebuild reads whole tables too: daily at 03:00 and in the full lineage, not in a day's run.
REBUILD_CHECK_KEYS = frozenset(dg.AssetCheckKey(dg.AssetKey(["warehouse", m.name]), CONSISTENT) for m in MODELS)
NOT_IN_A_DAY = WHOLE_TABLE_CHECK_KEYS | REBUILD_CHECK_KEYS
PARTITIONED_LAYERS = ("raw", "curated", "warehouse")


def table_keys(*tables: str) -> list[dg.AssetKey]:
    """A table's daily-partitioned assets, in lineage order: raw, curated, warehouse (for each table given)."""
    return [dg.AssetKey([layer, t]) for t in tables for layer in PARTITIONED_LAYERS]


# The daily-partitioned layers: one partition of each is a day of changes of one table.
PARTITIONED = (
    dg.AssetSelection.key_prefixes(["raw"]) | dg.AssetSelection.assets(*table_keys(*(t.name for t in TABLES)))
) - WHOLE_TABLE_CHECKS

full_lineage_job = dg.define_asset_job(
    LINEAGE_JOB,
    selection=dg.AssetSelection.all() - WHOLE_TABLE_CHECKS,
    description="Materialize the whole lineage for a range of change days: OLTP → raw → curated → warehouse → "
    "models → marts. Run over every day with changes it is a full load.",
)

incremental_job = dg.define_asset_job(
    INCREMENTAL_JOB,
    selection=PARTITIONED.downstream() - dg.AssetSelection.checks(*NOT_IN_A_DAY),
    description="Apply the OLTP changes of one day (or a range, as one run): raw → curated → warehouse of the "
    "changed tables, then the models and marts that read them, in the same run.",
)


def range_tags(start: date | str, end: date | str) -> dict[str, str]:
    """Run tags that make one run cover a range of daily partitions (the assets' single-run backfill policy)."""
    return {RANGE_START_TAG: str(start), RANGE_END_TAG: str(end)}


def _days_of(column: str, table: str) -> str:
    """The distinct UTC days of an indexed timestamp column, one index probe per day (a loose index scan)."""
    day = f"date_trunc('day', {column}, 'UTC')"
    return (
        f"SELECT d FROM (WITH RECURSIVE days(d) AS (SELECT (SELECT {day} FROM {table} ORDER BY {column} LIMIT 1) "
        f"UNION ALL SELECT (SELECT {day} FROM {table} WHERE {column} >= days.d + interval '1 day' "
        f"ORDER BY {column} LIMIT 1) FROM days WHERE days.d IS NOT NULL) SELECT d FROM days) s WHERE d IS NOT NULL"
    )


def change_days(oltp: OltpPostgresResource) -> list[date]:
    """Every day with a change (row or delete) in the OLTP that can be a partition: the days of a full load."""
    parts = [_days_of(AUDIT_COLUMN, t.name) for t in TABLES] + [_days_of("deleted_at", TOMBSTONE_TABLE)]
    with oltp.connect() as conn:
        found = {d.astimezone(UTC).date() for (d,) in conn.execute(" UNION ".join(parts)).fetchall()}
    if not found:
        raise LookupError("the OLTP database has no rows yet: seed it first (make seed)")
    return sorted(d for d in found if FIRST_DAY <= d <= last_day())  # stamps beyond are the sensor's to report


def changed_days(oltp: OltpPostgresResource) -> tuple[date, date]:
    """First and last day with a change (row or delete) in the OLTP."""
    days = change_days(oltp)
    return days[0], days[-1]


def full_load_tags(instance: dg.DagsterInstance, oltp: OltpPostgresResource) -> dict[str, str]:
    """Tags of one run over every change day (made partitions first) and every day that was one: a full load."""
    add_days(instance, change_days(oltp))
    keys = list(instance.get_dynamic_partitions(CHANGE_DAYS.name))  # with days whose changes were changed again
    runs = ordered_runs(keys, keys)
    if len(runs) != 1:  # a day added after later ones: one range would leave days out
        raise ValueError(f"the change days are not partitions in calendar order: a full load is the runs {runs}")
    return range_tags(*runs[0])


def with_downstream(
    context: dg.SensorEvaluationContext,
) -> Callable[[list[dg.AssetKey]], list[dg.AssetKey]] | None:
    """The selected tables' layers and every model and mart that reads them: a day's run carries its changes
    through to the marts, so they do not wait for the automation's next tick and no second run starts (the
    automation then finds them up to date). None without the repository at hand."""
    if context.repository_def is None:
        return None
    graph = context.repository_def.asset_graph

    def keys(selected: list[dg.AssetKey]) -> list[dg.AssetKey]:
        below = dg.AssetSelection.assets(*selected).downstream().resolve(graph) - set(selected)
        return [*selected, *sorted(below, key=lambda k: k.to_user_string())]

    return keys


def per_day_checks(
    context: dg.SensorEvaluationContext,
) -> Callable[[list[dg.AssetKey]], list[dg.AssetCheckKey]] | None:
    """The checks of the selected assets that belong in a day's run: all but those that read whole tables (None
    without the repository at hand: Dagster's default, every check of the assets)."""
    if context.repository_def is None:
        return None
    graph = context.repository_def.asset_graph

    def checks(keys: list[dg.AssetKey]) -> list[dg.AssetCheckKey]:
        found = graph.get_check_keys_for_assets(set(keys)) - NOT_IN_A_DAY
        return sorted(found, key=lambda k: k.to_user_string())

    return checks
