"""Which environment we are in and where local state lives — chosen here, nowhere else.

``PLATFORM_ENV`` selects ``local`` (default: every engine on this machine) or ``prod`` (the three nodes).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal

from resources.topology import service

Environment = Literal["local", "prod"]
ENV_VAR = "PLATFORM_ENV"
REPO_ROOT = Path(__file__).resolve().parent.parent


def platform_env() -> Environment:
    value = os.environ.get(ENV_VAR, "local").strip().lower() or "local"
    if value not in ("local", "prod"):
        raise ValueError(f"{ENV_VAR}={value!r}: expected 'local' or 'prod'")
    return value  # type: ignore[return-value]


def data_dir() -> Path:
    """The one folder that holds all local state (databases, objects, chDB, Dagster's SQLite)."""
    return Path(os.environ.get("PLATFORM_DATA_DIR", REPO_ROOT / ".data")).resolve()


def local_port(service_name: str) -> int:
    """Port of a service in the local stack: ``LOCAL_PORT_<SERVICE>`` overrides the topology's default."""
    svc = service(service_name)
    env_name = "LOCAL_PORT_" + service_name.upper().replace("-", "_")
    if env_name in os.environ:
        return int(os.environ[env_name])
    if svc.local_port is None:
        raise ValueError(f"service {service_name} has no local port")
    return svc.local_port


def local_spark_connect_url() -> str:
    """The local stack's Spark Connect server (``make up``). ``localhost``: pyspark then sends the token without
    TLS (a local channel only); on vps_2 the token travels over TLS."""
    return f"sc://localhost:{local_port('spark-connect')}"


def s3a_jars_dir() -> Path:
    """hadoop-aws + AWS SDK jars for Spark's s3a in local mode (installed by deploy/local/bootstrap.sh)."""
    return Path(os.environ.get("SPARK_S3A_JARS_DIR", Path(sys.prefix) / "share" / "s3a-jars"))


def require_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"environment variable {name} is not set; see .env.example")
    return value


# Dagster's local instance (make demo, make dev, the deployed-path benchmark). Runs take turns locally: a run
# process holds the in-process ClickHouse engine's folder while it runs; a queued run starts within a second.
_INSTANCE_HEADER = """\
telemetry:
  enabled: false
nux:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
"""
LOCAL_INSTANCE_YAML = (
    _INSTANCE_HEADER
    + """\
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 1
    dequeue_interval_seconds: 1
"""
)
# The webserver launches a run itself (DefaultRunCoordinator): no daemon needed (the control-plane and UI tests).
UNQUEUED_INSTANCE_YAML = _INSTANCE_HEADER + "  class: DefaultRunCoordinator\n"


def local_dagster_home() -> Path:
    """The local instance's folder (``DAGSTER_HOME`` of make demo and make dev), created with its dagster.yaml."""
    home = data_dir() / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    yaml = home / "dagster.yaml"
    if not yaml.exists():
        yaml.write_text(LOCAL_INSTANCE_YAML)
    return home
