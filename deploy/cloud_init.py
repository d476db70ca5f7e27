"""cloud-init user-data per node: a deploy user, SSH hardening, unattended upgrades, the block volumes mounted,
and the runtime (Docker Engine + Compose on the Docker nodes, k3s bound to the private address on vps_2).

Binaries that Debian 12 does not package (Compose v2, k3s) come from their GitHub releases at pinned
versions and are checked against the checksum file published with the release.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from deploy import versions
from deploy.inventory import BASTION, DEPLOY_USER
from deploy.storage import volumes_on
from resources.topology import NODES, PRIVATE_NETWORK, service

PRIVATE_IFACE = "eth1"  # DigitalOcean: eth0 public, eth1 the VPC

SSHD_HARDENING = """\
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthenticationMethods publickey
AllowUsers {user}
MaxAuthTries 3
LoginGraceTime 20
X11Forwarding no
AllowAgentForwarding no
AllowTcpForwarding {forwarding}
ClientAliveInterval 300
"""

AUTO_UPGRADES = """\
APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
APT::Periodic::AutocleanInterval "7";
"""

UNATTENDED = """\
Unattended-Upgrade::Origins-Pattern {
        "origin=Debian,codename=${distro_codename},label=Debian-Security";
        "origin=Debian,codename=${distro_codename}-security,label=Debian-Security";
};
Unattended-Upgrade::Automatic-Reboot "true";
Unattended-Upgrade::Automatic-Reboot-Time "04:30";
"""

COMPOSE_INSTALL = f"""\
set -eu
v={versions.DOCKER_COMPOSE}
d=/usr/local/lib/docker/cli-plugins
mkdir -p "$d" && cd "$d"
base=https://github.com/docker/compose/releases/download/$v
curl -fsSLO "$base/docker-compose-linux-x86_64" && curl -fsSLO "$base/docker-compose-linux-x86_64.sha256"
sha256sum -c docker-compose-linux-x86_64.sha256
mv docker-compose-linux-x86_64 docker-compose && chmod 755 docker-compose && rm docker-compose-linux-x86_64.sha256
"""

K3S_INSTALL = f"""\
set -eu
v=$(printf %s '{versions.K3S}' | sed 's/+/%2B/')
base=https://github.com/k3s-io/k3s/releases/download/$v
cd /tmp && curl -fsSLO "$base/k3s" && curl -fsSLO "$base/sha256sum-amd64.txt"
grep ' k3s$' sha256sum-amd64.txt | sha256sum -c -
install -m 755 k3s /usr/local/bin/k3s && rm k3s sha256sum-amd64.txt
for t in kubectl crictl ctr; do ln -sf /usr/local/bin/k3s /usr/local/bin/$t; done
systemctl daemon-reload && systemctl enable --now k3s
"""

K3S_UNIT = """\
[Unit]
Description=k3s (single-node server, private interface only)
Wants=network-online.target
After=network-online.target

[Service]
Type=notify
ExecStart=/usr/local/bin/k3s server
KillMode=process
Delegate=yes
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s

[Install]
WantedBy=multi-user.target
"""


class _BlockDumper(yaml.SafeDumper):
    """Multi-line file contents as literal blocks, so the user-data reads like the files it writes."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_BlockDumper.add_representer(str, _str)


def k3s_config(node: str) -> dict[str, Any]:
    ip = NODES[node].private_ip
    return {
        "node-ip": ip,
        "advertise-address": ip,
        "bind-address": ip,
        "node-external-ip": ip,  # nothing is advertised on the public interface
        "flannel-iface": PRIVATE_IFACE,
        "https-listen-port": service("k3s-api").port,
        "tls-san": [ip],
        "disable": ["traefik", "servicelb"],  # services are exposed with externalIPs on the private address
        "write-kubeconfig-mode": "0600",
        "secrets-encryption": True,
    }


def docker_daemon(node: str) -> dict[str, Any]:
    """Ports published without an address default to the private one; public ones must say 0.0.0.0 explicitly."""
    return {
        "ip": NODES[node].private_ip,
        "log-driver": "local",
        "live-restore": True,
        "features": {"buildkit": True},
    }


def user_data(node: str, ssh_public_keys: list[str]) -> str:
    if not ssh_public_keys:
        raise ValueError("at least one SSH public key is required for the deploy user")
    runtime = NODES[node].runtime
    is_bastion = node == BASTION
    files: list[dict[str, Any]] = [
        {
            "path": "/etc/ssh/sshd_config.d/10-platform.conf",
            "permissions": "0644",
            "content": SSHD_HARDENING.format(
                user=DEPLOY_USER,
                forwarding="yes" if is_bastion else "no",  # the bastion forwards the hop to vps_2/vps_3 (ssh -W)
            ),
        },
        {"path": "/etc/apt/apt.conf.d/20auto-upgrades", "permissions": "0644", "content": AUTO_UPGRADES},
        {"path": "/etc/apt/apt.conf.d/52unattended-upgrades-platform", "permissions": "0644", "content": UNATTENDED},
    ]
    packages = ["unattended-upgrades", "apt-listchanges", "ca-certificates", "curl", "openssl", "rsync"]
    runcmd: list[Any] = []
    mounts: list[list[str]] = []
    for vol in volumes_on(node):
        mounts.append([vol.device, vol.mount_point, "ext4", "defaults,nofail,discard,noatime", "0", "2"])
        runcmd.append(["mkdir", "-p", vol.mount_point])
    if runtime == "docker":
        packages += ["docker.io", "apparmor"]
        files.append(
            {"path": "/etc/docker/daemon.json", "permissions": "0644", "content": json.dumps(docker_daemon(node))}
        )
        runcmd += [["bash", "-c", COMPOSE_INSTALL], ["systemctl", "restart", "docker"]]
        groups = ["sudo", "docker"]
    else:
        files += [
            {
                "path": "/etc/rancher/k3s/config.yaml",
                "permissions": "0600",
                "content": yaml.safe_dump(k3s_config(node), sort_keys=False),
            },
            {"path": "/etc/systemd/system/k3s.service", "permissions": "0644", "content": K3S_UNIT},
        ]
        runcmd.append(["bash", "-c", K3S_INSTALL])
        groups = ["sudo"]
    runcmd += [["mount", "-a"], ["systemctl", "restart", "ssh"]]
    doc = {
        "hostname": node.replace("_", "-"),
        "package_update": True,
        "package_upgrade": True,
        "packages": packages,
        "users": [
            {
                "name": DEPLOY_USER,
                "groups": groups,
                "shell": "/bin/bash",
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "lock_passwd": True,
                "ssh_authorized_keys": ssh_public_keys,
            }
        ],
        "disable_root": True,
        "ssh_pwauth": False,
        "write_files": files,
        **({"mounts": mounts} if mounts else {}),  # cloud-init's schema: `mounts` has at least one entry
        "runcmd": runcmd,
        "final_message": f"{node} ready in the VPC {PRIVATE_NETWORK}",
    }
    return "#cloud-config\n" + yaml.dump(doc, Dumper=_BlockDumper, sort_keys=False, width=200)
