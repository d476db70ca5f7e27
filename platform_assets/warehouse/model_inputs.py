"""A conformed model's cursor in Dagster's event log: which input materializations (days of its warehouse
tables) it has applied, so each run applies only the days materialized since (``inputs_through``)."""

from __future__ import annotations

from datetime import date

import dagster as dg

from platform_assets.catalog import Model

THROUGH = "inputs_through"  # metadata: the last input materialization (event storage id) a model run applied


def input_days(
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


def applied_through(context: dg.AssetExecutionContext) -> int | None:
    event = context.instance.get_latest_materialization_event(context.asset_key)
    value = event.asset_materialization.metadata.get(THROUGH) if event and event.asset_materialization else None
    return int(value.value) if value is not None else None
