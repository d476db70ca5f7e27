"""``python -m benchmarks.extract_paths``: the raw extract alone, by read path, each run in its own measured process.

Every variant extracts one change day of all eight tables in one process, as the raw layer of a Dagster run
does (``extract_days`` per table, one after the other), into a scratch bucket (the lake is not touched):

* ``auto``: the planner's choice per table (``scan_for``), what the assets do;
* ``table_scan`` / ``index_query``: one read path forced for every table;
* ``rev:<git revision>``: ``extract_days`` as committed at that revision (e.g. ``rev:HEAD`` before a change).

The bucket is emptied first, so every variant writes where nothing is to be replaced, as the full load does.

Variants are interleaved round by round, so a noisy machine slows them alike. Reported per variant: the median
of the rounds' summed ``extract_days`` seconds, each table's median, wall and peak RSS of the process.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import types
from datetime import date
from typing import Any

from benchmarks.common import load_environment
from benchmarks.measure import Measured, run_task

BUCKET = "bench-extract"


def _at_revision(rev: str) -> types.ModuleType:
    """``platform_assets/raw/extract.py`` as committed at ``rev``, imported beside the working tree's modules."""
    from resources.settings import REPO_ROOT

    source = subprocess.run(
        ["git", "show", f"{rev}:platform_assets/raw/extract.py"], cwd=REPO_ROOT, check=True, capture_output=True
    ).stdout
    module = types.ModuleType(f"extract_at_{rev}")
    module.__file__ = f"{rev}:platform_assets/raw/extract.py"
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # our own file, at a revision
    return module


def extract_all(variant: str, day: str | None) -> dict[str, Any]:
    """Worker task: every table's ``day`` (default: the seed day) extracted with ``variant``."""
    import os
    import time

    os.environ["S3_BUCKET"] = BUCKET  # before the resource reads it
    from benchmarks.common import extension_dir, object_store, oltp
    from platform_assets.catalog import TABLES
    from platform_assets.oltp.seed import SEED_TIMESTAMP

    the_day = date.fromisoformat(day) if day else SEED_TIMESTAMP.date()
    pg, store = oltp(), object_store()
    store.ensure_bucket()
    store.delete_keys([k for k, _ in store.list_keys("")])  # into an empty bucket, as a full load (nothing to replace)
    if variant.startswith("rev:"):
        module = _at_revision(variant[4:])
        kwargs = {}
    else:
        from platform_assets.raw import extract as module

        kwargs = {} if variant == "auto" else {"scan": variant}
    per_table: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    for t in TABLES:
        r = module.extract_days(pg, store, t, [the_day], extension_dir(), **kwargs)
        scans = sorted({getattr(d, "scan", "index_query") for d in r.days})
        per_table[t.name] = {"seconds": r.seconds, "rows": r.rows, "deleted": r.deleted, "scan": ",".join(scans)}
    return {
        "variant": variant,
        "day": str(the_day),
        "seconds": sum(t["seconds"] for t in per_table.values()),
        "loop_s": time.perf_counter() - started,
        "rows": sum(t["rows"] for t in per_table.values()),
        "tables": per_table,
    }


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def render(runs: dict[str, list[Measured]]) -> str:
    names = list(next(iter(runs.values()))[0].result["tables"])
    head = f"{'variant':18s} {'rows':>10s} {'extract s':>9s} {'wall s':>7s} {'RSS GB':>6s}  " + " ".join(
        f"{n[:9]:>9s}" for n in names
    )
    out = [head, "-" * len(head)]
    for variant, ms in runs.items():
        per = {n: _median([m.result["tables"][n]["seconds"] for m in ms]) for n in names}
        scans = {n: ms[0].result["tables"][n]["scan"] for n in names}
        out.append(
            f"{variant:18s} {ms[0].result['rows']:>10,} {_median([m.result['seconds'] for m in ms]):>9.2f} "
            f"{_median([m.wall_s for m in ms]):>7.1f} {max(m.peak_rss_bytes for m in ms) / 2**30:>6.2f}  "
            + " ".join(f"{per[n]:>9.2f}" for n in names)
        )
        out.append(f"{'':18s} {'':>10s} {'':>9s} {'':>7s} {'':>6s}  " + " ".join(f"{scans[n][:9]:>9s}" for n in names))
    rounds = len(next(iter(runs.values())))
    out.append(f"median of {rounds} round(s); extract s = Σ extract_days seconds; RSS = max over rounds")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.extract_paths", description=__doc__)
    parser.add_argument("--variants", default="auto,index_query,rev:HEAD", help="comma-separated (default %(default)s)")
    parser.add_argument("--day", default=None, help="change day (default: the seed day)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    load_environment()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    runs: dict[str, list[Measured]] = {v: [] for v in variants}
    for i in range(args.rounds):
        for v in variants:
            m = run_task("extract_all", {"variant": v, "day": args.day})
            runs[v].append(m)
            print(f"[extract_paths] round {i + 1} {v}: {m.result['seconds']:.2f} s, wall {m.wall_s:.1f} s, "
                  f"peak RSS {m.peak_rss_bytes / 2**30:.2f} GB", flush=True)  # fmt: skip
    print(render(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
