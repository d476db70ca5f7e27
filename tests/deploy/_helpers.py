"""Readers shared by the deployment tests (files only: no Docker engine, cluster or cloud)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
REPO = DEPLOY.parent
COMPOSE = {"vps_1": DEPLOY / "vps_1" / "compose.yaml", "vps_3": DEPLOY / "vps_3" / "compose.yaml"}
MANIFESTS = DEPLOY / "vps_2" / "manifests"


def compose(node: str) -> dict[str, Any]:
    return yaml.safe_load(COMPOSE[node].read_text())


def manifests() -> dict[str, list[dict[str, Any]]]:
    return {
        p.name: [d for d in yaml.safe_load_all(p.read_text()) if d]
        for p in sorted(MANIFESTS.glob("*.yaml"))
        if p.name != "kustomization.yaml"
    }


def published(node: str) -> set[tuple[str, int, str]]:
    """(host address, host port, protocol) of every port the node's compose file publishes."""
    out = set()
    for svc in compose(node)["services"].values():
        for mapping in svc.get("ports", []):
            spec, _, proto = mapping.partition("/")
            host_ip, host_port, _container = spec.rsplit(":", 2)
            out.add((host_ip, int(host_port), proto or "tcp"))
    return out
