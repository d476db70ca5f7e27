"""The code location loads from workspace.yaml, and the graph has the shape the platform promises."""

import subprocess
import sys
from pathlib import Path

import dagster as dg

from platform_assets.catalog import MODELS, TABLES
from platform_assets.definitions import LINEAGE_JOB, defs
from platform_assets.marts.queries import MARTS

REPO = Path(__file__).resolve().parent.parent


def test_definitions_load_from_workspace_yaml(stack):
    dagster = Path(sys.executable).parent / "dagster"
    proc = subprocess.run([str(dagster), "definitions", "validate", "-w", str(REPO / "workspace.yaml")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "data_platform" in proc.stdout + proc.stderr


def test_asset_graph_layers_groups_and_kinds():
    d = defs()
    specs = {s.key: s for s in d.resolve_all_asset_specs()}
    expected = (
        [("oltp", t.name) for t in TABLES]
        + [("raw", t.name) for t in TABLES]
        + [("curated", t.name) for t in TABLES]
        + [("warehouse", t.name) for t in (*TABLES, *MODELS)]
        + [("marts", m.name) for m in MARTS]
    )
    assert set(specs) == {dg.AssetKey(list(k)) for k in expected}
    kinds = {"raw": "postgres", "curated": "spark", "warehouse": "clickhouse", "marts": "clickhouse"}
    for key, spec in specs.items():
        layer = key.path[0]
        assert spec.group_name == layer
        assert spec.owners == ["team:data-platform"] and spec.description
        if layer in kinds:
            assert kinds[layer] in spec.kinds and spec.code_version
    # lineage: mart -> warehouse model -> warehouse table -> curated -> raw -> oltp
    assert dg.AssetKey(["warehouse", "lineitem"]) in {
        dep.asset_key for dep in specs[dg.AssetKey(["marts", "tpch_q01_pricing_summary"])].deps
    }
    for model in MODELS:  # models are maintained in ClickHouse from the warehouse tables they join
        assert {dep.asset_key for dep in specs[dg.AssetKey(["warehouse", model.name])].deps} == {
            dg.AssetKey(["warehouse", t]) for t in model.depends_on
        }
    assert {dep.asset_key for dep in specs[dg.AssetKey(["warehouse", "lineitem"])].deps} == {
        dg.AssetKey(["curated", "lineitem"])
    }


def test_lineage_job_selects_every_materializable_asset():
    d = defs()
    job = d.resolve_job_def(LINEAGE_JOB)
    materializable = {s.key for s in d.resolve_all_asset_specs() if s.key.path[0] != "oltp"}
    assert set(job.asset_layer.executable_asset_keys) == materializable
