"""The Ansible inventory, from the topology: vps_1 is the only SSH entry, the others are reached through it.

``BASTION_HOST`` picks how the operator reaches vps_1: its reserved public IP from an admin CIDR (first run,
before any VPN profile exists) or its private address over the VPN (the default).
"""

from __future__ import annotations

from typing import Any

from deploy import compute_manifests, edge_stack, warehouse_stack
from deploy.compose_common import PLATFORM_ROOT
from deploy.storage import volumes_on
from resources.topology import NODES, PRIVATE_NETWORK

GROUPS = {"vps_1": "edge", "vps_2": "compute", "vps_3": "warehouse"}
SECRET_KEYS = {
    "vps_1": edge_stack.SECRET_KEYS,
    "vps_2": compute_manifests.SECRET_KEYS,
    "vps_3": warehouse_stack.SECRET_KEYS,
}
OPTIONAL_KEYS = {"vps_1": list(edge_stack.OPTIONAL_KEYS)}
BASTION = "vps_1"
DEPLOY_USER = "deploy"


# Through the bastion with a ProxyCommand, not ProxyJump: ssh starts a ProxyJump hop with the config file's options
# only, so on a fresh workstation the bastion's unknown host key fails it ("Host key verification failed") although
# ansible.cfg says accept-new. The command's own -o applies to the hop.
JUMP = '-o ProxyCommand="ssh -o StrictHostKeyChecking=accept-new -W %h:%p {user}@{{{{ bastion_host }}}}"'


def inventory() -> dict[str, Any]:
    bastion_ip = NODES[BASTION].private_ip
    children: dict[str, Any] = {}
    for node in NODES.values():
        host: dict[str, Any] = {
            "private_ip": node.private_ip,
            "runtime": node.runtime,
            "secret_keys": SECRET_KEYS[node.name],
            "optional_keys": OPTIONAL_KEYS.get(node.name, []),
            "block_volumes": [v.mount_point for v in volumes_on(node.name)],
        }
        if node.name == BASTION:
            host["ansible_host"] = "{{ bastion_host }}"
        else:
            host["ansible_host"] = node.private_ip
            host["ansible_ssh_common_args"] = JUMP.format(user=DEPLOY_USER)
        children[GROUPS[node.name]] = {"hosts": {node.name: host}}
    children["docker"] = {"children": {GROUPS[n.name]: {} for n in NODES.values() if n.runtime == "docker"}}
    return {
        "all": {
            "vars": {
                "ansible_user": DEPLOY_USER,
                "platform_root": PLATFORM_ROOT,
                "vpc_cidr": str(PRIVATE_NETWORK),
                "bastion_host": "{{ lookup('env', 'BASTION_HOST') | default('" + bastion_ip + "', true) }}",
            },
            "children": children,
        }
    }
