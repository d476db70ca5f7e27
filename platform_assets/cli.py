"""Command line for the demo: seed the OLTP with TPC-H, run the whole lineage, print what it did.

python -m platform_assets.cli seed [--sf 0.01]
python -m platform_assets.cli demo [--sf 0.01]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from dotenv import load_dotenv

from resources.settings import REPO_ROOT, data_dir, local_port


def _seed(scale_factor: float) -> None:
    from platform_assets.oltp.seed import seed_tpch
    from resources.environments import oltp_resource
    from resources.settings import platform_env

    with oltp_resource(platform_env()).process_config_and_initialize_cm() as oltp:
        report = seed_tpch(oltp, scale_factor, data_dir() / "duckdb_extensions")
    total = sum(report.rows.values())
    print(
        f"seeded TPC-H SF={scale_factor}: {total:,} rows in {report.seconds:.1f} s "
        + ", ".join(f"{k}={v:,}" for k, v in report.rows.items())
    )


def _simulate(days: int, seed: int, change_rate: float) -> int:
    from platform_assets.oltp.simulate import simulate
    from resources.environments import oltp_resource
    from resources.settings import platform_env

    with oltp_resource(platform_env()).process_config_and_initialize_cm() as oltp:
        report = simulate(oltp, days, seed, change_rate)
    for d in report.days:
        print(
            f"{d.day}: +{d.new_orders} orders/+{d.new_lineitems} lines, {d.status_changes} fulfilled, "
            f"{d.corrections} corrections, -{d.deleted_orders} orders/-{d.deleted_lineitems} lines cancelled"
        )
    return 0


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def run_lineage() -> int:
    """Run the full_lineage job on the local Dagster instance, so the UI shows the run and its metadata."""
    import dagster as dg

    from platform_assets.definitions import LINEAGE_JOB, defs

    started = time.perf_counter()
    job = defs().resolve_job_def(LINEAGE_JOB)
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    wall = time.perf_counter() - started
    print(f"\n{'asset':42s} {'rows':>10s} {'bytes':>10s} {'seconds':>8s}")
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        md = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
        print(
            f"{mat.asset_key.to_user_string():42s} {md.get('dagster/row_count', 0):>10,} "
            f"{_fmt_bytes(md.get('bytes', 0)):>10s} {md.get('seconds', 0):>8.2f}"
        )
    checks = result.get_asset_check_evaluations()
    failed = [c for c in checks if not c.passed]
    print(f"\nasset checks: {len(checks) - len(failed)}/{len(checks)} passed")
    for c in failed:
        print(f"  FAILED {c.asset_key.to_user_string()}:{c.check_name} {c.description or ''}")
    print(f"run {result.run_id} {'succeeded' if result.success else 'FAILED'} in {wall:.1f} s")
    return 0 if result.success and not failed else 1


def main(argv: list[str] | None = None) -> int:
    load_dotenv(REPO_ROOT / ".env", override=False)
    from deploy.local.stack import dagster_home

    os.environ.setdefault("DAGSTER_HOME", str(dagster_home()))
    parser = argparse.ArgumentParser(prog="python -m platform_assets.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("seed", "demo"):
        p = sub.add_parser(name)
        p.add_argument("--sf", type=float, default=float(os.environ.get("TPCH_SCALE_FACTOR", "0.01")))
    sub.add_parser("run")
    p = sub.add_parser("simulate", help="apply n days of deterministic OLTP activity")
    p.add_argument("--days", type=int, default=1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--change-rate", type=float, default=0.01)
    args = parser.parse_args(argv)
    if args.command == "simulate":
        return _simulate(args.days, args.seed, args.change_rate)
    if args.command in ("seed", "demo"):
        _seed(args.sf)
    if args.command == "seed":
        return 0
    status = run_lineage()
    print(
        f"\nOpen the UI: `make dev`, then http://127.0.0.1:{local_port('dagster-webserver')} "
        "(Lineage: Assets → View lineage)"
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
