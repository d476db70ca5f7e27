"""The marts' questions asked straight of the OLTP database, to compare with the marts built in ClickHouse.

TPC-H queries run in DuckDB over the live PostgreSQL tables (DuckDB's own copy of the TPC-H query texts, through
its postgres scanner), so they see exactly the OLTP's current state, simulated days included.
"""

from __future__ import annotations

from pathlib import Path

from platform_assets.oltp.seed import duckdb_with_extensions
from resources.oltp_postgres import OltpPostgresResource

CUSTOMER_FEATURES = """
WITH f AS (
    SELECT o_custkey, count(DISTINCT o_orderkey) AS n,
           sum(l_extendedprice * (1 - l_discount)) AS revenue,
           min(o_orderdate) AS first_d, max(o_orderdate) AS last_d
    FROM orders JOIN lineitem ON l_orderkey = o_orderkey GROUP BY o_custkey),
as_of AS (SELECT max(o_orderdate) AS d FROM orders JOIN lineitem ON l_orderkey = o_orderkey)
SELECT c_custkey, coalesce(n, 0), coalesce(revenue, 0), first_d, last_d,
       (SELECT d FROM as_of) - last_d, n_name, r_name
FROM customer JOIN nation ON c_nationkey = n_nationkey JOIN region ON n_regionkey = r_regionkey
LEFT JOIN f ON f.o_custkey = c_custkey ORDER BY c_custkey"""

CUSTOMER_FEATURES_MART = (
    "SELECT c_custkey, order_count, revenue, first_order_date, last_order_date, days_since_last_order, "
    "nation, region FROM marts.customer_features ORDER BY c_custkey"
)


def tpch_on_oltp(oltp: OltpPostgresResource, query: int, extension_dir: Path) -> list[list[str]]:
    """TPC-H query ``query`` over the live OLTP tables, as rows of strings (the shape of a reference answer)."""
    con = duckdb_with_extensions(extension_dir, "tpch", "postgres_scanner")
    try:
        oltp.attach(con, "oltp")
        con.execute("USE oltp.public")
        rows = con.execute(f"PRAGMA tpch({query})").fetchall()
    finally:
        con.close()
    return [[str(v) for v in row] for row in rows]
