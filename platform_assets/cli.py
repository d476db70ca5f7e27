"""Command line for the demo: seed the OLTP with TPC-H, run the whole lineage, then a second day, print what it did.

python -m platform_assets.cli seed [--sf 0.01]
python -m platform_assets.cli demo [--sf 0.01] [--day-change-rate 0.01]
python -m platform_assets.cli run                  # full_lineage over every change day in the OLTP
python -m platform_assets.cli simulate --days n    # n days of OLTP activity (the sensor picks them up)
python -m platform_assets.cli migrate              # change capture, roles and grants on an existing OLTP (idempotent)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from pathlib import Path

from dotenv import load_dotenv

from resources.settings import REPO_ROOT, data_dir, local_dagster_home, local_port


def _seed(scale_factor: float) -> None:
    from platform_assets.oltp.seed import seed_tpch
    from resources.environments import oltp_resource
    from resources.settings import platform_env

    with oltp_resource(platform_env(), "admin").process_config_and_initialize_cm() as oltp:
        report = seed_tpch(oltp, scale_factor, data_dir() / "duckdb_extensions")
    total = sum(report.rows.values())
    print(
        f"seeded TPC-H SF={scale_factor}: {total:,} rows in {report.seconds:.1f} s "
        + ", ".join(f"{k}={v:,}" for k, v in report.rows.items())
    )


def _migrate() -> int:
    """As the superuser (``OLTP_PASSWORD``): the only command that needs it, besides ``seed``."""
    from platform_assets.oltp.roles import migrate
    from resources.environments import oltp_resource
    from resources.settings import platform_env

    with oltp_resource(platform_env(), "admin").process_config_and_initialize_cm() as oltp:
        roles = migrate(oltp)
    print(f"change capture installed on {oltp.endpoint}; roles {', '.join(roles)} set up")
    return 0


def _simulate(days: int, seed: int, change_rate: float) -> int:
    from platform_assets.oltp.simulate import simulate
    from resources.environments import oltp_resource
    from resources.settings import platform_env

    with oltp_resource(platform_env(), "app").process_config_and_initialize_cm() as app:
        report = simulate(app, days, seed, change_rate)
    for d in report.days:
        print(
            f"{d.day}: +{d.new_orders} orders/+{d.new_lineitems} lines, {d.status_changes} fulfilled, "
            f"{d.corrections} corrections, -{d.deleted_orders} orders/-{d.deleted_lineitems} lines cancelled"
        )
    return 0


@contextmanager
def dagster_log(path: Path) -> Iterator[Path]:
    """Dagster's event stream and Python's warnings (both on stderr) go to ``path``; what this command prints
    itself (progress, the tables) stays on stdout. A failure's traceback still reaches the terminal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as log:
        try:
            with redirect_stderr(log):
                yield path
        except BaseException:
            print(f"failed; Dagster's event log: {path}", file=sys.stderr)
            raise


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _print_materializations(materialized) -> None:
    width = max([len("asset"), *(len(key) for key, _, _ in materialized)])
    print(f"\n{'asset':{width}s} {'partition':>10s} {'rows':>10s} {'bytes':>10s} {'seconds':>8s}")
    for key, partition, md in materialized:
        how = f"  {md['mode']}: {md['changed_keys']:,} keys, {md['delete_markers']:,} deleted" if "mode" in md else ""
        print(
            f"{key:{width}s} {partition or '':>10s} "
            f"{md.get('dagster/row_count', 0):>10,} {_fmt_bytes(md.get('bytes', 0)):>10s} {md.get('seconds', 0):>8.2f}"
            + how
        )


def _print_checks(checks) -> list:
    failed = [c for c in checks if not c.passed]
    print(f"\nasset checks: {len(checks) - len(failed)}/{len(checks)} passed")
    for c in failed:
        print(f"  FAILED {c.asset_key.to_user_string()}:{c.check_name} {c.description or ''}")
    return failed


def _resources(defs):
    from contextlib import ExitStack

    stack = ExitStack()
    oltp = stack.enter_context(defs.resources["oltp"].process_config_and_initialize_cm())
    return stack, oltp


def reset_downstream(defs) -> None:
    """After a re-seed everything derived from the old OLTP is stale: empty the object store and warehouse."""
    with (
        defs.resources["object_store"].process_config_and_initialize_cm() as store,
        defs.resources["clickhouse"].process_config_and_initialize_cm() as ch,
    ):
        store.ensure_bucket()
        for prefix in ("raw/", "curated/", "landing/"):
            store.delete_keys([k for k, _ in store.list_keys(prefix)])
        for database in ("marts", "warehouse"):
            ch.command(f"DROP DATABASE IF EXISTS {database}{ch.on_cluster()} SYNC")


