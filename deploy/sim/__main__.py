"""``python -m deploy.sim up|down|status`` (``make topology-up`` / ``make topology-down``).

``up`` builds the namespaces (``platform-vps_1`` … ``platform-internet``), applies each node's firewall and starts a
stand-in listener on every declared binding, then returns: the namespaces and listeners stay until ``down``.
Run a command as a node with ``ip netns exec platform-vps_2 …``.
"""

from __future__ import annotations

import argparse
import sys

from deploy import firewall
from deploy.sim import topology
from deploy.sim.netns import Lab, host_routes_overlapping, remove_prefixed
from resources.topology import PRIVATE_NETWORK

PREFIX = "platform"


def up() -> int:
    remove_prefixed(PREFIX)
    lab = Lab(prefix=PREFIX)  # not closed: the simulation outlives this command
    topo = topology.build(lab)
    for node, ns in topo.nodes.items():
        specs = [f"{b.address}:{b.port}/{b.protocol}" for b in firewall.bindings(node)]
        ns.popen(sys.executable, "-m", "deploy.sim.listeners", *specs)
        print(f"{ns.name}: {topo.address_of(node)}, {len(specs)} listeners")
    print(f"{topo.internet.name}: {topology.INTERNET_IP} (reaches {topology.EDGE} at {topology.EDGE_PUBLIC_IP})")
    assert not host_routes_overlapping(str(PRIVATE_NETWORK)), "the host namespace must not route into the VPC"
    return 0


def down() -> int:
    removed = remove_prefixed(PREFIX)
    print(f"removed {len(removed)} namespaces" if removed else "nothing to remove")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.sim", description=__doc__)
    parser.add_argument("command", choices=["up", "down"])
    args = parser.parse_args(argv)
    return up() if args.command == "up" else down()


if __name__ == "__main__":
    sys.exit(main())
