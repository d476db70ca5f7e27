"""Warehouse layer (ClickHouse on vps_3): one table per curated table, loaded by ClickHouse itself, and the
conformed models ClickHouse maintains from them.

Catalog tables take their curated changes day by day (upserts by primary key with ``updated_at`` as the version,
deletes as markers); a conformed model applies the keys its inputs changed since it last ran (``models.py``).
"""

import inspect
import time

import dagster as dg

from platform_assets.catalog import DELETED_COLUMN, MODELS, TABLES, Model, Table
from platform_assets.column_lineage import same_columns_lineage, sql_column_lineage
from platform_assets.metadata import CHECK_SECONDS, OWNERS, code_version, column_schema, describe, node_tags, timing
from platform_assets.partitions import CHANGE_DAYS, ON_ANY_INPUT_UPDATE, ON_NEW_PARENT, SINGLE_RUN, days_of, span
from platform_assets.paths import curated_prefix
from platform_assets.retries import permanent, retried_if_transient
from platform_assets.warehouse.checks import RECONCILE, UNIQUE, reconcile_check, unique_check, warehouse_asset_checks
from platform_assets.warehouse.lag import lag_metadata, newest_change
from platform_assets.warehouse.load import (
    DATABASE,
    WarehouseSchemaError,
    create_sql,
    days_source,
    engine,
    ensure_table,
    load_days,
    null_keys,
    table_columns,
)
from platform_assets.warehouse.model_inputs import THROUGH, applied_through, input_days
from platform_assets.warehouse.models import MODEL_SQL, READ_CURRENT, apply_changes, rebuild
from platform_assets.warehouse.reconcile import warehouse_latest_change
from resources.clickhouse import ClickHouseResource
from resources.object_store import ObjectStoreResource
from resources.oltp_postgres import OltpPostgresResource


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
    }


def _result_metadata(result) -> dict:
    return {
        **timing(result.rows, result.bytes, result.seconds),
        "dagster/table_name": result.table,
        "dagster/column_schema": column_schema(result.columns),
    }


# --- catalog tables: daily upserts -------------------------------------------------------------------------------
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
        partitions_def=CHANGE_DAYS,
        backfill_policy=SINGLE_RUN,
        automation_condition=ON_NEW_PARENT,
        code_version=code_version(
            table, create_sql(table.name, table_columns(table), engine(table)), inspect.getsource(load_days)
        ),
        check_specs=checks,
        description=describe(
            f"ClickHouse table `{DATABASE}.{table.name}` ({engine(table)}): each day's curated changes from "
            f"`{curated_prefix(table.name)}change_date=<day>/` are inserted by ClickHouse with `s3()`. Every row "
            "carries its version and delete marker, so re-running a day changes nothing queries see; read it "
            f"with `FINAL`. {table.description}",
            table,
        ),
    )
    @retried_if_transient
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
            raise permanent(f"warehouse/{table.name} partition {span(present)}: null primary key {null}")
        try:
            result = load_days(clickhouse, object_store, table, days, source=(src, present))
        except WarehouseSchemaError as exc:  # curated objects or the table differ from the catalog
            raise permanent(f"warehouse/{table.name}: {exc}") from None
        context.log.info(f"{result.table} {span(days)}: {result.rows} changed rows in {result.seconds:.2f} s")
        pk = ", ".join(table.primary_key)
        # the day's keys: each shard reads them from the curated objects itself (no table to ship)
        scope = f"({pk}) IN (SELECT {pk} FROM {src})" if src else "0"
        started = time.perf_counter()
        loaded = warehouse_latest_change(clickhouse, table)  # the newest change now held: lag and reconciliation
        checks = [unique_check(clickhouse, table, scope=scope), reconcile_check(clickhouse, oltp, table, days, loaded)]
        checking += time.perf_counter() - started
        yield dg.MaterializeResult(
            metadata={
                **_result_metadata(result),
                "dagster/column_lineage": same_columns_lineage(
                    [*(c.name for c in table.all_columns), DELETED_COLUMN], "curated", table.name
                ),
                **lag_metadata(loaded),
                "days": len(days),
                CHECK_SECONDS: round(checking, 3),
            },
            check_results=checks,
        )

    return _warehouse


# --- conformed models: the keys their inputs changed ----------------------------------------------------------
class ModelConfig(dg.Config):
    full_refresh: bool = False  # rebuild from the inputs' whole current state (e.g. after changing the model's SQL)


def warehouse_model_asset(model: Model) -> dg.AssetsDefinition:
    key = dg.AssetKey(["warehouse", model.name])
    spec = MODEL_SQL[model.name]

    @dg.asset(
        **_common(model),
        automation_condition=ON_ANY_INPUT_UPDATE,
        code_version=code_version(model, repr(MODEL_SQL[model.name])),
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
    @retried_if_transient
    def _warehouse(
        context: dg.AssetExecutionContext,
        config: ModelConfig,
        clickhouse: ClickHouseResource,
        object_store: ObjectStoreResource,
    ):
        after = None if config.full_refresh else applied_through(context)
        columns = clickhouse.columns(DATABASE, model.name)
        exists = bool(columns)
        days, through = input_days(context, model, after if exists else None)
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
        # the UI's "Row count" is the table's: an incremental run that wrote 0 rows leaves 1,500 customers, not 0
        live = clickhouse.scalar(
            f"SELECT count() FROM {result.table} WHERE {DELETED_COLUMN} = 0 SETTINGS {READ_CURRENT}"
        )
        return dg.MaterializeResult(
            metadata={
                **_result_metadata(result),
                "dagster/row_count": live,
                "rows_written": result.rows,
                "dagster/column_lineage": sql_column_lineage(spec.live(None)),
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


warehouse_assets = [*(warehouse_table_asset(t) for t in TABLES), *(warehouse_model_asset(m) for m in MODELS)]

defs = dg.Definitions(assets=warehouse_assets, asset_checks=warehouse_asset_checks)
