"""Divergence between the OLTP and the warehouse: found by a whole-table comparison, repaired through capture.

``matches_oltp`` compares every column of every live row (``table_diff.py``) daily and on demand, and fails naming
the table and the first differing keys. ``repair_warehouse`` makes the warehouse equal again by capturing those keys
anew instead of writing to ClickHouse behind the pipeline's back: keys the OLTP has are touched (the capture
trigger stamps them with a new ``updated_at`` and transaction id), keys only the warehouse has get a tombstone. The
change sensor then applies them like any other change — raw, curated, warehouse, the models' keys, the marts — so
every layer agrees again and the cost follows the differing keys.
"""

import json

import dagster as dg
from dagster._core.definitions.run_request import InstigatorType  # not exported by dagster

from platform_assets.automation.oltp_changes import SENSOR, seen
from platform_assets.catalog import TABLES, TABLES_BY_NAME, Table, pg_type
from platform_assets.jobs import INCREMENTAL_JOB
from platform_assets.oltp.capture import TOMBSTONE_TABLE, snapshot_xmin, unseen_sql
from platform_assets.oltp.keys import held_by_oltp, in_keys
from platform_assets.oltp.recapture import recapture_keys
from platform_assets.paths import LANDED_FILES, raw_prefix
from platform_assets.warehouse.table_diff import MATCHES_OLTP, TableDiff, diff_table
from resources.clickhouse import ClickHouseResource
from resources.object_store import ObjectStoreResource
from resources.oltp_postgres import OltpPostgresResource

DAILY_AT = "0 3 * * *"
REPAIR_JOB = "repair_warehouse"
_IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
              dg.DagsterRunStatus.STARTED]  # fmt: skip


def _changes_in_flight(instance: dg.DagsterInstance | None) -> bool:
    """A change run is queued or running, so differences may be changes on their way."""
    if instance is None:
        return False
    runs = instance.get_run_records(dg.RunsFilter(job_name=INCREMENTAL_JOB, statuses=_IN_FLIGHT), limit=1)
    return bool(runs)


def sensor_snapshot(instance: dg.DagsterInstance | None) -> str | None:
    """The change sensor's stored cursor (the snapshot the daemon last read with), if it ticked on this instance."""
    try:
        states = instance.all_instigator_state(instigator_type=InstigatorType.SENSOR) if instance else []
    except Exception:  # an ephemeral instance keeps no sensor state
        return None
    for state in states:
        if state.instigator_name == SENSOR and state.instigator_data and state.instigator_data.cursor:
            return seen(json.loads(state.instigator_data.cursor))
    return None


def unseen_keys(oltp: OltpPostgresResource, table: Table, keys: list[tuple], snapshot: str) -> set[tuple]:
    """Those of ``keys`` written (a row or a tombstone) by transactions ``snapshot`` did not see: changes the
    sensor has not read yet, so a difference there is a change on its way, not a divergence."""
    if not keys:
        return set()
    cond, params = in_keys(table, keys)
    params.update(seen=snapshot, xmin=snapshot_xmin(snapshot), table=table.name)
    pk = ", ".join(table.primary_key)
    typed = ", ".join(f"(pk->>'{k}')::{pg_type(table.column(k).type)}" for k in table.primary_key)
    with oltp.connect() as conn:
        found = {
            tuple(r) for r in conn.execute(f"SELECT {pk} FROM {table.name} WHERE {cond} AND {unseen_sql()}", params)
        }
        tombs = conn.execute(
            f"SELECT {typed} FROM {TOMBSTONE_TABLE} WHERE table_name = %(table)s AND {unseen_sql()}", params
        )
        found |= {tuple(r) for r in tombs}
    return found & set(keys)


def landed_keys(
    store: ObjectStoreResource, ch: ClickHouseResource, oltp: OltpPostgresResource, table: Table
) -> set[tuple]:
    """Keys the warehouse took from landed files (``raw/<t>/<day>/landed-*``) that the OLTP does not hold: not the
    OLTP's to reconcile. A landed key the OLTP holds stays in the comparison: the OLTP is its source of truth, so a
    landed row that replaced the OLTP's is a divergence, reported and repaired like any other."""
    files = [k for k, _ in store.list_keys(raw_prefix(table.name)) if k.rsplit("/", 1)[-1].startswith(LANDED_FILES)]
    if not files:
        return set()
    source = store.clickhouse_s3("{" + ",".join(files) + "}")
    landed = {tuple(r) for r in ch.rows(f"SELECT DISTINCT {', '.join(table.primary_key)} FROM {source}")}
    return landed - held_by_oltp(oltp, table, sorted(landed))


