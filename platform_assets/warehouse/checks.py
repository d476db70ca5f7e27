"""The warehouse's asset checks, beside its assets: what a day's run proves about the keys it wrote, and what
whole-table comparisons and the freshness policy prove on their own cadence.

``unique_check`` and ``reconcile_check`` run inside a table's (or model's) own step, on the keys and days the step
wrote; the others are check definitions of their own.
"""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from platform_assets.catalog import MODELS, TABLES, TABLES_BY_NAME, Model, Table
from platform_assets.partitions import span
from platform_assets.warehouse import reconcile
from platform_assets.warehouse.lag import FRESHNESS, LAG, verdict
from platform_assets.warehouse.load import DATABASE
from platform_assets.warehouse.models import (
    CONSISTENT,
    MODEL_SQL,
    READ_CURRENT,
    ModelSql,
    fingerprint,
    stored_fingerprint,
)
from resources.clickhouse import ClickHouseResource
from resources.oltp_postgres import OltpPostgresResource

RECONCILE = "reconciles_with_oltp"
UNIQUE = "primary_key_unique_not_null"
REFERENCES = "references_exist"
IN_STEP = "in_step_with_oltp"


def unique_check(
    ch: ClickHouseResource, spec: Table | Model, null: dict[str, int] | None = None, scope: str = ""
) -> dg.AssetCheckResult:
    """What queries see has one row per primary key; ``null`` are null keys found in the input (never loaded).

    ``scope`` (a SQL condition) limits the check to the keys a run wrote, so its cost follows the run's changes.
    """
    pk = ", ".join(spec.primary_key)
    where = f"is_deleted = 0 AND ({scope})" if scope else "is_deleted = 0"
    sql = f"SELECT count(), uniqExact({pk}) FROM {DATABASE}.{spec.name} WHERE {where}"
    rows, keys = ch.rows(f"{sql} SETTINGS {READ_CURRENT}")[0]
    null = null or {}
    problems = [f"{rows - keys} duplicate key(s) on ({pk})"] if rows != keys else []
    problems += [f"column {k}: {n} null key(s) in the curated input, not loaded" for k, n in null.items()]
    return dg.AssetCheckResult(
        check_name=UNIQUE,
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{DATABASE}.{spec.name}: " + "; ".join(problems) if problems else None,
        metadata={"rows": int(rows), "distinct_keys": int(keys), "null_keys": sum(null.values())},
    )


def references_check(table: Table) -> dg.AssetChecksDefinition:
    """Every foreign key points at a live row of its parent (lineitem → orders → customer → nation → region).

    The check depends on the parents' warehouse assets, so in a run that loads both it waits for the parent.
    """
    parents = sorted({fk.references for fk in table.foreign_keys})

    @dg.asset_check(
        asset=dg.AssetKey(["warehouse", table.name]),
        name=REFERENCES,
        additional_deps=[dg.AssetKey(["warehouse", p]) for p in parents],
        description=f"Foreign keys resolve to live rows of {', '.join(parents)}.",
    )
    def _references(clickhouse: ClickHouseResource) -> dg.AssetCheckResult:
        orphans: dict[str, int] = {}
        missing = [p for p in parents if not clickhouse.columns(DATABASE, p)]
        for fk in table.foreign_keys:
            if fk.references in missing:
                continue
            child, parent = ", ".join(fk.columns), ", ".join(fk.ref_columns)
            n = clickhouse.scalar(
                f"SELECT count() FROM {DATABASE}.{table.name} WHERE is_deleted = 0 AND ({child}) GLOBAL NOT IN "
                f"(SELECT {parent} FROM {DATABASE}.{fk.references} WHERE is_deleted = 0) "
                f"SETTINGS {READ_CURRENT}"
            )
            orphans[f"{table.name}({child}) → {fk.references}({parent})"] = int(n)
        problems = [f"{k}: {v} orphan row(s)" for k, v in orphans.items() if v]
        problems += [f"parent table {DATABASE}.{p} not loaded" for p in missing]
        return dg.AssetCheckResult(
            passed=not problems,
            severity=dg.AssetCheckSeverity.WARN,
            description="; ".join(problems) or None,
            metadata=dict(orphans),
        )

    return _references


