"""Run a command so that Ctrl-C stops it with every process it started, orphans included.

``dagster dev`` stops its webserver and daemon on Ctrl-C but not always its code server: a SIGINT that reaches the
code server inside one of Dagster's interrupt-capturing sections is swallowed, and the code server with its gRPC
child then lives on (until their heartbeat times out, 30 s or more) after ``dagster dev`` itself has exited. This
supervisor is a child subreaper (``PR_SET_CHILD_SUBREAPER``), so every orphaned descendant becomes its child; once
the command has exited it terminates whatever is left (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def children(pid: int | None = None) -> list[int]:
    """Live (not zombie) children of ``pid`` (default: this process), from /proc."""
    parent = os.getpid() if pid is None else pid
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == parent:
            out.append(int(stat.parent.name))
    return out


def _reap() -> None:
    """Collect exited children (orphans handed to us included) so they do not stay zombies."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def stop_leftovers(grace: float) -> list[int]:
    """SIGTERM every remaining child, SIGKILL those still alive after ``grace`` s; returns the pids it found."""
    found = children()
    _signal_all(found, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap()
        if not children():
            return found
        time.sleep(0.1)
    _signal_all(children(), signal.SIGKILL)
    while children():
        _reap()
        time.sleep(0.05)
    _reap()
    return found


def run(argv: Sequence[str], grace: float = 5.0) -> int:
    """Run ``argv`` to its end and leave no process it started; returns its exit code.

    Ctrl-C reaches the command (and all of the terminal's foreground group) directly; this process only waits.
    SIGTERM sent to this process alone is passed on to the command."""
    _become_subreaper()
    # a handler, set before the command starts: exec resets a handled signal to its default action in the command,
    # while an ignored one stays ignored (as when this was started by a make, a background job or a test runner
    # that ignores SIGINT), and the command would then never see the Ctrl-C
    signal.signal(signal.SIGINT, lambda *_: None)
    proc = subprocess.Popen(list(argv))
    signal.signal(signal.SIGTERM, lambda *_: proc.poll() is None and proc.send_signal(signal.SIGTERM))
    code = proc.wait()
    stop_leftovers(grace)
    return code


if __name__ == "__main__":
    import sys

    sys.exit(run(sys.argv[1:]))
