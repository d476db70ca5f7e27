"""vps_2's manifests against the Kubernetes schemas of the k3s version deployed (offline), and their boundaries."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from deploy import compute_manifests, versions
from deploy.compute_manifests import JUPYTER_SECRET, JUPYTER_SECRET_KEYS, SECRET_KEYS
from deploy.sim.compute import container_spec
from resources.topology import NODES, PRIVATE_NETWORK, service
from tests.deploy import _pod_security as pod_security
from tests.deploy._helpers import DEPLOY, MANIFESTS, manifests

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


def test_the_namespace_enforces_the_restricted_pod_security_profile():
    """Pinned to the deployed minor (a k3s upgrade does not tighten it unseen); warnings and audit follow the latest
    rules, so an upgrade's new rules show before they are enforced. The offline checker follows the same version."""
    labels = _all("Namespace")[0]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/enforce-version"] == f"v{versions.k8s_minor()}"
    assert labels["pod-security.kubernetes.io/warn"] == labels["pod-security.kubernetes.io/audit"] == "restricted"
    assert versions.k8s_minor() == pod_security.VERSION, "revisit tests/deploy/_pod_security.py for this version"


_TEMPLATED = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}  # the pod at spec.template
BATCH_POD = "resources/k8s_batch.py:Pod/batch"
PODS = [label for label, d in DOCS if d["kind"] in _TEMPLATED | {"Pod", "CronJob"}] + [BATCH_POD]


def _batch_pod() -> dict:
    """The pod PipesK8sClient creates for a batch step, built by dagster-k8s from the resource's spec and meta."""
    from dagster_k8s.pipes import build_pod_body
    from kubernetes.client import ApiClient

    from resources.k8s_batch import K8sBatchResource
    from resources.object_store import ObjectStoreResource

    store = ObjectStoreResource(endpoint_url="http://127.0.0.1:9", bucket="lake", aws_access_key_id="k",
                                aws_secret_access_key="s")  # fmt: skip
    k8s = K8sBatchResource(object_store=store)
    body = build_pod_body(
        pod_name="dagster-run-x", image=k8s.image, command=k8s.command("lineitem"), env_vars=k8s.env(),
        base_pod_meta=k8s.base_pod_meta(), base_pod_spec=k8s.base_pod_spec(),
    )  # fmt: skip
    return ApiClient().sanitize_for_serialization(body)


def _pod(label: str) -> dict:
    if label == BATCH_POD:
        return _batch_pod()
    doc = dict(DOCS)[label]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]
    return doc if doc["kind"] == "Pod" else doc["spec"]["template"]


def test_pods_are_found_in_every_workload():
    assert {label.split(":")[1] for label in PODS} == {"Deployment/spark-connect", "Deployment/jupyter", "Pod/batch"}


@pytest.mark.parametrize("label", PODS)
def test_every_pod_the_platform_creates_meets_the_restricted_profile(label):
    """What the namespace's admission would refuse, named by manifest, container and field."""
    pod = _pod(label)
    found = pod_security.violations(pod["spec"], pod.get("metadata"))
    assert not found, "refused by Pod Security (restricted):\n" + "\n".join(f"{label}: {v}" for v in found)


_COMPLIANT = {
    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [{"name": "app", "securityContext": {"allowPrivilegeEscalation": False,
                                                       "capabilities": {"drop": ["ALL"]}}}],
    "volumes": [{"name": "tmp", "emptyDir": {}}],
}  # fmt: skip
_C = "spec.containers[app].securityContext"
_BREACHES = {  # a dotted path in the spec (None: delete it) -> the fields reported
    "hostNetwork": (True, {"spec.hostNetwork"}),
    "hostPID": (True, {"spec.hostPID"}),
    "hostIPC": (True, {"spec.hostIPC"}),
    "containers.0.ports": ([{"containerPort": 80, "hostPort": 80}], {"spec.containers[app].ports[0].hostPort"}),
    "containers.0.securityContext.privileged": (True, {f"{_C}.privileged"}),
    "containers.0.securityContext.procMount": ("Unmasked", {f"{_C}.procMount"}),
    "securityContext.sysctls": ([{"name": "kernel.msgmax"}], {"spec.securityContext.sysctls[kernel.msgmax]"}),
    "containers.0.securityContext.seLinuxOptions": ({"user": "system_u"}, {f"{_C}.seLinuxOptions"}),
    "securityContext.appArmorProfile": ({"type": "Unconfined"}, {"spec.securityContext.appArmorProfile.type"}),
    "containers.0.securityContext.windowsOptions": ({"hostProcess": True}, {f"{_C}.windowsOptions.hostProcess"}),
    "volumes.0": ({"name": "host", "hostPath": {"path": "/"}}, {"spec.volumes[host]"}),
    "securityContext.runAsNonRoot": (None, {f"{_C}.runAsNonRoot"}),
    "containers.0.securityContext.runAsNonRoot": (False, {f"{_C}.runAsNonRoot"}),
    "securityContext.runAsUser": (0, {"spec.securityContext.runAsUser"}),
    "containers.0.securityContext.runAsUser": (0, {f"{_C}.runAsUser"}),
    "securityContext.seccompProfile": (None, {f"{_C}.seccompProfile.type"}),
    "containers.0.securityContext.seccompProfile": ({"type": "Unconfined"}, {f"{_C}.seccompProfile.type"}),
    "containers.0.securityContext.allowPrivilegeEscalation": (None, {f"{_C}.allowPrivilegeEscalation"}),
    "containers.0.securityContext.capabilities.drop": (["NET_RAW"], {f"{_C}.capabilities.drop"}),
    "containers.0.securityContext.capabilities.add": (["NET_RAW"], {f"{_C}.capabilities.add"}),
    "initContainers": ([{"name": "init"}], {"spec.initContainers[init].securityContext.allowPrivilegeEscalation",
                                            "spec.initContainers[init].securityContext.capabilities.drop"}),
}  # fmt: skip


