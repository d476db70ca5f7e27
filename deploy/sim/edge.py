"""vps_1's data and Dagster services in the simulated topology, started as the compose file starts them.

Same commands, configuration files and environment as ``deploy/vps_1/compose.yaml``; only paths differ, plus
what cannot exist here: the run launcher starts runs as processes (no Docker engine: ``DefaultRunLauncher`` in
place of ``DockerRunLauncher``), and ClickHouse is the in-process engine (``CLICKHOUSE_DSN=chdb://…``: no
ClickHouse server installs here). Compose service names resolve through the namespace's hosts file, as Docker's
DNS resolves them on the ``platform`` network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from deploy import edge_stack
from deploy.local.stack import let_postgres_reach
from deploy.sim.gateway import compose_service, interpolate
from deploy.sim.netns import Namespace, wait_for
from resources.topology import NODES, service

DEPLOY = Path(__file__).resolve().parents[1]
INSTANCE = DEPLOY / "vps_1" / "dagster" / "dagster.yaml"
WORKSPACE = DEPLOY / "vps_1" / "dagster" / "workspace.yaml"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
CONTAINER_HOME = "/opt/dagster/home"  # DAGSTER_HOME inside the image
# compose service names the node's processes dial; each is on the node itself
LOCAL_NAMES = ("dagster-postgres", "dagster-code-server", "dagster-webserver", "seaweedfs")


@dataclass
class Edge:
    ns: Namespace
    root: Path
    env: dict[str, str]  # what Dagster's processes get (the compose environment, paths swapped)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"


def _postgres(ns: Namespace, folder: Path, address: str, user: str, db: str, password: str) -> subprocess.Popen:
    """A PostgreSQL server as the image's entrypoint makes it: the user, its password (scram), the database."""
    data = folder / "data"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.chown(folder, "postgres", "postgres")
    let_postgres_reach(folder)
    if not (data / "PG_VERSION").exists():
        pwfile = folder / ".pw"
        pwfile.write_text(password + "\n")
        shutil.chown(pwfile, "postgres", "postgres")
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(data), "-U", user,
             f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--no-locale"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        pwfile.unlink()
        (data / "pg_hba.conf").write_text("local all all scram-sha-256\nhost all all 0.0.0.0/0 scram-sha-256\n")
    proc = ns.popen(
        "runuser", "-u", "postgres", "--", str(PG_BIN / "postgres"), "-D", str(data), "-k", str(folder),
        "-c", f"listen_addresses={address}", "-c", "port=5432", "-c", "shared_buffers=128MB",
        log=folder / "server.log",
    )  # fmt: skip
    wait_for(lambda: "ready to accept connections" in (folder / "server.log").read_text(), 60, f"PostgreSQL {db}")
    import psycopg  # over the server's unix socket: a file, not the network

    with psycopg.connect(host=str(folder), user=user, password=password, dbname="postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone():
            conn.execute(f'CREATE DATABASE "{db}"')
    return proc


def _dagster_home(root: Path) -> Path:
    """vps_1's dagster.yaml with only the run launcher swapped (no Docker engine here) and its workspace."""
    home = root / "dagster-home"
    home.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(INSTANCE.read_text())
    assert config["run_launcher"]["class"] == "DockerRunLauncher"
    config["run_launcher"] = {"module": "dagster", "class": "DefaultRunLauncher"}
    # one run at a time: a run process holds the in-process ClickHouse engine's folder, where vps_3's server
    # would serve every run at once
    config["run_coordinator"]["config"]["max_concurrent_runs"] = 1
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copy(WORKSPACE, home / "workspace.yaml")
    return home


def _command(name: str, home: Path) -> list[str]:
    return [part.replace(CONTAINER_HOME, str(home)) for part in compose_service(name)["command"]]


def dagster_env(home: Path, secrets: dict[str, str], spark_ca: Path, chdb: Path) -> dict[str, str]:
    env = {k: interpolate(str(v), secrets) for k, v in compose_service("dagster-daemon")["environment"].items()}
    env |= {
        "DAGSTER_HOME": str(home),
        "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(spark_ca),
        "CLICKHOUSE_DSN": f"chdb://{chdb}",  # in place of vps_3's cluster: no ClickHouse server here
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOME": str(home),
        "TMPDIR": str(home),
    }
    return env


def start(
    ns: Namespace, root: Path, secrets: dict[str, str], spark_ca: Path, settings: dict[str, str] | None = None
) -> Edge:
    """Both PostgreSQL servers, SeaweedFS, then Dagster's code server, webserver and daemon, each healthy.
    ``settings``: variables an operator may add to the Dagster services (a test's shorter retry budget)."""
    private = NODES[edge_stack.NODE].private_ip
    ns.hosts({name: "127.0.0.1" for name in LOCAL_NAMES})
    (root / "logs").mkdir(parents=True, exist_ok=True)
    edge = Edge(ns, root, {})
    oltp, dpg = edge_stack.OLTP, edge_stack.DAGSTER_PG
    edge.processes["oltp-postgres"] = _postgres(
        ns, root / "oltp-postgres", private, oltp["user"], oltp["db"], secrets["OLTP_PASSWORD"]
    )
    # the node-only one: loopback stands for the container network
    edge.processes["dagster-postgres"] = _postgres(
        ns, root / "dagster-postgres", "127.0.0.1", dpg["user"], dpg["db"], secrets["DAGSTER_PG_PASSWORD"]
    )
    weed_env = {k: interpolate(v, secrets) for k, v in compose_service("seaweedfs")["environment"].items()}
    (root / "seaweedfs").mkdir(exist_ok=True)
    edge.processes["seaweedfs"] = ns.popen(
        "sh", str(DEPLOY / "vps_1" / "seaweedfs" / "start.sh"), log=edge.log("seaweedfs"),
        env={**os.environ, **weed_env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
             "SEAWEEDFS_DATA": str(root / "seaweedfs"), "SEAWEEDFS_S3_CONFIG": str(root / "s3.json")},
    )  # fmt: skip
    s3 = service("object-store-s3")
    _wait_http(ns, f"http://{s3.host}:{s3.port}/healthz", "SeaweedFS")
    home = _dagster_home(root)
    edge.env = dagster_env(home, secrets, spark_ca, root / "clickhouse") | (settings or {})
    for name in ("dagster-code-server", "dagster-webserver", "dagster-daemon"):
        edge.processes[name] = ns.popen(*_command(name, home), log=edge.log(name), env=edge.env, cwd=home)
        if name != "dagster-daemon":
            _healthy(edge, name)
    return edge


def _healthy(edge: Edge, name: str) -> None:
    """The compose healthcheck's own command, run inside the node."""
    test = compose_service(name)["healthcheck"]["test"][1:]

    def ok() -> bool:
        if edge.processes[name].poll() is not None:
            raise RuntimeError(f"{name} exited: {edge.log(name).read_text()[-3000:]}")
        return edge.ns.run(*test, check=False, env=edge.env, timeout=60).returncode == 0

    wait_for(ok, 180, f"{name} healthy", interval=1)


def _wait_http(ns: Namespace, url: str, what: str) -> None:
    code = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)"
    wait_for(lambda: ns.run(sys.executable, "-c", code, url, check=False).returncode == 0, 60, what, interval=0.5)
