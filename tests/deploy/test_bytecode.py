"""Run processes start from compiled bytecode: the local venv and the Dagster image compile it at install, since
PYTHONDONTWRITEBYTECODE (set in the image, and in CI) would make every run process compile its imports again."""

import importlib.util
import re
from pathlib import Path

import dagster
import pyspark

REPO = Path(__file__).resolve().parents[2]


def test_the_virtualenv_holds_bytecode_for_what_a_run_imports():
    for module in (dagster, pyspark):
        assert Path(importlib.util.cache_from_source(module.__file__)).exists(), module.__name__


def test_the_dagster_image_compiles_bytecode_at_install():
    dockerfile = (REPO / "deploy" / "vps_1" / "dagster" / "Dockerfile").read_text()
    assert "PYTHONDONTWRITEBYTECODE=1" in dockerfile
    installs = re.findall(r"uv pip (?:sync|install)[^\n]*", dockerfile)
    assert len(installs) == 2 and all("--compile-bytecode" in line for line in installs), installs
