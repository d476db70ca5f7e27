"""vps_3, the warehouse: two ClickHouse servers (one per shard) and one ClickHouse Keeper.

Rendered to ``deploy/vps_3/`` (compose.yaml and the ClickHouse XML). Every port is published on the node's
private address only; data sits on the node's block volume.
"""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Any

from deploy import versions
from deploy.clickhouse_config import ANALYST_PASSWORD_ENV, CLUSTER_SECRET_ENV, KEEPER_HOST, PASSWORD_ENV, SHARDS, Shard
from deploy.compose_common import LOGGING, bind_volume, healthcheck, publish, require
from resources.topology import PRIVATE_NETWORK, service

NODE = "vps_3"
NETWORK = "clickhouse"
NETWORK_SUBNET = IPv4Network("172.30.3.0/24")
# .env keys; the container sees the password as CLICKHOUSE_PLATFORM_PASSWORD, away from the image entrypoint's
# own CLICKHOUSE_PASSWORD handling
SECRET_KEYS = ["CLICKHOUSE_PASSWORD", CLUSTER_SECRET_ENV, ANALYST_PASSWORD_ENV]
ULIMITS = {"nofile": {"soft": 262144, "hard": 262144}}


def allowed_networks() -> list[str]:
    """Who may log in as the application user: the VPC (incl. VPN clients, NATed by vps_1) and the other shard."""
    return [str(PRIVATE_NETWORK), str(NETWORK_SUBNET)]


def _shard(shard: Shard) -> dict[str, Any]:
    name = shard.host
    return {
        "image": versions.CLICKHOUSE_SERVER,
        "hostname": name,
        "restart": "unless-stopped",
        "environment": {
            "CLICKHOUSE_SKIP_USER_SETUP": "1",  # users come from users.d/platform.xml, not the entrypoint
            PASSWORD_ENV: require("CLICKHOUSE_PASSWORD"),
            CLUSTER_SECRET_ENV: require(CLUSTER_SECRET_ENV),
            ANALYST_PASSWORD_ENV: require(ANALYST_PASSWORD_ENV),
        },
        "ports": [publish(f"{name}-http"), publish(f"{name}-native")],
        "volumes": [
            f"./clickhouse/{name}/config.d/platform.xml:/etc/clickhouse-server/config.d/platform.xml:ro",
            "./clickhouse/users.d/platform.xml:/etc/clickhouse-server/users.d/platform.xml:ro",
            f"{name}-data:/var/lib/clickhouse",
        ],
        "ulimits": ULIMITS,
        "cap_add": ["SYS_NICE", "IPC_LOCK"],
        "healthcheck": healthcheck(
            ["CMD", "clickhouse-client", "--port", str(shard.native_port), "--query", "SELECT 1"]
        ),
        "depends_on": {KEEPER_HOST: {"condition": "service_healthy"}},
        "logging": LOGGING,
        "networks": [NETWORK],
    }


def compose() -> dict[str, Any]:
    services: dict[str, Any] = {
        KEEPER_HOST: {
            "image": versions.CLICKHOUSE_KEEPER,
            "hostname": KEEPER_HOST,
            "restart": "unless-stopped",
            "volumes": [
                "./clickhouse/keeper/keeper_config.xml:/etc/clickhouse-keeper/keeper_config.xml:ro",
                "clickhouse-keeper-data:/var/lib/clickhouse-keeper",
            ],
            "ulimits": ULIMITS,
            "healthcheck": healthcheck(
                ["CMD-SHELL", f"echo ruok | nc 127.0.0.1 {service('clickhouse-keeper').port} | grep -q imok"]
            ),
            "logging": LOGGING,
            "networks": [NETWORK],
        }
    }
    for shard in SHARDS:
        services[shard.host] = _shard(shard)
    volumes = {"clickhouse-keeper-data": bind_volume("clickhouse", "keeper")}
    volumes |= {f"{s.host}-data": bind_volume("clickhouse", s.host) for s in SHARDS}
    return {
        "name": "platform-warehouse",
        "services": services,
        "networks": {NETWORK: {"name": NETWORK, "ipam": {"config": [{"subnet": str(NETWORK_SUBNET)}]}}},
        "volumes": volumes,
    }
