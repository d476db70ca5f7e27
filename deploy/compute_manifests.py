"""vps_2, compute on k3s: Spark Connect and Jupyter, reachable only on the node's private address.

Rendered to ``deploy/vps_2/manifests/`` (plain YAML + kustomization.yaml; secrets are created by Ansible,
never committed). Services use ``externalIPs`` = the node's private address with
``externalTrafficPolicy: Local``, so clients keep their source address and the NetworkPolicies can admit the
VPC only. The pyspark client sends its token only over TLS, so an nginx sidecar terminates TLS in front of
Spark Connect, which itself listens on the pod's loopback.
"""

from __future__ import annotations

from typing import Any

from deploy import versions
from deploy.clickhouse_config import ANALYST_PASSWORD_ENV, ANALYST_USER
from deploy.object_store_identities import ANALYST
from resources.environments import LAKE_BUCKET
from resources.topology import NODES, PRIVATE_NETWORK, service

NODE = "vps_2"
NAMESPACE = "platform"
SPARK_INTERNAL_PORT = 15003  # Spark Connect on the pod's loopback, behind the TLS sidecar
SPARK_IMAGE = f"platform/spark-connect:{versions.SPARK}-hadoop{versions.SPARK_HADOOP}"
JUPYTER_IMAGE = f"platform/jupyter:{versions.JUPYTERLAB}-pyspark{versions.SPARK}"
POD_CIDR = "10.42.0.0/16"  # k3s default cluster CIDR
SPARK_SECRET = "spark-connect"  # key `token`; created by Ansible from SPARK_CONNECT_TOKEN
TLS_SECRET = "spark-connect-tls"  # tls.crt/tls.key; created by Ansible (self-signed, SAN = node IP + DNS)
JUPYTER_SECRET = "jupyter"  # created by Ansible from the node's .env: key -> the .env variable it holds
JUPYTER_SECRET_KEYS = {
    "token": "JUPYTER_TOKEN",
    "clickhouse-password": ANALYST_PASSWORD_ENV,  # the warehouse's read-only user
    "s3-access-key-id": ANALYST.key_var,  # the object store's read-only identity for curated/
    "s3-secret-access-key": ANALYST.secret_var,
}
SECRET_KEYS = ["SPARK_CONNECT_TOKEN", "JUPYTER_TOKEN", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY",
               *(v for v in JUPYTER_SECRET_KEYS.values() if v != "JUPYTER_TOKEN")]  # fmt: skip
JUPYTER_HOME = "/home/jovyan"
NOTEBOOKS = f"{JUPYTER_HOME}/notebooks"  # the notebooks the image ships (notebooks/ of this repository)
SPARK_DNS = f"spark-connect.{NAMESPACE}.svc.cluster.local"
FILES = [
    "namespace.yaml",
    "spark-connect.yaml",
    "jupyter.yaml",
    "network-policies.yaml",
    "dagster-rbac.yaml",
]


def _meta(name: str, app: str | None = None, namespaced: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/part-of": "data-platform"}}
    if app:
        meta["labels"]["app.kubernetes.io/name"] = app
    if namespaced:
        meta["namespace"] = NAMESPACE
    return meta


def _private_service(name: str, port_name: str, target: int | str) -> dict[str, Any]:
    svc = service(name)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, name),
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": name},
            "externalIPs": [NODES[NODE].private_ip],
            "externalTrafficPolicy": "Local",
            "ports": [{"name": port_name, "port": svc.port, "targetPort": target, "protocol": svc.protocol.upper()}],
        },
    }


def _secret_env(env: str, secret: str, key: str = "token") -> dict[str, Any]:
    return {"name": env, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


# Pod Security's restricted profile: per pod, non-root and the runtime's seccomp profile; per container (fields a pod
# cannot set), no privilege escalation and no capabilities
RESTRICTED_POD = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
NGINX_UID = 101  # `nginx` in the alpine image: the sidecar runs as it from the start, not as a root master
NGINX_SCRATCH = "/tmp"  # the sidecar's emptyDir: its pid file and temp files, the only paths it writes
NGINX_TEMP = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")  # every temp path compiled into the image


def spark_defaults() -> str:
    """Server-side defaults; the client session sets the s3a credentials (resources/object_store.py)."""
    s3 = service("object-store-s3")
    conf = {
        "spark.master": "local[*]",
        "spark.driver.memory": "5g",
        "spark.local.dir": "/tmp/spark-local",
        "spark.ui.enabled": "false",
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(SPARK_INTERNAL_PORT),
        "spark.sql.session.timeZone": "UTC",
        "spark.hadoop.fs.s3a.endpoint": f"http://{s3.endpoint}",
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
    }
    return "".join(f"{k} {v}\n" for k, v in conf.items())


def nginx_conf() -> str:
    """The sidecar runs as a non-root uid: no ``user`` directive, and the pid and temp files (whose compiled-in
    paths are root's) on its emptyDir."""
    spark = service("spark-connect")
    temp = "".join(f"  {kind}_temp_path {NGINX_SCRATCH}/{kind};\n" for kind in NGINX_TEMP)
    return f"""pid {NGINX_SCRATCH}/nginx.pid;
events {{}}
http {{
{temp}  server {{
    listen {spark.port} ssl;
    http2 on;
    ssl_certificate /tls/tls.crt;
    ssl_certificate_key /tls/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    client_max_body_size 0;
    grpc_read_timeout 1h;
    grpc_send_timeout 1h;
    location / {{
      grpc_pass grpc://127.0.0.1:{SPARK_INTERNAL_PORT};
    }}
  }}
}}
"""


# Pod Security admission on the namespace: a pod outside the restricted profile (root, privilege escalation, added
# capabilities, no seccomp profile, host namespaces or paths, ...) is refused. Enforced with the rules of the k3s
# version deployed; warnings and audit use the latest rules, so an upgrade's new ones show before they refuse pods.
POD_SECURITY = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": f"v{versions.k8s_minor()}",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
}
BATCH_ACCOUNT = "batch"  # the batch pods' identity: no Role, no token (resources/k8s_batch.py)


