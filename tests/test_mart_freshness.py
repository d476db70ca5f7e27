"""A mart's freshness check rides in the mart's own step when the mart is built, and runs alone (the hourly
``check_freshness`` job, a user's Execute) against the mart's last build."""

import dagster as dg

from platform_assets.definitions import defs
from platform_assets.jobs import INCREMENTAL_JOB
from platform_assets.marts.assets import FRESH, mart_asset
from platform_assets.marts.queries import MARTS
from resources.environments import clickhouse_resource

MART = MARTS[0]
KEY = dg.AssetKey(["marts", MART.name])
CHECK = dg.AssetCheckKey(KEY, FRESH)
INPUTS = [dg.AssetKey(["warehouse", d]) for d in MART.depends_on]


def test_a_days_run_checks_each_mart_in_the_marts_own_step():
    d = defs()
    marts = {k for k in d.resolve_asset_graph().get_all_asset_keys() if k.path[0] == "marts"}
    job = d.resolve_job_def(INCREMENTAL_JOB).get_subset(
        asset_selection=marts, asset_check_selection={dg.AssetCheckKey(k, FRESH) for k in marts}
    )
    steps = {node.name for node in job.graph.nodes}
    assert steps == {"__".join(k.path) for k in marts}, "a mart's freshness check is a step of its own"


def _check_alone(instance: dg.DagsterInstance, loaded: list[dg.AssetKey]) -> dg.AssetCheckEvaluation:
    for key in loaded:
        instance.report_runless_asset_event(dg.AssetMaterialization(key))
    only_the_check = dg.Definitions(
        assets=[mart_asset(MART)],
        resources={"clickhouse": clickhouse_resource("local")},  # not opened: the check reads Dagster's events
        jobs=[dg.define_asset_job("fresh", selection=dg.AssetSelection.checks(CHECK))],
    )
    result = only_the_check.resolve_job_def("fresh").execute_in_process(instance=instance)
    assert not result.get_asset_materialization_events(), "the check alone built the mart"
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def test_the_check_alone_finds_an_input_loaded_after_the_marts_last_build():
    with dg.instance_for_test() as instance:
        never_built = _check_alone(instance, INPUTS)
        assert not never_built.passed and never_built.metadata["stale_inputs"].value == len(INPUTS)
        built_after_its_inputs = _check_alone(instance, [KEY])
        assert built_after_its_inputs.passed and built_after_its_inputs.metadata["stale_inputs"].value == 0
        reloaded = _check_alone(instance, [INPUTS[0]])
        assert not reloaded.passed and INPUTS[0].to_user_string() in reloaded.description
        assert reloaded.severity == dg.AssetCheckSeverity.ERROR
