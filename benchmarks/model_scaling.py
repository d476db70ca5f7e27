"""Does applying a day to ``fct_lineitem`` cost the changed orders or the table? Prints seconds side by side.

For each table size (orders; 4 lines per order) it builds the warehouse's own ``orders`` and ``lineitem`` tables
(catalog DDL, synthetic rows) in a scratch chDB folder, rebuilds the model whole (``models.rebuild``), then applies
one day in which the same number of orders changed — their header re-versioned, one line each deleted — with the
pipeline's own ``models.upsert_keys``, and checks the result equals a rebuild (``matches_full_rebuild``'s hash).

    python -m benchmarks.model_scaling --orders 150000 1500000 --changed 1500
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

from platform_assets.catalog import AUDIT_COLUMN, DELETED_COLUMN, TABLES_BY_NAME, Table
from platform_assets.warehouse.load import DATABASE, create_sql, engine, table_columns
from platform_assets.warehouse.models import (
    MODEL_SQL,
    READ_CURRENT,
    fingerprint,
    rebuild,
    stored_fingerprint,
    upsert_keys,
)
from resources.clickhouse import ClickHouseResource

SEED = "toDateTime64('1998-08-03 00:00:00', 6, 'UTC')"
DAY = "toDateTime64('1998-08-04 12:00:00', 6, 'UTC')"
SET = f"SETTINGS {READ_CURRENT}"


def _values(table: Table, keys: dict[str, str]) -> str:
    """A SELECT list of synthetic values over ``numbers()`` with the catalog's types; ``keys`` fixes some columns."""
    out = []
    for c in table.all_columns:
        if c.name in keys:
            out.append(f"{keys[c.name]} AS {c.name}")
        elif c.name == AUDIT_COLUMN:
            out.append(f"{SEED} AS {c.name}")
        elif c.type.startswith("decimal"):
            out.append(f"toDecimal64(number % 1000 / 100, 2) AS {c.name}")
        elif c.type in ("int32", "int64"):
            out.append(f"number % 1000 AS {c.name}")
        elif c.type == "date":
            out.append(f"toDate32('1995-01-01') + number % 2000 AS {c.name}")
        else:
            out.append(f"toString(number % 97) AS {c.name}")
    return ", ".join(out)


def measure(ch: ClickHouseResource, orders: int, changed: int) -> dict:
    """One table size, from empty tables (one chDB engine per process: every size shares the folder)."""
    ch.command(f"DROP DATABASE IF EXISTS {DATABASE} SYNC")
    ch.command(f"CREATE DATABASE {DATABASE}")
    for name, rows, keys in (
        ("orders", orders, {"o_orderkey": "number + 1"}),
        ("lineitem", 4 * orders, {"l_orderkey": "intDiv(number, 4) + 1", "l_linenumber": "number % 4 + 1"}),
    ):
        t = TABLES_BY_NAME[name]
        ch.command(create_sql(f"{DATABASE}.{name}", table_columns(t), engine(t)))
        ch.command(f"INSERT INTO {DATABASE}.{name} SELECT {_values(t, keys)}, 0 FROM numbers({rows})")
    spec = MODEL_SQL["fct_lineitem"]
    t0 = time.perf_counter()
    rebuild(ch, spec)
    rebuild_s = time.perf_counter() - t0
    # the day: every (orders/changed)-th order gets a new version, its line 1 is deleted
    step = max(orders // changed, 1)
    picked = f"(SELECT number * {step} FROM numbers(1, {min(changed, orders // step)}))"
    o_cols = ", ".join(DAY if c.name == AUDIT_COLUMN else c.name for c in TABLES_BY_NAME["orders"].all_columns)
    ch.command(
        f"INSERT INTO {DATABASE}.orders SELECT {o_cols}, 0 FROM {DATABASE}.orders FINAL WHERE o_orderkey IN {picked}"
    )
    l_cols = ", ".join(DAY if c.name == AUDIT_COLUMN else c.name for c in TABLES_BY_NAME["lineitem"].all_columns)
    ch.command(
        f"INSERT INTO {DATABASE}.lineitem SELECT {l_cols}, 1 FROM {DATABASE}.lineitem FINAL "
        f"WHERE l_orderkey IN {picked} AND l_linenumber = 1"
    )
    changes = f"{DATABASE}.day_changes"
    ch.command(
        f"CREATE TABLE {changes} ENGINE = Memory AS SELECT o_orderkey AS key, {AUDIT_COLUMN} AS changed_at "
        f"FROM {DATABASE}.orders WHERE {AUDIT_COLUMN} = {DAY} AND {DELETED_COLUMN} = 0"
    )
    t0 = time.perf_counter()
    written, deleted = upsert_keys(ch, spec, changes)
    day_s = time.perf_counter() - t0
    same = stored_fingerprint(ch, spec) == fingerprint(ch, spec.live(None), spec)
    # what the day read: lineitem granules (8,192 rows each) the primary-key index selected for the changed orders
    plan = "\n".join(r[0] for r in ch.rows(f"EXPLAIN indexes = 1 SELECT count() FROM ({spec.live(changes)}) {SET}"))
    granules = re.search(r"ReadFromMergeTree \(warehouse\.lineitem\)[\s\S]*?Granules: (\d+)/(\d+)", plan)
    return {
        "orders": orders,
        "lineitem_rows": 4 * orders,
        "changed_orders": changed,
        "rebuild_s": round(rebuild_s, 3),
        "day_s": round(day_s, 3),
        "rows_written": written,
        "delete_markers": deleted,
        "lineitem_granules_read": f"{granules[1]}/{granules[2]}" if granules else "n/a",
        "equals_rebuild": same,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.model_scaling")
    parser.add_argument("--orders", type=int, nargs="+", default=[150_000, 1_500_000])
    parser.add_argument("--changed", type=int, default=1500)
    args = parser.parse_args(argv)
    print(
        f"{'orders':>10} {'lines':>10} {'changed':>8} {'rebuild s':>10} {'day s':>8} {'written':>8} "
        f"{'granules read':>14} {'ok':>4}"
    )
    results = []
    folder = Path(tempfile.mkdtemp(prefix="model-scaling-"))
    try:
        ch = ClickHouseResource(dsn=f"chdb://{folder / 'engine'}")
        for n in args.orders:
            r = measure(ch, n, args.changed)
            results.append(r)
            print(
                f"{r['orders']:>10,} {r['lineitem_rows']:>10,} {r['changed_orders']:>8,} {r['rebuild_s']:>10.2f} "
                f"{r['day_s']:>8.2f} {r['rows_written']:>8,} {r['lineitem_granules_read']:>14} "
                f"{'yes' if r['equals_rebuild'] else 'NO':>4}"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(results))
    return 0 if all(r["equals_rebuild"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
