"""vps_1 as Docker runs it: every image built from its Dockerfile (upstream ones from the stand-ins in
``deploy/sim/standins``), the stack folder and ``.env`` written by Ansible itself, ``docker compose up --wait`` on a
Docker Engine inside vps_1's namespace, and a run launched through the proxy that the daemon's ``DockerRunLauncher``
starts in a container of its own.

The first session builds the images (several minutes); later ones reuse the layers in ``.data/docker``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import yaml

from deploy.sim import images
from deploy.sim.docker_engine import DockerEngine, installed
from deploy.sim.edge_containers import ContainerEdge, prepare
from deploy.sim.gateway import CA_ROOT
from deploy.sim.netns import Lab, Namespace, host_routes_overlapping, wait_for
from resources.topology import NODES, PRIVATE_NETWORK
from tests.conftest import REPO, TEST_DATA
from tests.deploy._helpers import UI_DOMAIN, ansible_node_stacks, operator_secrets, secret_values

pytestmark = pytest.mark.skipif(not installed(), reason="Docker Engine not installed (`make setup` installs it)")

SEED_DAY = "1998-08-03"
SELECTION = "raw/orders"  # vps_1 alone: the OLTP into the lake (no Spark, no ClickHouse)


@dataclass
class Vps1:
    ns: Namespace
    engine: DockerEngine
    edge: ContainerEdge
    dotenv: dict[str, str]
    password: str  # the UI login's
    first_up: float  # seconds

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """The control plane from vps_1's namespace through the proxy (0.0.0.0:443), trusting Caddy's local CA."""
        ca = self.edge.root / "mnt/edge-state/proxy-data" / CA_ROOT
        env = {"PATH": os.environ["PATH"], "HOME": str(self.edge.root), "DAGSTER_URL": f"https://{UI_DOMAIN}",
               "DAGSTER_USER": self.dotenv["DAGSTER_UI_USER"], "DAGSTER_PASSWORD": self.password,
               "REQUESTS_CA_BUNDLE": str(ca)}  # fmt: skip
        return self.ns.run(sys.executable, "-m", "control_plane.cli", *args, env=env, cwd=REPO, timeout=timeout,
                           check=False)  # fmt: skip


@pytest.fixture(scope="module")
def vps_1() -> Iterator[Vps1]:
    root = TEST_DATA / "edge-containers"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    tag = images.dagster_image_tag()  # what Ansible writes into .env as DAGSTER_IMAGE
    images.build_node("vps_1", tag)
    secrets_file, password = operator_secrets(root)
    stack = ansible_node_stacks(root, secrets_file, ["vps_1"])["vps_1"]
    dotenv = secret_values(stack / ".env")
    assert dotenv["DAGSTER_IMAGE"] == tag
    spark_ca = root / "spark-connect-ca.pem"  # no vps_2 here: a CA file the code mounts but never dials
    shutil.copyfile(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"), spark_ca)
    with Lab() as lab:
        ns = lab.namespace("vps_1")
        lab.switch("vpc").attach(ns, f"{NODES['vps_1'].private_ip}/{PRIVATE_NETWORK.prefixlen}")
        ns.hosts({UI_DOMAIN: "127.0.0.1"})
        with DockerEngine(f"{lab.prefix}-vps_1", images.docker_root() / "vps_1", ns) as engine:
            edge = prepare(engine, stack, root / "disks", spark_ca)
            started = time.monotonic()
            edge.up(timeout=600)
            yield Vps1(ns, engine, edge, dotenv, password, time.monotonic() - started)
    assert host_routes_overlapping(str(PRIVATE_NETWORK)) == []


def test_every_service_runs_healthy_from_its_compose_image(vps_1: Vps1):
    print(f"\nvps_1's stack up and healthy in {vps_1.first_up:.0f} s")
    compose = yaml.safe_load((vps_1.edge.stack / "compose.yaml").read_text())["services"]
    running = vps_1.edge.containers()
    assert set(running) == set(compose)
    for name, info in running.items():
        image = compose[name]["image"].replace("${DAGSTER_IMAGE:?set by Ansible}", vps_1.dotenv["DAGSTER_IMAGE"])
        assert info["Config"]["Image"] == image, name
        assert info["State"]["Health"]["Status"] == "healthy", (name, info["State"]["Health"]["Log"][-1:])
        assert info["HostConfig"]["RestartPolicy"]["Name"] == compose[name]["restart"], name


def test_the_dagster_image_runs_as_its_own_user_and_postgres_as_postgres(vps_1: Vps1):
    def uid(service: str, *process: str) -> str:
        return vps_1.edge.compose("exec", "-T", service, *process, "id", "-un", timeout=60).stdout.strip()

    assert uid("dagster-code-server") == "dagster"
    # the server (the container's first process) runs as the image's postgres user: the entrypoint dropped root
    script = "grep ^Uid: /proc/1/status | cut -f2; id -u postgres"
    server, postgres = vps_1.edge.compose("exec", "-T", "oltp-postgres", "sh", "-c", script).stdout.split()
    assert server == postgres != "0"


def test_up_again_recreates_nothing(vps_1: Vps1):
    before = {n: (c["Id"], c["State"]["StartedAt"]) for n, c in vps_1.edge.containers().items()}
    vps_1.edge.up(timeout=600)
    after = {n: (c["Id"], c["State"]["StartedAt"]) for n, c in vps_1.edge.containers().items()}
    assert after == before


@pytest.fixture(scope="module")
def run(vps_1: Vps1) -> dict:
    """The OLTP seeded from the Dagster image (a one-off container of the code server's service), then a run of
    ``raw/orders`` launched through the proxy; the daemon starts it with ``DockerRunLauncher``."""
    seed = vps_1.edge.compose("run", "--rm", "--no-deps", "-T", "dagster-code-server",
                              "python", "-m", "platform_assets.cli", "seed", "--sf", "0.01", timeout=900)  # fmt: skip
    assert "seeded TPC-H" in seed.stdout + seed.stderr, seed.stderr[-3000:]
    since = str(int(time.time()) - 1)
    out = vps_1.cli("materialize", SELECTION, "--from", SEED_DAY, "--to", SEED_DAY)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    until = str(int(time.time()) + 1)
    events = vps_1.engine.docker("events", "--since", since, "--until", until, "--format", "{{json .}}",
                                 "--filter", "type=container").stdout  # fmt: skip
    return {"result": json.loads(out.stdout), "events": [json.loads(e) for e in events.splitlines()]}


def test_a_run_launched_through_the_proxy_runs_in_a_container_of_its_own(vps_1: Vps1, run: dict):
    assert run["result"]["status"] == "SUCCESS", run["result"]
    run_id = run["result"]["run_id"]
    created = [
        e
        for e in run["events"]
        if e["Action"] == "create"
        and e["Actor"]["Attributes"].get("image") == vps_1.dotenv["DAGSTER_IMAGE"]
        and "com.docker.compose.service" not in e["Actor"]["Attributes"]
    ]
    assert len(created) == 1, run["events"]
    attributes = created[0]["Actor"]["Attributes"]
    assert attributes["name"] == f"dagster-run-{run_id}" or run_id in json.dumps(attributes), attributes
    # auto_remove: the run's container goes once its process has ended
    gone = lambda: vps_1.engine.docker("ps", "-aq", "--filter", f"id={created[0]['id']}").stdout.strip() == ""  # noqa: E731
    wait_for(gone, 120, "the run's container removed", interval=1)
