"""``platform lineage ASSET[.COLUMN]``: which columns feed a column, and what reads it, across every layer.

Read from what the UI shows — each asset's latest materialization's ``dagster/column_lineage`` (derived from the
SQL by ``platform_assets/column_lineage.py``) — and walked transitively, so ``marts/…q10….revenue --upstream``
reaches the OLTP's columns and ``oltp/customer.c_comment --downstream`` answers "what breaks if I drop it?".
An asset never materialized has no lineage yet; it is listed under ``unmaterialized``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from control_plane import queries
from control_plane.client import ControlPlaneError, GraphQLClient

LINEAGE_LABEL = "dagster/column_lineage"
Column = tuple[str, str]  # (asset key, column name)


def _key(path: list[str]) -> str:
    return "/".join(path)


def column_graph(nodes: list[dict[str, Any]]) -> tuple[dict[Column, set[Column]], set[str], list[str]]:
    """(column -> the columns it is computed from, every asset key, assets with no materialized lineage)."""
    graph: dict[Column, set[Column]] = {}
    keys, unmaterialized = set(), []
    for node in nodes:
        key = _key(node["assetKey"]["path"])
        keys.add(key)
        latest = node["assetMaterializations"]
        entries = [e for m in latest for e in m["metadataEntries"] if e["label"] == LINEAGE_LABEL]
        if not entries:
            unmaterialized.append(key)
            continue
        for column in entries[0]["lineage"]:
            deps = {(_key(d["assetKey"]["path"]), d["columnName"]) for d in column["columnDeps"]}
            graph.setdefault((key, column["columnName"]), set()).update(deps)
            for dep in deps:
                graph.setdefault(dep, set())
    return graph, keys, sorted(unmaterialized)


def walk(graph: dict[Column, set[Column]], start: set[Column], upstream: bool) -> list[dict[str, Any]]:
    """Every column reachable from ``start``, nearest first: (asset, column, depth)."""
    edges = graph
    if not upstream:
        edges = {}
        for column, deps in graph.items():
            for dep in deps:
                edges.setdefault(dep, set()).add(column)
    seen: dict[Column, int] = {}
    queue = deque((c, 0) for c in sorted(start))
    while queue:
        column, depth = queue.popleft()
        for nxt in sorted(edges.get(column, ())):
            if nxt not in seen and nxt not in start:
                seen[nxt] = depth + 1
                queue.append((nxt, depth + 1))
    return [{"asset": a, "column": c, "depth": d} for (a, c), d in sorted(seen.items(), key=lambda i: (i[1], i[0]))]


def lineage(client: GraphQLClient, target: str, upstream: bool = True, downstream: bool = True) -> dict[str, Any]:
    graph, keys, unmaterialized = column_graph(client.query(queries.COLUMN_LINEAGE)["assetNodes"])
    asset, _, column = target.rpartition(".") if "." in target else (target, "", "")
    if asset not in keys:
        raise ControlPlaneError(f"unknown asset {asset!r}: run `platform describe` for the asset keys")
    columns = {c for a, c in graph if a == asset}
    if column and column not in columns:
        known = ", ".join(sorted(columns)) or "none: it has no materialized column lineage yet"
        raise ControlPlaneError(f"asset {asset} has no column {column!r} in its lineage (columns: {known})")
    start = {(asset, column)} if column else {(asset, c) for c in columns}
    payload: dict[str, Any] = {"asset": asset, "column": column or None}
    if upstream:
        payload["upstream"] = walk(graph, start, upstream=True)
    if downstream:
        payload["downstream"] = walk(graph, start, upstream=False)
    payload["unmaterialized"] = unmaterialized
    return payload
