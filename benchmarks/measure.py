"""Run one piece of work in a fresh subprocess and measure its wall time and the peak RSS of its process tree.

Peak RSS is the larger of (a) the sum of VmRSS over the subprocess and all its descendants (e.g. the Spark
JVM), sampled every 100 ms from /proc (the set of descendants is rediscovered once a second: a full /proc
scan costs ~30 ms of CPU, which a 2-core machine would otherwise take from the work), and (b) the kernel's
exact ``ru_maxrss`` of the largest single process, from ``wait4``. Server processes the work talks to
(PostgreSQL, SeaweedFS) are not descendants.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Measured:
    task: str
    wall_s: float  # whole subprocess, interpreter start to exit
    peak_rss_bytes: int
    result: dict[str, Any] = field(default_factory=dict)  # what the worker reported (its own timings)


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    kids, out, todo = _children_map(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def rss_of(pids: list[int]) -> int:
    total = 0
    for p in pids:
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE
    return total


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants right now."""
    return rss_of(descendants(pid))


def run_task(task: str, params: dict[str, Any] | None = None, timeout_s: float = 3600) -> Measured:
    """``python -m benchmarks.worker <task>`` in a subprocess; raises if it fails."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = [sys.executable, "-m", "benchmarks.worker", task, str(out), json.dumps(params or {})]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        pids, tick = [proc.pid], 0
        while not stop.is_set():
            if tick % 10 == 0:
                pids = descendants(proc.pid)
            peak = max(peak, rss_of(pids))
            tick += 1
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                raise TimeoutError(f"{task} exceeded {timeout_s:.0f} s")
            time.sleep(0.1)
    finally:
        stop.set()
        sampler.join()
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark task {task} failed (exit {proc.returncode})")
    result = json.loads(out.read_text())
    out.unlink(missing_ok=True)
    return Measured(task, wall, max(peak, usage.ru_maxrss * 1024), result)
