"""``make dev`` stops on Ctrl-C: the terminal's SIGINT reaches the whole foreground process group, and every
process it started (webserver, daemon, code server) is gone within seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.local.daemon import asset_graph_loaded, free_port
from tests.conftest import REPO, TEST_DATA

STOP_WITHIN_S = 20


def _group(pgid: int) -> dict[int, str]:
    """Live processes of a process group (pid → command line), from /proc; zombies count as gone."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:  # state, ppid, pgrp
            out[int(stat.parent.name)] = cmdline[:100]
    return out


# a command whose child ignores SIGINT and outlives it, as dagster dev's code server sometimes does
ORPHANING = """
import subprocess, sys, time
deaf = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print('deaf', flush=True); time.sleep(600)"
subprocess.Popen([sys.executable, "-c", deaf])
time.sleep(600)
"""


def test_ctrl_c_leaves_no_orphan_of_the_supervised_command():
    """The part of ``make dev`` that makes Ctrl-C final, on a command that leaves an orphan behind."""
    proc = subprocess.Popen([sys.executable, "-m", "deploy.local.supervise", sys.executable, "-c", ORPHANING],
                            cwd=REPO, stdout=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        assert proc.stdout.readline() == "deaf\n"  # the child ignores SIGINT from here on
        os.killpg(proc.pid, signal.SIGINT)
        sent = time.monotonic()
        while _group(proc.pid) and time.monotonic() - sent < STOP_WITHIN_S:
            time.sleep(0.1)
        assert not _group(proc.pid), f"still running {STOP_WITHIN_S} s after Ctrl-C: {_group(proc.pid)}"
        assert proc.wait(timeout=5) != 0  # the command's own exit (KeyboardInterrupt) is passed on
    finally:
        if _group(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_ctrl_c_stops_make_dev_with_every_child(tmp_path):
    port = free_port()
    env = {**os.environ, "LOCAL_PORT_DAGSTER_WEBSERVER": str(port), "PLATFORM_DATA_DIR": str(TEST_DATA / "dev")}
    log = open(tmp_path / "dev.log", "wb")  # noqa: SIM115 — closed below
    # a session of its own, as a terminal gives `make dev` a foreground process group
    proc = subprocess.Popen([sys.executable, "-m", "deploy.local.stack", "dev"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not asset_graph_loaded(f"http://127.0.0.1:{port}"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("make dev did not serve the UI: " + (tmp_path / "dev.log").read_text()[-2000:])
            time.sleep(1)
        started = _group(proc.pid)
        assert len(started) >= 3, f"expected dagster dev with its webserver, daemon and code server: {started}"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does
        sent = time.monotonic()
        while _group(proc.pid) and time.monotonic() - sent < STOP_WITHIN_S:
            time.sleep(0.2)
        left = _group(proc.pid)
        took = time.monotonic() - sent
        print(f"\nmake dev stopped {len(started)} processes in {took:.1f} s after Ctrl-C")
        assert not left, f"still running {STOP_WITHIN_S} s after Ctrl-C: {left}"
    finally:
        if _group(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        log.close()