def _set(tree: dict, path: str, value: object) -> None:
    *parents, leaf = path.split(".")
    for key in parents:
        tree = tree[int(key)] if isinstance(tree, list) else tree[key]
    if value is None:
        del tree[leaf]
    elif isinstance(tree, list):
        tree[int(leaf)] = value
    else:
        tree[leaf] = value


@pytest.mark.parametrize("path", _BREACHES)
def test_the_checker_names_each_breach_of_the_profile(path):
    assert pod_security.violations(copy.deepcopy(_COMPLIANT)) == []
    spec = copy.deepcopy(_COMPLIANT)
    value, fields = _BREACHES[path]
    _set(spec, path, value)
    assert {v.split(": ")[0] for v in pod_security.violations(spec)} == fields


def test_the_checker_allows_what_the_profile_allows_and_reads_apparmor_annotations():
    spec = copy.deepcopy(_COMPLIANT)
    spec["containers"][0]["securityContext"]["capabilities"]["add"] = ["NET_BIND_SERVICE"]
    spec["securityContext"] |= {"sysctls": [{"name": "net.ipv4.tcp_rmem", "value": "4096 87380 6291456"}],
                                "appArmorProfile": {"type": "RuntimeDefault"}}  # fmt: skip
    spec["volumes"] += [{"name": n, k: {}} for n, k in (("a", "secret"), ("b", "configMap"), ("c", "projected"))]
    assert pod_security.violations(spec) == []
    annotation = "container.apparmor.security.beta.kubernetes.io/app"
    assert pod_security.violations(spec, {"annotations": {annotation: "unconfined"}}) == [
        f"metadata.annotations[{annotation}]: must be runtime/default or localhost/*"
    ]


def test_the_tls_sidecar_writes_only_to_its_emptydir_and_sets_no_user():
    """As a non-root uid nginx can neither switch users nor write to the image's pid and temp paths (root's): each
    path its nginx.conf writes lies on an emptyDir the sidecar mounts."""
    deployment = next(d for d in _all("Deployment") if d["metadata"]["name"] == "spark-connect")
    pod = deployment["spec"]["template"]["spec"]
    proxy = next(c for c in pod["containers"] if c["name"] == "tls-proxy")
    security = proxy.get("securityContext", {})
    assert security.get("runAsUser", 0) > 0 and security.get("runAsGroup", 0) > 0, security
    conf = compute_manifests.nginx_conf()
    assert not re.search(r"^\s*user\s", conf, re.MULTILINE)
    written = dict(re.findall(r"^\s*(pid|\w+_temp_path)\s+(\S+);", conf, re.MULTILINE))
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")  # every temp path the alpine build compiles in
    assert set(written) == {"pid"} | {f"{k}_temp_path" for k in kinds}
    scratch = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    mounts = [m["mountPath"].rstrip("/") + "/" for m in proxy["volumeMounts"] if m["name"] in scratch]
    assert all(any(path.startswith(m) for m in mounts) for path in written.values()), (written, mounts)


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


def test_ansible_makes_every_key_of_the_jupyter_secret_from_its_variable():
    """The Deployment reads these keys (the token, the warehouse's read-only password, the lake's read-only key);
    site.yml creates the Secret from the node's .env, which holds each variable (inventory: secret_keys)."""
    site = (DEPLOY / "ansible" / "site.yml").read_text()
    created = re.search(r"create secret generic jupyter (.*?)--dry-run", site, re.S).group(1)
    assert dict(re.findall(r'--from-literal=([\w-]+)="\$(\w+)"', created)) == JUPYTER_SECRET_KEYS
    assert set(JUPYTER_SECRET_KEYS.values()) <= set(SECRET_KEYS)
    refs = {e["valueFrom"]["secretKeyRef"]["key"] for e in container_spec("jupyter", "jupyter")["env"]
            if e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == JUPYTER_SECRET}  # fmt: skip
    assert refs == set(JUPYTER_SECRET_KEYS)
