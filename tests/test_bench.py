"""The benchmark's own arithmetic (no stack): memory of a process tree, ratios, targets, the overhead account."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from benchmarks import report
from benchmarks.measure import Measured, tree_rss


def test_tree_rss_includes_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "x = bytearray(300 * 2**20); import time; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 15
        while tree_rss(os.getpid()) < 300 * 2**20 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tree_rss(os.getpid()) >= 300 * 2**20
    finally:
        child.kill()
        child.wait()


def _ours(layer: str, seconds: float, rows: int) -> Measured:
    asset = {"step": f"{layer}__t", "seconds": seconds, "rows": rows, "bytes": rows * 10}
    return Measured("ours", seconds + 1, 2**30, {"assets": {f"{layer}/t": asset}, "engine_s": seconds})


def _ref(seconds: float) -> Measured:
    return Measured("ref", seconds + 1, 2**29, {"seconds": seconds})


def test_report_ratios_targets_and_overhead() -> None:
    ours = {layer: _ours(layer, 10.0, 1000) for _, layer in report.STAGES}
    refs = {stage: {"limit": _ref(8.0), "naive": _ref(100.0)} for stage, _ in report.STAGES}
    refs["marts"]["naive"] = None
    rows = report.stage_rows(ours, refs)
    assert rows[0]["ours_over_limit"] == 1.25 and rows[0]["naive_over_ours"] == 10.0
    e2e = Measured(
        "ours",
        60.0,
        2**31,
        {
            "assets": {f"{layer}/t": {"seconds": 10.0} for _, layer in report.STAGES},
            "engine_s": 40.0,
            "check_steps_s": 5.0,
            "asset_steps_s": 42.0,
            "execute_in_process_s": 50.0,
            "checks_passed": 3,
            "checks_total": 3,
        },
    )
    summary = report.end_to_end(e2e, rows)
    assert summary["dagster_overhead_s"] == 15.0
    assert sum(summary["overhead_breakdown_s"].values()) == 15.0
    text = report.render(0.1, rows, summary, {"server_copy": None, "extract_memory": None})
    assert "within 1.5x of limit: MET (1.25x)" in text
    assert report.INCREMENTAL in text
