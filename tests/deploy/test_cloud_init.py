"""cloud-init user-data per node: hardening, upgrades, volumes, and the runtime bound to the private address;
valid for the real `cloud-init schema` (22.4, Debian 12's)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy import cloud_init
from deploy.storage import volumes_on
from resources.topology import NODES

KEY = "ssh-ed25519 AAAAC3NzaTestKey operator"


def _doc(node: str) -> dict:
    text = cloud_init.user_data(node, [KEY])
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


def _file(doc: dict, path: str) -> str:
    return next(f["content"] for f in doc["write_files"] if f["path"] == path)


@pytest.mark.parametrize("node", list(NODES))
def test_ssh_is_hardened_and_upgrades_are_unattended(node):
    doc = _doc(node)
    sshd = _file(doc, "/etc/ssh/sshd_config.d/10-platform.conf")
    for line in ("PermitRootLogin no", "PasswordAuthentication no", "AllowUsers deploy"):
        assert line in sshd.splitlines()
    assert ("AllowTcpForwarding yes" in sshd) == (node == "vps_1")  # only the bastion forwards
    assert "unattended-upgrades" in doc["packages"]
    assert 'APT::Periodic::Unattended-Upgrade "1";' in _file(doc, "/etc/apt/apt.conf.d/20auto-upgrades")
    assert doc["users"][0]["ssh_authorized_keys"] == [KEY] and doc["ssh_pwauth"] is False


@pytest.mark.parametrize("node", list(NODES))
def test_block_volumes_are_mounted(node):
    doc = _doc(node)
    assert doc.get("mounts", [None]) != [], "cloud-init's schema refuses an empty mounts list"
    mounts = {(m[0], m[1]) for m in doc.get("mounts", [])}
    assert mounts == {(v.device, v.mount_point) for v in volumes_on(node)}


def test_docker_nodes_default_to_their_private_address():
    for node in (n for n in NODES.values() if n.runtime == "docker"):
        doc = _doc(node.name)
        assert "docker.io" in doc["packages"]
        assert yaml.safe_load(_file(doc, "/etc/docker/daemon.json"))["ip"] == node.private_ip


def test_k3s_binds_to_the_private_interface():
    doc = _doc("vps_2")
    config = yaml.safe_load(_file(doc, "/etc/rancher/k3s/config.yaml"))
    ip = NODES["vps_2"].private_ip
    assert config["bind-address"] == config["node-ip"] == config["advertise-address"] == ip
    assert "servicelb" in config["disable"]
    assert "docker.io" not in doc["packages"]


def test_a_node_without_ssh_keys_is_refused():
    with pytest.raises(ValueError, match="SSH public key"):
        cloud_init.user_data("vps_1", [])


# --- under the real tool: cloud-init 22.4 (Debian 12's, what the nodes run) -----------------------------------------
CLOUD_INIT_PYTHON = "/usr/bin/python3"  # /usr/bin/cloud-init's interpreter, where its schema module lives


def _schema(path: Path) -> subprocess.CompletedProcess:
    assert shutil.which("cloud-init"), "cloud-init is missing: deploy/local/bootstrap.sh installs it"
    return subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True)


@pytest.mark.parametrize("node", list(NODES))
def test_user_data_passes_cloud_init_schema(node: str, tmp_path: Path) -> None:
    """No errors and no deprecation warnings (22.4 prints those and still exits 0, so the output is compared)."""
    path = tmp_path / f"{node}.yaml"
    path.write_text(cloud_init.user_data(node, [KEY]))
    result = _schema(path)
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, f"Valid cloud-config: {path}", "")


def test_user_data_uses_only_keys_cloud_init_knows() -> None:
    """22.4's schema allows unknown top-level keys (a misspelt module key would be silently ignored on the node)."""
    code = (
        "import json; from cloudinit.config.schema import get_schema; s = get_schema(); "
        "print(json.dumps(sorted({k for r in s['allOf'] for k in s['$defs'][r['$ref'].split('/')[-1]]"
        ".get('properties', {})})))"
    )
    known = set(json.loads(subprocess.run([CLOUD_INIT_PYTHON, "-c", code], capture_output=True, check=True).stdout))
    assert {"users", "write_files", "runcmd"} <= known
    for node in NODES:
        assert set(_doc(node)) - known == set(), node


def test_cloud_init_schema_reports_an_error(tmp_path: Path) -> None:
    """The check can fail: a write_files entry with a misspelt key is an error."""
    path = tmp_path / "bad.yaml"
    path.write_text("#cloud-config\nwrite_files:\n  - path: /etc/x\n    contents: x\n")
    result = _schema(path)
    assert result.returncode != 0 and "'contents' was unexpected" in result.stdout + result.stderr
