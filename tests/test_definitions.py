"""The code location loads from workspace.yaml, and the graph has the shape the platform promises."""

import json
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


def test_code_versions_follow_what_defines_each_asset():
    """Derived from the catalog entry and the layer's logic: one per asset, the same in every process, and a
    changed table definition changes the versions of its own assets only."""
    from dataclasses import replace

    from platform_assets.catalog import TABLES_BY_NAME
    from platform_assets.raw.assets import raw_asset
    from platform_assets.warehouse.assets import warehouse_table_asset

    versions = {s.key.to_user_string(): s.code_version for s in defs().resolve_all_asset_specs()}
    built = {k: v for k, v in versions.items() if k.split("/")[0] in ("raw", "curated", "warehouse", "marts")}
    assert all(built.values()) and len(set(built.values())) == len(built)
    code = (
        "import json; from platform_assets.definitions import defs; "
        "print(json.dumps({s.key.to_user_string(): s.code_version for s in defs().resolve_all_asset_specs()}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert json.loads(out.stdout.splitlines()[-1]) == versions
    orders = TABLES_BY_NAME["orders"]
    narrower = replace(orders, columns=orders.columns[:-1])  # a column dropped from the catalog
    for factory, layer in ((raw_asset, "raw"), (warehouse_table_asset, "warehouse")):
        key = dg.AssetKey([layer, "orders"])
        assert factory(narrower).specs_by_key[key].code_version != versions[f"{layer}/orders"]
        assert factory(orders).specs_by_key[key].code_version == versions[f"{layer}/orders"]


def test_what_the_deploy_files_restate_is_declared_once_by_the_app():
    """workspace.yaml and vps_1's code server name the location the app declares; the secrets every node forwards
    are exactly the credentials the resources read from the environment."""
    import yaml

    from platform_assets import CODE_LOCATION, CODE_MODULE
    from resources.environments import RESOURCE_SECRETS, resource_defs

    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"]
    assert workspace == [{"python_module": {"module_name": CODE_MODULE, "location_name": CODE_LOCATION}}]
    read = {
        value
        for resource in resource_defs("prod").values()
        for value in (getattr(resource, name, None) for name in type(resource).model_fields)
        if isinstance(value, dg.EnvVar)
    }
    assert read == set(RESOURCE_SECRETS)
