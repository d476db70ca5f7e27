"""Dagster as vps_1 runs it, on this machine: ``dagster-webserver`` and ``dagster-daemon`` on an instance folder of
their own, sensors on their own ticks, every run launched as its own process.

The daemon test and the deployed-path benchmark drive it. :meth:`LocalDeployment.settle` waits until what a batch
of OLTP commits set off is done: the change sensor's runs, the automation's runs after them, and one automation
tick after the last run that asked for nothing more (so no run of that batch is still to come).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import dagster as dg
import requests
import yaml

from platform_assets import CODE_LOCATION
from resources.dagster_metadata import instance_storage
from resources.settings import LOCAL_INSTANCE_YAML, REPO_ROOT

BIN = Path(sys.executable).parent
LOCATION = CODE_LOCATION  # as workspace.yaml names it
PACKAGES = ("platform_assets", "resources", "deploy")  # what the code location and its run processes import
CHANGE_SENSOR = "oltp_changes"
AUTOMATION_SENSOR = "automation"
DONE = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
_TICKS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    ... on Sensor { sensorState { ticks(limit: 5) { timestamp status runIds } } }
  }
}"""


class DeploymentError(RuntimeError):
    """The deployment did not start, or its runs did not settle in time (the message carries the daemon's log)."""


def free_port(low: int = 23000) -> int:
    """A free loopback port from a random start in [low, low + 1000): parallel clones must not pick the same."""
    import random

    start = random.randrange(low, low + 900)
    for port in range(start, start + 100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError(f"no free port in {start}-{start + 99}")


def asset_graph_loaded(url: str) -> bool:
    """The webserver answers GraphQL with the code location's assets (the code server loaded them)."""
    try:
        resp = requests.post(f"{url}/graphql", json={"query": "{ assetNodes { id } }"}, timeout=5)
        return resp.ok and bool(resp.json().get("data", {}).get("assetNodes"))
    except (requests.RequestException, ValueError):
        return False


def stop_group(proc: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM a process started with ``start_new_session`` and its whole group, SIGKILL after ``grace`` s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclass
class Settled:
    """What one batch of commits set off: the change sensor's runs and the automation's runs that followed."""

    changes: list = field(default_factory=list)
    automated: list = field(default_factory=list)

    @property
    def all(self) -> list:
        return self.changes + self.automated


def compile_bytecode() -> None:
    """Write our packages' bytecode before Dagster's processes start, as the image's build does: every run is a new
    process importing them, and with ``PYTHONDONTWRITEBYTECODE`` (set on this machine and often in CI) nothing else
    writes it, so each run compiled them again (0.1-0.2 s of a run's start-up here). A stale file is recompiled."""
    import compileall

    for package in PACKAGES:
        compileall.compile_dir(REPO_ROOT / package, quiet=1)


def instance_yaml(postgres_db: dict[str, Any] | None = None) -> str:
    """The local instance's ``dagster.yaml``; with ``postgres_db`` (dagster-postgres's ``postgres_db`` settings) its
    runs, events and schedules in PostgreSQL through vps_1's storage classes, instead of SQLite files under the home."""
    if postgres_db is None:
        return LOCAL_INSTANCE_YAML
    return LOCAL_INSTANCE_YAML + yaml.safe_dump({"storage": instance_storage(postgres_db)})


class LocalDeployment:
    """Webserver and daemon on ``home`` (a fresh ``dagster.yaml``: runs queued, one at a time, as ``make dev``).

    ``env`` is added to this process's environment for both (and so for the code server and every run process);
    ``postgres_db`` puts the instance's storage in PostgreSQL (:func:`instance_yaml`).
    """

    def __init__(
        self,
        home: Path,
        env: dict[str, str] | None = None,
        port: int | None = None,
        postgres_db: dict[str, Any] | None = None,
    ):
        self.home = home
        self.postgres_db = postgres_db
        self.env = {**os.environ, **(env or {}), "DAGSTER_HOME": str(home)}
        self.url = f"http://127.0.0.1:{port or free_port()}"
        self._procs: list[subprocess.Popen] = []
        self._logs: list[IO[bytes]] = []
        self.instance: dg.DagsterInstance | None = None

    # --- lifecycle -----------------------------------------------------------------------------------------
    def __enter__(self) -> LocalDeployment:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 180) -> None:
        from dagster._core.instance.ref import InstanceRef

        self.home.mkdir(parents=True, exist_ok=True)
        compile_bytecode()
        (self.home / "dagster.yaml").write_text(instance_yaml(self.postgres_db))
        # the storages created here, once: a webserver and a daemon creating them at the same moment race
        # in alembic ("Can't locate revision") and the daemon exits
        self.instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(self.home)))
        port = self.url.rsplit(":", 1)[1]
        workspace = str(REPO_ROOT / "workspace.yaml")
        for name, cmd in (
            ("webserver", [str(BIN / "dagster-webserver"), "-w", workspace, "-h", "127.0.0.1", "-p", port]),
            ("daemon", [str(BIN / "dagster-daemon"), "run", "-w", workspace]),
        ):
            log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 — closed in stop()
            self._logs.append(log)
            self._procs.append(subprocess.Popen(cmd, cwd=self.home, env=self.env, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True))  # fmt: skip
        deadline = time.monotonic() + timeout
        ours = f"Serving dagster-webserver on {self.url} in process {self._procs[0].pid}"  # not another's server
        while ours not in self.log_tail("webserver", 10**6) or not asset_graph_loaded(self.url):
            if any(p.poll() is not None for p in self._procs) or time.monotonic() > deadline:
                raise DeploymentError(f"webserver or daemon did not start:\n{self.log_tail('webserver')}")
            time.sleep(1)

    def stop(self) -> None:
        """Stop the webserver's and the daemon's process groups (with what they launched)."""
        for proc in self._procs:
            stop_group(proc)
        for log in self._logs:
            log.close()
        self._procs, self._logs = [], []
        if self.instance is not None:
            self.instance.dispose()
            self.instance = None

    def log_tail(self, name: str = "daemon", chars: int = 3000) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    # --- what the deployment did -----------------------------------------------------------------------------
    def runs(self) -> list:
        assert self.instance is not None, "not started"
        return self.instance.get_run_records()

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        resp = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
        resp.raise_for_status()
        return resp.json()["data"]

    def sensor_ticks(self, sensor: str) -> list[dict[str, Any]]:
        """The sensor's latest ticks, newest first: ``timestamp``, ``status`` (SUCCESS, SKIPPED...), ``runIds``."""
        selector = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", "sensorName": sensor}
        state = (self.graphql(_TICKS, {"selector": selector})["sensorOrError"] or {}).get("sensorState") or {}
        return state.get("ticks") or []

    def settle(self, after: float, timeout: float, need_marts: bool = True) -> Settled:
        """The change runs created after ``after`` (epoch seconds) and the automation runs that followed, once every
        run has finished and an automation tick after the last one requested nothing (with ``need_marts``, not
        before one of those runs refreshed a mart)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            records = self.runs()
            mine = [r for r in records if r.create_timestamp.timestamp() >= after]
            changes = [r for r in mine if r.dagster_run.tags.get("dagster/sensor_name") == CHANGE_SENSOR]
            if changes and all(r.dagster_run.status in DONE for r in records):
                first = min(c.create_timestamp.timestamp() for c in changes)
                automated = [
                    r for r in mine
                    if r.dagster_run.tags.get("dagster/sensor_name") == AUTOMATION_SENSOR
                    and r.create_timestamp.timestamp() >= first
                ]  # fmt: skip
                last_end = max(r.end_time or 0 for r in mine)
                idle = any(t["timestamp"] > last_end and not t["runIds"] for t in self.sensor_ticks(AUTOMATION_SENSOR))
                if idle and (not need_marts or any(map(refreshed_marts, changes + automated))):
                    return Settled(sorted(changes, key=_created), sorted(automated, key=_created))
            time.sleep(1)
        runs = [(r.dagster_run.job_name, r.dagster_run.status.value, r.dagster_run.tags.get("dagster/sensor_name"))
                for r in self.runs()]  # fmt: skip
        raise DeploymentError(f"runs did not settle in {timeout:.0f} s: {runs}\n{self.log_tail()}")

    def failures(self, run_id: str) -> list[str]:
        """Each failed step's error (or the run failure's message) of a run: what to print when a run failed."""
        assert self.instance is not None
        out = []
        for event in self.instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
            error = event.dagster_event.step_failure_data.error
            out.append(f"{event.step_key}: {error.to_string() if error else event.message}")
        out += [e.message for e in self.instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)]
        return out


def _created(record) -> float:
    return record.create_timestamp.timestamp()


def refreshed_marts(record) -> bool:
    return any(k.path[0] == "marts" for k in record.dagster_run.asset_selection or [])


@dataclass
class RunTimes:
    """One run as the instance recorded it (epoch seconds): created by a sensor, launched by the daemon (its
    process started), started by its own process (code loaded), first step, end."""

    run_id: str
    job: str
    created: float
    launched: float
    started: float
    first_step: float | None
    ended: float

    @property
    def startup_s(self) -> float | None:
        """Launch → first step: the run process's start, imports, definitions and resources."""
        return None if self.first_step is None else self.first_step - self.launched


