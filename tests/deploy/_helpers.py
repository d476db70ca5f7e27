"""Readers shared by the deployment tests (files only: no Docker engine, cluster or cloud)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from deploy.sim.operator import ACME_EMAIL, ANSIBLE, UI_DOMAIN, VPN_HOST, operator_secrets, secret_values, tool
from deploy.sim.operator import node_stacks as ansible_node_stacks

__all__ = ["ACME_EMAIL", "ANSIBLE", "UI_DOMAIN", "VPN_HOST", "ansible_node_stacks", "operator_secrets",
           "secret_values", "tool"]  # fmt: skip

if TYPE_CHECKING:
    from deploy.sim.gateway import Connection

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
REPO = DEPLOY.parent
COMPOSE = {"vps_1": DEPLOY / "vps_1" / "compose.yaml", "vps_3": DEPLOY / "vps_3" / "compose.yaml"}
MANIFESTS = DEPLOY / "vps_2" / "manifests"


def compose(node: str) -> dict[str, Any]:
    return yaml.safe_load(COMPOSE[node].read_text())


def manifests() -> dict[str, list[dict[str, Any]]]:
    return {
        p.name: [d for d in yaml.safe_load_all(p.read_text()) if d]
        for p in sorted(MANIFESTS.glob("*.yaml"))
        if p.name != "kustomization.yaml"
    }


def published(node: str) -> set[tuple[str, int, str]]:
    """(host address, host port, protocol) of every port the node's compose file publishes."""
    out = set()
    for svc in compose(node)["services"].values():
        for mapping in svc.get("ports", []):
            spec, _, proto = mapping.partition("/")
            host_ip, host_port, _container = spec.rsplit(":", 2)
            out.add((host_ip, int(host_port), proto or "tcp"))
    return out


# --- The deploy artifacts under their real tools (test_compose_config.py, test_caddy.py): the operator's and
# Ansible's steps live in deploy/sim/operator.py (make topology-up takes them too); local imports below.


def compose_binary() -> str:
    from deploy.sim.edge_containers import compose_binary as binary

    return binary()


def compose_in(stack: Path, *args: str) -> Any:
    """``docker compose ARGS`` in a node's stack folder, as Ansible runs it there: variables from that folder's
    ``.env`` only. The environment is bare on purpose: the suite exports OLTP_PASSWORD & co. (tests/conftest.py),
    and Compose lets the shell's variables stand in for missing ``.env`` keys."""
    import os
    import subprocess

    env = {"PATH": os.environ["PATH"], "HOME": str(stack.parent)}
    return subprocess.run([compose_binary(), *args], cwd=stack, env=env, capture_output=True, text=True, timeout=60)


def container_env(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment from ``config --format json`` as the container gets it: ``config`` writes a
    literal ``$`` as ``$$`` (its output is itself a compose file)."""
    return {key: (value or "").replace("$$", "$") for key, value in service.get("environment", {}).items()}


# --- VPN clients (test_openvpn.py, tests/topology/test_vpn_gateway.py)


def assert_split_tunnel(connection: Connection, vpn_subnet: str, vpc_cidr: str) -> None:
    """A connected client has a tunnel address in the VPN subnet, the VPC routed through the tunnel and nothing else:
    no default route, so the client's other traffic never goes through the gateway."""
    prefix = vpn_subnet.rsplit(".", 1)[0] + "."
    routes, dev = connection.routes, connection.device
    assert connection.address and connection.address.startswith(prefix), connection.address
    assert any(r.startswith(f"{vpc_cidr} via {prefix}1 dev {dev}") for r in routes), routes
    assert not [r for r in routes if r.startswith(("default", "0.0.0.0/1", "128.0.0.0/1"))], routes
    assert {r.split()[0] for r in routes if f"dev {dev}" in r} == {vpn_subnet, vpc_cidr}, routes


@contextlib.contextmanager
def readable_scratch(prefix: str) -> Iterator[Path]:
    """A scratch folder a server can still read after dropping to nobody (pytest's tmp_path is 0700)."""
    from tests.conftest import TEST_TMP

    path = Path(tempfile.mkdtemp(prefix=prefix, dir=TEST_TMP))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
