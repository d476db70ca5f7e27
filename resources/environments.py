"""Per-environment resource sets, chosen in one place by ``PLATFORM_ENV``.

The asset code is the same everywhere; only these settings differ. Endpoints default to the local stack
(``local``) or to the topology (``prod``) and can be overridden by environment variables; every secret is a
``dg.EnvVar`` so it is resolved at run time and never shown in the UI. ``.env.example`` lists each variable.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import dagster as dg

from resources.clickhouse import ClickHouseResource
from resources.k8s_batch import K8sBatchResource
from resources.object_store import ObjectStoreResource
from resources.oltp_postgres import OltpPostgresResource
from resources.settings import (
    Environment,
    data_dir,
    local_port,
    local_spark_connect_url,
    platform_env,
    s3a_jars_dir,
)
from resources.spark import SparkResource
from resources.topology import service
from resources.webhook import webhook_resource

# Prod defaults the deploy files use too (deploy/edge_stack.py imports them: one declaration each).
OLTP_DEFAULTS = {"user": "platform", "db": "tpch"}
LAKE_BUCKET = "lake"
S3_REGION = "us-east-1"
# The OLTP's roles, each with only the privileges its consumer needs (platform_assets/oltp/roles.py creates them):
# role -> (user, the variable holding its password). The pipeline connects as `extract` (read-only: the extract, the
# change sensor, the checks) and `capture` (repair's re-capture); the superuser `admin` (``OLTP_USER``) only migrates;
# `app` plays the application (seed's simulator); `backup` is pg_dump's.
OltpRole = Literal["admin", "extract", "capture", "app", "backup"]
OLTP_ROLES: dict[str, tuple[str, str]] = {
    "admin": (OLTP_DEFAULTS["user"], "OLTP_PASSWORD"),
    "extract": ("platform_extract", "OLTP_EXTRACT_PASSWORD"),
    "capture": ("platform_capture", "OLTP_CAPTURE_PASSWORD"),
    "app": ("tpch_app", "OLTP_APP_PASSWORD"),
    "backup": ("platform_backup", "OLTP_BACKUP_PASSWORD"),
}
# The credentials the resources read from the environment (dg.EnvVar); every node and run container needs them.
# Not the OLTP superuser's (OLTP_PASSWORD): a pipeline secret must not open a shell in the database's container.
RESOURCE_SECRETS = (
    "OLTP_EXTRACT_PASSWORD",
    "OLTP_CAPTURE_PASSWORD",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
    "SPARK_CONNECT_TOKEN",
    "CLICKHOUSE_PASSWORD",
)


def _env(name: str, default: object) -> str:
    return os.environ.get(name) or str(default)


def oltp_user(role: OltpRole) -> str:
    return _env("OLTP_USER", OLTP_DEFAULTS["user"]) if role == "admin" else OLTP_ROLES[role][0]


def oltp_resource(env: Environment, role: OltpRole = "extract") -> OltpPostgresResource:
    """The OLTP as ``role`` (see OLTP_ROLES): the pipeline's is ``extract``."""
    svc = service("oltp-postgres")
    local = env == "local"
    return OltpPostgresResource(
        host=_env("OLTP_HOST", "127.0.0.1" if local else svc.host),
        port=int(_env("OLTP_PORT", local_port(svc.name) if local else svc.port)),
        database=_env("OLTP_DB", OLTP_DEFAULTS["db"]),
        user=oltp_user(role),
        password=dg.EnvVar(OLTP_ROLES[role][1]),
        node=svc.node,
    )


def object_store_resource(env: Environment) -> ObjectStoreResource:
    svc = service("object-store-s3")
    local = env == "local"
    default_url = f"http://127.0.0.1:{local_port(svc.name)}" if local else f"http://{svc.endpoint}"
    return ObjectStoreResource(
        endpoint_url=_env("S3_ENDPOINT_URL", default_url),
        bucket=_env("S3_BUCKET", LAKE_BUCKET),
        region_name=_env("S3_REGION", S3_REGION),
        aws_access_key_id=dg.EnvVar("S3_ACCESS_KEY_ID"),
        aws_secret_access_key=dg.EnvVar("S3_SECRET_ACCESS_KEY"),
        node=svc.node,
    )