def matches_oltp_check(table: Table) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(["warehouse", table.name]),
        name=MATCHES_OLTP,
        description="Every live row equals the OLTP's in every column (bucketed hashes, narrowed to keys). Whole "
        f"table: daily at 03:00 UTC and on demand. On failure run `{REPAIR_JOB}`.",
        automation_condition=dg.AutomationCondition.cron_tick_passed(DAILY_AT) & ~dg.AutomationCondition.in_progress(),
    )
    def _matches(
        context: dg.AssetCheckExecutionContext,
        oltp: OltpPostgresResource,
        clickhouse: ClickHouseResource,
        object_store: ObjectStoreResource,
    ) -> dg.AssetCheckResult:
        diff = diff_table(oltp, clickhouse, table, landed_keys(object_store, clickhouse, oltp, table))
        snapshot = sensor_snapshot(context.instance)
        pending = unseen_keys(oltp, table, diff.keys, snapshot) if snapshot is not None else set()
        in_flight = not diff.equal and (len(pending) == len(diff.keys) or _changes_in_flight(context.instance))
        description = diff.describe()
        if in_flight:
            description += "; these are changes on their way (not read by the sensor yet, or runs in flight)"
        elif not diff.equal:
            description += f"; run the job {REPAIR_JOB} to re-capture these keys"
        return dg.AssetCheckResult(
            passed=diff.equal,
            severity=dg.AssetCheckSeverity.WARN if in_flight else dg.AssetCheckSeverity.ERROR,
            description=description,
            metadata={
                "oltp_rows": diff.oltp_rows,
                "warehouse_rows": diff.warehouse_rows,
                "buckets": diff.buckets,
                "differing_buckets": diff.differing_buckets,
                "missing_in_warehouse": len(diff.only_in_oltp),
                "deleted_in_oltp": len(diff.only_in_warehouse),
                "different_values": len(diff.changed),
                "pending_keys": len(pending),
                "seconds": round(diff.seconds, 3),
            },
        )

    return _matches


def recapture(capture: OltpPostgresResource, table: Table, diff: TableDiff) -> tuple[int, int]:
    """Capture the differing keys anew: (rows touched, tombstones written). The sensor applies them.

    Keys the OLTP has are touched (a no-op update the capture trigger stamps now); keys gone from it without a trace
    get the tombstone the trigger missed. ``capture`` is the role that may only call the functions doing this
    (``oltp/recapture.py``)."""
    return recapture_keys(capture, table, diff.only_in_oltp + diff.changed, diff.only_in_warehouse)


class RepairConfig(dg.Config):
    tables: list[str] = [t.name for t in TABLES]  # catalog tables to compare and repair


@dg.op(description="Compare each table with the OLTP and capture the differing keys anew (the sensor applies them).")
def repair_tables(context: dg.OpExecutionContext, config: RepairConfig, oltp: OltpPostgresResource,
                  oltp_capture: OltpPostgresResource, clickhouse: ClickHouseResource,
                  object_store: ObjectStoreResource) -> dict:  # fmt: skip
    out = {}
    for name in config.tables:
        table = TABLES_BY_NAME[name]
        diff = diff_table(oltp, clickhouse, table, landed_keys(object_store, clickhouse, oltp, table))
        touched, tombstones = recapture(oltp_capture, table, diff) if not diff.equal else (0, 0)
        context.log.info(f"{name}: {diff.describe()}; re-captured {touched} row(s), {tombstones} tombstone(s)")
        out[name] = {"differing_keys": len(diff.keys), "touched": touched, "tombstones": tombstones}
    context.add_output_metadata({"tables": dg.MetadataValue.json(out)})
    return out


@dg.job(name=REPAIR_JOB, description="Make the warehouse equal to the OLTP again: the keys `matches_oltp` finds "
        "different are captured anew, and the change sensor applies them through every layer.")  # fmt: skip
def repair_job():
    repair_tables()


checks = [matches_oltp_check(t) for t in TABLES]
defs = dg.Definitions(asset_checks=checks, jobs=[repair_job])
