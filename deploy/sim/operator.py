"""What the operator and Ansible do before vps_1's stack starts, done here as they do it: the operator's secrets file
(``python -m deploy.secret_env init``) and each node's stack folder with the ``.env`` Ansible writes into it
(site.yml's plays cut down to their ``node_secrets`` import, run by the real ``ansible-playbook``, connection local,
with the real inventory, vars files and play vars).

Used by ``make topology-up`` (``deploy/sim/__main__.py``) and by the deploy and end-to-end tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from deploy import secret_env

DEPLOY = Path(__file__).resolve().parents[1]
ANSIBLE = DEPLOY / "ansible"
UI_DOMAIN, ACME_EMAIL, VPN_HOST = "dagster.example.org", "ops@example.org", "203.0.113.10"


def tool(name: str) -> str:
    """A binary of the venv (`make setup` installs caddy and ansible from the lock)."""
    path = Path(sys.executable).parent / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: `make setup` installs it from requirements.lock")
    return str(path)


def operator_secrets(folder: Path, vpn_host: str = VPN_HOST) -> tuple[Path, str]:
    """The operator's secrets file as ``python -m deploy.secret_env init`` writes it, and the UI password it prints."""
    path = folder / "secrets" / "platform.env"
    password = secret_env.init(path, UI_DOMAIN, ACME_EMAIL, vpn_host)
    if not password:
        raise RuntimeError(f"secret_env.init printed no UI password for {path}")
    return path, password


def secret_values(secrets_file: Path) -> dict[str, str]:
    """KEY -> value as the operator's file means it (the UI hash's protective single quotes removed)."""
    pairs = (line.split("=", 1) for line in secrets_file.read_text().splitlines() if "=" in line)
    return {key: value.removeprefix("'").removesuffix("'") for key, value in pairs}


def _plays() -> list[dict]:
    plays = []
    for play in yaml.safe_load((ANSIBLE / "site.yml").read_text()):
        imports = [
            t for t in play.get("tasks", []) if t.get("ansible.builtin.import_tasks") == "tasks/node_secrets.yml"
        ]
        if imports:
            task = {**imports[0], "ansible.builtin.import_tasks": str(ANSIBLE / "tasks" / "node_secrets.yml")}
            plays.append({
                "name": play["name"], "hosts": play["hosts"], "connection": "local", "gather_facts": False,
                "vars_files": [str(ANSIBLE / f) for f in play.get("vars_files", [])],
                "vars": play.get("vars", {}), "tasks": [task],
            })  # fmt: skip
    return plays


def node_stacks(folder: Path, secrets_file: Path, nodes: list[str]) -> dict[str, Path]:
    """Copies of the nodes' stack folders (tasks/compose_up.yml's "Stack files") under ``folder``, each with the
    ``.env`` Ansible writes into it."""
    for node in nodes:
        shutil.copytree(DEPLOY / node, folder / node)
    run_dir = folder / "ansible"
    run_dir.mkdir()
    (run_dir / "templates").symlink_to(ANSIBLE / "templates")  # the template task looks beside the playbook
    (run_dir / "play.yml").write_text(yaml.safe_dump(_plays(), sort_keys=False))
    extra = {
        "platform_root": f"{folder}/{{{{ inventory_hostname }}}}",
        "repo_root": str(DEPLOY.parent),  # vars.yml derives it from the playbook's folder, a scratch one here
        "ansible_python_interpreter": sys.executable,
    }
    (run_dir / "extra.json").write_text(json.dumps(extra))
    env = {
        "PATH": os.environ["PATH"], "HOME": str(run_dir), "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"),
        "ANSIBLE_HOME": str(run_dir / ".ansible"), "ANSIBLE_LOCAL_TEMP": str(run_dir / "tmp"),
        "ANSIBLE_REMOTE_TEMP": str(run_dir / "tmp"), "PLATFORM_SECRETS": str(secrets_file),
    }  # fmt: skip
    cmd = [tool("ansible-playbook"), "-i", str(ANSIBLE / "inventory.yml"), "-l", ",".join(nodes)]
    result = subprocess.run([*cmd, "-e", f"@{run_dir / 'extra.json'}", "play.yml"], cwd=run_dir, env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"ansible-playbook failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    for node in nodes:
        if not (folder / node / ".env").is_file():
            raise RuntimeError(f"Ansible wrote no .env for {node}:\n{result.stdout[-3000:]}")
    return {node: folder / node for node in nodes}
