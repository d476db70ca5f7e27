"""Where each layer keeps its objects in the bucket (one layout for every engine)."""

from __future__ import annotations


def raw_prefix(table: str, partition: str = "full") -> str:
    return f"raw/{table}/{partition}/"


def curated_prefix(name: str) -> str:
    return f"curated/{name}/"
