"""A real ``dagster-webserver`` and ``dagster-daemon`` on workspace.yaml, for the browser test, and the GraphQL the
test uses around the browser (what exists, stopping automation, run status).

Both processes run in their own process group with their own instance (``DAGSTER_HOME``), started outside the
repo (the Dagster CLI would load a developer's ``.env`` from its cwd); their code servers and run workers are
children in the same group, so stopping the group stops everything they started.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from control_plane.client import GraphQLClient
from deploy.local.daemon import asset_graph_loaded
from resources.settings import UNQUEUED_INSTANCE_YAML

BIN = Path(sys.executable).parent
# The webserver launches runs itself (DefaultRunCoordinator), so a run clicked in the UI needs no daemon; the
# daemon only evaluates sensors and schedules here.
INSTANCE_YAML = UNQUEUED_INSTANCE_YAML

INSTIGATORS = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    name location { name }
    sensors { name sensorState { id status ticks(limit: 1) { status skipReason } } }
    schedules { name scheduleState { id status } }
} } } }
"""
STOP_SENSOR = """
mutation($id: String!) { stopSensor(id: $id) {
  __typename ... on StopSensorMutationResult { instigationState { status } } ... on PythonError { message }
} }
"""
STOP_SCHEDULE = """
mutation($id: String!) { stopRunningSchedule(id: $id) {
  __typename ... on ScheduleStateResult { scheduleState { status } } ... on PythonError { message }
} }
"""
RUNS = """
{ runsOrError(limit: 50) { ... on Runs { results {
    runId status assetSelection { path } startTime endTime
} } } }
"""
RUN_FAILURE = """
query($id: ID!) { logsForRun(runId: $id, limit: 500) { ... on EventConnection { events {
  __typename ... on MessageEvent { message stepKey }
  ... on ExecutionStepFailureEvent { error { message } }
  ... on RunFailureEvent { error { message } }
} } } }
"""
DAEMONS = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"


def free_port(base: int) -> int:
    """A free loopback port in ``base``..``base + 99``, from a random start (parallel sessions, same machine)."""
    offset = random.randrange(100)
    for i in range(100):
        port = base + (offset + i) % 100
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError(f"no free port in {base}-{base + 99}")


def copy_engine_folder(src: Path, dst: Path, attempts: int = 3) -> None:
    """A copy of a chDB engine folder (relative symlinks kept, scratch parts skipped) for another process.

    chDB opens one engine folder per process and the test process holds the lineage's; the webserver's runs get
    this copy, i.e. the same warehouse tables and marts.
    """
    ignore = shutil.ignore_patterns("tmp_*", "tmp", "status", "*.lock")
    for attempt in range(attempts):
        shutil.rmtree(dst, ignore_errors=True)
        try:
            shutil.copytree(src, dst, symlinks=True, ignore=ignore)
            return
        except (shutil.Error, FileNotFoundError):  # a part renamed by a background merge while copying
            if attempt == attempts - 1:
                raise
            time.sleep(1)


def _stop_group(proc: subprocess.Popen, grace_s: float = 20) -> None:
    """SIGTERM to the process group, then SIGKILL to whatever is left of it (a hung leader, its code servers and
    run workers)."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@contextmanager
def process_group(cmd: list[str], home: Path, env: dict[str, str], log_name: str) -> Iterator[subprocess.Popen]:
    log_path = home / log_name
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            _stop_group(proc)


def log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"({path} not written)"


@dataclass
class DagsterUI:
    url: str
    home: Path
    client: GraphQLClient

    def q(self, document: str, **variables) -> dict:
        return self.client.query(document, variables)

    # --- automation -------------------------------------------------------------------------------------------
    def instigators(self) -> tuple[str, dict[str, dict], dict[str, dict]]:
        """(location name, sensors by name, schedules by name) of the one repository; each with its state."""
        (repo,) = self.q(INSTIGATORS)["repositoriesOrError"]["nodes"]
        sensors = {s["name"]: s["sensorState"] for s in repo["sensors"]}
        schedules = {s["name"]: s["scheduleState"] for s in repo["schedules"]}
        return repo["location"]["name"], sensors, schedules

    def stop_all_automation(self) -> list[str]:
        """Stop every running sensor and schedule; returns what was stopped."""
        _, sensors, schedules = self.instigators()
        stopped = []
        for kind, items, mutation, field in (
            ("sensor", sensors, STOP_SENSOR, "stopSensor"),
            ("schedule", schedules, STOP_SCHEDULE, "stopRunningSchedule"),
        ):
            for name, state in items.items():
                if state["status"] != "RUNNING":
                    continue
                result = self.q(mutation, id=state["id"])[field]
                assert "message" not in result, f"stopping {kind} {name}: {result}"
                stopped.append(name)
        _, sensors, schedules = self.instigators()
        running = [n for n, s in {**sensors, **schedules}.items() if s["status"] == "RUNNING"]
        assert not running, f"still running after stopSensor/stopRunningSchedule: {running}"
        return stopped

    def daemons_healthy(self, types: set[str]) -> bool:
        statuses = self.q(DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
        return types <= {d["daemonType"] for d in statuses if d["healthy"]}

    # --- runs -------------------------------------------------------------------------------------------------
    def runs(self) -> list[dict]:
        runs = self.q(RUNS)["runsOrError"]["results"]
        for r in runs:
            r["assets"] = sorted("/".join(a["path"]) for a in r["assetSelection"] or [])
        return runs

    def failure(self, run_id: str) -> str:
        events = self.q(RUN_FAILURE, id=run_id)["logsForRun"].get("events", [])
        errors = [e["error"]["message"] for e in events if e.get("error")]
        return " | ".join(errors)[-2000:] or "(no failure event)"


@contextmanager
def dagster_ui(
    home: Path, env: dict[str, str], workspace: Path, port: int, startup_s: float = 180
) -> Iterator[tuple[DagsterUI, Callable[[], subprocess.Popen]]]:
    """The webserver, serving the asset graph; yields it and a ``start_daemon()`` to call once automation is
    stopped. On exit the daemon's process group is stopped, then the webserver's."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    env = {**env, "DAGSTER_HOME": str(home)}
    for name in ("DAGSTER_URL", "DAGSTER_USER", "DAGSTER_PASSWORD"):
        env.pop(name, None)
    url = f"http://127.0.0.1:{port}"
    ui = DagsterUI(url, home, GraphQLClient(url, timeout=60))
    web_cmd = [str(BIN / "dagster-webserver"), "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)]
    daemon_cmd = [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)]
    with ExitStack() as processes:
        web = processes.enter_context(process_group(web_cmd, home, env, "webserver.log"))
        deadline = time.monotonic() + startup_s
        ours = f"Serving dagster-webserver on {url} in process {web.pid}"  # not another session's server
        while ours not in log_tail(home / "webserver.log", 10**6) or not asset_graph_loaded(url):
            if web.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"dagster-webserver did not serve the asset graph within {startup_s:.0f} s: "
                    f"{log_tail(home / 'webserver.log')}"
                )
            time.sleep(1)

        def start_daemon() -> subprocess.Popen:
            return processes.enter_context(process_group(daemon_cmd, home, env, "daemon.log"))

        yield ui, start_daemon
