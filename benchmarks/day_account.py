"""Where a round's time goes, tick → marts, in the deployed path (issue 29's profile): engine work against ours.

A round's runs are laid on one timeline from the change sensor's tick to the last mart's materialization. Each
instant is charged to one phase — of a run if one is active (its steps first, then its process start-up, its end,
its wait in the queue), else to the daemon (no run active: the automation sensor's next tick, the run coordinator).
The time in steps is then split into the engines' own work (``seconds`` each materialization records), the checks
(check steps and ``check_seconds`` a step spent on checks it ran itself) and the rest: Dagster's events and IO
managers, our Python between engine calls. Engine work is what a faster orchestration cannot remove; the rest is
what issue 29 sets out to cut.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

# charged in this order when phases of several runs overlap: the work, then what the work waits on
PHASES = ("steps", "start-up", "run end", "queued")
IDLE = "between runs"  # no run active: the daemon's ticks (automation sensor, run coordinator)


@dataclass
class RunPhases:
    """One run as epoch seconds from its event log, and its steps' accounts."""

    created: float
    launched: float
    first_step: float | None
    last_step_end: float | None
    ended: float
    engine_s: float = 0.0  # the engines' own work its materializations recorded
    check_steps_s: float = 0.0  # steps that materialize nothing: asset checks
    in_step_checks_s: float = 0.0  # checks an asset's step ran itself
    asset_steps_s: float = 0.0

    def intervals(self) -> dict[str, tuple[float, float]]:
        first = self.first_step if self.first_step is not None else self.ended
        last = self.last_step_end if self.last_step_end is not None else first
        return {
            "queued": (self.created, self.launched),
            "start-up": (self.launched, first),
            "steps": (first, last),
            "run end": (last, self.ended),
        }


@dataclass
class Account:
    wall_s: float
    timeline_s: dict[str, float] = field(default_factory=dict)  # IDLE and PHASES, summing to wall_s
    engine_s: float = 0.0
    checks_s: float = 0.0
    steps_rest_s: float = 0.0  # in steps, neither engine nor checks: Dagster's and ours

    @property
    def ours_s(self) -> float:
        """Everything in the window that is not engine work or a check."""
        return self.wall_s - self.engine_s - self.checks_s

    def as_dict(self) -> dict[str, float]:
        return {"wall_s": self.wall_s, **{f"{k}_s": v for k, v in self.timeline_s.items()},
                "engine_s": self.engine_s, "checks_s": self.checks_s, "steps_rest_s": self.steps_rest_s,
                "ours_s": self.ours_s}  # fmt: skip


def account(start: float, end: float, runs: list[RunPhases]) -> Account:
    """Charge each instant of [start, end] to one phase (see the module's docstring); split the steps' time."""
    cuts = sorted({start, end, *(t for r in runs for iv in r.intervals().values() for t in iv if start < t < end)})
    timeline = dict.fromkeys((IDLE, *PHASES), 0.0)
    for lo, hi in itertools.pairwise(cuts):
        mid = (lo + hi) / 2
        active = {p for r in runs for p, (a, b) in r.intervals().items() if a <= mid < b}
        timeline[next((p for p in PHASES if p in active), IDLE)] += hi - lo
    in_steps = timeline["steps"]
    busy = sum(r.asset_steps_s + r.check_steps_s for r in runs)  # steps of concurrent runs overlap: scale to it
    scale = in_steps / busy if busy > in_steps > 0 else 1.0
    engine = sum(r.engine_s for r in runs) * scale
    checks = sum(r.check_steps_s + r.in_step_checks_s for r in runs) * scale
    return Account(
        wall_s=end - start,
        timeline_s=timeline,
        engine_s=engine,
        checks_s=checks,
        steps_rest_s=max(in_steps - engine - checks, 0.0),
    )


def run_phases(instance, run_id: str, created: float, launched: float, ended: float) -> RunPhases:
    """A finished run's phases and its steps' accounts, from the instance's event log."""
    import dagster as dg

    from platform_assets.metadata import CHECK_SECONDS

    starts: dict[str, float] = {}
    steps: dict[str, float] = {}
    ends: list[float] = []
    done: dict[tuple[str, str], tuple[float, float]] = {}  # a range run records one result per day: count it once
    for entry in instance.all_logs(run_id):
        ev = entry.dagster_event
        if ev is None:
            continue
        if ev.event_type == dg.DagsterEventType.STEP_START:
            starts[ev.step_key] = entry.timestamp
        elif ev.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            if ev.step_key in starts:
                steps[ev.step_key] = entry.timestamp - starts[ev.step_key]
                ends.append(entry.timestamp)
        elif ev.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            md = {k: getattr(v, "value", v) for k, v in ev.event_specific_data.materialization.metadata.items()}
            done[(ev.step_key, ev.asset_key.to_user_string())] = (
                float(md.get("seconds", 0.0)),
                float(md.get(CHECK_SECONDS, 0.0)),
            )
    asset_steps = {step for step, _ in done}
    return RunPhases(
        created=created,
        launched=launched,
        first_step=min(starts.values(), default=None),
        last_step_end=max(ends, default=None),
        ended=ended,
        engine_s=sum(e for e, _ in done.values()),
        in_step_checks_s=sum(c for _, c in done.values()),
        asset_steps_s=sum(s for k, s in steps.items() if k in asset_steps),
        check_steps_s=sum(s for k, s in steps.items() if k not in asset_steps),
    )


def render(kind: str, accounts: list[dict[str, float]]) -> str:
    """One line per phase: the median over the rounds of ``kind``, seconds and share of tick → marts."""
    import statistics

    if not accounts:
        return ""
    keys = ["wall_s", f"{IDLE}_s", *(f"{p}_s" for p in PHASES), "engine_s", "checks_s", "steps_rest_s", "ours_s"]
    med = {k: statistics.median(a[k] for a in accounts) for k in keys}
    wall = med["wall_s"] or 1.0
    labels = {
        "wall_s": "tick → marts",
        f"{IDLE}_s": "no run active (daemon ticks, run queue)",
        "queued_s": "runs queued (created → launched)",
        "start-up_s": "run start-up (process, imports, definitions, resources)",
        "steps_s": "steps",
        "engine_s": "· engine work (DuckDB, Spark, ClickHouse as recorded)",
        "checks_s": "· checks",
        "steps_rest_s": "· the rest of the steps (Dagster's events and IO, our Python)",
        "run end_s": "run end (last step → run finished)",
        "ours_s": "not engine work nor checks (ours and Dagster's)",
    }
    order = ["wall_s", f"{IDLE}_s", "queued_s", "start-up_s", "steps_s", "engine_s", "checks_s", "steps_rest_s",
             "run end_s", "ours_s"]  # fmt: skip
    lines = [f"| where a {kind}'s time goes (median of {len(accounts)}) | s | share |", "|---|---|---|"]
    lines += [f"| {labels[k]} | {med[k]:.1f} | {med[k] / wall:.0%} |" for k in order]
    return "\n".join(lines)