def run_lineage() -> int:
    """Run the full_lineage job over every change day, on the local Dagster instance (the UI shows the run)."""
    import dagster as dg

    from platform_assets.definitions import LINEAGE_JOB, defs
    from platform_assets.jobs import full_load_tags
    from platform_assets.partitions import RANGE_END_TAG, RANGE_START_TAG
    from platform_assets.progress import with_progress

    definitions = defs()
    stack, oltp = _resources(definitions)
    with stack, dg.DagsterInstance.get() as instance:
        tags = full_load_tags(instance, oltp)
        first, last = tags[RANGE_START_TAG], tags[RANGE_END_TAG]
        started = time.perf_counter()
        job, run_config = with_progress(definitions.resolve_job_def(LINEAGE_JOB))
        print(f"running {LINEAGE_JOB} over the change days {first}..{last}: each asset as it is materialized")
        result = job.execute_in_process(instance=instance, tags=tags, run_config=run_config, raise_on_error=False)
    wall = time.perf_counter() - started
    from platform_assets.automation.local_runs import Applied

    _print_materializations(Applied([result]).materialized())
    failed = _print_checks(result.get_asset_check_evaluations())
    print(f"run {result.run_id} ({first}..{last}) {'succeeded' if result.success else 'FAILED'} in {wall:.1f} s")
    return 0 if result.success and not failed else 1


def second_day(change_rate: float = 0.01) -> int:
    """Simulate one more day in the OLTP, let the change sensor and the automation pick it up, print what changed."""
    import dagster as dg

    from platform_assets.automation.local_runs import evaluate_sensor, execute_requests, run_automation
    from platform_assets.automation.oltp_changes import SENSOR, current_cursor
    from platform_assets.definitions import defs
    from platform_assets.oltp.simulate import simulate
    from resources.environments import oltp_resource
    from resources.settings import platform_env

    definitions = defs()
    stack, oltp = _resources(definitions)
    with stack, dg.DagsterInstance.get() as instance:
        cursor = json.dumps(current_cursor(oltp))  # the sensor's view right after the full load
        automation = dg.evaluate_automation_conditions(defs=definitions, instance=instance).cursor  # its first tick
        with oltp_resource(platform_env(), "app").process_config_and_initialize_cm() as app:
            report = simulate(app, 1, 42, change_rate).days[0]
        print(
            f"\nsimulated {report.day}: +{report.new_orders} orders/+{report.new_lineitems} lines, "
            f"{report.status_changes} fulfilled, {report.corrections} corrections, "
            f"-{report.deleted_orders} orders/-{report.deleted_lineitems} lines cancelled"
        )
        started = time.perf_counter()
        requests, _ = evaluate_sensor(definitions, SENSOR, instance, cursor)
        for r in requests:
            print(f"sensor {SENSOR} requested a run of {len(r.asset_selection)} assets ({r.run_key})")
        applied = execute_requests(definitions, instance, requests, progress=sys.stdout)
        automated, _ = run_automation(definitions, instance, automation, progress=sys.stdout)
        wall = time.perf_counter() - started
    _print_materializations(applied.materialized() + automated.materialized())
    failed = _print_checks(applied.checks() + automated.checks())
    ok = applied.success and automated.success and not failed and requests
    print(f"second day applied {'successfully' if ok else 'WITH FAILURES'} in {wall:.1f} s")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    load_dotenv(REPO_ROOT / ".env", override=False)
    os.environ.setdefault("DAGSTER_HOME", str(local_dagster_home()))
    parser = argparse.ArgumentParser(prog="python -m platform_assets.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("seed", "demo"):
        p = sub.add_parser(name)
        p.add_argument("--sf", type=float, default=float(os.environ.get("TPCH_SCALE_FACTOR", "0.01")))
        if name == "demo":
            p.add_argument("--day-change-rate", type=float, default=0.01, help="share of orders changed on day two")
    sub.add_parser("run")
    p = sub.add_parser("simulate", help="apply n days of deterministic OLTP activity")
    p.add_argument("--days", type=int, default=1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--change-rate", type=float, default=0.01)
    for name in ("migrate", "install-capture"):  # install-capture: its name before the roles
        sub.add_parser(name, help="change capture (triggers, tombstones), the roles and their grants on an existing "
                       "OLTP database, as its superuser (idempotent)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.command in ("migrate", "install-capture"):
        return _migrate()
    if args.command == "simulate":
        return _simulate(args.days, args.seed, args.change_rate)
    if args.command in ("seed", "demo"):
        _seed(args.sf)
    if args.command == "seed":
        return 0
    with dagster_log(data_dir() / "logs" / f"{args.command}.log") as log:
        if args.command == "demo":
            from platform_assets.definitions import defs

            reset_downstream(defs())
        status = run_lineage()
        if args.command == "demo" and status == 0:
            status = second_day(args.day_change_rate)
    print(f"\nDagster's event log of these runs (DEBUG): {log}")
    print(
        f"\nOpen the UI: `make dev`, then http://127.0.0.1:{local_port('dagster-webserver')} "
        "(Lineage: Assets → View lineage)"
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
