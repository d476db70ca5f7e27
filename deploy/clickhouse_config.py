"""ClickHouse on vps_3: cluster ``platform`` of two shards (one replica each) coordinated by one Keeper.

Ports come from the topology, so each server listens inside its container on the same port it is published
on (shard 2: HTTP 8124, native 9001) and ``remote_servers`` needs no port mapping. Passwords are never in
these files: ClickHouse reads them from the container environment (``from_env``).
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree import ElementTree as ET

from deploy.compose_common import GENERATED_HEADER
from resources.topology import service

CLUSTER = "platform"  # the prod ClickHouse resource's CLICKHOUSE_CLUSTER
USER = "platform"  # the prod ClickHouse resource's CLICKHOUSE_USER
PASSWORD_ENV = "CLICKHOUSE_PLATFORM_PASSWORD"  # in the containers; from CLICKHOUSE_PASSWORD in the .env
# The notebooks' user on vps_2 (Jupyter): reads every table, writes none, changes no setting (profile `readonly`)
ANALYST_USER = "analyst"
ANALYST_PASSWORD_ENV = "CLICKHOUSE_ANALYST_PASSWORD"  # the same name in the .env and in the containers
READONLY_PROFILE = "readonly"
CLUSTER_SECRET_ENV = "CLICKHOUSE_CLUSTER_SECRET"
KEEPER_HOST = "clickhouse-keeper"
KEEPER_RAFT_PORT = 9234  # container-internal: a single Keeper has no peers to reach it
KEEPER_SERVER_ID = 1


@dataclass(frozen=True)
class Shard:
    number: int

    @property
    def host(self) -> str:  # compose service name, resolved on the stack's network
        return f"clickhouse-shard{self.number}"

    @property
    def http_port(self) -> int:
        return service(f"clickhouse-shard{self.number}-http").port

    @property
    def native_port(self) -> int:
        return service(f"clickhouse-shard{self.number}-native").port


SHARDS = (Shard(1), Shard(2))


def _sub(parent: ET.Element, tag: str, text: object | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = str(text)
    return el


def _render(root: ET.Element) -> str:
    ET.indent(root)
    return "<!-- " + GENERATED_HEADER.strip("# \n") + " -->\n" + ET.tostring(root, encoding="unicode") + "\n"


def server_config(shard: Shard) -> str:
    """config.d/platform.xml for one shard: ports, cluster, Keeper, macros, distributed DDL."""
    root = ET.Element("clickhouse")
    _sub(root, "listen_host", "0.0.0.0")  # inside the container; compose publishes on 10.104.0.4 only
    _sub(root, "http_port", shard.http_port)
    _sub(root, "tcp_port", shard.native_port)
    _sub(root, "display_name", f"{CLUSTER}-shard{shard.number}")
    remote = _sub(_sub(root, "remote_servers"), CLUSTER)
    _sub(remote, "secret", from_env=CLUSTER_SECRET_ENV)  # inter-shard queries authenticate with this secret
    for s in SHARDS:
        sh = _sub(remote, "shard")
        _sub(sh, "internal_replication", "true")
        replica = _sub(sh, "replica")
        _sub(replica, "host", s.host)
        _sub(replica, "port", s.native_port)
    zk = _sub(root, "zookeeper")
    node = _sub(zk, "node")
    _sub(node, "host", KEEPER_HOST)
    _sub(node, "port", service("clickhouse-keeper").port)
    macros = _sub(root, "macros")
    _sub(macros, "cluster", CLUSTER)
    _sub(macros, "shard", f"{shard.number:02d}")
    _sub(macros, "replica", shard.host)
    ddl = _sub(root, "distributed_ddl")
    _sub(ddl, "path", "/clickhouse/task_queue/ddl")
    _sub(root, "default_replica_path", "/clickhouse/tables/{shard}/{database}/{table}")
    _sub(root, "default_replica_name", "{replica}")
    return _render(root)


def users_config(allowed_networks: list[str]) -> str:
    """users.d/platform.xml: the application user and the analysts' read-only user, each with a password from the
    environment; ``default`` local only."""
    root = ET.Element("clickhouse")
    profile = _sub(_sub(root, "profiles"), READONLY_PROFILE)
    _sub(profile, "readonly", 1)  # reads only: no INSERT, DDL or SET (a notebook cannot widen its own rights)
    users = _sub(root, "users")
    default = _sub(users, "default", replace="replace")
    _sub(default, "password")
    net = _sub(default, "networks")
    _sub(net, "ip", "::1")
    _sub(net, "ip", "127.0.0.1")
    _sub(default, "profile", "default")
    _sub(default, "quota", "default")
    platform = _sub(users, USER)
    _sub(platform, "password", from_env=PASSWORD_ENV)
    net = _sub(platform, "networks")
    for cidr in allowed_networks:
        _sub(net, "ip", cidr)
    _sub(platform, "profile", "default")
    _sub(platform, "quota", "default")
    _sub(platform, "access_management", 1)
    _sub(platform, "named_collection_control", 1)
    analyst = _sub(users, ANALYST_USER)
    _sub(analyst, "password", from_env=ANALYST_PASSWORD_ENV)
    net = _sub(analyst, "networks")
    for cidr in allowed_networks:
        _sub(net, "ip", cidr)
    _sub(analyst, "profile", READONLY_PROFILE)
    _sub(analyst, "quota", "default")
    return _render(root)


def keeper_config() -> str:
    root = ET.Element("clickhouse")
    logger = _sub(root, "logger")
    _sub(logger, "level", "information")
    _sub(logger, "console", 1)
    _sub(root, "listen_host", "0.0.0.0")
    ks = _sub(root, "keeper_server")
    _sub(ks, "tcp_port", service("clickhouse-keeper").port)
    _sub(ks, "server_id", KEEPER_SERVER_ID)
    _sub(ks, "log_storage_path", "/var/lib/clickhouse-keeper/coordination/log")
    _sub(ks, "snapshot_storage_path", "/var/lib/clickhouse-keeper/coordination/snapshots")
    coord = _sub(ks, "coordination_settings")
    _sub(coord, "operation_timeout_ms", 10000)
    _sub(coord, "session_timeout_ms", 30000)
    raft = _sub(ks, "raft_configuration")
    srv = _sub(raft, "server")
    _sub(srv, "id", KEEPER_SERVER_ID)
    _sub(srv, "hostname", KEEPER_HOST)
    _sub(srv, "port", KEEPER_RAFT_PORT)
    return _render(root)
