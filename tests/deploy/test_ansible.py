"""Ansible: the playbook passes ansible-playbook's syntax check; the inventory enters through vps_1 only."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import jinja2
import yaml

from deploy import inventory
from resources.topology import NODES
from tests.deploy._helpers import DEPLOY

ANSIBLE = DEPLOY / "ansible"
BIN = Path(sys.executable).parent
ENV = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"), "ANSIBLE_LOCAL_TEMP": "/tmp/ansible-local-test"}


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=ANSIBLE, env=ENV, capture_output=True, text=True)


def test_playbook_syntax():
    result = _run("ansible-playbook", "--syntax-check", "site.yml")
    assert result.returncode == 0, result.stderr


def test_inventory_enters_through_the_bastion_only():
    result = _run("ansible-inventory", "--list")
    assert result.returncode == 0, result.stderr
    hostvars = json.loads(result.stdout)["_meta"]["hostvars"]
    assert set(hostvars) == set(NODES)
    for name, node in NODES.items():
        host = hostvars[name]
        assert host["private_ip"] == node.private_ip
        if name == inventory.BASTION:
            assert "ProxyCommand" not in host.get("ansible_ssh_common_args", "")
        else:
            assert host["ansible_host"] == node.private_ip
            hop = _hop(host["ansible_ssh_common_args"], node.private_ip)
            # the hop to the bastion accepts its new host key itself (a ProxyJump hop would not take -o options)
            assert hop == "ssh -o StrictHostKeyChecking=accept-new -W %h:%p deploy@203.0.113.7", hop


def _hop(common_args: str, host: str) -> str:
    """The proxy command ssh itself resolves from the inventory's arguments, as Ansible splits them (``ssh -G``
    prints the configuration and connects nowhere; 203.0.113.7 is a documentation address)."""
    args = shlex.split(common_args.replace("{{ bastion_host }}", "203.0.113.7"))
    out = subprocess.run(["ssh", "-G", "-F", "/dev/null", *args, host], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return next(line.split(" ", 1)[1] for line in out.stdout.splitlines() if line.startswith("proxycommand "))


def _tasks(doc: object):
    if isinstance(doc, list):
        for item in doc:
            yield from _tasks(item)
    elif isinstance(doc, dict):
        if "tasks" in doc:
            yield from _tasks(doc["tasks"])
        elif "name" in doc:
            yield doc


def test_every_task_is_named_and_uses_an_existing_builtin_module():
    import ansible.modules as builtin

    modules_dir = Path(builtin.__file__).parent
    for path in [ANSIBLE / "site.yml", *sorted((ANSIBLE / "tasks").glob("*.yml"))]:
        for task in _tasks(yaml.safe_load(path.read_text())):
            action = next(k for k in task if k.startswith("ansible.builtin."))
            assert (modules_dir / f"{action.removeprefix('ansible.builtin.')}.py").exists(), (path.name, action)
            assert task["name"], path.name


def test_each_node_env_gets_only_its_own_keys():
    template = jinja2.Environment(trim_blocks=True, lstrip_blocks=False).from_string(
        (ANSIBLE / "templates" / "node.env.j2").read_text()
    )
    lines = [f"{k}=value-of-{k}" for keys in inventory.SECRET_KEYS.values() for k in keys]
    optional = [f"{k}=value-of-{k}" for keys in inventory.OPTIONAL_KEYS.values() for k in keys]
    assert optional, "the failure webhook is an optional key of vps_1"
    for with_optional in (False, True):
        for node, keys in inventory.SECRET_KEYS.items():
            host = inventory.inventory()["all"]["children"][inventory.GROUPS[node]]["hosts"][node]
            out = template.render(inventory_hostname=node, secret_lines=lines + optional * with_optional,
                                  secret_keys=keys, optional_keys=host["optional_keys"])  # fmt: skip
            written = {line.split("=", 1)[0] for line in out.splitlines() if line and not line.startswith("#")}
            assert written == set(keys) | (set(inventory.OPTIONAL_KEYS.get(node, [])) if with_optional else set())
