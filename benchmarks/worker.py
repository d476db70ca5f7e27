"""One measured piece of work per process: ``python -m benchmarks.worker <task> <out.json> '<params json>'``.

The parent (``measure.run_task``) samples this process tree's memory; the task reports its own timings.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the heavy imports, so Dagster's import time is attributed to it

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402


def seed(sf: float) -> dict[str, Any]:
    from benchmarks.common import extension_dir, oltp
    from platform_assets.oltp.seed import seed_tpch

    report = seed_tpch(oltp(), sf, extension_dir())
    return {"seconds": report.seconds, "rows": sum(report.rows.values()), "tables": report.rows}


def mirror(sf: float, prefixes: list[str]) -> dict[str, Any]:
    """Copy objects of the bucket to local disk (``scratch/mirror/<prefix>``), for the local-file references."""
    import pyarrow.fs as pafs

    from benchmarks.common import object_store, scratch_dir

    store = object_store()
    fs = store.arrow_fs()
    for prefix in prefixes:
        dest = scratch_dir(sf) / "mirror" / prefix
        dest.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(f"{store.bucket}/{prefix}", str(dest), source_filesystem=fs,
                        destination_filesystem=pafs.LocalFileSystem())  # fmt: skip
    return {}


def reset() -> dict[str, Any]:
    """Start from an empty lake and warehouse, as after a fresh seed (``make demo`` does the same)."""
    from platform_assets.cli import reset_downstream
    from platform_assets.definitions import defs

    started = time.perf_counter()
    reset_downstream(defs())
    return {"seconds": time.perf_counter() - started}


def reset_raw() -> dict[str, Any]:
    """Empty ``raw/``: extracting a layer again alone then does the full load's work, into an empty lake (a re-run
    would also find and delete the objects it replaces)."""
    from benchmarks.common import object_store

    started = time.perf_counter()
    store = object_store()
    store.delete_keys([k for k, _ in store.list_keys("raw/")])
    return {"seconds": time.perf_counter() - started}


def reset_warehouse() -> dict[str, Any]:
    """Drop the warehouse tables: loading a layer again alone then does the full load's work, into empty tables
    (a re-load into the loaded tables would insert every version a second time)."""
    from benchmarks.common import clickhouse

    started = time.perf_counter()
    ch = clickhouse()
    ch.command(f"DROP DATABASE IF EXISTS warehouse{ch.on_cluster()} SYNC")
    return {"seconds": time.perf_counter() - started}


def run(task: str, p: dict[str, Any]) -> dict[str, Any]:
    from benchmarks import extract_paths, extract_refs, load_refs, ours, transform_refs
    from benchmarks.common import scratch_dir

    sf = float(p.get("sf", 0))
    scratch = scratch_dir(sf)
    mirrored = scratch / "mirror"
    tasks = {
        "seed": lambda: seed(sf),
        "mirror": lambda: mirror(sf, p["prefixes"]),
        "reset": reset,
        "reset_raw": reset_raw,
        "reset_warehouse": reset_warehouse,
        "ours": lambda: ours.run_layer(p.get("layer"), STARTED),
        "incremental": lambda: ours.incremental_day(float(p["change_rate"]), STARTED),
        "extract_limit": lambda: extract_refs.limit(scratch / "extract-limit"),
        "extract_server": lambda: extract_refs.server_copy(),
        "extract_all": lambda: extract_paths.extract_all(p["variant"], p.get("day")),
        "extract_naive": lambda: extract_refs.naive(scratch / "extract-naive"),
        "transform_limit": lambda: transform_refs.limit(mirrored, scratch / "transform-limit"),
        "transform_naive": lambda: transform_refs.naive(mirrored, scratch / "transform-naive"),
        "load_limit": lambda: load_refs.load_limit(mirrored, scratch / "chdb-limit"),
        "load_naive": lambda: load_refs.load_naive(mirrored, scratch / "chdb-naive"),
        "marts_limit": lambda: load_refs.marts_limit(scratch / "chdb-limit"),
        "marts_limit_unmerged": lambda: load_refs.marts_limit(scratch / "chdb-limit", final=False),
    }
    if task not in tasks:
        raise SystemExit(f"unknown benchmark task {task!r}; known: {sorted(tasks)}")
    return tasks[task]()


def main() -> None:
    task, out, params = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    from benchmarks.common import load_environment

    load_environment()
    result = run(task, params)
    result["process_s"] = time.perf_counter() - STARTED
    out.write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
