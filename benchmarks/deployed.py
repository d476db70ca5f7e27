"""The deployed path, timed where users feel it: OLTP commit → raw, warehouse and marts through a real
``dagster-daemon`` and webserver (``deploy.local.daemon``), sensors and automation on their own ticks, every run
launched as its own process, Spark Connect warm (the local stack's server).

The deployment gets an instance folder, a bucket and a ClickHouse folder of its own, emptied first, so its first
sensor tick (no cursor) is a full load of every change day the OLTP holds. Then ``days`` simulated days at
``change_rate`` are committed one after the other (each waits until the runs it set off are done), and
``wall_clock`` rounds of the same activity stamped with the wall clock (today's partition), as an application
writes. Per round: rows changed, the wait for the change sensor's tick, commit → raw / warehouse (the change run's
last materialization of that layer) / marts (the last mart materialized after it), tick → marts, and per run
the time from its launch to its first step.
"""

from __future__ import annotations

import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks import day_account
from benchmarks.common import bench_dir, oltp
from benchmarks.ours import SIMULATION_SEED, _changed_rows

BUCKET = "bench-deployed"


@dataclass
class Round:
    kind: str  # "full load", "simulated day", "wall clock"
    day: str
    rows_changed: int
    commit_to_tick_s: float  # the change sensor's wait (its interval's phase)
    commit_to_raw_s: float
    commit_to_warehouse_s: float
    commit_to_marts_s: float
    tick_to_marts_s: float
    runs: list[dict[str, Any]]  # per run: job, startup_s (launch → first step), run_s (launch → end)
    # tick → marts charged to phases, engine work and ours (benchmarks.day_account)
    account: dict[str, float] = field(default_factory=dict)

    @property
    def startups(self) -> list[float]:
        return [r["startup_s"] for r in self.runs if r["startup_s"] is not None]


def _empty_lake() -> None:
    from resources.environments import object_store_resource
    from resources.settings import platform_env

    store = object_store_resource(platform_env()).model_copy(update={"bucket": BUCKET}).process_config_and_initialize()
    store.ensure_bucket()
    store.delete_keys([k for k, _ in store.list_keys("")])


def _round(deployment, kind: str, day: str, committed: float, rows: int, timeout: float) -> Round:
    from benchmarks.day_account import account, run_phases
    from deploy.local.daemon import materialized_at, run_times, step_seconds

    settled = deployment.settle(committed, timeout=timeout)
    failed = [r for r in settled.all if r.dagster_run.status.value != "SUCCESS"]
    if failed:
        details = "\n".join(f"{r.dagster_run.run_id}: {deployment.failures(r.dagster_run.run_id)}" for r in failed)
        raise RuntimeError(f"{kind} {day}: runs failed\n{details}")
    layers = materialized_at(deployment.instance, settled.changes)
    marts = materialized_at(deployment.instance, settled.all)["marts"]
    times = [run_times(deployment.instance, r) for r in settled.all]
    tick = min(t.created for t in times[: len(settled.changes)])
    return Round(
        kind=kind,
        day=day,
        rows_changed=rows,
        commit_to_tick_s=tick - committed,
        commit_to_raw_s=layers["raw"] - committed,
        commit_to_warehouse_s=layers["warehouse"] - committed,
        commit_to_marts_s=marts - committed,
        tick_to_marts_s=marts - tick,
        runs=[_run_entry(t, step_seconds(deployment.instance, t.run_id)) for t in times],
        account=account(
            tick, marts, [run_phases(deployment.instance, t.run_id, t.created, t.launched, t.ended) for t in times]
        ).as_dict(),
    )


def _run_entry(t, steps: dict[str, float]) -> dict[str, Any]:
    return {"job": t.job, "run_id": t.run_id, "queued_s": t.launched - t.created, "startup_s": t.startup_s,
            "run_s": t.ended - t.launched, "steps_s": steps}  # fmt: skip


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] deployed: {msg}", flush=True)


DAGSTER_DB = "dagster_bench"  # with ``--dagster-storage postgres`` (the default): on the local PostgreSQL, made afresh


def dagster_database(pg) -> dict[str, Any]:
    """A fresh, empty database for the instance on the OLTP's PostgreSQL server (vps_1 gives Dagster a server of
    its own; the same engine and driver), as dagster-postgres's ``postgres_db`` settings."""
    from resources.environments import OLTP_ROLES

    with pg.connect(autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DAGSTER_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DAGSTER_DB}")
    return {"hostname": pg.host, "port": pg.port, "username": pg.user, "db_name": DAGSTER_DB,
            "password": {"env": OLTP_ROLES["admin"][1]}, "scheme": "postgresql+psycopg2"}  # fmt: skip


