"""``python -m deploy.sim up|down`` (``make topology-up`` / ``make topology-down``, root).

``up`` builds the namespaces (``platform-vps_1`` … ``platform-internet``) behind each node's firewall and deploys
what can run here as the deployment runs it: vps_1's stack under a Docker Engine in vps_1's namespace (images built
from their Dockerfiles, the ``.env`` Ansible writes, ``compose up --wait``; TPC-H seeded), vps_2's Spark Connect
pod (Spark + its TLS/token sidecar) and Jupyter as containers on an engine in vps_2's namespace (no Kubernetes
here), and on vps_3 the ClickHouse HTTP stand-in on shard 1's port, serving the runs' in-process warehouse
(``deploy/sim/clickhouse_http.py``; no ClickHouse server here), and a stand-in listener on each other binding.
Then it returns, printing how to reach the UI from the internet host; everything stays until ``down``. ``up
--listeners`` starts only stand-in listeners on every node's bindings (seconds; for trying the firewalls). State:
``.data/topology`` (the operator's secrets, the stack folder, the block volumes' folders, the agent's VPN profile).
"""

from __future__ import annotations

import argparse
import shutil
import sys

from deploy import firewall
from deploy.sim import clickhouse_http, images, topology
from deploy.sim import compute_containers as pod
from deploy.sim.docker_engine import DockerEngine
from deploy.sim.edge_containers import operator_stack, seed, start_edge
from deploy.sim.gateway import CA_ROOT
from deploy.sim.netns import Lab, Namespace, host_routes_overlapping, remove_prefixed
from deploy.sim.operator import UI_DOMAIN
from resources.settings import REPO_ROOT
from resources.topology import PRIVATE_NETWORK, service

PREFIX = "platform"
STATE = REPO_ROOT / ".data" / "topology"
COMPUTE = "vps_2"
WAREHOUSE = "vps_3"


def _engine(node: str, ns: Namespace | None = None) -> DockerEngine:
    return DockerEngine(f"{PREFIX}-{node}", images.docker_root() / node, ns)


def _listeners(ns: Namespace, node: str, served: int | None = None) -> int:
    """Stand-in listeners on the node's bindings but ``served`` (a port something real answers on)."""
    specs = [f"{b.address}:{b.port}/{b.protocol}" for b in firewall.bindings(node) if b.port != served]
    ns.popen(sys.executable, "-m", "deploy.sim.listeners", *specs)
    return len(specs)


def up(listeners_only: bool = False, scale_factor: float = 0.01) -> int:
    down()
    lab = Lab(prefix=PREFIX)  # not closed: the simulation outlives this command
    topo = topology.build(lab)
    if listeners_only:
        for node, ns in topo.nodes.items():
            print(f"{ns.name}: {topo.address_of(node)}, {_listeners(ns, node)} stand-in listeners")
    else:
        shutil.rmtree(STATE, ignore_errors=True)
        STATE.mkdir(parents=True)
        operator = operator_stack(STATE)
        topo.internet.hosts({UI_DOMAIN: topology.EDGE_PUBLIC_IP})  # the A record
        spark = pod.start(
            _engine(COMPUTE, topo.nodes[COMPUTE]), STATE / COMPUTE / "pod", operator.compute_env["SPARK_CONNECT_TOKEN"]
        )
        pod.start_jupyter(spark, operator.compute_env)
        print(
            f"{topo.nodes[COMPUTE].name}: Spark Connect behind its sidecar at {spark.endpoint}, Jupyter at "
            f"http://{spark.address}:8888 (token {operator.compute_env['JUPYTER_TOKEN']})"
        )
        edge, took = start_edge(
            _engine(topology.EDGE, topo.nodes[topology.EDGE]), operator.stack, STATE / "disks", spark.ca
        )
        print(f"{topo.nodes[topology.EDGE].name}: vps_1's stack up and healthy in {took:.0f} s ({operator.stack})")
        seed(edge, scale_factor)
        profile = STATE / "agent.ovpn"
        profile.write_text(edge.compose("exec", "-T", "openvpn", "vpn-client", "issue", "agent", timeout=120).stdout)
        profile.chmod(0o600)
        warehouse = topo.nodes[WAREHOUSE]
        clickhouse_http.start(warehouse, operator.warehouse_stack, edge.warehouse, STATE / "clickhouse-http.log")
        served = service("clickhouse-shard1-http").port
        print(f"{warehouse.name}: ClickHouse HTTP (the stand-in on the runs' warehouse) at "
              f"http://{topo.address_of(WAREHOUSE)}:{served}, {_listeners(warehouse, WAREHOUSE, served)} stand-in "
              "listeners")  # fmt: skip
        ca = edge.root / "mnt/edge-state/proxy-data" / CA_ROOT
        print(f"\nUI: https://{UI_DOMAIN} from the internet host, user {operator.dotenv['DAGSTER_UI_USER']}, "
              f"password {operator.password} (Caddy's local CA: {ca})\n"
              f"  sudo ip netns exec {topo.internet.name} curl --cacert {ca} -u USER:PASSWORD https://{UI_DOMAIN}/\n"
              f"  sudo ip netns exec {topo.internet.name} openvpn --config {profile} --daemon   # the VPN")  # fmt: skip
    print(f"{topo.internet.name}: {topology.INTERNET_IP} (reaches {topology.EDGE} at {topology.EDGE_PUBLIC_IP})")
    assert not host_routes_overlapping(str(PRIVATE_NETWORK)), "the host namespace must not route into the VPC"
    return 0


def down() -> int:
    """The engines first (their containers live in namespaces of their own), then every namespace and process."""
    for node in (topology.EDGE, COMPUTE):
        _engine(node).stop()
    removed = remove_prefixed(PREFIX)
    print(f"removed {len(removed)} namespaces" if removed else "nothing to remove")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.sim", description=__doc__)
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--listeners", action="store_true", help="up: stand-in listeners only, nothing deployed")
    parser.add_argument("--sf", type=float, default=0.01, help="up: the TPC-H scale factor seeded into the OLTP")
    args = parser.parse_args(argv)
    return up(args.listeners, args.sf) if args.command == "up" else down()


if __name__ == "__main__":
    sys.exit(main())
