"""The Docker Compose stacks of vps_1 and vps_3, parsed: bindings, pins, healthchecks, volumes, secrets."""

from __future__ import annotations

import re

import pytest

from deploy import edge_stack, warehouse_stack
from deploy.storage import volumes_on
from resources.topology import NODES, PRIVATE_NETWORK, SERVICES, exposed_services
from tests.deploy._helpers import COMPOSE, DEPLOY, compose, published

HOST_LEVEL = {"ssh-vps1", "ssh-vps2", "ssh-vps3", "k3s-api"}  # not containers: sshd and k3s on the host
PINNED = re.compile(r"^[a-z0-9./_-]+:(?!latest$)[A-Za-z0-9._-]*\d[A-Za-z0-9._-]*$")
NODES_WITH_COMPOSE = ["vps_1", "vps_3"]


@pytest.mark.parametrize("node", NODES_WITH_COMPOSE)
def test_published_ports_are_exactly_the_topology(node):
    expected = {
        ("0.0.0.0" if s.public else NODES[node].private_ip, s.port, s.protocol)
        for s in exposed_services(node)
        if s.name not in HOST_LEVEL
    }
    assert published(node) == expected


def test_container_only_services_are_never_published():
    """An anonymous upload to SeaweedFS's filer succeeded from the VPC (201), and the UI answered without Caddy's
    login: the node-only services must not be published on any address."""
    node_only = {(s.node, s.port) for s in SERVICES.values() if s.reach == "node"}
    assert {("vps_1", 3000), ("vps_1", 4000), ("vps_1", 8888), ("vps_1", 9333), ("vps_1", 8080)} <= node_only
    for node in NODES_WITH_COMPOSE:
        assert not {(node, port) for _, port, _ in published(node)} & node_only, node
    with pytest.raises(ValueError, match="never published"):
        edge_stack.publish("object-store-filer")


def test_nothing_on_vps_3_is_published_beyond_its_private_address():
    assert {ip for ip, _, _ in published("vps_3")} == {NODES["vps_3"].private_ip}


def test_only_vpn_and_https_listen_on_every_interface():
    public = {(port, proto) for ip, port, proto in published("vps_1") if ip != NODES["vps_1"].private_ip}
    assert public == {(1194, "udp"), (443, "tcp")}


@pytest.mark.parametrize("node", NODES_WITH_COMPOSE)
def test_every_service_is_pinned_healthchecked_and_restarted(node):
    for name, svc in compose(node)["services"].items():
        image = svc["image"]
        assert PINNED.match(image) or image == "${DAGSTER_IMAGE:?set by Ansible}", f"{name}: unpinned {image}"
        assert svc["restart"] == "unless-stopped", name
        assert svc["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name


def _seconds(duration: str) -> int:
    value, unit = int(duration[:-1]), duration[-1]
    return value * {"s": 1, "m": 60, "h": 3600}[unit]


@pytest.mark.parametrize("node", NODES_WITH_COMPOSE)
def test_every_first_healthcheck_runs_within_a_minute_of_the_start(node):
    """Debian's Docker Engine (20.10) has no ``start_interval``: a container's first check runs one ``interval``
    after its start, and the deploy's ``docker compose up --wait`` waits for it. The backup's 5 m made every
    deploy that recreated it wait 5 minutes (seen when the stack first ran under Docker Engine)."""
    for name, svc in compose(node)["services"].items():
        assert _seconds(svc["healthcheck"]["interval"]) <= 60, name


@pytest.mark.parametrize("node", NODES_WITH_COMPOSE)
def test_data_lives_on_the_nodes_block_volumes(node):
    mounts = [v.mount_point for v in volumes_on(node)]
    spec = compose(node)
    for name, vol in spec["volumes"].items():
        device = vol["driver_opts"]["device"]
        assert any(device.startswith(m + "/") for m in mounts), f"{name} -> {device}"
    for svc_name, svc in spec["services"].items():
        for mount in svc.get("volumes", []):
            source = mount.split(":")[0]
            assert source.startswith(("./", "/opt/platform/", "/var/run/docker.sock")) or source in spec["volumes"], (
                f"{svc_name}: anonymous or undeclared volume {source}"
            )


@pytest.mark.parametrize(
    ("node", "keys"),
    [("vps_1", [*edge_stack.SECRET_KEYS, *edge_stack.OPTIONAL_KEYS]), ("vps_3", warehouse_stack.SECRET_KEYS)],
)
def test_every_interpolated_variable_is_a_declared_node_secret(node, keys):
    text = COMPOSE[node].read_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    assert used, "the stack takes its secrets from .env"
    assert used - {edge_stack.DAGSTER_IMAGE_VAR} <= set(keys)
    assert not re.search(r"(PASSWORD|SECRET|TOKEN)[A-Z_]*: (?!\$\{)", text), "a literal secret in compose"


def test_dagster_instance_runs_in_containers_on_the_stack_network():
    instance = edge_stack.dagster_instance()
    assert instance["run_launcher"]["class"] == "DockerRunLauncher"
    assert instance["run_launcher"]["config"]["network"] == compose("vps_1")["networks"][edge_stack.NETWORK]["name"]
    storage = instance["storage"]["custom"]
    assert (storage["module"], storage["class"]) == ("resources.dagster_metadata", "PooledPostgresStorage")
    assert storage["config"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert instance["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert instance["scheduler"]["class"] == "DagsterDaemonScheduler"
    forwarded = set(instance["run_launcher"]["config"]["env_vars"])
    assert set(edge_stack.RESOURCE_SECRETS) | {"PLATFORM_ENV"} <= forwarded


def test_workspace_points_at_the_code_server_service():
    spec = compose("vps_1")["services"]["dagster-code-server"]
    grpc = edge_stack.workspace()["load_from"][0]["grpc_server"]
    assert str(grpc["port"]) in spec["command"] and "platform_assets.definitions" in spec["command"]
    assert grpc["host"] == "dagster-code-server"


def test_vpn_is_a_split_tunnel_to_the_vpc():
    conf = (DEPLOY / "vps_1" / "openvpn" / "server.conf").read_text()
    assert f'push "route {PRIVATE_NETWORK.network_address} {PRIVATE_NETWORK.netmask}"' in conf
    assert "redirect-gateway" not in conf
    assert edge_stack.VPN_SUBNET.overlaps(edge_stack.NETWORK_SUBNET) is False


def test_only_the_oltp_and_its_migration_hold_the_superusers_password():
    """The pipeline's containers connected as the OLTP's superuser: a leaked password was a shell in its container
    (``COPY … TO PROGRAM``). They get the read-only and re-capture roles' passwords; the backups dump as theirs."""
    services = compose("vps_1")["services"]
    holders = {name for name, svc in services.items() if "OLTP_PASSWORD" in str(svc.get("environment", {}))}
    assert holders == {"oltp-postgres"}
    for name in ("dagster-code-server", "dagster-daemon"):  # the webserver holds no pipeline secret at all
        assert {"OLTP_EXTRACT_PASSWORD", "OLTP_CAPTURE_PASSWORD"} <= set(services[name]["environment"]), name
    forwarded = edge_stack.dagster_instance()["run_launcher"]["config"]["env_vars"]
    assert "OLTP_PASSWORD" not in forwarded and "OLTP_EXTRACT_PASSWORD" in forwarded
    backup = services["postgres-backup"]["environment"]
    assert backup["OLTP_URL"].startswith("postgresql://platform_backup@") and "OLTP_BACKUP_PASSWORD" in backup
    assert set(edge_stack.MIGRATION_SECRETS) <= set(edge_stack.SECRET_KEYS)