def measure(
    sf: float, days: int = 5, wall_clock: int = 2, change_rate: float = 0.01, dagster_storage: str = "postgres"
) -> dict[str, Any]:
    """Start the deployment, let it load everything, then commit the rounds; the summary and every round.

    ``dagster_storage``: ``postgres`` (vps_1's storage classes on a fresh database of the local server, so Dagster's
    share is production's) or ``sqlite`` (the local instance's files, as ``make dev``)."""
    from deploy.local.daemon import LocalDeployment
    from platform_assets.automation.oltp_changes import INTERVAL_SECONDS, current_cursor, scan
    from platform_assets.oltp.simulate import simulate, simulate_now

    home = bench_dir() / f"deployed-sf{sf:g}"
    clickhouse = bench_dir() / f"deployed-sf{sf:g}-clickhouse"
    for path in (home, clickhouse):
        shutil.rmtree(path, ignore_errors=True)
    _empty_lake()
    env = {"CLICKHOUSE_DSN": f"chdb://{clickhouse}", "S3_BUCKET": BUCKET}
    pg = oltp()
    rounds: list[Round] = []
    timeout = 600 + 1200 * sf  # generous: a stuck deployment fails the bench, it does not hang it
    everything = sum(t["rows"] + t["deletes"] for t in _changed_rows(scan(pg, None)).values())
    started = time.time()  # the full load's "commit": the deployment starts on an OLTP it has never read
    postgres_db = dagster_database(pg) if dagster_storage == "postgres" else None
    with LocalDeployment(home, env, postgres_db=postgres_db) as deployment:
        _log(f"webserver and daemon serving after {time.time() - started:.1f} s; waiting for the full load")
        full = _round(deployment, "full load", "every change day", started, everything, timeout)
        rounds.append(full)
        _log(f"full load: tick → marts {full.tick_to_marts_s:.1f} s")
        plan = [("simulated day", False)] * days + [("wall clock", True)] * wall_clock
        for kind, on_wall_clock in plan:
            before = current_cursor(pg)
            if on_wall_clock:
                report = simulate_now(pg, SIMULATION_SEED, change_rate)
            else:
                report = simulate(pg, 1, SIMULATION_SEED, change_rate).days[0]
            committed = time.time()
            rows = sum(t["rows"] + t["deletes"] for t in _changed_rows(scan(pg, before)).values())
            r = _round(deployment, kind, str(report.day), committed, rows, timeout)
            rounds.append(r)
            _log(f"{kind} {r.day} ({rows:,} rows): commit → tick {r.commit_to_tick_s:.1f} s, → raw "
                 f"{r.commit_to_raw_s:.1f} s, → warehouse {r.commit_to_warehouse_s:.1f} s, → marts "
                 f"{r.commit_to_marts_s:.1f} s (tick → marts {r.tick_to_marts_s:.1f} s); run start-up "
                 f"{', '.join(f'{s:.1f}' for s in r.startups)} s")  # fmt: skip
    shutil.rmtree(clickhouse, ignore_errors=True)
    _empty_lake()
    return {
        "scale_factor": sf,
        "change_rate": change_rate,
        "sensor_interval_s": INTERVAL_SECONDS,
        "dagster_storage": dagster_storage,
        "summary": summarize(rounds),
        "rounds": [asdict(r) for r in rounds],
        "wall_s": time.time() - started,
    }


LATENCIES = ("commit_to_tick_s", "commit_to_raw_s", "commit_to_warehouse_s", "commit_to_marts_s", "tick_to_marts_s")


def summarize(rounds: list[Round]) -> dict[str, Any]:
    """p50 and max of each latency per kind of round; run start-up over every run."""
    out: dict[str, Any] = {}
    for kind in dict.fromkeys(r.kind for r in rounds):
        mine = [r for r in rounds if r.kind == kind]
        out[kind] = {
            "n": len(mine),
            "rows_changed_p50": statistics.median(r.rows_changed for r in mine),
            **{f"{k}_p50": statistics.median(getattr(r, k) for r in mine) for k in LATENCIES},
            **{f"{k}_max": max(getattr(r, k) for r in mine) for k in LATENCIES},
        }
    startups = [s for r in rounds for s in r.startups]
    out["run_startup_s"] = {"n": len(startups), "p50": statistics.median(startups), "max": max(startups)}
    return out


def render(result: dict[str, Any], in_process: dict[str, Any] | None = None) -> str:
    """The deployed-path table; the in-process figures of the same bench beside it, labelled as such."""
    s = result["summary"]
    head = ("| deployed path, SF {sf:g} ({rate:g} % days, sensor every {iv} s, Dagster on {db}) | n | rows changed | "
            "commit → tick | → raw | → warehouse | → marts | tick → marts |").format(
        sf=result["scale_factor"], rate=result["change_rate"] * 100, iv=result["sensor_interval_s"],
        db={"postgres": "PostgreSQL"}.get(result.get("dagster_storage", ""), "SQLite"))  # fmt: skip
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for kind, v in s.items():
        if kind == "run_startup_s":
            continue
        cells = [f"{v[f'{k}_p50']:.1f}" + (f" / {v[f'{k}_max']:.1f}" if v["n"] > 1 else "") for k in LATENCIES]
        label = kind if v["n"] == 1 else f"{kind} (p50 / max)"
        lines.append(f"| {label} | {v['n']} | {v['rows_changed_p50']:,.0f} | " + " | ".join(cells) + " |")
    st = s["run_startup_s"]
    lines.append(f"\nrun start-up (launch → first step), {st['n']} runs: p50 {st['p50']:.1f} s, max {st['max']:.1f} s")
    for kind in ("simulated day", "wall clock", "full load"):
        accounts = [r["account"] for r in result.get("rounds", []) if r["kind"] == kind and r.get("account")]
        if accounts:
            lines.append("\n" + day_account.render(kind, accounts))
    if in_process:
        day = f", a {result['change_rate'] * 100:g} % day {in_process['day_s']:.1f} s" if in_process["day_s"] else ""
        lines.append(f"in-process (one warm process, no daemon: not what users get): the full load's run "
                     f"{in_process['full_load_s']:.1f} s{day}")  # fmt: skip
    return "\n".join(lines)
