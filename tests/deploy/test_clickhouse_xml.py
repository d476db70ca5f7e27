"""ClickHouse XML parsed: cluster `platform` with two shards at topology ports, Keeper, users without literals."""

from __future__ import annotations

from xml.etree import ElementTree as ET

import pytest

from deploy import clickhouse_config as ch
from deploy.compute_manifests import JUPYTER_SECRET, JUPYTER_SECRET_KEYS
from deploy.sim.compute import container_spec
from deploy.warehouse_stack import NETWORK_SUBNET
from resources.environments import clickhouse_resource
from resources.topology import PRIVATE_NETWORK, service
from tests.deploy._helpers import DEPLOY, compose

CH_DIR = DEPLOY / "vps_3" / "clickhouse"


def _xml(rel: str) -> ET.Element:
    return ET.parse(CH_DIR / rel).getroot()


@pytest.mark.parametrize("shard", ch.SHARDS, ids=lambda s: s.host)
def test_shard_config(shard):
    root = _xml(f"{shard.host}/config.d/platform.xml")
    assert root.findtext("http_port") == str(service(f"{shard.host}-http").port)
    assert root.findtext("tcp_port") == str(service(f"{shard.host}-native").port)
    cluster = root.find("remote_servers/platform")
    assert cluster is not None and cluster.find("secret").get("from_env") == ch.CLUSTER_SECRET_ENV
    replicas = [(r.findtext("host"), int(r.findtext("port"))) for r in cluster.iter("replica")]
    assert replicas == [(s.host, s.native_port) for s in ch.SHARDS]
    assert root.findtext("macros/shard") == f"{shard.number:02d}"
    assert root.findtext("zookeeper/node/port") == str(service("clickhouse-keeper").port)
    # compose must publish the same port the server listens on inside the container
    ports = compose("vps_3")["services"][shard.host]["ports"]
    for p in ports:
        _, host_port, container_port = p.rsplit(":", 2)
        assert host_port == container_port


def test_cluster_name_matches_the_prod_resource(monkeypatch):
    monkeypatch.delenv("CLICKHOUSE_CLUSTER", raising=False)
    assert clickhouse_resource("prod").cluster == ch.CLUSTER
    assert clickhouse_resource("prod").username == ch.USER


def test_users_take_passwords_from_the_environment():
    root = _xml("users.d/platform.xml")
    platform = root.find(f"users/{ch.USER}")
    assert platform.find("password").get("from_env") == ch.PASSWORD_ENV and not platform.findtext("password")
    assert {ip.text for ip in root.findall("users/default/networks/ip")} == {"::1", "127.0.0.1"}
    env = compose("vps_3")["services"]["clickhouse-shard1"]["environment"]
    assert env[ch.PASSWORD_ENV].startswith("${CLICKHOUSE_PASSWORD:?")  # the value vps_1's resource uses


def test_the_analysts_user_reads_only_with_a_password_from_the_environment_and_jupyter_holds_it():
    """Jupyter's notebooks query the warehouse as ``analyst``: a readonly profile (no INSERT, DDL or SET), its
    password from the servers' environment, given to the Jupyter Deployment through its Secret, never as a value."""
    root = _xml("users.d/platform.xml")
    analyst = root.find(f"users/{ch.ANALYST_USER}")
    assert analyst.find("password").get("from_env") == ch.ANALYST_PASSWORD_ENV and not analyst.findtext("password")
    assert root.findtext(f"profiles/{analyst.findtext('profile')}/readonly") == "1"
    assert {ip.text for ip in analyst.findall("networks/ip")} <= {str(PRIVATE_NETWORK), str(NETWORK_SUBNET)}
    for shard in ch.SHARDS:
        env = compose("vps_3")["services"][shard.host]["environment"]
        assert env[ch.ANALYST_PASSWORD_ENV].startswith(f"${{{ch.ANALYST_PASSWORD_ENV}:?")
    env = {e["name"]: e for e in container_spec("jupyter", "jupyter")["env"]}
    assert env["CLICKHOUSE_USER"]["value"] == ch.ANALYST_USER
    ref = env["CLICKHOUSE_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert JUPYTER_SECRET_KEYS[ref["key"]] == ch.ANALYST_PASSWORD_ENV and ref["name"] == JUPYTER_SECRET
    endpoint = f"{env['CLICKHOUSE_HOST']['value']}:{env['CLICKHOUSE_PORT']['value']}"
    assert endpoint == service("clickhouse-shard1-http").endpoint


def test_keeper_config():
    root = _xml("keeper/keeper_config.xml")
    assert root.findtext("keeper_server/tcp_port") == str(service("clickhouse-keeper").port)
    assert root.findtext("keeper_server/raft_configuration/server/hostname") == ch.KEEPER_HOST
