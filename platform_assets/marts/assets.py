"""Marts (ClickHouse SQL on vps_3): TPC-H reports and a customer feature table over the warehouse."""

import time

import dagster as dg

from platform_assets.column_lineage import sql_column_lineage
from platform_assets.marts.queries import MART_SETTINGS, MARTS, Mart
from platform_assets.metadata import OWNERS, column_schema, describe, markdown_preview, node_tags, timing, version_of
from platform_assets.partitions import ON_ANY_INPUT_UPDATE
from platform_assets.warehouse.lag import lag_metadata, newest_change
from resources.clickhouse import ClickHouseResource

DATABASE = "marts"


def read_mart(clickhouse: ClickHouseResource, mart: Mart, limit: int | None = None) -> tuple[list[str], list[tuple]]:
    """The mart's rows in the query's own order (a table does not keep ORDER BY)."""
    sql = f"SELECT * FROM {DATABASE}.{mart.name} ORDER BY {mart.order_by}" + (f" LIMIT {limit}" if limit else "")
    result = clickhouse.client().query(sql)
    return list(result.column_names), result.result_rows


def build_mart(clickhouse: ClickHouseResource, mart: Mart) -> None:
    """Replace the mart's table with the query's result in one statement: ClickHouse fills a hidden table and
    swaps it in atomically, so readers see the old table or the new one, and a failing query leaves the old one
    (the same guarantee as a staging table, exchange and drops, in one statement instead of five).

    On a cluster every node holds the whole mart (``ON CLUSTER``: each computes the query over the Distributed
    tables), so a mart can be read through any node, also while another shard is down. Building one needs every
    shard: an answer from some of them would be wrong, so unavailable shards are never skipped.
    """
    on_cluster = clickhouse.on_cluster()
    clickhouse.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}{on_cluster}")
    clickhouse.command(
        f"CREATE OR REPLACE TABLE {DATABASE}.{mart.name}{on_cluster} ENGINE = MergeTree ORDER BY tuple() "
        f"AS {mart.sql} SETTINGS {MART_SETTINGS}"
    )


FRESH = "up_to_date_with_warehouse"


def stale_inputs(instance: dg.DagsterInstance, inputs: list[dg.AssetKey], built: float | None) -> list[str]:
    """The inputs materialized after ``built`` (a timestamp; None: the mart was never built, all loaded are)."""
    newer = []
    for key in inputs:
        event = instance.get_latest_materialization_event(key)
        if event is not None and (built is None or event.timestamp > built):
            newer.append(key.to_user_string())
    return newer


def fresh_result(mart: Mart, newer: list[str]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=dg.AssetKey(["marts", mart.name]),
        check_name=FRESH,
        passed=not newer,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{DATABASE}.{mart.name} is older than {', '.join(newer)}" if newer else None,
        metadata={"stale_inputs": len(newer)},
    )


def mart_asset(mart: Mart) -> dg.AssetsDefinition:
    """The mart and its freshness check in one op: a build evaluates the check in its own step (against the
    inputs' loads since the build began), and the check can run alone (the hourly ``check_freshness`` job, a user's
    Execute) against the mart's last build. As a separate check each day's run had nine more steps."""
    key = dg.AssetKey(["marts", mart.name])
    inputs = [dg.AssetKey(["warehouse", d]) for d in mart.depends_on]
    fresh = dg.AssetCheckSpec(
        FRESH,
        asset=key,
        description="Fails when a warehouse table the mart reads was loaded after the mart was last built (stale).",
    )

    @dg.multi_asset(
        name="__".join(key.path),  # the op and step name an @asset of this key has
        specs=[
            dg.AssetSpec(
                key,
                deps=inputs,
                group_name="marts",
                kinds={"clickhouse", "sql"},
                owners=OWNERS,
                tags=node_tags("vps_3"),
                code_version=version_of(mart.sql),
                description=describe(
                    f"**{mart.title}** — table `{DATABASE}.{mart.name}`.", extra=f"```sql\n{mart.sql.strip()}\n```"
                ),
                metadata={"dagster/table_name": f"{DATABASE}.{mart.name}"},
                automation_condition=ON_ANY_INPUT_UPDATE,
            )
        ],
        check_specs=[fresh],
        can_subset=True,
    )
    def _mart(context: dg.AssetExecutionContext, clickhouse: ClickHouseResource):
        if key not in context.selected_asset_keys:  # the check alone: against the mart's last build
            last = context.instance.get_latest_materialization_event(key)
            yield fresh_result(mart, stale_inputs(context.instance, inputs, last.timestamp if last else None))
            return
        began = time.time()
        started = time.perf_counter()
        build_mart(clickhouse, mart)
        rows, nbytes = clickhouse.table_stats(DATABASE, mart.name, sharded=False)  # every node has it all
        header, preview = read_mart(clickhouse, mart, limit=10)
        checks = []
        if fresh.key in context.selected_asset_check_keys:  # an input loaded while this build ran is newer
            checks.append(fresh_result(mart, stale_inputs(context.instance, inputs, began)))
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                **timing(rows, nbytes, time.perf_counter() - started),
                "dagster/table_name": f"{DATABASE}.{mart.name}",
                "dagster/column_schema": column_schema(clickhouse.columns(DATABASE, mart.name)),
                "dagster/column_lineage": sql_column_lineage(mart.sql),
                "preview": dg.MetadataValue.md(markdown_preview(header, preview)),
                **lag_metadata(newest_change(clickhouse, list(mart.depends_on))),
            },
            check_results=checks,
        )

    return _mart


mart_assets = [mart_asset(m) for m in MARTS]
mart_freshness_checks = [dg.AssetCheckKey(dg.AssetKey(["marts", m.name]), FRESH) for m in MARTS]

defs = dg.Definitions(assets=mart_assets)
