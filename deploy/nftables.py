"""The cloud firewall of a node (``deploy/firewall.py``) as an nftables ruleset, for the simulated nodes.

DigitalOcean's cloud firewall is stateful and drops whatever no inbound rule admits. The same rules in an input
chain with policy drop, plus what a stateful firewall implies (replies to connections the node opened, loopback),
admit the same packets. Forwarded packets are not filtered here: on DigitalOcean the VPC does not route the
internet's packets to a private address at all, and the simulation gives the internet no such route.
"""

from __future__ import annotations

from deploy.firewall import inbound_rules

TABLE = "platform"


def _match(source: str, protocol: str, port_range: str) -> str:
    family = "ip6" if ":" in source else "ip"
    if protocol == "icmp":
        return f"{family} saddr {source} meta l4proto {'ipv6-icmp' if family == 'ip6' else 'icmp'}"
    return f"{family} saddr {source} {protocol} dport {port_range}"


def ruleset(node: str, admin_cidrs: tuple[str, ...] = ()) -> str:
    lines = [
        f"table inet {TABLE} {{",
        "  chain input {",
        "    type filter hook input priority 0; policy drop;",
        '    iif "lo" accept',
        "    ct state established,related accept",
    ]
    for rule in inbound_rules(node, admin_cidrs):
        for source in rule.sources:
            lines.append(f'    {_match(source, rule.protocol, rule.port_range)} accept comment "{rule.why}"')
    lines += ["  }", "}", ""]
    return "\n".join(lines)
