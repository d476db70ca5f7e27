"""Warehouse layer (ClickHouse on vps_3): one table per curated table, loaded by ClickHouse itself, and the
conformed models ClickHouse maintains from them.

Catalog tables take their curated changes day by day (upserts by primary key with ``updated_at`` as the version,
deletes as markers); a conformed model applies the keys its inputs changed since it last ran (``models.py``).
"""

import time
from datetime import date

import dagster as dg

from platform_assets.catalog import DELETED_COLUMN, MODELS, TABLES, TABLES_BY_NAME, Model, Table
from platform_assets.metadata import CHECK_SECONDS, OWNERS, column_schema, describe, node_tags, timing
from platform_assets.partitions import DAILY, ON_ANY_INPUT_UPDATE, ON_NEW_PARENT, SINGLE_RUN, days_of
from platform_assets.paths import curated_prefix
from platform_assets.retries import TRANSIENT, permanent
from platform_assets.warehouse import reconcile as rc
from platform_assets.warehouse.lag import FRESHNESS, LAG, lag_metadata, newest_change, verdict
from platform_assets.warehouse.load import (
    DATABASE,
    INFER,
    WarehouseSchemaError,
    days_source,
    engine,
    ensure_table,
    load_days,
    null_keys,
)
from platform_assets.warehouse.models import (
    CONSISTENT,
    MODEL_SQL,
    SETTINGS,
    ModelSql,
    apply_changes,
    fingerprint,
    rebuild,
    stored_fingerprint,
)
from resources.clickhouse import ClickHouseResource
from resources.object_store import ObjectStoreResource
from resources.oltp_postgres import OltpPostgresResource

RECONCILE = "reconciles_with_oltp"
UNIQUE = "primary_key_unique_not_null"
REFERENCES = "references_exist"


def _common(spec: Table | Model) -> dict:
    parents = [("curated", spec.name)] if isinstance(spec, Table) else [("warehouse", d) for d in spec.depends_on]
    return {
        "key": dg.AssetKey(["warehouse", spec.name]),
        "deps": [dg.AssetKey(list(p)) for p in parents],
        "group_name": "warehouse",
        "kinds": {"clickhouse", "s3"},
        "owners": OWNERS,
        "tags": node_tags("vps_3"),
        "metadata": {"dagster/table_name": f"{DATABASE}.{spec.name}"},
        "freshness_policy": FRESHNESS,
    }


def _result_metadata(result) -> dict:
    return {
        **timing(result.rows, result.bytes, result.seconds),
        "dagster/table_name": result.table,
        "dagster/column_schema": column_schema(result.columns),
    }


# --- catalog tables: daily upserts -------------------------------------------------------------------------------
def unique_check(
    ch: ClickHouseResource, spec: Table | Model, null: dict[str, int] | None = None, scope: str = ""
) -> dg.AssetCheckResult:
    """What queries see has one row per primary key; ``null`` are null keys found in the input (never loaded).

    ``scope`` (a SQL condition) limits the check to the keys a run wrote, so its cost follows the run's changes.
    """
    pk = ", ".join(spec.primary_key)
    where = f"is_deleted = 0 AND ({scope})" if scope else "is_deleted = 0"
    rows, keys = ch.rows(
        f"SELECT count(), uniqExact({pk}) FROM {DATABASE}.{spec.name} WHERE {where} SETTINGS {INFER}, {SETTINGS}"
    )[0]
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
                f"SELECT count() FROM {DATABASE}.{table.name} WHERE is_deleted = 0 AND ({child}) NOT IN "
                f"(SELECT {parent} FROM {DATABASE}.{fk.references} WHERE is_deleted = 0) "
                "SETTINGS final = 1, distributed_product_mode = 'global'"
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


