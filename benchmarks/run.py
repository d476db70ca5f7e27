"""``python -m benchmarks.run --sf 0.1``: seed, run our lineage and the references, an incremental day, print the
table, write JSON.

Every measured piece of work runs alone in its own subprocess, one after the other (the naive references
take ~10 GB at SF=1). Ours runs first on an emptied lake and warehouse (the whole ``full_lineage`` job over the
changed days, then each layer by itself); the local references then read local copies of exactly the Parquet our
run wrote. Last, one day of OLTP activity at 1% change is simulated and applied the way the platform does it
(sensor tick, ``incremental_changes`` run, automation of models and marts). That day changes the OLTP, so the
next run seeds again. Then the deployed path (``benchmarks.deployed``): a real daemon and webserver, runs as
processes, a full load and simulated and wall-clock days on their own ticks (``--only-deployed``: that alone).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from datetime import UTC, datetime

from benchmarks import against, deployed, report
from benchmarks.common import bench_dir, load_environment, oltp, scratch_dir
from benchmarks.measure import Measured, run_task
from benchmarks.ours import LAYERS

REFERENCES = {  # stage: (limit task, naive task)
    "extract": ("extract_limit", "extract_naive"),
    "transform": ("transform_limit", "transform_naive"),
    "load": ("load_limit", "load_naive"),
    "marts": ("marts_limit", None),  # the issue defines no naive marts
}


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def seeded_at(sf: float) -> bool:
    """An OLTP freshly seeded at ``sf`` is not seeded again: TPC-H has exactly 1.5 M orders per scale factor, and
    every change (rows and tombstones) is still on the seed day (no simulated day since)."""
    from platform_assets.jobs import changed_days
    from platform_assets.oltp.seed import SEED_TIMESTAMP

    try:
        db = oltp()
        with db.connect() as conn:
            orders = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
            lines = conn.execute("SELECT count(*) FROM lineitem").fetchone()[0]
        days = changed_days(db)  # fails without the tombstone table (a seed of an older schema)
    except Exception:
        return False
    seed_day = SEED_TIMESTAMP.date()
    return orders == round(1_500_000 * sf) and lines > 0 and days == (seed_day, seed_day)


def measure(task: str, sf: float, **params: object) -> Measured:
    m = run_task(task, {"sf": sf, **params})
    work = m.result.get("seconds", m.result.get("engine_s", m.result.get("wall_s")))
    detail = f", work {work:.1f} s" if work is not None else ""
    _log(f"{task}{' ' + str(params['layer']) if params.get('layer') else ''}: wall {m.wall_s:.1f} s{detail}, "
         f"peak RSS {m.peak_rss_bytes / report.GB:.2f} GB")  # fmt: skip
    return m


def from_e2e(e2e: Measured, layer: str) -> Measured:
    """One layer's assets as timed inside the end-to-end run (its memory is the whole run's)."""
    assets = {k: a for k, a in e2e.result["assets"].items() if k.split("/")[0] == layer}
    result = {"assets": assets, "engine_s": sum(a["seconds"] for a in assets.values()), "from_e2e": True}
    return Measured(f"ours {layer} (from the end-to-end run)", e2e.wall_s, e2e.peak_rss_bytes, result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--sf", type=float, default=0.1, help="TPC-H scale factor (default 0.1)")
    parser.add_argument("--reseed", action="store_true", help="seed the OLTP even if it already holds this SF")
    parser.add_argument("--skip-naive", action="store_true", help="leave out the (slow, memory-hungry) naive refs")
    parser.add_argument(
        "--alone",
        default=",".join(LAYERS),
        help="layers re-run alone for per-stage time and memory (default all); the others are read from the "
        "end-to-end run (their peak RSS is then the whole run's)",
    )
    parser.add_argument("--skip-incremental", action="store_true", help="leave out the incremental day")
    parser.add_argument("--change-rate", type=float, default=0.01, help="change rate of the incremental day")
    parser.add_argument("--keep-scratch", action="store_true", help="keep the local copies and reference outputs")
    parser.add_argument("--days", type=int, default=5, help="simulated days through the deployment (default 5)")
    parser.add_argument("--wall-clock", type=int, default=2, help="wall-clock rounds through the deployment (2)")
    parser.add_argument("--skip-deployed", action="store_true", help="leave out the deployed path (daemon, processes)")
    parser.add_argument("--only-deployed", action="store_true", help="seed if needed, then only the deployed path")
    parser.add_argument(
        "--against",
        metavar="COMMIT",
        help="the deployed path of COMMIT and of the working tree side by side, alternating, with ratios",
    )
    parser.add_argument("--rounds", type=int, default=2, help="with --against: benches of each tree (default 2)")
    parser.add_argument(
        "--dagster-storage",
        choices=("sqlite", "postgres"),
        default="postgres",
        help="the deployed path's instance storage: PostgreSQL as vps_1 keeps it (the default) or SQLite files "
        "(make dev's; --against a commit older than the option needs sqlite)",
    )
    args = parser.parse_args(argv)
    load_environment()
    sf = args.sf
    if args.against:
        forwarded = ["--sf", f"{sf:g}", "--days", str(args.days), "--wall-clock", str(args.wall_clock)]
        if args.change_rate != 0.01:
            forwarded += ["--change-rate", str(args.change_rate)]
        if args.dagster_storage != "sqlite":  # a commit from before the option only benches SQLite (its default)
            forwarded += ["--dagster-storage", args.dagster_storage]
        return against.main(args.against, args.rounds, forwarded)
    started = time.perf_counter()
    _log(f"SF={sf:g}, data folder {bench_dir().parent}, {os.cpu_count()} cores")
    if args.only_deployed:
        return only_deployed(args, started)
    scratch = scratch_dir(sf)
    shutil.rmtree(scratch, ignore_errors=True)

    seed = None
    if args.reseed or not seeded_at(sf):
        seed = measure("seed", sf)
    else:
        _log(f"OLTP already holds TPC-H SF={sf:g}, not seeded again (--reseed to force)")
    measure("reset", sf)  # an empty lake and warehouse: the full load starts from nothing, as after `make demo`

    e2e = measure("ours", sf)  # the whole full_lineage job over the changed days, as `make demo` runs it
    alone = {x.strip() for x in args.alone.split(",") if x.strip()}
    ours = {}
    for layer in LAYERS:
        if layer not in alone:
            ours[layer] = from_e2e(e2e, layer)
            continue
        if layer == "raw":  # extract into an empty lake again, as the full load did (no objects to replace)
            measure("reset_raw", sf)
        if layer == "warehouse":  # the daily loads upsert: load into empty tables again, as the full load did
            measure("reset_warehouse", sf)
        ours[layer] = measure("ours", sf, layer=layer)
    measure("mirror", sf, prefixes=["raw", "curated"])
    refs: dict[str, dict[str, Measured | None]] = {}
    for stage, (limit_task, _) in REFERENCES.items():
        refs[stage] = {"limit": measure(limit_task, sf)}
    # the naive references after every limit: the marts limit then reads the tables the load limit just wrote, as
    # our marts follow our load (the naive load's ~17 GB at SF=1 would first push them out of the page cache)
    unmerged = measure("marts_limit_unmerged", sf)
    for stage, (_, naive_task) in REFERENCES.items():
        refs[stage]["naive"] = measure(naive_task, sf) if naive_task and not args.skip_naive else None
    server = measure("extract_server", sf)
    inc = None if args.skip_incremental else measure("incremental", sf, change_rate=args.change_rate)
    if inc:
        r = inc.result
        _log(f"incremental: the day {r['wall_s']:.1f} s; simulating it in the OLTP (not timed) {r['simulate_s']:.1f} s")
    # last, alone on the machine: the deployment's own processes do the work (its own bucket and warehouse)
    on_daemon = (
        None
        if args.skip_deployed
        else deployed.measure(sf, args.days, args.wall_clock, args.change_rate, args.dagster_storage)
    )

    rows = report.stage_rows(ours, refs)
    e2e_summary = report.end_to_end(e2e, rows)
    inc_summary = report.incremental(inc, e2e) if inc else None
    extras = {
        "server_copy": server.result,
        "marts_limit_unmerged": unmerged.result,
        "spark_fixed": report.spark_fixed(refs["transform"]["limit"]),
        "extract_memory": report.extract_memory(bench_dir(), sf, rows[0]["peak_rss_gb"]),
    }
    text = report.render(sf, rows, e2e_summary, extras, inc_summary)
    if on_daemon:
        in_process = {"full_load_s": e2e.result["execute_in_process_s"], "day_s": inc.result["wall_s"] if inc else None}
        on_daemon["in_process"] = in_process
        text += "\n\n" + deployed.render(on_daemon, in_process)
    print("\n" + text, flush=True)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = bench_dir() / f"bench-sf{sf:g}-{stamp}.json"
    report.to_json(
        path,
        {
            "scale_factor": sf,
            "timestamp": stamp,
            "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "stages": rows,
            "end_to_end": e2e_summary,
            "incremental_day": inc_summary,
            "deployed": on_daemon,
            "extras": extras,
            "measurements": {
                "seed": seed,
                "e2e": e2e,
                "ours": ours,
                "references": refs,
                "marts_limit_unmerged": unmerged,
                "server_copy": server,
                "incremental": inc,
            },
            "bench_wall_s": time.perf_counter() - started,
        },
    )
    if not args.keep_scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    _log(f"wrote {path} ({time.perf_counter() - started:.0f} s in all)")
    return 0


def only_deployed(args: argparse.Namespace, started: float) -> int:
    """``--only-deployed``: the deployed path alone, on the OLTP as it stands (seeded at ``--sf`` if it is not)."""
    sf = args.sf
    seed = measure("seed", sf) if args.reseed or not seeded_at(sf) else None
    on_daemon = deployed.measure(sf, args.days, args.wall_clock, args.change_rate, args.dagster_storage)
    print("\n" + deployed.render(on_daemon), flush=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = bench_dir() / f"bench-deployed-sf{sf:g}-{stamp}.json"
    machine = {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    payload = {"scale_factor": sf, "timestamp": stamp, "machine": machine, "deployed": on_daemon,
               "measurements": {"seed": seed}, "bench_wall_s": time.perf_counter() - started}  # fmt: skip
    report.to_json(path, payload)
    _log(f"wrote {path} ({time.perf_counter() - started:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