def run_times(instance: dg.DagsterInstance, record) -> RunTimes:
    run_id = record.dagster_run.run_id
    types = (dg.DagsterEventType.RUN_STARTING, dg.DagsterEventType.RUN_START, dg.DagsterEventType.STEP_START)
    stamps: dict[dg.DagsterEventType, list[float]] = {t: [] for t in types}
    for event in instance.all_logs(run_id, of_type=set(types)):
        stamps[event.dagster_event.event_type].append(event.timestamp)
    started = min(stamps[dg.DagsterEventType.RUN_START], default=record.start_time or 0.0)
    return RunTimes(
        run_id=run_id,
        job=record.dagster_run.job_name,
        created=record.create_timestamp.timestamp(),
        launched=min(stamps[dg.DagsterEventType.RUN_STARTING], default=started),
        started=started,
        first_step=min(stamps[dg.DagsterEventType.STEP_START], default=None),
        ended=record.end_time or 0.0,
    )


def stage_of(key: dg.AssetKey) -> str:
    """raw, curated, warehouse (the tables), models (the warehouse's conformed models) or marts."""
    from platform_assets.catalog import MODELS

    return "models" if key.path[0] == "warehouse" and key.path[-1] in {m.name for m in MODELS} else key.path[0]


def materialized_at(instance: dg.DagsterInstance, records: list) -> dict[str, float]:
    """Per stage (:func:`stage_of`), when the last asset of that stage was materialized in ``records``."""
    out: dict[str, float] = {}
    for record in records:
        for event in instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
            stage = stage_of(event.dagster_event.asset_key)
            out[stage] = max(out.get(stage, 0.0), event.timestamp)
    return out


def step_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Each step's start → end (success or failure) in a run, by step key."""
    starts: dict[str, float] = {}
    out: dict[str, float] = {}
    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    for event in instance.all_logs(run_id, of_type=kinds):
        if event.dagster_event.event_type == dg.DagsterEventType.STEP_START:
            starts[event.step_key] = event.timestamp
        elif event.step_key in starts:
            out[event.step_key] = event.timestamp - starts[event.step_key]
    return out
