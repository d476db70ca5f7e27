"""Comparable fingerprints of the same rows in PostgreSQL and ClickHouse: a count and one exact sum per column.

Numbers are summed, strings by byte length, dates as days and timestamps as microseconds since the epoch, so both
engines produce identical integers/decimals for identical rows — no shared hash function is needed, and a single
changed value, missing row or extra row changes the fingerprint.
"""

from __future__ import annotations

from datetime import UTC, date
from decimal import Decimal

from platform_assets.catalog import AUDIT_COLUMN, DELETED_COLUMN, Table
from platform_assets.oltp.capture import TOMBSTONE_TABLE
from platform_assets.partitions import day_bounds
from platform_assets.warehouse.load import DATABASE
from resources.clickhouse import ClickHouseResource
from resources.oltp_postgres import OltpPostgresResource


def _pg(col: str, logical: str) -> str:
    if logical == "string":
        return f"sum(octet_length({col}))"
    if logical == "date":
        return f"sum({col} - date '1970-01-01')"
    if logical == "timestamp":
        return f"sum((extract(epoch from {col}) * 1000000)::bigint)"
    return f"sum({col})"


def _ch(col: str, logical: str) -> str:
    if logical == "string":
        return f"sum(length({col}))"
    if logical == "date":
        return f"sum(toInt64(toDaysSinceYearZero({col})) - 719528)"
    if logical == "timestamp":
        return f"sum(toInt128(toUnixTimestamp64Micro({col})))"
    if logical.startswith("int"):
        return f"sum(toInt128({col}))"
    return f"sum({col})"


def _normal(values: tuple) -> tuple:
    return tuple(Decimal(str(v)) if v is not None else Decimal(0) for v in values)


def _range(days: list[date] | None) -> tuple[str, str] | None:
    return (day_bounds(days[0])[0], day_bounds(days[-1])[1]) if days else None


def oltp_fingerprint(oltp: OltpPostgresResource, table: Table, days: list[date] | None = None) -> tuple:
    """(rows, sum per column) of the OLTP table, or of the rows changed on ``days``."""
    exprs = ", ".join(["count(*)", *(_pg(c.name, c.type) for c in table.all_columns)])
    sql, params = f"SELECT {exprs} FROM {table.name}", ()
    if bounds := _range(days):
        sql += f" WHERE {AUDIT_COLUMN} >= %s AND {AUDIT_COLUMN} < %s"
        params = bounds
    with oltp.connect() as conn:
        return _normal(conn.execute(sql, params).fetchone())


def warehouse_fingerprint(ch: ClickHouseResource, table: Table, days: list[date] | None = None) -> tuple:
    """The same fingerprint over what queries see in the warehouse: latest version per key, deletes dropped."""
    exprs = ", ".join(["count()", *(_ch(c.name, c.type) for c in table.all_columns)])
    where = f"{DELETED_COLUMN} = 0"
    if bounds := _range(days):
        lo, hi = (b.replace("+00", "") for b in bounds)
        where += (
            f" AND {AUDIT_COLUMN} >= toDateTime64('{lo}', 6, 'UTC') AND {AUDIT_COLUMN} < toDateTime64('{hi}', 6, 'UTC')"
        )
    return _normal(ch.rows(f"SELECT {exprs} FROM {DATABASE}.{table.name} FINAL WHERE {where}")[0])


def oltp_latest_change(oltp: OltpPostgresResource, table: Table):
    """The latest change the OLTP holds for a table: an update/insert or a delete, whichever is later."""
    with oltp.connect() as conn:
        return conn.execute(
            f"SELECT greatest((SELECT max({AUDIT_COLUMN}) FROM {table.name}), "
            f"(SELECT max(deleted_at) FROM {TOMBSTONE_TABLE} WHERE table_name = %s))",
            (table.name,),
        ).fetchone()[0]


def oldest_missing_change(oltp: OltpPostgresResource, table: Table, loaded):
    """The oldest change (update/insert or delete) the OLTP holds that is newer than what the warehouse loaded
    (``loaded``: its newest change, None for nothing yet); None when the warehouse is caught up."""
    after = loaded or "-infinity"
    with oltp.connect() as conn:
        return conn.execute(
            f"SELECT least((SELECT min({AUDIT_COLUMN}) FROM {table.name} WHERE {AUDIT_COLUMN} > %s), "
            f"(SELECT min(deleted_at) FROM {TOMBSTONE_TABLE} WHERE table_name = %s AND deleted_at > %s))",
            (after, table.name, after),
        ).fetchone()[0]


def warehouse_latest_change(ch: ClickHouseResource, table: Table | str):
    """The latest version a warehouse table holds (deletes included): how far the loads have come."""
    name = table if isinstance(table, str) else table.name
    rows = ch.rows(f"SELECT max({AUDIT_COLUMN}), count() FROM {DATABASE}.{name}")
    if not rows or not rows[0][1]:
        return None
    latest = rows[0][0]
    return latest if latest.tzinfo else latest.replace(tzinfo=UTC)  # chDB hands out naive UTC values
