"""The topology is declared once; the prod resources and the exposure rules derive from it."""

import os
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from deploy.local.stack import WEED_SERVERS, weed_grpc_port
from resources import topology
from resources.environments import resource_defs
from resources.settings import local_port
from tests.conftest import PORT_BASE


def test_nodes_are_in_the_private_network():
    assert {n.name: n.private_ip for n in topology.NODES.values()} == {
        "vps_1": "10.104.0.2",
        "vps_2": "10.104.0.3",
        "vps_3": "10.104.0.4",
    }
    for node in topology.NODES.values():
        assert IPv4Address(node.private_ip) in topology.PRIVATE_NETWORK


def test_only_vpn_and_https_on_vps_1_are_public():
    public = {(s.node, s.name, s.port, s.protocol) for s in topology.public_services()}
    assert public == {("vps_1", "vpn", 1194, "udp"), ("vps_1", "https", 443, "tcp")}
    assert [n.name for n in topology.NODES.values() if n.public] == ["vps_1"]


def test_validate_rejects_a_public_service_on_a_private_node(monkeypatch):
    bad = topology.Service("leak", "vps_3", 8443, "oops", reach="public")
    monkeypatch.setitem(topology.SERVICES, "leak", bad)
    with pytest.raises(ValueError, match="public service leak is on private node vps_3"):
        topology.validate()


def test_validate_rejects_a_port_clash(monkeypatch):
    monkeypatch.setitem(topology.SERVICES, "dup", topology.Service("dup", "vps_1", 5432, "clash"))
    with pytest.raises(ValueError, match="both use vps_1:5432/tcp"):
        topology.validate()


def test_prod_resources_point_at_the_topology(monkeypatch):
    for var in ("OLTP_HOST", "OLTP_PORT", "S3_ENDPOINT_URL", "SPARK_REMOTE", "CLICKHOUSE_HOST", "CLICKHOUSE_PORT"):
        monkeypatch.delenv(var, raising=False)
    r = resource_defs("prod")
    svc = topology.SERVICES
    assert (r["oltp"].host, r["oltp"].port) == (svc["oltp-postgres"].host, svc["oltp-postgres"].port)
    assert r["object_store"].endpoint_url == f"http://{svc['object-store-s3'].endpoint}"
    assert r["spark"].remote == f"sc://{svc['spark-connect'].endpoint}"
    assert (r["clickhouse"].host, r["clickhouse"].port) == (
        svc["clickhouse-shard1-http"].host,
        svc["clickhouse-shard1-http"].port,
    )
    # every prod endpoint is a private address that the topology declares for that service
    for res, name in ((r["oltp"], "oltp-postgres"), (r["clickhouse"], "clickhouse-shard1-http")):
        assert not svc[name].public and res.node == svc[name].node


def test_local_resources_use_loopback_and_configured_ports():
    r = resource_defs("local")
    assert r["oltp"].host == "127.0.0.1" and r["oltp"].port == PORT_BASE + 432  # conftest's LOCAL_PORT_*
    assert r["object_store"].endpoint_url == f"http://127.0.0.1:{PORT_BASE + 333}"
    assert r["clickhouse"].dsn.startswith("chdb://")
    assert r["spark"].remote == f"sc://localhost:{PORT_BASE + 2}"  # the stack's warm Spark Connect server


def test_spark_master_selects_a_session_in_the_run_s_process(monkeypatch):
    monkeypatch.setenv("SPARK_MASTER", "local[3]")
    spark = resource_defs("local")["spark"]
    assert spark.remote is None and spark.master == "local[3]" and spark.s3a_jars_dir
    monkeypatch.setenv("SPARK_REMOTE", "sc://spark.example.invalid:15002")  # an explicit server wins
    assert resource_defs("local")["spark"].remote == "sc://spark.example.invalid:15002"


def _ephemeral_range() -> range:
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    return range(low, high + 1)


def test_the_local_stacks_listen_outside_the_ephemeral_port_range(monkeypatch):
    """A listener restarted on a port the kernel also hands out as a source port can find it taken ("address already
    in use": the test stack's SeaweedFS once did, its gRPC ports being port + 10000 = 35333-35336)."""
    ephemeral = _ephemeral_range()
    ports = {n: int(v) for n, v in os.environ.items() if n.startswith("LOCAL_PORT_") and not n.endswith("_GRPC")}
    ports |= {f"{svc} gRPC": weed_grpc_port(svc) for _, svc in WEED_SERVERS}
    assert len(ports) >= 9
    assert [f"{name}={port}" for name, port in ports.items() if port in ephemeral] == []
    assert len(set(ports.values())) == len(ports), ports  # and no two share one
    for name in [n for n in os.environ if n.startswith("LOCAL_PORT_")]:  # the defaults of `make up` and `make demo`
        monkeypatch.delenv(name)
    defaults = [local_port(s.name) for s in topology.SERVICES.values() if s.local_port] + [
        weed_grpc_port(svc) for _, svc in WEED_SERVERS
    ]
    assert [p for p in defaults if p in ephemeral] == []
