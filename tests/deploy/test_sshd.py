"""The SSH hardening drop-in cloud-init writes, under the real ``sshd`` (OpenSSH 9.2, Debian 12's).

The drop-in is included from Debian's stock ``sshd_config`` (``/usr/share/openssh/sshd_config``, the file a fresh
node has), so what is checked is the node's effective configuration: sshd takes the first value it reads, the
``Include`` comes first, and later stock lines (``X11Forwarding yes``) must not win. Host keys are generated into a
scratch folder; sshd insists on its privilege-separation folder ``/run/sshd``, which only the service creates, so
sshd runs in a private mount namespace with a scratch ``/run`` (nothing changes on this machine).
Not checked: cloud-init's own edits of ``sshd_config`` (``ssh_pwauth``, ``disable_root``) and a login over SSH.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy import cloud_init
from deploy.inventory import BASTION, DEPLOY_USER
from resources.topology import NODES

STOCK = Path("/usr/share/openssh/sshd_config")
DROP_IN = "/etc/ssh/sshd_config.d/10-platform.conf"
STOCK_INCLUDE = "Include /etc/ssh/sshd_config.d/*.conf"


def _drop_in(node: str) -> str:
    doc = yaml.safe_load(cloud_init.user_data(node, ["ssh-ed25519 AAAAC3NzaTestKey operator"]))
    return next(f["content"] for f in doc["write_files"] if f["path"] == DROP_IN)


def _sshd_config(folder: Path, drop_in: str) -> Path:
    """Debian's stock sshd_config with its Include pointed at a scratch drop-in folder and a scratch host key."""
    assert shutil.which("sshd"), "sshd is missing: deploy/local/bootstrap.sh installs openssh-server"
    assert STOCK.is_file(), f"{STOCK} is missing (Debian's openssh-server ships it)"
    stock = STOCK.read_text()
    assert stock.count(STOCK_INCLUDE) == 1, "Debian's stock sshd_config changed its Include line"
    (folder / "sshd_config.d").mkdir()
    (folder / "sshd_config.d" / "10-platform.conf").write_text(drop_in)
    key = folder / "ssh_host_ed25519_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    config = folder / "sshd_config"
    text = stock.replace(STOCK_INCLUDE, f"Include {folder}/sshd_config.d/*.conf")
    config.write_text(f"{text}\nHostKey {key}\nPidFile {folder}/sshd.pid\n")
    return config


def _sshd(*args: str) -> subprocess.CompletedProcess:
    """``sshd ARGS`` in a private mount namespace whose /run holds an empty ``sshd`` folder."""
    script = 'mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -m 0755 /run/sshd && exec /usr/sbin/sshd "$@"'
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("node", list(NODES))
def test_hardening_is_valid_and_effective(node: str, tmp_path: Path) -> None:
    config = _sshd_config(tmp_path, _drop_in(node))
    checked = _sshd("-t", "-f", str(config))
    assert checked.returncode == 0 and not checked.stderr, checked.stderr
    effective = _sshd("-T", "-f", str(config))
    assert effective.returncode == 0, effective.stderr
    settings = {k: v for k, _, v in (line.partition(" ") for line in effective.stdout.splitlines())}
    forwarding = "yes" if node == BASTION else "no"
    expected = {
        "permitrootlogin": "no",
        "passwordauthentication": "no",
        "kbdinteractiveauthentication": "no",
        "pubkeyauthentication": "yes",
        "authenticationmethods": "publickey",
        "allowusers": DEPLOY_USER,
        "maxauthtries": "3",
        "logingracetime": "20",
        "x11forwarding": "no",  # the stock file says yes, after the Include
        "allowagentforwarding": "no",  # no node uses the operator's agent
        "allowtcpforwarding": forwarding,
        "clientaliveinterval": "300",
    }
    assert {key: settings.get(key) for key in expected} == expected


def test_sshd_refuses_a_bad_option(tmp_path: Path) -> None:
    """The check can fail: an unknown keyword in the drop-in is an error."""
    config = _sshd_config(tmp_path, _drop_in("vps_2") + "PermitRootLogn no\n")
    checked = _sshd("-t", "-f", str(config))
    assert checked.returncode != 0 and "Bad configuration option: PermitRootLogn" in checked.stderr
