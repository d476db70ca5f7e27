"""``platform``: the command line agents and people use to operate the platform through Dagster's webserver.

    platform describe                          topology, table catalog, asset graph (JSON)
    platform materialize raw/region            launch a run, stream progress, exit 1 with the failing step's error
    platform materialize job:full_lineage --from 1998-08-03 --to 1998-08-05   a whole job over a range of days
    platform status [RUN_ID]                   a run (or the latest runs) as JSON
    platform checks raw/region                 asset-check results, exit 1 if one failed
    platform lineage marts/tpch_q10_returned_items.revenue --upstream   the columns it is computed from, to the OLTP
    platform lineage oltp/customer.c_comment --downstream               every column computed from it

Target: DAGSTER_URL (default the local webserver), DAGSTER_USER / DAGSTER_PASSWORD for vps_1's TLS proxy.
Exit codes: 0 success, 1 a run or check failed, 2 an error (unknown asset, unreachable webserver, bad credentials).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from control_plane import commands, render
from control_plane import lineage as column_lineage
from control_plane.client import ControlPlaneError, GraphQLClient

FAILED_CHECK = {"FAILED", "EXECUTION_FAILED"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="platform", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="Dagster webserver base URL (default: $DAGSTER_URL or the local webserver)")
    parser.add_argument("--format", choices=["json", "table"], help="default: json unless stdout is a terminal")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("describe", help="topology, catalog and asset graph with freshness")
    mat = sub.add_parser("materialize", help="launch a run of SELECTION and follow it")
    mat.add_argument("selection", nargs="+", help="asset keys (raw/region), group:NAME, '*', or job:NAME (a whole job)")
    mat.add_argument("--partition", help="one partition key (partitioned assets only)")
    mat.add_argument("--from", dest="start", help="first partition key of a range")
    mat.add_argument("--to", dest="end", help="last partition key of a range")
    mat.add_argument("--no-wait", action="store_true", help="print the run id and return without following")
    mat.add_argument("--timeout", type=float, default=3600, help="seconds to follow the run (default 3600)")
    st = sub.add_parser("status", help="a run's state and steps, or the latest runs")
    st.add_argument("run_id", nargs="?")
    st.add_argument("--limit", type=int, default=10)
    ch = sub.add_parser("checks", help="asset-check results of ASSET")
    ch.add_argument("asset")
    lin = sub.add_parser("lineage", help="column-level lineage of ASSET[.COLUMN], transitively (both ways by default)")
    lin.add_argument("target", help="an asset key, or ASSET.COLUMN (e.g. marts/tpch_q01_pricing_summary.sum_charge)")
    way = lin.add_mutually_exclusive_group()
    way.add_argument("--upstream", action="store_true", help="only the columns it is computed from")
    way.add_argument("--downstream", action="store_true", help="only the columns computed from it")
    return parser


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _run(args: argparse.Namespace, client: GraphQLClient) -> tuple[Any, Callable[[Any], str], int]:
    if args.command == "describe":
        return commands.describe(client), render.describe_table, 0
    if args.command == "status":
        return commands.status(client, args.run_id, args.limit), render.status_table, 0
    if args.command == "lineage":
        both = not (args.upstream or args.downstream)
        payload = column_lineage.lineage(client, args.target, args.upstream or both, args.downstream or both)
        return payload, render.lineage_table, 0
    if args.command == "checks":
        payload = commands.checks(client, args.asset)
        failed = any(c["status"] in FAILED_CHECK for c in payload["checks"])
        return payload, render.checks_table, 1 if failed else 0
    run_id = commands.launch(client, args.selection, partition=args.partition, start=args.start, end=args.end)
    _progress(f"launched run {run_id} on {client.url}")
    if args.no_wait:
        return {"run_id": run_id, "status": "STARTED", "failure": None}, render.run_table, 0
    result = commands.follow(client, run_id, _progress, timeout=args.timeout)
    return result, render.run_table, 0 if result["status"] == "SUCCESS" else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    fmt = args.format or ("table" if sys.stdout.isatty() else "json")
    try:
        payload, as_table, code = _run(args, GraphQLClient.from_env(args.url))
    except ControlPlaneError as exc:
        print(f"platform: error: {exc}", file=sys.stderr)
        return 2
    print(as_table(payload) if fmt == "table" else render.to_json(payload))
    if code and payload.get("failure"):
        print(f"platform: run {payload['run_id']} {payload['failure']}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