def spark_remote(env: Environment) -> str | None:
    """Where Spark runs: ``SPARK_REMOTE`` if set; else a local session when ``SPARK_MASTER`` is set (notebooks,
    one-off scripts, the batch pods on vps_2); else a Spark Connect server that stays warm between runs, so no run
    pays a JVM start: the local stack's (``make up``) or vps_2's."""
    if os.environ.get("SPARK_REMOTE"):
        return os.environ["SPARK_REMOTE"]
    if os.environ.get("SPARK_MASTER"):
        return None
    return local_spark_connect_url() if env == "local" else f"sc://{service('spark-connect').endpoint}"


def spark_resource(env: Environment, object_store: ObjectStoreResource) -> SparkResource:
    svc = service("spark-connect")
    remote = spark_remote(env)
    return SparkResource(
        object_store=object_store,
        master=_env("SPARK_MASTER", "local[2]"),
        remote=remote,
        token=dg.EnvVar("SPARK_CONNECT_TOKEN") if env == "prod" else os.environ.get("SPARK_CONNECT_TOKEN"),
        shuffle_partitions=int(_env("SPARK_SHUFFLE_PARTITIONS", 4)),
        connect_retry_seconds=float(_env("SPARK_CONNECT_RETRY_SECONDS", 60)),
        s3a_jars_dir=None if remote else str(s3a_jars_dir()),
        local_dir=None if remote else str(data_dir() / "spark-local"),
        node=svc.node,
    )


def clickhouse_resource(env: Environment) -> ClickHouseResource:
    svc = service("clickhouse-shard1-http")
    if env == "local" or in_process_clickhouse():
        from platform_assets.warehouse.sharding import SCRATCH, sharded_tables

        return ClickHouseResource(
            dsn=_env("CLICKHOUSE_DSN", f"chdb://{data_dir() / 'clickhouse'}"),
            cluster=_env("CLICKHOUSE_CLUSTER", "platform") or None,
            # CLICKHOUSE_SHARDS=2: the engine emulates production's two shards (resources/chdb_cluster.py)
            shards=int(_env("CLICKHOUSE_SHARDS", 1)),
            sharded_tables=sharded_tables(),
            node_local_databases=[SCRATCH],
            node=svc.node,
        )
    return ClickHouseResource(
        host=_env("CLICKHOUSE_HOST", svc.host),
        port=int(_env("CLICKHOUSE_PORT", svc.port)),
        username=_env("CLICKHOUSE_USER", "platform"),
        password=dg.EnvVar("CLICKHOUSE_PASSWORD"),
        cluster=_env("CLICKHOUSE_CLUSTER", "platform"),
        node=svc.node,
    )


def resource_defs(env: Environment | None = None) -> dict[str, Any]:
    env = env or platform_env()
    object_store = object_store_resource(env)
    return {
        "oltp": oltp_resource(env),  # read-only
        "oltp_capture": oltp_resource(env, "capture"),  # repair_warehouse's re-capture, nothing else
        "object_store": object_store,
        "spark": spark_resource(env, object_store),
        "clickhouse": clickhouse_resource(env),
        # batch pods on vps_2: curated runs configured with runner k8s-pipes; all of them with CURATED_RUNNER=k8s-pipes
        "k8s_batch": K8sBatchResource(
            object_store=object_store,
            kubeconfig_file=os.environ.get("KUBECONFIG"),
            default_runner=_env("CURATED_RUNNER", "spark"),
        ),
        "failure_webhook": webhook_resource(),  # FAILURE_WEBHOOK_URL, optional
    }


def in_process_clickhouse() -> bool:
    """``CLICKHOUSE_DSN=chdb://…`` in prod too: the simulated topology (deploy/sim), where no ClickHouse server runs."""
    return os.environ.get("CLICKHOUSE_DSN", "").startswith("chdb://")


def executor_def(env: Environment | None = None) -> dg.ExecutorDefinition:
    """Local: one process, so one Spark JVM and one chDB engine serve the whole run (a chDB folder opens in one
    process only, so also wherever chDB stands in for the cluster).

    Prod: a process per step; the engines are remote, so steps are cheap to start and run in parallel.
    """
    one_process = (env or platform_env()) == "local" or in_process_clickhouse()
    return dg.in_process_executor if one_process else dg.multiprocess_executor