def namespace() -> list[dict[str, Any]]:
    meta = _meta(NAMESPACE, namespaced=False)
    meta["labels"].update(POD_SECURITY)
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": meta}]


def spark_connect() -> list[dict[str, Any]]:
    spark = service("spark-connect")
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta("spark-connect-conf", "spark-connect"),
        "data": {"spark-defaults.conf": spark_defaults(), "nginx.conf": nginx_conf()},
    }
    server = {
        "name": "spark-connect",
        "image": SPARK_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/opt/spark/sbin/start-connect-server.sh"],
        "env": [
            {"name": "SPARK_NO_DAEMONIZE", "value": "1"},
            _secret_env("SPARK_CONNECT_AUTHENTICATE_TOKEN", SPARK_SECRET),
        ],
        "resources": {"requests": {"cpu": "2", "memory": "6Gi"}, "limits": {"cpu": "3", "memory": "7Gi"}},
        "volumeMounts": [
            {"name": "conf", "mountPath": "/opt/spark/conf/spark-defaults.conf", "subPath": "spark-defaults.conf"},
            {"name": "spark-local", "mountPath": "/tmp/spark-local"},
        ],
        "startupProbe": {
            "exec": {"command": ["bash", "-c", f"echo > /dev/tcp/127.0.0.1/{SPARK_INTERNAL_PORT}"]},
            "periodSeconds": 5,
            "failureThreshold": 60,
        },
        "livenessProbe": {
            "exec": {"command": ["bash", "-c", f"echo > /dev/tcp/127.0.0.1/{SPARK_INTERNAL_PORT}"]},
            "periodSeconds": 30,
        },
        "securityContext": {**RESTRICTED, "runAsUser": 185},
    }
    proxy = {
        "name": "tls-proxy",
        "image": versions.NGINX,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "grpc-tls", "containerPort": spark.port}],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}},
        "volumeMounts": [
            {"name": "conf", "mountPath": "/etc/nginx/nginx.conf", "subPath": "nginx.conf"},
            {"name": "tls", "mountPath": "/tls", "readOnly": True},
            {"name": "nginx-scratch", "mountPath": NGINX_SCRATCH},
        ],
        "readinessProbe": {"tcpSocket": {"port": spark.port}, "periodSeconds": 10},
        "securityContext": {**RESTRICTED, "runAsUser": NGINX_UID, "runAsGroup": NGINX_UID},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta("spark-connect", "spark-connect"),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # one server per node: the old one must release its memory first
            "selector": {"matchLabels": {"app.kubernetes.io/name": "spark-connect"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "spark-connect"}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": RESTRICTED_POD,
                    "containers": [server, proxy],
                    "volumes": [
                        {"name": "conf", "configMap": {"name": "spark-connect-conf"}},
                        {"name": "tls", "secret": {"secretName": TLS_SECRET}},
                        {"name": "spark-local", "emptyDir": {"sizeLimit": "50Gi"}},
                        {"name": "nginx-scratch", "emptyDir": {"sizeLimit": "1Gi"}},
                    ],
                },
            },
        },
    }
    return [config, deployment, _private_service("spark-connect", "grpc-tls", "grpc-tls")]


