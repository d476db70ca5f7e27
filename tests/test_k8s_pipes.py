"""Batch Spark through Dagster Pipes: the pod spec offline, and the job's Pipes round trip through the object store."""

import json
import os
import subprocess
import sys

import dagster as dg
import pytest
from dagster_k8s.pipes import build_pod_body

from platform_assets.curated import batch_job
from platform_assets.jobs import range_tags
from platform_assets.partitions import CHANGE_DAYS
from resources.k8s_batch import K8sBatchResource
from resources.spark import SparkResource
from tests.conftest import REPO
from tests.shared_platform import instance_with_days


def test_pod_spec_runs_the_batch_module_with_secrets_from_kubernetes(resources):
    k8s = K8sBatchResource(object_store=resources["object_store"])
    pod = build_pod_body(
        pod_name="dagster-run-x",
        image=k8s.image,
        command=k8s.command("lineitem"),
        env_vars=k8s.env(),
        base_pod_meta=k8s.base_pod_meta(),
        base_pod_spec=k8s.base_pod_spec(),
    )
    container = pod.spec.containers[0]
    assert container.command == ["python", "-m", batch_job.__name__, "lineitem"]
    assert pod.spec.service_account_name == "batch" and pod.spec.restart_policy == "Never"
    # no API token in the pod (the account is bound to nothing either), and Pod Security's restricted profile
    assert pod.spec.automount_service_account_token is False
    pod_security = pod.spec.security_context
    assert pod_security.run_as_non_root and pod_security.seccomp_profile.type == "RuntimeDefault"
    assert container.security_context.allow_privilege_escalation is False
    assert container.security_context.capabilities.drop == ["ALL"]
    assert container.env_from[0].secret_ref.name == "object-store-credentials"
    assert container.resources.limits == {"cpu": "2", "memory": "4Gi"}
    env = {e.name: e.value for e in container.env}
    assert env["S3_ENDPOINT_URL"] == resources["object_store"].endpoint_url and env["PLATFORM_ENV"] == "prod"
    for secret in ("S3_SECRET_ACCESS_KEY", "S3_ACCESS_KEY_ID"):
        assert secret not in env and os.environ[secret] not in str(pod.to_dict())
    assert k8s.message_reader().bucket == "lake"  # messages come back through the object store


def test_batch_job_reports_its_materialization_through_the_object_store(lineage, seeded, resources, object_store):
    """The pod's program, run as a subprocess under Pipes with the same S3 message reader the k8s client uses."""
    k8s = K8sBatchResource(object_store=resources["object_store"])

    @dg.asset(key=["curated", "nation"], partitions_def=CHANGE_DAYS)
    def nation_via_pipes(context: dg.AssetExecutionContext, pipes: dg.PipesSubprocessClient):
        return pipes.run(
            context=context, command=[sys.executable, "-m", batch_job.__name__, "nation"], cwd=str(REPO),
            extras=K8sBatchResource.extras(context), env={"PLATFORM_ENV": "local"},
        ).get_materialize_result()  # fmt: skip

    with k8s.process_config_and_initialize_cm() as live:
        client = dg.PipesSubprocessClient(message_reader=live.message_reader())
        result = dg.materialize([nation_via_pipes], resources={"pipes": client}, partition_key="1998-08-03",
                                instance=instance_with_days("1998-08-03"))  # fmt: skip
    assert result.success
    md = result.get_asset_materialization_events()[0].event_specific_data.materialization.metadata
    assert md["dagster/row_count"].value == seeded["nation"]
    assert md["path"].value == object_store.s3_uri("curated/nation/change_date=1998-08-03/")


class PodsAsSubprocesses(K8sBatchResource):
    """vps_2's batch pods, stood in for by the same program as a subprocess under Pipes (no Kubernetes here): what
    the curated asset hands over and what comes back are those of a pod."""

    def run(self, context: dg.AssetExecutionContext, asset_name: str):
        client = dg.PipesSubprocessClient(message_reader=self.message_reader())
        return client.run(context=context, command=[sys.executable, "-m", batch_job.__name__, asset_name],
                          extras=self.extras(context), cwd=str(REPO), env={"PLATFORM_ENV": "local"})  # fmt: skip


@pytest.mark.parametrize(
    "scope",
    [{"partition_key": "1998-08-03"}, {"tags": range_tags("1998-08-03", "1998-08-05")}],
    ids=["one day", "a backfill's range in one run"],
)
def test_a_curated_run_configured_for_pods_hands_the_build_to_k8s_batch(
    lineage, seeded, resources, object_store, scope
):
    """One asset definition in every environment; the run's config (or the environment's default) picks the pod.
    A range run's days reach the pod too (Pipes itself hands over a partition only for one-partition runs)."""
    from platform_assets.definitions import defs

    key = dg.AssetKey(["curated", "nation"])
    asset = next(a for a in defs().assets if key in getattr(a, "keys", ()))
    # a Spark server nobody listens on: the run fails if the asset uses the spark resource
    nowhere = SparkResource(object_store=resources["object_store"], remote="sc://127.0.0.1:9", connect_retry_seconds=1)
    pods = PodsAsSubprocesses(object_store=resources["object_store"])
    result = dg.materialize(
        [asset], resources={"spark": nowhere, "k8s_batch": pods},
        run_config={"ops": {"curated__nation": {"config": {"runner": "k8s-pipes"}}}}, **scope,
        instance=instance_with_days("1998-08-03", "1998-08-04", "1998-08-05"),
    )  # fmt: skip
    assert result.success
    events = result.get_asset_materialization_events()
    days = 1 if "partition_key" in scope else 3
    assert sorted(e.partition for e in events) == [f"1998-08-0{3 + i}" for i in range(days)]
    md = events[0].event_specific_data.materialization.metadata
    assert md["dagster/row_count"].value == seeded["nation"] and md["days"].value == days
    assert md["path"].value == object_store.s3_uri("curated/nation/change_date=1998-08-03/")


def test_the_environment_picks_the_default_runner_without_changing_the_graph():
    code = (
        "import json; from platform_assets.definitions import defs; d = defs(); "
        "a = [x for x in d.assets if any(k.path[0] == 'curated' for k in getattr(x, 'keys', ()))]; "
        "print(json.dumps([sorted('/'.join(k.path) for x in a for k in x.keys), "
        "sorted({r for x in a for r in x.required_resource_keys}), d.resources['k8s_batch'].default_runner]))"
    )
    out = {}
    for runner in ("spark", "k8s-pipes"):
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "CURATED_RUNNER": runner})  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        out[runner] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["spark"][:2] == out["k8s-pipes"][:2] and "curated/lineitem" in out["spark"][0]
    assert {"spark", "k8s_batch"} <= set(out["spark"][1])
    assert (out["spark"][2], out["k8s-pipes"][2]) == ("spark", "k8s-pipes")
