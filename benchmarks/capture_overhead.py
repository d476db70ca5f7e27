"""What change capture costs the OLTP's writers, and what a sensor tick costs: figures, not a test.

    python -m benchmarks.capture_overhead [--rows 20000]

On a scratch copy of ``orders`` inside the OLTP database (the real table is not touched): the same UPDATE and
INSERT, each in one transaction, with the capture triggers installed and with them switched off for the session
(``session_replication_role = replica``), best of three; then a sensor tick's scan of the catalog tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from benchmarks.common import load_environment, oltp
from platform_assets.automation.oltp_changes import current_cursor, scan
from platform_assets.catalog import TABLES_BY_NAME
from platform_assets.oltp.capture import table_capture_sql

SCRATCH = "bench_capture_orders"


def _timed(conn, sql: str, replica: bool) -> float:
    with conn.transaction():
        if replica:
            conn.execute("SET LOCAL session_replication_role = replica")
        started = time.perf_counter()
        conn.execute(sql)
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.capture_overhead")
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args(argv)
    load_environment()
    db = oltp()
    orders = TABLES_BY_NAME["orders"]
    cols = ", ".join(c.name for c in orders.columns)
    scratch = dataclasses.replace(orders, name=SCRATCH)
    with db.connect(autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {SCRATCH}")
        conn.execute(f"CREATE TABLE {SCRATCH} (LIKE orders INCLUDING DEFAULTS INCLUDING INDEXES)")
        for sql in table_capture_sql(scratch):
            conn.execute(sql)
        conn.execute(f"INSERT INTO {SCRATCH} SELECT * FROM orders ORDER BY o_orderkey LIMIT {args.rows}")
        rows = conn.execute(f"SELECT count(*) FROM {SCRATCH}").fetchone()[0]
        figures = {}
        for name, sql in (
            ("update", f"UPDATE {SCRATCH} SET o_comment = o_comment || '.'"),
            ("insert", f"INSERT INTO {SCRATCH} ({cols}) SELECT o_orderkey + 100000000, {cols.split(', ', 1)[1]} "
                       f"FROM {SCRATCH} WHERE o_orderkey < 100000000"),
        ):  # fmt: skip
            for replica in (False, True):
                best = float("inf")
                for _ in range(3):
                    conn.execute(f"DELETE FROM {SCRATCH} WHERE o_orderkey >= 100000000")
                    best = min(best, _timed(conn, sql, replica))
                figures[(name, replica)] = best
        cursor = current_cursor(db)
        started = time.perf_counter()
        scan(db, cursor)
        tick = time.perf_counter() - started
        conn.execute(f"DROP TABLE {SCRATCH}")
    print(f"{rows:,} rows of orders, one transaction each, best of 3")
    print(f"{'statement':10s} {'capture s':>10s} {'no triggers s':>14s} {'overhead':>9s} {'µs/row':>7s}")
    for name in ("update", "insert"):
        on, off = figures[(name, False)], figures[(name, True)]
        print(f"{name:10s} {on:>10.3f} {off:>14.3f} {on / off:>8.2f}x {(on - off) / rows * 1e6:>7.1f}")
    print(f"a sensor tick's scan with nothing new (8 tables and the tombstones): {tick * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
