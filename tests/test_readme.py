"""The README is the contract: its first screen says what this is, gives the two commands and shows the UI."""

import re
import struct
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
FIRST_SCREEN = README[: README.index("## Set-up")]


def test_the_first_screen_has_the_two_commands_the_lineage_and_the_topology():
    assert "make demo" in FIRST_SCREEN and "make test" in FIRST_SCREEN
    assert all(node in FIRST_SCREEN for node in ("vps_1", "vps_2", "vps_3", "10.104.0.0/24"))
    assert re.search(r"OLTP.*raw.*curated.*warehouse.*marts", FIRST_SCREEN.replace("\n", " "))
    assert len(FIRST_SCREEN.splitlines()) <= 30  # one screen


def test_the_first_screen_shows_the_browser_tests_picture_of_the_ui():
    (picture,) = re.findall(r"!\[[^\]]+\]\(([^)]+\.png)\)", FIRST_SCREEN)
    png = (REPO / picture).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (1600, 1000)
    browser_test = (REPO / "tests" / "test_ui_browser.py").read_text()
    assert f'README_PICTURE = REPO / "{Path(picture).parent}" / "{Path(picture).name}"' in browser_test


def test_every_make_target_the_readme_names_exists():
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.M))
    named = set(re.findall(r"`make ([a-z][a-z-]*)", README))
    assert named and named <= targets, named - targets
