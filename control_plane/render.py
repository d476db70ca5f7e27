"""Output: stable JSON for machines, aligned tables for people."""

from __future__ import annotations

import json
from typing import Any


def to_json(payload: Any) -> str:
    return json.dumps(payload, indent=2, default=str)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain text table; lists are joined with commas and missing values shown as '-'."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, list | tuple):
            return ",".join(map(str, value)) or "-"
        return str(value)

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def describe_table(payload: dict[str, Any]) -> str:
    nodes = table(payload["topology"]["nodes"], ["name", "private_ip", "runtime", "public", "role"])
    tables = table(payload["catalog"]["tables"], ["name", "primary_key", "cursor_column", "shard_key"])
    assets = table(payload["assets"], ["key", "group", "node", "partitioned", "checks", "last_materialization"])
    return f"NODES ({payload['webserver']})\n{nodes}\n\nCATALOG\n{tables}\n\nASSETS\n{assets}"


def status_table(payload: dict[str, Any]) -> str:
    if "runs" in payload:
        return table(payload["runs"], ["run_id", "job", "status", "created", "ended", "assets"])
    head = table([payload], ["run_id", "job", "status", "started", "ended", "assets"])
    return f"{head}\n\n{table(payload['steps'], ['step', 'status', 'started', 'ended'])}"


def checks_table(payload: dict[str, Any]) -> str:
    return table(payload["checks"], ["check", "status", "passed", "severity", "evaluated", "description"])


def run_table(payload: dict[str, Any]) -> str:
    return table([payload], ["run_id", "status", "failure"])


def lineage_table(payload: dict[str, Any]) -> str:
    parts = []
    for way in ("upstream", "downstream"):
        if way in payload:
            column = f".{payload['column']}" if payload["column"] else ""
            parts.append(f"{way.upper()} of {payload['asset']}{column}")
            parts.append(table(payload[way], ["depth", "asset", "column"]))
    return "\n\n".join(parts)
