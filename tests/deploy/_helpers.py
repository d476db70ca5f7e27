"""Readers shared by the deployment tests (files only: no Docker engine, cluster or cloud)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

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


# --- The deploy artifacts under their real tools (test_compose_config.py, test_caddy.py). Appended to the readers
# above, so the imports are local to each function.

ANSIBLE = DEPLOY / "ansible"
UI_DOMAIN, ACME_EMAIL, VPN_HOST = "dagster.example.org", "ops@example.org", "203.0.113.10"


def tool(name: str) -> str:
    """A binary of the venv (`make setup` installs caddy and ansible from the lock); missing is a failure."""
    import sys

    path = Path(sys.executable).parent / name
    assert path.is_file(), f"{path} is missing: `make setup` installs it from requirements.lock"
    return str(path)


def operator_secrets(folder: Path, vpn_host: str = VPN_HOST) -> tuple[Path, str]:
    """The operator's secrets file as ``python -m deploy.secret_env init`` writes it, and the UI password it prints."""
    from deploy import secret_env

    path = folder / "secrets" / "platform.env"
    password = secret_env.init(path, UI_DOMAIN, ACME_EMAIL, vpn_host)
    assert password, path
    return path, password


def secret_values(secrets_file: Path) -> dict[str, str]:
    """KEY -> value as the operator's file means it (the UI hash's protective single quotes removed)."""
    pairs = (line.split("=", 1) for line in secrets_file.read_text().splitlines() if "=" in line)
    return {key: value.removeprefix("'").removesuffix("'") for key, value in pairs}


def ansible_node_stacks(folder: Path, secrets_file: Path, nodes: list[str]) -> dict[str, Path]:
    """Copies of the nodes' stack folders, each with the ``.env`` Ansible writes into it: site.yml's plays cut down
    to their node_secrets import, run by ansible-playbook on this machine (connection local) with the real
    inventory, vars files and play vars (the edge play's ``extra_env``: DAGSTER_IMAGE)."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    plays = []
    for play in yaml.safe_load((ANSIBLE / "site.yml").read_text()):
        imports = [
            t for t in play.get("tasks", []) if t.get("ansible.builtin.import_tasks") == "tasks/node_secrets.yml"
        ]
        if imports:
            task = {**imports[0], "ansible.builtin.import_tasks": str(ANSIBLE / "tasks" / "node_secrets.yml")}
            plays.append(
                {
                    "name": play["name"],
                    "hosts": play["hosts"],
                    "connection": "local",
                    "gather_facts": False,
                    "vars_files": [str(ANSIBLE / f) for f in play.get("vars_files", [])],
                    "vars": play.get("vars", {}),
                    "tasks": [task],
                }
            )
    for node in nodes:
        shutil.copytree(DEPLOY / node, folder / node)  # tasks/compose_up.yml's "Stack files"
    run_dir = folder / "ansible"
    run_dir.mkdir()
    (run_dir / "templates").symlink_to(ANSIBLE / "templates")  # the template task looks beside the playbook
    (run_dir / "play.yml").write_text(yaml.safe_dump(plays, sort_keys=False))
    extra = {
        "platform_root": f"{folder}/{{{{ inventory_hostname }}}}",
        "repo_root": str(REPO),  # vars.yml derives it from the playbook's folder, which is a scratch one here
        "ansible_python_interpreter": sys.executable,
    }
    (run_dir / "extra.json").write_text(json.dumps(extra))
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(run_dir),
        "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"),
        "ANSIBLE_HOME": str(run_dir / ".ansible"),
        "ANSIBLE_LOCAL_TEMP": str(run_dir / "tmp"),
        "ANSIBLE_REMOTE_TEMP": str(run_dir / "tmp"),
        "PLATFORM_SECRETS": str(secrets_file),
    }
    cmd = [tool("ansible-playbook"), "-i", str(ANSIBLE / "inventory.yml"), "-l", ",".join(nodes)]
    result = subprocess.run(
        [*cmd, "-e", f"@{run_dir / 'extra.json'}", "play.yml"],
        cwd=run_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for node in nodes:
        assert (folder / node / ".env").is_file(), f"Ansible wrote no .env for {node}:\n{result.stdout[-3000:]}"
    return {node: folder / node for node in nodes}


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
