"""One pass of the warehouse's life on the ClickHouse cluster the environment selects, printed as JSON.

``python -m tests.shard_scenario OUT.json`` with ``CLICKHOUSE_SHARDS`` 1 or 2 (and a ClickHouse folder, OLTP
database and bucket of its own): a full load; two simulated days plus a renamed nation and region and changed
customers, applied by the change sensor's run (tables, models incrementally, marts, per-run checks); both models
rebuilt whole (on two shards: a switch of generation); then every asset check. The result holds what queries see
(every table's and model's fingerprint, every mart's rows, each check's verdict and counts, each model run's mode
and keys), so two clusters can be compared, plus where the rows are (per shard), which only the cluster shows.

A chDB engine is one per process: ``tests/test_two_shards.py`` runs this once per cluster, side by side.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg

from platform_assets.automation.local_runs import evaluate_sensor, execute_requests
from platform_assets.automation.oltp_changes import SENSOR, current_cursor
from platform_assets.catalog import MODELS, TABLES
from platform_assets.definitions import LINEAGE_JOB, defs
from platform_assets.jobs import full_load_tags
from platform_assets.marts.assets import mart_freshness_checks, read_mart
from platform_assets.marts.queries import MARTS
from platform_assets.oltp.capture import CHANGE_TIME_SETTING
from platform_assets.oltp.simulate import simulate
from platform_assets.warehouse import reconcile
from platform_assets.warehouse.checks import warehouse_asset_checks
from platform_assets.warehouse.divergence import checks as divergence_checks
from platform_assets.warehouse.models import MODEL_SQL, model_local, stored_fingerprint
from platform_assets.warehouse.sharding import DATABASE
from resources.environments import oltp_resource

CHECKS_JOB = "every_check"
# check metadata that depends on the wall clock or on background merges, not on what queries see
VOLATILE = ("lag", "seconds", "age", "oldest", "latest", "bytes")


def plain(value):
    if isinstance(value, float):
        return float(f"{value:.9g}")  # averages: the last digits depend on the order shards are summed in
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | timedelta):
        return str(value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value if isinstance(value, int | str | bool | None) else str(value)


def check_verdicts(label: str, result: dg.ExecuteInProcessResult) -> list:
    out = []
    for c in result.get_asset_check_evaluations():
        counts = {
            k: v.value
            for k, v in sorted(c.metadata.items())
            if isinstance(getattr(v, "value", None), int) and not any(w in k for w in VOLATILE)
        }
        out.append([label, c.asset_key.to_user_string(), c.check_name, c.passed, str(c.severity), counts])
    return sorted(out, key=lambda r: (r[1], r[2]))


def model_runs(label: str, results) -> list:
    out = []
    for r in results:
        for event in r.get_asset_materialization_events():
            m = event.event_specific_data.materialization
            if m.asset_key.path[-1] in MODEL_SQL:
                md = {k: getattr(v, "value", v) for k, v in m.metadata.items()}
                out.append([label, m.asset_key.to_user_string(), md.get("mode"), md.get("changed_keys")])
    return out


def change_reference_data(oltp, day) -> None:
    """A nation and a region renamed, some customers changed: every input of ``dim_customer`` changes that day."""
    stamp = datetime.combine(day, time(18, 0), tzinfo=UTC).isoformat()
    with oltp.connect() as conn, conn.transaction():
        conn.execute("SELECT set_config(%s, %s, true)", (CHANGE_TIME_SETTING, stamp))
        conn.execute("UPDATE nation SET n_name = n_name || ' (renamed)' WHERE n_nationkey IN (3, 18)")
        conn.execute("UPDATE region SET r_name = r_name || ' (renamed)' WHERE r_regionkey = 4")
        conn.execute("UPDATE customer SET c_acctbal = c_acctbal + 1 WHERE c_custkey % 37 = 0")


def where_rows_are(ch) -> dict:
    """Live rows per shard of each table (``_shard_num``: the shard a Distributed read took them from)."""
    out = {}
    for name in [t.name for t in TABLES] + [m.name for m in MODELS]:
        rows = ch.rows(f"SELECT _shard_num, count() FROM {DATABASE}.{name} FINAL WHERE is_deleted = 0 GROUP BY 1")
        out[name] = {str(s): int(n) for s, n in sorted(rows)}
    return out


def run() -> dict:
    # the checks that can run without their asset (the others run only in their asset's step)
    standalone = [*warehouse_asset_checks, *divergence_checks, *mart_freshness_checks]
    definitions = dg.Definitions.merge(
        defs(),
        dg.Definitions(jobs=[dg.define_asset_job(CHECKS_JOB, selection=dg.AssetSelection.checks(*standalone))]),
    )
    res = definitions.resources
    with (
        res["oltp"].process_config_and_initialize_cm() as oltp,
        res["object_store"].process_config_and_initialize_cm() as store,
        res["clickhouse"].process_config_and_initialize_cm() as ch,
        dg.instance_for_test() as instance,
    ):
        store.ensure_bucket()
        lineage = definitions.resolve_job_def(LINEAGE_JOB)
        full = lineage.execute_in_process(instance=instance, tags=full_load_tags(instance, oltp), raise_on_error=False)
        verdicts = check_verdicts("full load", full)

        cursor = json.dumps(current_cursor(oltp))
        with oltp_resource("local", "app").process_config_and_initialize_cm() as app:  # the application writes
            days = simulate(app, 2, seed=5, change_rate=0.05).days
            change_reference_data(app, days[-1].day)
        requests, _ = evaluate_sensor(definitions, SENSOR, instance, cursor)
        changes = execute_requests(definitions, instance, requests)
        verdicts += [v for r in changes.results for v in check_verdicts("changes", r)]

        refresh = {f"warehouse__{m.name}": {"config": {"full_refresh": True}} for m in MODELS}
        rebuilt = lineage.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(["warehouse", m.name]) for m in MODELS]
            + [dg.AssetKey(["marts", m.name]) for m in MARTS],
            run_config={"ops": refresh},
            raise_on_error=False,
        )
        generations = {m.name: model_local(ch, MODEL_SQL[m.name]) for m in MODELS}
        checks = definitions.resolve_job_def(CHECKS_JOB).execute_in_process(instance=instance, raise_on_error=False)
        verdicts += check_verdicts("every check", rebuilt) + check_verdicts("every check", checks)
        return {
            "success": {
                "full load": full.success,
                "changes": changes.success and bool(requests),
                "rebuild": rebuilt.success,
                "checks": checks.success,
            },
            "checks": verdicts,
            "model_runs": model_runs("changes", changes.results) + model_runs("rebuild", [rebuilt]),
            "tables": {t.name: plain(reconcile.warehouse_fingerprint(ch, t)) for t in TABLES},
            "oltp": {t.name: plain(reconcile.oltp_fingerprint(oltp, t)) for t in TABLES},
            "models": {m.name: list(stored_fingerprint(ch, MODEL_SQL[m.name])) for m in MODELS},
            "marts": {m.name: plain(read_mart(ch, m)[1]) for m in MARTS},
            "shards": where_rows_are(ch),
            "generations": generations,
        }


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(json.dumps(run(), indent=1, default=str))
