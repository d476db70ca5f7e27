"""The engine ``make topology-up`` leaves running is stopped by ``make topology-down``, a later command: found by its
pid file, its containers' state removed before dockerd ends (not SIGKILLed with its volumes left on the data root)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deploy.sim.docker_engine import DockerEngine, installed
from deploy.sim.netns import Lab, remove_prefixed
from tests.conftest import TEST_DATA

pytestmark = pytest.mark.skipif(not installed(), reason="Docker Engine not installed (`make setup` installs it)")

START_AND_LEAVE = """
import sys
from pathlib import Path
from deploy.sim.docker_engine import DockerEngine
from deploy.sim.netns import Lab
lab = Lab(prefix=sys.argv[1])  # not closed, as `python -m deploy.sim up`
DockerEngine(sys.argv[2], Path(sys.argv[3]), lab.namespace("node")).start()
"""


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "\nState:\tZ" not in status.read_text()


def test_an_engine_left_running_by_an_earlier_command_is_stopped_with_its_state_removed():
    data_root = TEST_DATA / "detached-engine"
    with Lab() as lab:  # for its prefix and its check that nothing is left
        name = f"{lab.prefix}-detached"
        subprocess.run([sys.executable, "-c", START_AND_LEAVE, lab.prefix, name, str(data_root)], check=True,
                       timeout=120)  # fmt: skip
        later = DockerEngine(name, data_root)  # another process: no handle on the running dockerd
        pid = int((later.exec_root / "dockerd.pid").read_text())
        try:
            assert _alive(pid)
            later.docker("volume", "create", "kept-data")
            assert (data_root / "volumes" / "kept-data").is_dir()
        finally:
            later.stop()
            remove_prefixed(lab.prefix)  # the namespace the other command made (`make topology-down`'s second step)
        assert not _alive(pid) and not later.exec_root.exists()
        assert not (data_root / "volumes" / "kept-data").exists(), "the engine was killed, not stopped"
