"""The Dagster UI in a real headless Chromium: the global asset lineage page renders what GraphQL says exists.

Chromium comes from the system packages (installed here if missing: the test needs it, so it installs it);
no Python browser driver is needed: ``--dump-dom`` gives the rendered page, ``--screenshot`` a picture of it.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator

import pytest

from control_plane.client import GraphQLClient
from tests.conftest import REPO, TEST_DATA
from tests.test_control_plane import webserver  # noqa: F401 — the same real webserver fixture

SCREENSHOTS = REPO / ".data" / "test-artifacts" / "screenshots"  # kept after the run (the stack folder is not)
WINDOW = (1600, 1000)


@pytest.fixture(scope="module")
def chromium() -> Iterator[str]:
    path = shutil.which("chromium")
    if path is None:
        if os.geteuid() != 0:
            pytest.fail("chromium is not installed and installing it needs root: apt-get install chromium")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
                       check=True, env=env, timeout=900)  # fmt: skip
        path = shutil.which("chromium")
        assert path, "apt-get installed chromium but it is not on PATH"
    yield path


def headless(chromium: str, *args: str) -> subprocess.CompletedProcess:
    """One headless page load, given 15 s of virtual time for the React app to query GraphQL and render."""
    profile = TEST_DATA / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    cmd = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
        f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=15000", *args,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_asset_lineage_page_shows_every_group(webserver, chromium):  # noqa: F811
    nodes = GraphQLClient(webserver).query("{ assetNodes { groupName isMaterializable } }")["assetNodes"]
    groups = {n["groupName"] for n in nodes}
    materializable = sum(n["isMaterializable"] for n in nodes)
    assert groups == {"oltp", "raw", "curated", "warehouse", "marts"}
    page = f"{webserver}/asset-groups"

    dom = headless(chromium, "--dump-dom", page)
    assert dom.returncode == 0, dom.stderr[-2000:]
    texts = set(re.findall(r">([^<>]+)<", dom.stdout))
    assert "Global asset lineage" in texts, "the lineage page did not render"
    assert groups <= texts, f"groups missing from the lineage graph: {sorted(groups - texts)}"
    assert f"Materialize all ({materializable})" in texts, "the page offers a different set of assets than GraphQL"

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "asset-groups.png"
    shot.unlink(missing_ok=True)
    proc = headless(chromium, f"--screenshot={shot}", page)
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == WINDOW
    assert len(png) > 20_000, f"screenshot is {len(png)} bytes: a blank page?"