def reconcile_check(ch: ClickHouseResource, oltp: OltpPostgresResource, table: Table, days) -> dg.AssetCheckResult:
    """Rows changed on each day of the run: OLTP and warehouse agree on count and per-column sums.

    A difference while the OLTP already holds later changes (later days not loaded yet) is a warning; with the
    warehouse caught up it is an error.
    """
    mismatched = []
    for day in days:
        want, got = rc.oltp_fingerprint(oltp, table, [day]), rc.warehouse_fingerprint(ch, table, [day])
        if want != got:
            mismatched.append(f"{day}: OLTP {int(want[0])} rows, warehouse {int(got[0])}")
    oltp_latest = rc.oltp_latest_change(oltp, table)
    loaded = rc.warehouse_latest_change(ch, table)
    pending = oltp_latest is not None and (loaded is None or oltp_latest > loaded)
    span = f"{days[0]}..{days[-1]}" if len(days) > 1 else str(days[0])
    return dg.AssetCheckResult(
        check_name=RECONCILE,
        passed=not mismatched,
        severity=dg.AssetCheckSeverity.WARN if pending else dg.AssetCheckSeverity.ERROR,
        description=None
        if not mismatched
        else f"{DATABASE}.{table.name} partition {span} differs from the OLTP ("
        + "; ".join(mismatched[:5])
        + (")" if not pending else "); the OLTP has later changes not loaded yet"),
        metadata={"days": len(days), "mismatched_days": len(mismatched)},
    )


def warehouse_table_asset(table: Table) -> dg.AssetsDefinition:
    key = dg.AssetKey(["warehouse", table.name])
    checks = [
        dg.AssetCheckSpec(
            UNIQUE, asset=key, blocking=True, description="One row per primary key, no empty key (as queries see it)."
        ),
        dg.AssetCheckSpec(
            RECONCILE,
            asset=key,
            description="Per partition: rows changed that day in the OLTP equal the warehouse's (count + column sums).",
        ),
    ]

    @dg.asset(
        **_common(table),
        partitions_def=DAILY,
        backfill_policy=SINGLE_RUN,
        retry_policy=TRANSIENT,
        automation_condition=ON_NEW_PARENT,
        code_version="2",
        check_specs=checks,
        description=describe(
            f"ClickHouse table `{DATABASE}.{table.name}` ({engine(table)}): each day's curated changes from "
            f"`{curated_prefix(table.name)}change_date=<day>/` are inserted by ClickHouse with `s3()`. Every row "
            "carries its version and delete marker, so re-running a day changes nothing queries see; read it "
            f"with `FINAL`. {table.description}",
            table,
        ),
    )
    def _warehouse(
        context: dg.AssetExecutionContext,
        clickhouse: ClickHouseResource,
        object_store: ObjectStoreResource,
        oltp: OltpPostgresResource,
    ):
        days = days_of(context)
        src, present = days_source(object_store, table, days)
        started = time.perf_counter()
        null = null_keys(clickhouse, src, table) if src else {}
        checking = time.perf_counter() - started
        if null:  # a key-less row cannot be upserted: record the failed check and load nothing
            ensure_table(clickhouse, table)
            yield unique_check(clickhouse, table, null)
            raise permanent(f"warehouse/{table.name} partition {present[0]}..{present[-1]}: null primary key {null}")
        try:
            result = load_days(clickhouse, object_store, table, days)
        except WarehouseSchemaError as exc:  # curated objects or the table differ from the catalog
            raise permanent(f"warehouse/{table.name}: {exc}") from None
        context.log.info(f"{result.table} {days[0]}..{days[-1]}: {result.rows} changed rows in {result.seconds:.2f} s")
        pk = ", ".join(table.primary_key)
        scope = f"({pk}) GLOBAL IN (SELECT {pk} FROM {src})" if src else "0"
        started = time.perf_counter()
        checks = [unique_check(clickhouse, table, scope=scope), reconcile_check(clickhouse, oltp, table, days)]
        checking += time.perf_counter() - started
        yield dg.MaterializeResult(
            metadata={
                **_result_metadata(result),
                **lag_metadata(newest_change(clickhouse, [table.name])),
                "days": len(days),
                CHECK_SECONDS: round(checking, 3),
            },
            check_results=checks,
        )

    return _warehouse


# --- conformed models: the keys their inputs changed ----------------------------------------------------------
THROUGH = "inputs_through"  # metadata: the last input materialization (event storage id) a model run applied


class ModelConfig(dg.Config):
    full_refresh: bool = False  # rebuild from the inputs' whole current state (e.g. after changing the model's SQL)


def _input_days(
    context: dg.AssetExecutionContext, model: Model, after: int | None
) -> tuple[dict[str, list[date]], int | None]:
    """Change days of each input materialized after storage id ``after`` (all of them if None), and the latest id."""
    days: dict[str, set[date]] = {}
    latest = after
    for name in model.depends_on:
        cursor = None
        while True:
            page = context.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(["warehouse", name]), after_storage_id=after),
                limit=1000,
                cursor=cursor,
                ascending=True,
            )
            for record in page.records:
                if record.partition_key:
                    days.setdefault(name, set()).add(date.fromisoformat(record.partition_key))
                latest = max(latest or 0, record.storage_id)
            if not page.has_more:
                break
            cursor = page.cursor
    return {k: sorted(v) for k, v in days.items()}, latest


