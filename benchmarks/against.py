"""``make bench BENCH_ARGS="--against <commit>"``: the deployed-path bench of an earlier commit and of the working
tree, in one run on one machine, alternating, and the ratios.

Figures taken on different days or machines differ by more than most changes do (issue 16's 12.3 s day measured
20.6 s here), so a change is judged against its base only side by side. The commit is checked out in a git worktree
under the bench folder; it runs with this interpreter and ``PYTHONPATH`` on its tree when its ``requirements.lock``
is this one's, else with a virtualenv of its own (``make setup`` in its tree). Both trees use this checkout's
``.env``, local stack and data folder. Rounds go A B, B A, … so a machine that warms up or slows down favours
neither. Before each of the working tree's rounds its OLTP migration runs (an earlier commit's seed may have
recreated tables without the platform's roles' grants).
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import bench_dir
from resources.settings import REPO_ROOT, data_dir

WROTE = re.compile(r"wrote (\S+\.json)")
# (label, kind of round, summary key): what the side-by-side table compares
FIGURES = (
    ("simulated day, tick → marts p50 (s)", "simulated day", "tick_to_marts_s_p50"),
    ("simulated day, tick → marts max (s)", "simulated day", "tick_to_marts_s_max"),
    ("wall-clock round, tick → marts p50 (s)", "wall clock", "tick_to_marts_s_p50"),
    ("full load, tick → marts (s)", "full load", "tick_to_marts_s_p50"),
    ("run start-up, launch → first step p50 (s)", "run_startup_s", "p50"),
    ("run start-up, launch → first step max (s)", "run_startup_s", "max"),
)


@dataclass
class Tree:
    label: str
    path: Path
    python: str
    results: list[dict[str, Any]] = field(default_factory=list)


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] against: {msg}", flush=True)


def _git(*args: str, cwd: Path = REPO_ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def checkout(rev: str) -> Tree:
    """The commit in a worktree of its own (kept between benches), with the interpreter that runs it."""
    sha = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
    path = bench_dir() / "against" / sha[:12]
    if not (path / ".git").exists():
        shutil.rmtree(path, ignore_errors=True)
        _git("worktree", "prune")
        _git("worktree", "add", "--detach", str(path), sha)
    python = sys.executable
    if (path / "requirements.lock").read_bytes() != (REPO_ROOT / "requirements.lock").read_bytes():
        _log(f"{sha[:12]} pins other packages: `make setup` in {path}")
        subprocess.run(["make", "setup"], cwd=path, check=True, env={**os.environ, "VIRTUAL_ENV": ""})
        python = str(path / ".venv" / "bin" / "python")
    return Tree(sha[:12], path, python)


def order(rounds: int) -> list[int]:
    """Which tree runs when (0 the commit, 1 the working tree): A B, B A, A B, … — each starts half the rounds."""
    return [i for r in range(rounds) for i in ((0, 1) if r % 2 == 0 else (1, 0))]


def _run(tree: Tree, args: list[str]) -> dict[str, Any]:
    """One ``--only-deployed`` bench of ``tree``, its output passed through; the JSON it wrote."""
    import json

    env = {**os.environ, "PYTHONPATH": str(tree.path), "PLATFORM_DATA_DIR": str(data_dir())}
    cmd = [tree.python, "-m", "benchmarks.run", "--only-deployed", *args]
    _log(f"{tree.label}: {' '.join(cmd[1:])}")
    written = None
    with subprocess.Popen(cmd, cwd=tree.path, env=env, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(f"  {tree.label} | {line}")
            if m := WROTE.search(line):
                written = Path(m.group(1))
    if proc.returncode != 0 or written is None:
        raise SystemExit(f"the bench of {tree.label} failed (exit {proc.returncode}); its output is above")
    return json.loads(written.read_text())


def figure(result: dict[str, Any], kind: str, key: str) -> float | None:
    return result.get("deployed", {}).get("summary", {}).get(kind, {}).get(key)


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def table(base: Tree, work: Tree) -> str:
    """Median over the rounds per figure, and working tree / commit (below 1: the working tree is faster)."""
    head = f"| figure (median of {len(work.results)} rounds) | {base.label} | working tree | ratio |"
    lines = [head, "|---|---|---|---|"]
    for label, kind, key in FIGURES:
        a = [v for r in base.results if (v := figure(r, kind, key)) is not None]
        b = [v for r in work.results if (v := figure(r, kind, key)) is not None]
        ma, mb = (statistics.median(v) if v else None for v in (a, b))
        ratio = f"{mb / ma:.2f}" if ma and mb is not None else "n/a"
        lines.append(f"| {label} | {_cell(ma)} | {_cell(mb)} | {ratio} |")
    return "\n".join(lines)


def main(rev: str, rounds: int, bench_args: list[str]) -> int:
    base, work = checkout(rev), Tree("working tree", REPO_ROOT, sys.executable)
    _log(f"{rounds} round(s) each of {base.label} and the working tree, alternating: {bench_args}")
    for i in order(rounds):
        tree = (base, work)[i]
        if tree is work:  # the working tree's roles and grants, whatever the commit's seed did to the tables
            subprocess.run([work.python, "-m", "platform_assets.cli", "migrate"], cwd=work.path, check=True,
                           env={**os.environ, "PYTHONPATH": str(work.path)})  # fmt: skip
        tree.results.append(_run(tree, bench_args))
    print("\n" + table(base, work), flush=True)
    return 0
