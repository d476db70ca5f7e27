"""Co-located joins against GLOBAL ones, on the emulated 2-shard cluster.

``python -m benchmarks.colocated_joins --sf 0.1 [--rounds 3]``: TPC-H at ``sf`` (DuckDB's dbgen) is loaded into a
2-shard chDB engine of its own (the warehouse's own tables and Distributed tables, rows split by the catalog's
keys), then each join runs both ways, alternating, round by round:

* **global** (what the platform runs): the model's lineitem ⋈ orders reads both tables to the node running the
  query and joins there; the marts run with ``distributed_product_mode = 'global'``, which ships the right-hand
  tables (orders, lineitem, customer) to every shard;
* **co-located**: lineitem and orders are both sharded by ``cityHash64(<orderkey>)``, so each shard can join its own
  rows (``distributed_product_mode = 'local'``: the right-hand Distributed table becomes the shard's local table);
  tables sharded otherwise (customer) are still joined ``GLOBAL``.

Both must give the same answer (and the marts TPC-H's own, which the platform's tests check for the global form).
Both emulated shards are one process on this machine, so no network is saved here: what is measured is the work
each form makes the engine do (hash tables built per shard, rows moved between the shards' pipelines).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from platform_assets.catalog import DELETED_COLUMN, TABLES
from platform_assets.marts.queries import MART_SETTINGS, TPCH
from platform_assets.oltp.seed import duckdb_with_extensions
from platform_assets.warehouse.load import ensure_table
from platform_assets.warehouse.models import MODEL_SQL, READ_CURRENT
from platform_assets.warehouse.sharding import DATABASE, SCRATCH, sharded_tables
from resources.clickhouse import ClickHouseResource

SEED_STAMP = "toDateTime64('1998-08-03 00:00:00', 6, 'UTC')"
COLOCATED = "final = 1, join_use_nulls = 1, distributed_product_mode = 'local'"


def model_colocated() -> str:
    """``fct_lineitem``'s rows, joined on each shard (both inputs are sharded by the order key)."""
    spec = MODEL_SQL["fct_lineitem"]
    select = spec.select.split("FROM (", 1)[0]
    return (
        f"{select}FROM {DATABASE}.lineitem AS l INNER JOIN {DATABASE}.orders AS o ON l.l_orderkey = o.o_orderkey "
        "WHERE l.is_deleted = 0 AND o.is_deleted = 0"
    )


# The marts that join orders and lineitem, with that pair joined on each shard and the rest GLOBAL: Q12 as it is
# (orders ⋈ lineitem only), Q3 rewritten so the pair comes first and customer is joined GLOBAL.
MART_COLOCATED = {
    "tpch_q12_shipping_modes": next(m.sql for m in TPCH if m.name == "tpch_q12_shipping_modes"),
    "tpch_q03_shipping_priority": f"""
SELECT l_orderkey, sum(l_extendedprice * (1 - l_discount)) AS revenue, o_orderdate, o_shippriority
FROM {DATABASE}.lineitem AS l
JOIN {DATABASE}.orders AS o ON l.l_orderkey = o.o_orderkey
GLOBAL JOIN {DATABASE}.customer AS c ON c.c_custkey = o.o_custkey
WHERE c_mktsegment = 'BUILDING' AND o_orderdate < toDate32('1995-03-15') AND l_shipdate > toDate32('1995-03-15')
GROUP BY l_orderkey, o_orderdate, o_shippriority
ORDER BY revenue DESC, o_orderdate
LIMIT 10""",
}


def load(ch: ClickHouseResource, sf: float, scratch: Path) -> dict[str, int]:
    con = duckdb_with_extensions(scratch / "duckdb_extensions", "tpch")
    con.execute(f"CALL dbgen(sf={sf})")
    rows = {}
    for table in TABLES:
        path = scratch / f"{table.name}.parquet"
        con.execute(f"COPY {table.name} TO '{path}' (FORMAT parquet)")
        target = ensure_table(ch, table)
        cols = [c.name for c in table.all_columns]
        select = ", ".join(SEED_STAMP if c == "updated_at" else f"`{c}`" for c in cols)
        ch.command(
            f"INSERT INTO {target} ({', '.join(f'`{c}`' for c in cols)}, `{DELETED_COLUMN}`) "
            f"SELECT {select}, 0 FROM file('{path}', Parquet) SETTINGS distributed_foreground_insert = 1"
        )
        rows[table.name] = int(ch.scalar(f"SELECT count() FROM {target}"))
    return rows


def timed(ch: ClickHouseResource, sql: str) -> tuple[float, list]:
    started = time.perf_counter()
    rows = ch.rows(sql)
    return time.perf_counter() - started, rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.colocated_joins", description=__doc__)
    parser.add_argument("--sf", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="colocated-"))
    try:
        ch = ClickHouseResource(
            dsn=f"chdb://{scratch / 'clickhouse'}", cluster="platform", shards=2,
            sharded_tables=sharded_tables(), node_local_databases=[SCRATCH],
        )  # fmt: skip
        started = time.perf_counter()
        rows = load(ch, args.sf, scratch)
        print(f"SF {args.sf} on 2 emulated shards: lineitem {rows['lineitem']:,} rows, loaded in "
              f"{time.perf_counter() - started:.1f} s")  # fmt: skip
        model = MODEL_SQL["fct_lineitem"]
        hashed = "SELECT count(), sum(cityHash64(*)) FROM ({q}) SETTINGS {s}"
        cases = {
            "fct_lineitem rebuild join": (
                hashed.format(q=model.live(None), s=READ_CURRENT),
                hashed.format(q=model_colocated(), s="final = 1, distributed_product_mode = 'local'"),
            )
        }
        for mart in TPCH:
            if mart.name in MART_COLOCATED:
                cases[mart.name] = (
                    f"SELECT * FROM ({mart.sql}) ORDER BY ALL SETTINGS {MART_SETTINGS}",
                    f"SELECT * FROM ({MART_COLOCATED[mart.name]}) ORDER BY ALL SETTINGS {COLOCATED}",
                )
        print(f"{'join':32} {'global s (p50)':>15} {'co-located s':>13} {'ratio':>6}  same answer")
        for name, (global_sql, local_sql) in cases.items():
            times: dict[str, list[float]] = {"global": [], "local": []}
            answers = {}
            for _ in range(args.rounds):
                for kind, sql in (("global", global_sql), ("local", local_sql)):
                    seconds, answer = timed(ch, sql)
                    times[kind].append(seconds)
                    answers[kind] = answer
            g, c = statistics.median(times["global"]), statistics.median(times["local"])
            print(f"{name:32} {g:15.3f} {c:13.3f} {c / g:6.2f}  {answers['global'] == answers['local']}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