def _applied_through(context: dg.AssetExecutionContext) -> int | None:
    event = context.instance.get_latest_materialization_event(context.asset_key)
    value = event.asset_materialization.metadata.get(THROUGH) if event and event.asset_materialization else None
    return int(value.value) if value is not None else None


def warehouse_model_asset(model: Model) -> dg.AssetsDefinition:
    key = dg.AssetKey(["warehouse", model.name])
    spec = MODEL_SQL[model.name]

    @dg.asset(
        **_common(model),
        retry_policy=TRANSIENT,
        automation_condition=ON_ANY_INPUT_UPDATE,
        code_version="2",
        check_specs=[
            dg.AssetCheckSpec(UNIQUE, asset=key, blocking=True, description="One row per primary key (keys written).")
        ],
        description=describe(
            f"ClickHouse table `{DATABASE}.{model.name}` ({engine(model)}), maintained by ClickHouse from "
            f"{', '.join(f'`{DATABASE}.{d}`' for d in model.depends_on)}. {model.description} Each run applies the "
            f"`{spec.grain}` keys changed by the input days materialized since the last run: their rows are computed "
            "again from the inputs' current state and upserted, vanished rows get delete markers. The first run, "
            "`full_refresh: true` or changes touching most keys rebuild it whole and swap it in. Read it with `FINAL`."
        ),
    )
    def _warehouse(
        context: dg.AssetExecutionContext,
        config: ModelConfig,
        clickhouse: ClickHouseResource,
        object_store: ObjectStoreResource,
    ):
        after = None if config.full_refresh else _applied_through(context)
        columns = clickhouse.columns(DATABASE, model.name)
        exists = bool(columns)
        days, through = _input_days(context, model, after if exists else None)
        reshaped = exists and [n for n, _ in columns] != [n for n, _ in spec.columns] + [DELETED_COLUMN]
        if config.full_refresh or not exists or after is None or reshaped:  # reshaped: a column added upstream
            result = rebuild(clickhouse, spec)
        else:
            result = apply_changes(clickhouse, object_store, spec, days)
        context.log.info(
            f"{result.table}: {result.mode}, {result.keys} {spec.grain} key(s), {result.rows} row(s) written "
            f"({result.deleted} delete marker(s)) in {result.seconds:.2f} s"
        )
        started = time.perf_counter()
        check = unique_check(clickhouse, model, scope=result.scope)
        return dg.MaterializeResult(
            metadata={
                **_result_metadata(result),
                **lag_metadata(newest_change(clickhouse, [model.name])),
                CHECK_SECONDS: round(time.perf_counter() - started, 3),
                "mode": result.mode,
                "changed_keys": result.keys,
                "delete_markers": result.deleted,
                "input_days": dg.MetadataValue.json({k: [str(d) for d in v] for k, v in days.items()}),
                THROUGH: through or 0,  # 0: no input materialized yet, the next run applies every one
            },
            check_results=[check],
        )

    return _warehouse


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
        name="in_step_with_oltp",
        description=(
            "Fails when the oldest change the OLTP holds that the warehouse has not loaded is older than the freshness "
            f"policy's fail window ({FRESHNESS.fail_window.to_timedelta()}), warns past its warn window; "
            "a caught-up table passes whatever its data's age."
        ),
    )
    def _fresh(clickhouse: ClickHouseResource, oltp: OltpPostgresResource) -> dg.AssetCheckResult:
        loaded = rc.warehouse_latest_change(clickhouse, table) if clickhouse.columns(DATABASE, table.name) else None
        missing = rc.oldest_missing_change(oltp, TABLES_BY_NAME[table.name], loaded)
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


warehouse_assets = [*(warehouse_table_asset(t) for t in TABLES), *(warehouse_model_asset(m) for m in MODELS)]
freshness_checks = [in_step_check(t) for t in TABLES]
warehouse_asset_checks = [
    *(consistency_check(MODEL_SQL[m.name]) for m in MODELS),
    *(references_check(t) for t in TABLES if t.foreign_keys),
    *freshness_checks,
]

defs = dg.Definitions(assets=warehouse_assets, asset_checks=warehouse_asset_checks)
