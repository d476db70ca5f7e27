"""cloud-init user-data per node: hardening, upgrades, volumes, and the runtime bound to the private address."""

from __future__ import annotations

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
