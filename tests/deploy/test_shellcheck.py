"""Every shell script in the repository, and the shell the deploy artifacts embed, passes ``shellcheck`` (0.9).

Scripts are found from ``git ls-files`` (tracked, and new files not ignored: a ``.sh`` name or an ``sh``/``bash``
shebang), so a new script is checked without being listed here. Embedded shell: the ``bash -c`` scripts cloud-init
runs on each node, the shell-form ``RUN`` lines of the Dockerfiles, compose ``CMD-SHELL`` health checks and the
manifests' ``bash -c`` probes. Not checked: Ansible's ``shell:`` tasks (Jinja templates, shell only once Ansible
renders them) and Makefile recipes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy import cloud_init
from resources.topology import NODES
from tests.deploy._helpers import COMPOSE, REPO, manifests

SHEBANG = re.compile(r"#!\s*(/usr/bin/env\s+)?(/usr)?(/bin/)?(ba|da)?sh(\s|$)")
# Named in the task that added this test; the discovery below must keep finding them.
EXPECTED = {
    ".ci/run",
    "deploy/local/bootstrap.sh",
    "deploy/vps_1/backup/backup-healthy",
    "deploy/vps_1/backup/backup.sh",
    "deploy/vps_1/openvpn/entrypoint.sh",
    "deploy/vps_1/openvpn/vpn-client",
    "deploy/vps_1/seaweedfs/start.sh",
}


def shell_scripts() -> list[str]:
    """Tracked or new (not ignored) files that are shell scripts: a ``.sh`` name or a shell shebang."""
    cmd = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    files = subprocess.run(cmd, cwd=REPO, capture_output=True, check=True).stdout
    found = set()
    for name in files.decode().split("\0"):
        path = REPO / name
        if not name or not path.is_file():
            continue
        with path.open("rb") as f:
            first = f.readline(200).decode(errors="replace")
        if name.endswith(".sh") or SHEBANG.match(first):
            found.add(name)
    return sorted(found)


def embedded_shell() -> dict[str, tuple[str, str]]:
    """``{where: (shell dialect, script)}`` for the shell strings inside the deploy artifacts."""
    out: dict[str, tuple[str, str]] = {}
    for node in NODES:
        doc = yaml.safe_load(cloud_init.user_data(node, ["ssh-ed25519 AAAAC3NzaTestKey operator"]))
        for i, cmd in enumerate(doc["runcmd"]):
            if cmd[:2] == ["bash", "-c"]:
                out[f"cloud-init:{node}:runcmd[{i}]"] = ("bash", cmd[2])
    for dockerfile in subprocess.run(
        ["git", "ls-files", "*Dockerfile"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split():
        text = (REPO / dockerfile).read_text()
        for i, m in enumerate(re.finditer(r"^RUN ((?:.*\\\n)*.*)$", text, re.MULTILINE)):
            if not m.group(1).lstrip().startswith("["):  # exec form: no shell
                out[f"{dockerfile}:RUN[{i}]"] = ("sh", m.group(1))
    for node, path in COMPOSE.items():
        for name, svc in yaml.safe_load(path.read_text())["services"].items():
            test = svc.get("healthcheck", {}).get("test", [])
            if test[:1] == ["CMD-SHELL"]:
                out[f"{node}/compose:{name}:healthcheck"] = ("sh", test[1])
    for file, docs in manifests().items():
        for doc in docs:
            for c in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    cmd = c.get(probe, {}).get("exec", {}).get("command", [])
                    if cmd[:2] in (["bash", "-c"], ["sh", "-c"]):
                        out[f"{file}:{c['name']}:{probe}"] = (cmd[0], cmd[2])
    return out


def _shellcheck(args: list[str], script: str | None = None) -> subprocess.CompletedProcess:
    assert shutil.which("shellcheck"), "shellcheck is missing: deploy/local/bootstrap.sh installs it"
    return subprocess.run(["shellcheck", "--format=gcc", *args], input=script, cwd=REPO, capture_output=True, text=True)


def test_discovery_finds_the_known_scripts() -> None:
    assert set(shell_scripts()) >= EXPECTED


def test_discovery_finds_embedded_shell() -> None:
    kinds = {where.split(":")[0] for where in EMBEDDED}
    assert "cloud-init" in kinds and "deploy/vps_2/spark/Dockerfile" in kinds and "vps_3/compose" in kinds


@pytest.mark.parametrize("script", shell_scripts())
def test_script(script: str) -> None:
    result = _shellcheck([script])
    assert result.returncode == 0, result.stdout + result.stderr


EMBEDDED = embedded_shell()


@pytest.mark.parametrize("where", sorted(EMBEDDED))
def test_embedded_shell(where: str) -> None:
    shell, script = EMBEDDED[where]
    result = _shellcheck(["--shell", shell, "-"], script)
    assert result.returncode == 0, f"{where}:\n{result.stdout}{result.stderr}"


def test_shellcheck_reports_a_finding(tmp_path: Path) -> None:
    """The check can fail: an unquoted expansion is reported."""
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/sh\nrm -rf $1/tmp\n")
    result = _shellcheck([str(bad)])
    assert result.returncode != 0 and "SC2086" in result.stdout
