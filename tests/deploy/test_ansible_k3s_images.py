"""The k3s image hand-over of ``site.yml`` run by ansible-playbook itself, three times, on two local "nodes".

vps_1 and vps_2 are folders on this machine (``ansible_connection: local``); ``docker``, ``k3s`` and ``kubectl``
are stand-ins on ``PATH`` that record what they are asked (no Docker engine or k3s here). What is real: the task
files, their templating, ``fetch``/``copy`` through the machine running Ansible, change detection and the restarts.
An ``ssh`` stand-in fails the run if any task dials another node itself (the first deployment did, without an
agent, and got ``Permission denied (publickey)``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.deploy._helpers import DEPLOY

ANSIBLE = DEPLOY / "ansible"
BIN = Path(sys.executable).parent
K3S_IMAGES = yaml.safe_load((ANSIBLE / "images.yml").read_text())["k3s_images"]

STUBS = {
    "docker": """#!/bin/bash
set -eu
safe() { echo "$1" | tr '/:' '__'; }
case "$1 $2" in
  "image inspect") cat "$STATE/ids/$(safe "${@: -1}")" ;;
  "save -o") echo "image ${4} $(cat "$STATE/ids/$(safe "$4")")" > "$3"; echo "save $4" >> "$STATE/docker.log" ;;
  *) echo "unexpected docker $*" >&2; exit 1 ;;
esac
""",
    "k3s": """#!/bin/bash
set -eu
[ "$1 $2 $3 $4 $5" = "ctr -n k8s.io images import" ] || { echo "unexpected k3s $*" >&2; exit 1; }
cat "$6" >> "$STATE/k3s.log"
""",
    "kubectl": """#!/bin/bash
echo "$*" >> "$STATE/kubectl.log"
""",
    "ssh": """#!/bin/bash
echo "ssh $*" >> "$STATE/ssh.log"; exit 255
""",
}


def _setup(root: Path) -> dict[str, str]:
    (root / "bin").mkdir()
    for name, text in STUBS.items():
        (root / "bin" / name).write_text(text)
        (root / "bin" / name).chmod(0o755)
    (root / "state" / "ids").mkdir(parents=True)
    for i, image in enumerate(K3S_IMAGES):
        _build(root, image["tag"], f"sha256:{i:064x}")
    inventory = {
        "all": {
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
            "children": {
                "edge": {"hosts": {"vps_1": {"platform_root": str(root / "vps_1")}}},
                "compute": {"hosts": {"vps_2": {"platform_root": str(root / "vps_2")}}},
            },
        }
    }
    (root / "inventory.yml").write_text(yaml.safe_dump(inventory))
    play = [
        {
            "name": "k3s images, as site.yml's compute play hands them over",
            "hosts": "compute",
            "gather_facts": False,
            "vars_files": [str(ANSIBLE / "vars.yml"), str(ANSIBLE / "images.yml")],
            "tasks": [
                {"name": "images", "ansible.builtin.import_tasks": str(ANSIBLE / "tasks" / "k3s_images.yml")},
                {"name": "restarts", "ansible.builtin.import_tasks": str(ANSIBLE / "tasks" / "k3s_restart.yml")},
            ],
        }
    ]
    (root / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    return {
        **os.environ,
        "PATH": f"{root / 'bin'}:{os.environ['PATH']}",
        "STATE": str(root / "state"),
        "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"),
        "ANSIBLE_LOCAL_TEMP": str(root / "ansible-tmp"),
        "ANSIBLE_REMOTE_TEMP": str(root / "ansible-tmp"),
    }


def _build(root: Path, tag: str, image_id: str) -> None:
    (root / "state" / "ids" / re.sub(r"[/:]", "_", tag)).write_text(image_id + "\n")


def _play(root: Path, env: dict[str, str]) -> int:
    """Runs the play; returns vps_2's ``changed`` count from the recap."""
    out = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(root / "inventory.yml"), str(root / "play.yml")],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    return int(re.search(r"vps_2\s+: ok=\d+\s+changed=(\d+)", out.stdout).group(1))


def _log(root: Path, name: str) -> list[str]:
    path = root / "state" / name
    return path.read_text().splitlines() if path.exists() else []


def test_images_reach_k3s_once_and_again_only_when_rebuilt(tmp_path):
    env = _setup(tmp_path)
    deployments = {i["tag"]: i["deployments"] for i in K3S_IMAGES}
    assert deployments["platform/spark-connect:4.3.0-hadoop3.5.0"] == ["spark-connect"]

    # first deployment: every image saved on vps_1, imported on vps_2, its Deployments restarted
    assert _play(tmp_path, env) > 0
    imported = _log(tmp_path, "k3s.log")
    assert sorted(line.split()[1] for line in imported) == sorted(deployments)
    restarted = sorted(line.split()[-1] for line in _log(tmp_path, "kubectl.log"))
    assert restarted == sorted(f"deployment/{d}" for ds in deployments.values() for d in ds)

    # nothing rebuilt: nothing saved, copied, imported or restarted
    assert _play(tmp_path, env) == 0
    assert len(_log(tmp_path, "k3s.log")) == len(imported)
    assert len(_log(tmp_path, "docker.log")) == len(deployments)

    # the Spark Connect image rebuilt under the same tag: it alone travels again and its pods restart
    spark = "platform/spark-connect:4.3.0-hadoop3.5.0"
    _build(tmp_path, spark, "sha256:" + "f" * 64)
    kubectl_before = len(_log(tmp_path, "kubectl.log"))
    assert _play(tmp_path, env) > 0
    assert _log(tmp_path, "k3s.log")[len(imported) :] == [f"image {spark} sha256:{'f' * 64}"]
    assert _log(tmp_path, "kubectl.log")[kubectl_before:] == ["-n platform rollout restart deployment/spark-connect"]
    assert _log(tmp_path, "ssh.log") == [], "a task dialled another node itself"


def test_no_task_dials_a_node_or_forwards_the_agent():
    """Only Ansible's own connections cross between nodes: vps_2 and vps_3 refuse forwarded agents."""
    tasks = [ANSIBLE / "site.yml", *sorted((ANSIBLE / "tasks").glob("*.yml"))]
    for path in tasks:
        assert not re.search(r"(^|[|;&(]\s*|\s)ssh\s", path.read_text(), re.M), path.name
    assert "ForwardAgent=yes" not in (ANSIBLE / "ansible.cfg").read_text()


def test_stack_files_and_manifests_come_from_the_archived_commit():
    """What reaches a node is the commit being deployed, never the operator's working tree."""
    site = (ANSIBLE / "site.yml").read_text()
    for src in re.findall(r"(?:src|stack_src): \"(.+?)\"", site):
        assert not src.startswith("{{ repo_root }}"), src
    assert "git -C {{ repo_root | quote }} archive" in site
    assert yaml.safe_load((ANSIBLE / "vars.yml").read_text())["src_dir"].endswith("/src/{{ commit }}")