def jupyter() -> list[dict[str, Any]]:
    port = service("jupyter").port
    clickhouse = service("clickhouse-shard1-http")
    container = {
        "name": "jupyter",
        "image": JUPYTER_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "jupyter",
            "lab",
            "--ip=0.0.0.0",
            f"--port={port}",
            "--no-browser",
            f"--notebook-dir={JUPYTER_HOME}",  # notebooks/ (shipped, the image's) and work/ (the volume)
        ],
        "env": [
            {"name": "SPARK_REMOTE", "value": f"sc://{SPARK_DNS}:{service('spark-connect').port}"},
            _secret_env("SPARK_CONNECT_AUTHENTICATE_TOKEN", SPARK_SECRET),  # read by the pyspark client
            {"name": "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "value": "/tls/tls.crt"},
            _secret_env("JUPYTER_TOKEN", JUPYTER_SECRET),
            # what the notebooks read with: the warehouse (ClickHouse shard 1's HTTP, any shard answers for the
            # cluster) as its read-only user, and curated/ in the lake with a read-only key, through Spark
            {"name": "CLICKHOUSE_HOST", "value": clickhouse.host},
            {"name": "CLICKHOUSE_PORT", "value": str(clickhouse.port)},
            {"name": "CLICKHOUSE_USER", "value": ANALYST_USER},
            _secret_env("CLICKHOUSE_PASSWORD", JUPYTER_SECRET, "clickhouse-password"),
            {"name": "S3_ENDPOINT_URL", "value": f"http://{service('object-store-s3').endpoint}"},
            {"name": "S3_BUCKET", "value": LAKE_BUCKET},
            _secret_env("S3_ACCESS_KEY_ID", JUPYTER_SECRET, "s3-access-key-id"),
            _secret_env("S3_SECRET_ACCESS_KEY", JUPYTER_SECRET, "s3-secret-access-key"),
        ],
        "ports": [{"name": "http", "containerPort": port}],
        "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
        "volumeMounts": [
            {"name": "work", "mountPath": f"{JUPYTER_HOME}/work"},
            {"name": "tls", "mountPath": "/tls", "readOnly": True},
        ],
        "readinessProbe": {"httpGet": {"path": "/api", "port": port}, "periodSeconds": 10},
        "securityContext": {**RESTRICTED, "runAsUser": 1000},
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _meta("jupyter-work", "jupyter"),
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta("jupyter", "jupyter"),
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": {"app.kubernetes.io/name": "jupyter"}},
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": "jupyter"}},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "securityContext": {**RESTRICTED_POD, "fsGroup": 1000},
                        "containers": [container],
                        "volumes": [
                            {"name": "work", "persistentVolumeClaim": {"claimName": "jupyter-work"}},
                            {
                                "name": "tls",
                                "secret": {"secretName": TLS_SECRET, "items": [{"key": "tls.crt", "path": "tls.crt"}]},
                            },
                        ],
                    },
                },
            },
        },
        _private_service("jupyter", "http", "http"),
    ]


def network_policies() -> list[dict[str, Any]]:
    """Default deny; ingress from the VPC and this namespace only; egress to the VPC, this namespace and DNS."""
    vpc = {"ipBlock": {"cidr": str(PRIVATE_NETWORK)}}
    same_ns = {"podSelector": {}}
    exposed = [service("spark-connect"), service("jupyter")]
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("default-deny"),
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("ingress-from-vpc"),
            "spec": {
                "podSelector": {},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {"from": [vpc], "ports": [{"protocol": s.protocol.upper(), "port": s.port} for s in exposed]},
                    {"from": [same_ns]},
                ],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("egress-to-vpc"),
            "spec": {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {"to": [vpc, same_ns]},
                    {
                        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                    },
                ],
            },
        },
    ]


def dagster_rbac() -> list[dict[str, Any]]:
    """What dagster-k8s needs to launch and follow Jobs in this namespace (k8s_job_executor, PipesK8sClient)."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta("dagster", "dagster")},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/service-account-token",
            "metadata": {
                **_meta("dagster-token", "dagster"),
                "annotations": {"kubernetes.io/service-account.name": "dagster"},
            },
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta("dagster", "dagster"),
            "rules": [
                {
                    "apiGroups": ["batch"],
                    "resources": ["jobs", "jobs/status"],
                    "verbs": ["create", "get", "list", "watch", "delete", "patch"],
                },
                {
                    "apiGroups": [""],
                    "resources": ["pods", "pods/log", "pods/status", "events"],
                    "verbs": ["get", "list", "watch"],
                },
                # PipesK8sClient creates each batch pod and deletes it when the step ends; it reads no Secret (a
                # pod's envFrom is resolved by the kubelet), so the Role grants none: not the Spark Connect TLS key,
                # not the Jupyter token
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "delete"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta("dagster", "dagster"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "dagster"},
            "subjects": [{"kind": "ServiceAccount", "name": "dagster", "namespace": NAMESPACE}],
        },
        {  # what the batch pods run as: bound to nothing, its token never mounted
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(BATCH_ACCOUNT, "spark-batch"),
            "automountServiceAccountToken": False,
        },
    ]


def manifests() -> dict[str, list[dict[str, Any]]]:
    docs = {
        "namespace.yaml": namespace(),
        "spark-connect.yaml": spark_connect(),
        "jupyter.yaml": jupyter(),
        "network-policies.yaml": network_policies(),
        "dagster-rbac.yaml": dagster_rbac(),
    }
    assert list(docs) == FILES
    return docs


def kustomization() -> dict[str, Any]:
    return {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": FILES}