def reconcile_check(
    ch: ClickHouseResource, oltp: OltpPostgresResource, table: Table, days, loaded: datetime | None
) -> dg.AssetCheckResult:
    """Rows changed on each day of the run: OLTP and warehouse agree on count and per-column sums.

    A difference while the OLTP already holds later changes than ``loaded`` (the warehouse's newest change: later
    days not loaded yet) is a warning; with the warehouse caught up it is an error.
    """
    mismatched = []
    for day in days:
        want, got = reconcile.oltp_fingerprint(oltp, table, [day]), reconcile.warehouse_fingerprint(ch, table, [day])
        if want != got:
            mismatched.append(f"{day}: OLTP {int(want[0])} rows, warehouse {int(got[0])}")
    oltp_latest = reconcile.oltp_latest_change(oltp, table)
    pending = oltp_latest is not None and (loaded is None or oltp_latest > loaded)
    return dg.AssetCheckResult(
        check_name=RECONCILE,
        passed=not mismatched,
        severity=dg.AssetCheckSeverity.WARN if pending else dg.AssetCheckSeverity.ERROR,
        description=None
        if not mismatched
        else f"{DATABASE}.{table.name} partition {span(days)} differs from the OLTP ("
        + "; ".join(mismatched[:5])
        + (")" if not pending else "); the OLTP has later changes not loaded yet"),
        metadata={"days": len(days), "mismatched_days": len(mismatched)},
    )


def consistency_check(spec: ModelSql) -> dg.AssetChecksDefinition:
    """The incrementally maintained model equals a rebuild from its inputs (rows and a hash of every column).

    It reads whole tables, so it runs on its own daily tick (and in the full lineage), not after every day.
    """

    @dg.asset_check(
        asset=dg.AssetKey(["warehouse", spec.name]),
        name=CONSISTENT,
        description="The model's live rows equal the whole join computed again from its inputs (count + hash).",
        automation_condition=dg.AutomationCondition.on_cron("0 3 * * *"),
    )
    def _consistent(clickhouse: ClickHouseResource) -> dg.AssetCheckResult:
        stored, expected = stored_fingerprint(clickhouse, spec), fingerprint(clickhouse, spec.live(None), spec)
        return dg.AssetCheckResult(
            passed=stored == expected,
            description=None
            if stored == expected
            else f"{DATABASE}.{spec.name} has {stored[0]} live rows, a rebuild gives {expected[0]}"
            + ("" if stored[0] != expected[0] else " with different values")
            + "; materialize it with full_refresh to rebuild",
            metadata={"rows": stored[0], "rebuild_rows": expected[0]},
        )

    return _consistent


# --- freshness: no change waits in the OLTP longer than the policy allows ------------------------------------------
def in_step_check(table: Table) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(["warehouse", table.name]),
        name=IN_STEP,
        description=(
            "Fails when the oldest change the OLTP holds that the warehouse has not loaded is older than the freshness "
            f"policy's fail window ({FRESHNESS.fail_window.to_timedelta()}), warns past its warn window; "
            "a caught-up table passes whatever its data's age."
        ),
    )
    def _fresh(clickhouse: ClickHouseResource, oltp: OltpPostgresResource) -> dg.AssetCheckResult:
        loaded = (
            reconcile.warehouse_latest_change(clickhouse, table) if clickhouse.columns(DATABASE, table.name) else None
        )
        missing = reconcile.oldest_missing_change(oltp, TABLES_BY_NAME[table.name], loaded)
        passed, severity, waited = verdict(missing)
        return dg.AssetCheckResult(
            passed=passed,
            severity=severity,
            description=None
            if passed
            else f"{DATABASE}.{table.name} lags the OLTP: its oldest change not loaded ({missing}) has waited "
            f"{waited / 3600:.1f} h (loaded up to {loaded})",
            metadata={
                LAG: dg.MetadataValue.float(round(waited, 3)),
                "oldest_missing_change": str(missing),
                "warehouse_latest": str(loaded),
            },
        )

    return _fresh


freshness_checks = [in_step_check(t) for t in TABLES]
warehouse_asset_checks = [
    *(consistency_check(MODEL_SQL[m.name]) for m in MODELS),
    *(references_check(t) for t in TABLES if t.foreign_keys),
    *freshness_checks,
]
