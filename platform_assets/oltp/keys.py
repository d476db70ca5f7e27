"""Sets of primary keys looked up in the OLTP (one typed array per key column: any number of keys, one statement)."""

from __future__ import annotations

from platform_assets.catalog import Table, pg_type
from resources.oltp_postgres import OltpPostgresResource


def keys_param(table: Table, keys: list[tuple]) -> tuple[str, dict]:
    """``unnest(…)`` of ``keys`` as one typed array per primary-key column, and its named parameters."""
    arrays = ", ".join(f"%(key{i})s::{pg_type(table.column(k).type)}[]" for i, k in enumerate(table.primary_key))
    params = {f"key{i}": list(column) for i, column in enumerate(zip(*keys, strict=True))}
    return f"unnest({arrays}) AS k({', '.join(table.primary_key)})", params


def in_keys(table: Table, keys: list[tuple]) -> tuple[str, dict]:
    """``(pk) IN (…keys…)`` and its named parameters."""
    source, params = keys_param(table, keys)
    return f"({', '.join(table.primary_key)}) IN (SELECT * FROM {source})", params


def held_by_oltp(oltp: OltpPostgresResource, table: Table, keys: list[tuple]) -> set[tuple]:
    """Those of ``keys`` the OLTP table has a row for: the OLTP is their source of truth."""
    if not keys:
        return set()
    cond, params = in_keys(table, keys)
    with oltp.connect() as conn:
        return {tuple(r) for r in conn.execute(f"SELECT {', '.join(table.primary_key)} FROM {table.name} WHERE {cond}",
                                               params)}  # fmt: skip
