"""Long Spark batch jobs as pods on vps_2's Kubernetes, through Dagster Pipes (dagster-k8s ``PipesK8sClient``).

The documented alternative to Spark Connect for jobs that should not hold a session open: the pod runs
``python -m platform_assets.curated.batch_job <asset>`` with Spark in local mode inside the pod, and reports its
materialization back through the object store (``PipesS3MessageReader``), not through pod logs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import dagster as dg
from dagster_aws.pipes import PipesS3MessageReader

from resources.object_store import ObjectStoreResource

if TYPE_CHECKING:  # imported where a pod is launched: the kubernetes client is a heavy import for every run process
    from dagster_k8s import PipesK8sClient

Runner = Literal["spark", "k8s-pipes"]  # where a curated table is built
BATCH_MODULE = "platform_assets.curated.batch_job"
CHANGE_DAYS_EXTRA = "change_days"  # the Pipes extra naming the run's days (ISO dates)
BATCH_IMAGE = "platform/spark-batch:4.3.0"  # deploy/vps_2/spark-batch/Dockerfile; Ansible builds and imports it


class K8sBatchResource(dg.ConfigurableResource):
    object_store: ObjectStoreResource
    image: str = BATCH_IMAGE
    namespace: str = "platform"
    service_account: str = "batch"  # no Role, no token: the pod reads the lake, not the Kubernetes API
    credentials_secret: str = "object-store-credentials"  # k8s Secret with S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY
    kubeconfig_file: str | None = None
    cpu: str = "2"
    memory: str = "4Gi"
    node: str = "vps_2"
    # where a curated run builds its table unless its config says otherwise: "spark" (the spark resource) or
    # "k8s-pipes" (a pod from this resource)
    default_runner: Runner = "spark"

    def command(self, asset_name: str) -> list[str]:
        return ["python", "-m", BATCH_MODULE, asset_name]

    def env(self) -> dict[str, str]:
        """Plain settings only: credentials reach the pod from a Kubernetes Secret, never the pod spec."""
        return {
            "PLATFORM_ENV": "prod",
            "S3_ENDPOINT_URL": self.object_store.endpoint,
            "S3_BUCKET": self.object_store.bucket,
            "S3_REGION": self.object_store.region_name or "us-east-1",
            "SPARK_MASTER": f"local[{self.cpu}]",
        }

    def base_pod_meta(self) -> dict[str, Any]:
        return {"labels": {"app.kubernetes.io/part-of": "data-platform", "platform/node": self.node}}

    def base_pod_spec(self) -> dict[str, Any]:
        """The batch pod: Pod Security's restricted profile (non-root as the image's uid 1000, no privilege
        escalation, no capabilities, the runtime's seccomp profile) and no service-account token mounted."""
        return {
            "serviceAccountName": self.service_account,
            "automountServiceAccountToken": False,
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "batch",
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                    "envFrom": [{"secretRef": {"name": self.credentials_secret}}],
                    "resources": {
                        "requests": {"cpu": self.cpu, "memory": self.memory},
                        "limits": {"cpu": self.cpu, "memory": self.memory},
                    },
                }
            ],
        }

    def message_reader(self) -> PipesS3MessageReader:
        return PipesS3MessageReader(bucket=self.object_store.bucket, client=self.object_store.client())

    def client(self) -> PipesK8sClient:
        from dagster_k8s import PipesK8sClient

        return PipesK8sClient(message_reader=self.message_reader(), kubeconfig_file=self.kubeconfig_file)

    @staticmethod
    def extras(context: dg.AssetExecutionContext) -> dict[str, Any]:
        """The run's change days, handed to the pod: Pipes gives the external process a partition (key, range,
        time window) only for a one-partition run, so a backfill's range would reach the pod as no days at all."""
        return {CHANGE_DAYS_EXTRA: list(context.partition_keys)}

    def run(self, context: dg.AssetExecutionContext, asset_name: str):
        return self.client().run(
            context=context,
            extras=self.extras(context),
            image=self.image,
            command=self.command(asset_name),
            namespace=self.namespace,
            env=self.env(),
            base_pod_meta=self.base_pod_meta(),
            base_pod_spec=self.base_pod_spec(),
        )
