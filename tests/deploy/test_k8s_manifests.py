"""vps_2's manifests against the Kubernetes schemas of the k3s version deployed (offline), and their boundaries."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from deploy import compute_manifests, versions
from resources.topology import NODES, PRIVATE_NETWORK, service
from tests.deploy._helpers import MANIFESTS, manifests

DOCS = [(f"{name}:{d['kind']}/{d['metadata']['name']}", d) for name, docs in manifests().items() for d in docs]


@pytest.mark.parametrize(("label", "doc"), DOCS, ids=[label for label, _ in DOCS])
def test_manifest_is_valid_for_the_deployed_kubernetes(label, doc):
    kubernetes_validate.validate(doc, versions.k8s_minor(), strict=True)


def test_schema_validation_rejects_a_broken_manifest():
    broken = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"ports": [{"port": "high"}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, versions.k8s_minor(), strict=True)


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(manifests())


def _all(kind: str) -> list[dict]:
    return [d for _, d in DOCS if d["kind"] == kind]


def test_services_are_exposed_only_on_the_private_address_at_topology_ports():
    exposed = {}
    for svc in _all("Service"):
        spec = svc["spec"]
        assert spec.get("type", "ClusterIP") == "ClusterIP", "no NodePort/LoadBalancer: nothing on the public NIC"
        assert spec["externalIPs"] == [NODES["vps_2"].private_ip]
        assert spec["externalTrafficPolicy"] == "Local"  # keeps client addresses for the NetworkPolicies
        exposed[svc["metadata"]["name"]] = {p["port"] for p in spec["ports"]}
    assert exposed == {"spark-connect": {service("spark-connect").port}, "jupyter": {service("jupyter").port}}


def test_every_container_has_requests_and_limits_and_a_pinned_image():
    for deployment in _all("Deployment"):
        for c in deployment["spec"]["template"]["spec"]["containers"]:
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and {"cpu", "memory"} <= set(
                c["resources"]["limits"]
            ), c["name"]
            assert ":" in c["image"] and not c["image"].endswith(":latest"), c["image"]


def test_network_policies_admit_only_the_vpc_and_the_namespace():
    policies = {p["metadata"]["name"]: p["spec"] for p in _all("NetworkPolicy")}
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    sources = [peer for rule in policies["ingress-from-vpc"]["ingress"] for peer in rule["from"]]
    blocks = {peer["ipBlock"]["cidr"] for peer in sources if "ipBlock" in peer}
    assert blocks == {str(PRIVATE_NETWORK)}
    assert all(set(peer) <= {"ipBlock", "podSelector"} and "namespaceSelector" not in peer for peer in sources)


def test_spark_connect_requires_a_token_behind_tls():
    deployment = next(d for d in _all("Deployment") if d["metadata"]["name"] == "spark-connect")
    containers = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}
    env = {e["name"]: e for e in containers["spark-connect"]["env"]}
    assert (
        env["SPARK_CONNECT_AUTHENTICATE_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == compute_manifests.SPARK_SECRET
    )
    defaults = compute_manifests.spark_defaults()
    assert "spark.connect.grpc.binding.address 127.0.0.1" in defaults  # only the TLS sidecar reaches it
    assert containers["tls-proxy"]["ports"][0]["containerPort"] == service("spark-connect").port
    assert f"http://{service('object-store-s3').endpoint}" in defaults


def test_the_dagster_role_reads_no_secret_and_batch_pods_hold_no_api_token():
    """The Role once read every Secret of the namespace (the Spark Connect TLS key, the Jupyter token)."""
    role = _all("Role")[0]
    assert not [r for r in role["rules"] if {"secrets", "configmaps"} & set(r["resources"])]
    from resources.k8s_batch import K8sBatchResource

    batch = next(a for a in _all("ServiceAccount") if a["metadata"]["name"] == K8sBatchResource.model_fields[
        "service_account"].default)  # fmt: skip
    assert batch["automountServiceAccountToken"] is False
    bound = [s["name"] for b in _all("RoleBinding") for s in b["subjects"]]
    assert batch["metadata"]["name"] not in bound


def test_the_namespace_enforces_pod_security():
    labels = _all("Namespace")[0]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"  # privileged pods are refused at admission
    assert labels["pod-security.kubernetes.io/warn"] == labels["pod-security.kubernetes.io/audit"] == "restricted"


def test_dagster_has_a_namespaced_service_account_for_jobs():
    role = _all("Role")[0]
    binding = _all("RoleBinding")[0]
    assert any("jobs" in r["resources"] and "create" in r["verbs"] for r in role["rules"])
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "dagster", "namespace": "platform"}]
    assert not _all("ClusterRole") and not _all("ClusterRoleBinding")


_VERB = {"create": "create", "read": "get", "list": "list", "delete": "delete", "patch": "patch", "replace": "update"}


def _api_calls_of_the_pipes_client() -> set[tuple[str, str]]:
    """(verb, resource) of every Kubernetes call dagster-k8s's PipesK8sClient and its client helper make, read from
    the installed library itself so an upgrade that adds a call fails here rather than on vps_2."""
    import dagster_k8s

    root = Path(dagster_k8s.__file__).parent
    calls = set()
    for module in ("pipes.py", "client.py"):
        text = (root / module).read_text()
        for verb, resource, sub in re.findall(r"_api\.(\w+?)_namespaced_(\w+?)(_log|_status)?\b", text):
            calls.add((_VERB[verb], resource + "s" + sub.replace("_", "/")))
    return calls


def test_the_dagster_role_allows_every_call_of_the_k8s_pipes_runner():
    calls = _api_calls_of_the_pipes_client()
    assert ("create", "pods") in calls and ("get", "pods/log") in calls
    granted = {(v, r) for rule in _all("Role")[0]["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert calls <= granted, f"the Role lacks {sorted(calls - granted)}"
