"""The three-node topology, declared once.

Resource defaults for ``prod``, the local stack's ports, the deployment files and the network-boundary
tests all derive from this module, so an address or a port is changed in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

Reach = Literal["public", "vpc", "node"]

PRIVATE_NETWORK = IPv4Network("10.104.0.0/24")


@dataclass(frozen=True)
class Node:
    name: str
    private_ip: str
    runtime: str  # "docker" or "kubernetes"
    role: str
    public: bool = False  # only the edge node has a public address


@dataclass(frozen=True)
class Service:
    name: str
    node: str
    port: int
    description: str
    protocol: str = "tcp"
    # who may connect: "public" the internet (only the VPN and HTTPS on vps_1), "vpc" the private network (and
    # VPN clients), "node" only the node's own containers: never published on an address, never in a firewall rule
    reach: Reach = "vpc"
    local_port: int | None = None  # port of the same service in the one-machine `local` stack

    @property
    def public(self) -> bool:
        return self.reach == "public"

    @property
    def host(self) -> str:
        return NODES[self.node].private_ip

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"


NODES: dict[str, Node] = {
    n.name: n
    for n in (
        Node("vps_1", "10.104.0.2", "docker", "edge: VPN, Dagster, PostgreSQL x2, object store", public=True),
        Node("vps_2", "10.104.0.3", "kubernetes", "compute: Spark Connect, Jupyter"),
        Node("vps_3", "10.104.0.4", "docker", "warehouse: ClickHouse, 2 shards + Keeper"),
    )
}

SERVICES: dict[str, Service] = {
    s.name: s
    for s in (
        # vps_1 — the only public entry
        Service("vpn", "vps_1", 1194, "OpenVPN gateway (split tunnel to the VPC)", protocol="udp", reach="public"),
        Service("https", "vps_1", 443, "TLS reverse proxy with authentication in front of Dagster", reach="public"),
        # the node's containers only: the UI has no login of its own (the proxy has), SeaweedFS's master, volume and
        # filer none at all, Dagster's storage and code server serve Dagster's own processes
        Service("dagster-webserver", "vps_1", 3000, "Dagster UI and GraphQL API", reach="node", local_port=3000),
        Service("dagster-code-server", "vps_1", 4000, "Dagster code location (gRPC)", reach="node", local_port=4000),
        Service(
            "dagster-postgres",
            "vps_1",
            5433,
            "PostgreSQL for Dagster's run/event storage",
            reach="node",
            local_port=15433,
        ),
        Service("oltp-postgres", "vps_1", 5432, "PostgreSQL OLTP, the source of truth", local_port=15432),
        Service("object-store-s3", "vps_1", 8333, "SeaweedFS S3 API", local_port=18333),
        Service("object-store-master", "vps_1", 9333, "SeaweedFS master", reach="node", local_port=19333),
        Service("object-store-volume", "vps_1", 8080, "SeaweedFS volume server", reach="node", local_port=18080),
        Service("object-store-filer", "vps_1", 8888, "SeaweedFS filer", reach="node", local_port=18888),
        # vps_2 — Kubernetes, private
        Service("spark-connect", "vps_2", 15002, "Spark Connect server (gRPC, token auth)", local_port=15002),
        Service("jupyter", "vps_2", 8888, "Jupyter on Spark Connect"),
        # vps_3 — ClickHouse, private
        Service("clickhouse-shard1-http", "vps_3", 8123, "ClickHouse shard 1 HTTP"),
        Service("clickhouse-shard1-native", "vps_3", 9000, "ClickHouse shard 1 native/interserver queries"),
        Service("clickhouse-shard2-http", "vps_3", 8124, "ClickHouse shard 2 HTTP"),
        Service("clickhouse-shard2-native", "vps_3", 9001, "ClickHouse shard 2 native/interserver queries"),
        # only the two ClickHouse servers on vps_3's compose network talk to Keeper: not published, not in a firewall
        Service(
            "clickhouse-keeper", "vps_3", 9181, "ClickHouse Keeper (coordination for ON CLUSTER DDL)", reach="node"
        ),
        # deployment (deploy/): SSH enters through vps_1 only (from the VPC/VPN or an admin CIDR, never public)
        Service("ssh-vps1", "vps_1", 22, "OpenSSH on the bastion: the only SSH entry (VPN/VPC or admin CIDR)"),
        Service("ssh-vps2", "vps_2", 22, "OpenSSH, reached through the bastion (ProxyJump)"),
        Service("ssh-vps3", "vps_3", 22, "OpenSSH, reached through the bastion (ProxyJump)"),
        Service("k3s-api", "vps_2", 6443, "Kubernetes API (k3s) for kubectl and Dagster's Kubernetes integration"),
    )
}


def service(name: str) -> Service:
    try:
        return SERVICES[name]
    except KeyError:
        raise KeyError(f"unknown service {name!r}; declared: {sorted(SERVICES)}") from None


def public_services() -> list[Service]:
    return [s for s in SERVICES.values() if s.public]


def exposed_services(node: str) -> list[Service]:
    """What the node offers beyond its own containers: published on an address and admitted by its firewall."""
    return [s for s in SERVICES.values() if s.node == node and s.reach != "node"]


def validate() -> None:
    """Fail loudly on an inconsistent declaration (run by the tests and at import of deploy code)."""
    for node in NODES.values():
        if IPv4Address(node.private_ip) not in PRIVATE_NETWORK:
            raise ValueError(f"{node.name} address {node.private_ip} is outside {PRIVATE_NETWORK}")
    seen: dict[tuple[str, int, str], str] = {}
    local_seen: dict[int, str] = {}
    for s in SERVICES.values():
        if s.node not in NODES:
            raise ValueError(f"service {s.name} is on undeclared node {s.node}")
        key = (s.node, s.port, s.protocol)
        if key in seen:
            raise ValueError(f"{s.name} and {seen[key]} both use {s.node}:{s.port}/{s.protocol}")
        seen[key] = s.name
        if s.public and not NODES[s.node].public:
            raise ValueError(f"public service {s.name} is on private node {s.node}")
        if s.local_port is not None:
            if s.local_port in local_seen:
                raise ValueError(f"{s.name} and {local_seen[s.local_port]} share local port {s.local_port}")
            local_seen[s.local_port] = s.name


validate()
