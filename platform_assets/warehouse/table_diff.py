"""Whole-table comparison of a catalog table in the OLTP and in the warehouse, every column, narrowed to keys.

Both engines hash each row the same way: one canonical text per row (integers and dates as text, decimals as
scaled integers, timestamps as epoch microseconds, strings length-prefixed), MD5, the first 8 bytes as a signed
64-bit integer. Rows are grouped into buckets of consecutive values of the first primary-key column; each side
returns (rows, sum of hashes) per bucket, so only a few thousand numbers cross the network. Buckets that differ are
then compared key by key, which names exactly the keys missing on one side or with different values. The cost is
one scan of the table on each side, so this runs on its own daily cadence and on demand, not after every day.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from platform_assets.catalog import DELETED_COLUMN, Table
from platform_assets.warehouse.load import DATABASE
from resources.clickhouse import ClickHouseResource
from resources.oltp_postgres import OltpPostgresResource

MATCHES_OLTP = "matches_oltp"  # the asset check that runs this comparison (warehouse/divergence.py)
ROWS_PER_BUCKET = 2_000
_DECIMAL = re.compile(r"decimal\((\d+),\s*(\d+)\)")


def _pg_text(name: str, logical: str) -> str:
    if m := _DECIMAL.fullmatch(logical):
        return f"({name} * {10 ** int(m[2])})::bigint::text"
    if logical == "timestamp":
        return f"(extract(epoch FROM {name}) * 1000000)::bigint::text"
    if logical == "string":
        return f"octet_length({name})::text || ':' || {name}"
    return f"{name}::text"  # integers, dates (YYYY-MM-DD)


def _ch_text(name: str, logical: str) -> str:
    if m := _DECIMAL.fullmatch(logical):
        return f"toString(toInt64({name} * {10 ** int(m[2])}))"
    if logical == "timestamp":
        return f"toString(toUnixTimestamp64Micro({name}))"
    if logical == "string":
        return f"concat(toString(length({name})), ':', {name})"
    return f"toString({name})"


def pg_row_hash(table: Table) -> str:
    text = " || '|' || ".join(_pg_text(c.name, c.type) for c in table.all_columns)
    return f"('x' || substr(md5({text}), 1, 16))::bit(64)::bigint"


def ch_row_hash(table: Table) -> str:
    text = ", '|', ".join(_ch_text(c.name, c.type) for c in table.all_columns)
    return f"reinterpretAsInt64(reverse(substring(MD5(concat({text})), 1, 8)))"


@dataclass
class TableDiff:
    table: str
    oltp_rows: int
    warehouse_rows: int
    buckets: int
    differing_buckets: int
    only_in_oltp: list[tuple] = field(default_factory=list)  # keys the warehouse lacks
    only_in_warehouse: list[tuple] = field(default_factory=list)  # keys the OLTP no longer has
    changed: list[tuple] = field(default_factory=list)  # keys on both sides with different values
    seconds: float = 0.0

    @property
    def keys(self) -> list[tuple]:
        return sorted(self.only_in_oltp + self.only_in_warehouse + self.changed)

    @property
    def equal(self) -> bool:
        return not self.keys

    def describe(self, limit: int = 5) -> str:
        if self.equal:
            return f"{DATABASE}.{self.table} equals the OLTP ({self.oltp_rows} rows, every column)"
        parts = []
        for what, keys in (
            ("missing in the warehouse", self.only_in_oltp),
            ("deleted in the OLTP, still in the warehouse", self.only_in_warehouse),
            ("with different values", self.changed),
        ):
            if keys:
                shown = ", ".join(str(k[0] if len(k) == 1 else k) for k in sorted(keys)[:limit])
                parts.append(f"{len(keys)} key(s) {what} (first: {shown})")
        return f"{DATABASE}.{self.table} differs from the OLTP: " + "; ".join(parts)


def _bucketing(oltp: OltpPostgresResource, table: Table) -> tuple[int, int, int]:
    """(lowest key, bucket width, rows) from the OLTP's first key column: ~ROWS_PER_BUCKET rows a bucket."""
    k0 = table.primary_key[0]
    with oltp.connect() as conn:
        lo, hi, rows = conn.execute(f"SELECT min({k0}), max({k0}), count(*) FROM {table.name}").fetchone()
    if rows == 0:
        return 0, 1, 0
    buckets = max(1, rows // ROWS_PER_BUCKET)
    return int(lo), max(1, -(-(int(hi) - int(lo) + 1) // buckets)), int(rows)


def diff_table(
    oltp: OltpPostgresResource, ch: ClickHouseResource, table: Table, not_from_oltp: set[tuple] | None = None
) -> TableDiff:
    """Every live row of the OLTP table against what warehouse queries see (``FINAL``, deletes dropped).

    ``not_from_oltp``: keys the warehouse holds from another source (landed files), left out of the comparison.
    """
    started = time.perf_counter()
    k0, pk = table.primary_key[0], ", ".join(table.primary_key)
    lo, width, _ = _bucketing(oltp, table)
    pg_bucket, ch_bucket = f"({k0} - {lo}) / {width}", f"intDiv({k0} - {lo}, {width})"
    live = f"{DATABASE}.{table.name} FINAL WHERE {DELETED_COLUMN} = 0"
    with oltp.connect() as conn:
        want = {
            int(b): (int(n), int(h))
            for b, n, h in conn.execute(
                f"SELECT {pg_bucket}, count(*), sum({pg_row_hash(table)}) FROM {table.name} GROUP BY 1"
            ).fetchall()
        }
    exists = bool(ch.columns(DATABASE, table.name))
    got = {}
    if exists:
        got = {
            int(b): (int(n), int(h))
            for b, n, h in ch.rows(
                f"SELECT {ch_bucket}, count(), sum(toInt128({ch_row_hash(table)})) FROM {live} GROUP BY 1"
            )
        }
    differing = sorted(b for b in set(want) | set(got) if want.get(b) != got.get(b))
    out = TableDiff(
        table.name,
        sum(n for n, _ in want.values()),
        sum(n for n, _ in got.values()),
        len(set(want) | set(got)),
        len(differing),
    )
    if differing:
        with oltp.connect() as conn:
            left = {
                tuple(r[:-1]): r[-1]
                for r in conn.execute(
                    f"SELECT {pk}, {pg_row_hash(table)} FROM {table.name} WHERE {pg_bucket} = ANY(%s)",
                    (differing,),
                ).fetchall()
            }
        right = {}
        if exists:
            buckets = ", ".join(str(b) for b in differing)
            right = {
                tuple(r[:-1]): r[-1]
                for r in ch.rows(f"SELECT {pk}, {ch_row_hash(table)} FROM {live} AND {ch_bucket} IN ({buckets})")
            }
        for key in not_from_oltp or ():
            left.pop(key, None)
            right.pop(key, None)
        out.only_in_oltp = sorted(k for k in left if k not in right)
        out.only_in_warehouse = sorted(k for k in right if k not in left)
        out.changed = sorted(k for k in left if k in right and left[k] != right[k])
    out.seconds = time.perf_counter() - started
    return out
