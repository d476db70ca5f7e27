"""Network boundaries from the topology: what the internet reaches, and what each prod resource is given."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from deploy import compute_manifests, firewall
from resources.environments import resource_defs
from resources.topology import NODES, PRIVATE_NETWORK, SERVICES, public_services
from tests.deploy._helpers import DEPLOY, manifests, published

PROD_OVERRIDES = ("OLTP_HOST", "OLTP_PORT", "S3_ENDPOINT_URL", "SPARK_REMOTE", "CLICKHOUSE_HOST", "CLICKHOUSE_PORT")


def test_everything_reachable_from_the_internet_is_the_vpn_or_https_on_vps_1():
    for svc in public_services():
        assert svc.node == "vps_1" and svc.name in {"vpn", "https"}
    admin = ("198.51.100.0/24",)
    reachable = {(node, r.protocol, r.port_range) for node in NODES for r in firewall.publicly_reachable(node, admin)}
    assert reachable == {(s.node, s.protocol, str(s.port)) for s in public_services()}


def test_ssh_is_never_open_to_the_internet():
    for node in NODES:
        for rule in firewall.inbound_rules(node, ("198.51.100.0/24",)):
            if rule.port_range in ("22", "1-65535"):
                assert set(rule.sources) <= {str(PRIVATE_NETWORK), "198.51.100.0/24"}, (node, rule)
    assert all(r.port_range != "22" for r in firewall.inbound_rules("vps_1", ()) if "0.0.0.0/0" in r.sources)


def test_private_nodes_accept_only_the_vpc():
    for node in (n for n in NODES.values() if not n.public):
        assert {s for r in firewall.inbound_rules(node.name) for s in r.sources} == {str(PRIVATE_NETWORK)}


def test_vps_1_admits_from_the_vpc_exactly_its_vpc_services():
    rules = {(r.protocol, r.port_range) for r in firewall.inbound_rules("vps_1") if str(PRIVATE_NETWORK) in r.sources}
    for svc in (s for s in SERVICES.values() if s.node == "vps_1" and not s.public):
        assert ((svc.protocol, str(svc.port)) in rules) == (svc.reach == "vpc"), svc.name


def _k8s_exposed() -> set[tuple[str, int, str]]:
    out = set()
    for docs in manifests().values():
        for d in docs:
            if d["kind"] == "Service":
                for ip in d["spec"]["externalIPs"]:
                    out |= {(ip, p["port"], p["protocol"].lower()) for p in d["spec"]["ports"]}
    return out


@pytest.fixture
def prod(monkeypatch):
    for var in PROD_OVERRIDES:
        monkeypatch.delenv(var, raising=False)
    return resource_defs("prod")


def test_every_prod_endpoint_is_exposed_by_the_deployment(prod):
    exposed = published("vps_1") | published("vps_3") | _k8s_exposed()
    s3 = urlparse(prod["object_store"].endpoint_url)
    spark = urlparse(prod["spark"].remote)
    used = {
        "oltp": (prod["oltp"].host, prod["oltp"].port),
        "object_store": (s3.hostname, s3.port),
        "spark": (spark.hostname, spark.port),
        "clickhouse": (prod["clickhouse"].host, prod["clickhouse"].port),
    }
    for name, (host, port) in used.items():
        assert (host, port, "tcp") in exposed, f"{name} uses {host}:{port}, which the deployment does not expose"
        assert host != "0.0.0.0" and NODES[prod[name].node].private_ip == host


def test_spark_tls_certificate_covers_the_address_the_resource_dials(prod):
    """The certificate Ansible issues names vps_2's private_ip; that must be the host the prod resource dials."""
    playbook = (DEPLOY / "ansible" / "site.yml").read_text()
    assert "subjectAltName=IP:{{ private_ip }},DNS:{{ spark_dns }}" in playbook
    assert urlparse(prod["spark"].remote).hostname == NODES[compute_manifests.NODE].private_ip
