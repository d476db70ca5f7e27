"""Mart queries in ClickHouse SQL over the warehouse tables.

The TPC-H queries use the specification's validation parameters, so each result can be compared with
TPC-H's published answer for the scale factor. ``SETTINGS final = 1`` makes every ReplacingMergeTree read
collapse row versions, so marts see exactly one row per key whatever the state of background merges.
"""

from __future__ import annotations

from dataclasses import dataclass

WAREHOUSE = "warehouse"


@dataclass(frozen=True)
class Mart:
    name: str
    title: str
    sql: str
    depends_on: tuple[str, ...]
    order_by: str  # how to read the result back in the query's order
    tpch_query: int | None = None


TPCH: tuple[Mart, ...] = (
    Mart(
        "tpch_q01_pricing_summary",
        "Q1 pricing summary report",
        f"""
SELECT l_returnflag, l_linestatus,
       sum(l_quantity) AS sum_qty,
       sum(l_extendedprice) AS sum_base_price,
       sum(l_extendedprice * (1 - l_discount)) AS sum_disc_price,
       sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) AS sum_charge,
       avg(toFloat64(l_quantity)) AS avg_qty,
       avg(toFloat64(l_extendedprice)) AS avg_price,
       avg(toFloat64(l_discount)) AS avg_disc,
       count() AS count_order
FROM {WAREHOUSE}.lineitem
WHERE l_shipdate <= toDate32('1998-12-01') - INTERVAL 90 DAY
GROUP BY l_returnflag, l_linestatus""",
        ("lineitem",),
        "l_returnflag, l_linestatus",
        1,
    ),
    Mart(
        "tpch_q03_shipping_priority",
        "Q3 shipping priority",
        f"""
SELECT l_orderkey, sum(l_extendedprice * (1 - l_discount)) AS revenue, o_orderdate, o_shippriority
FROM {WAREHOUSE}.customer AS c
JOIN {WAREHOUSE}.orders AS o ON c.c_custkey = o.o_custkey
JOIN {WAREHOUSE}.lineitem AS l ON l.l_orderkey = o.o_orderkey
WHERE c_mktsegment = 'BUILDING' AND o_orderdate < toDate32('1995-03-15') AND l_shipdate > toDate32('1995-03-15')
GROUP BY l_orderkey, o_orderdate, o_shippriority
ORDER BY revenue DESC, o_orderdate
LIMIT 10""",
        ("customer", "orders", "lineitem"),
        "revenue DESC, o_orderdate",
        3,
    ),
    Mart(
        "tpch_q05_local_supplier_volume",
        "Q5 local supplier volume",
        f"""
SELECT n_name, sum(l_extendedprice * (1 - l_discount)) AS revenue
FROM {WAREHOUSE}.customer AS c
JOIN {WAREHOUSE}.orders AS o ON c.c_custkey = o.o_custkey
JOIN {WAREHOUSE}.lineitem AS l ON l.l_orderkey = o.o_orderkey
JOIN {WAREHOUSE}.supplier AS s ON l.l_suppkey = s.s_suppkey AND c.c_nationkey = s.s_nationkey
JOIN {WAREHOUSE}.nation AS n ON s.s_nationkey = n.n_nationkey
JOIN {WAREHOUSE}.region AS r ON n.n_regionkey = r.r_regionkey
WHERE r_name = 'ASIA' AND o_orderdate >= toDate32('1994-01-01') AND o_orderdate < toDate32('1995-01-01')
GROUP BY n_name""",
        ("customer", "orders", "lineitem", "supplier", "nation", "region"),
        "revenue DESC",
        5,
    ),
    Mart(
        "tpch_q06_forecast_revenue_change",
        "Q6 forecasting revenue change",
        f"""
SELECT sum(l_extendedprice * l_discount) AS revenue
FROM {WAREHOUSE}.lineitem
WHERE l_shipdate >= toDate32('1994-01-01') AND l_shipdate < toDate32('1995-01-01')
  AND l_discount BETWEEN toDecimal64('0.05', 2) AND toDecimal64('0.07', 2) AND l_quantity < 24""",
        ("lineitem",),
        "revenue",
        6,
    ),
    Mart(
        "tpch_q10_returned_items",
        "Q10 returned item reporting",
        f"""
SELECT c_custkey, c_name, sum(l_extendedprice * (1 - l_discount)) AS revenue, c_acctbal, n_name,
       c_address, c_phone, c_comment
FROM {WAREHOUSE}.customer AS c
JOIN {WAREHOUSE}.orders AS o ON c.c_custkey = o.o_custkey
JOIN {WAREHOUSE}.lineitem AS l ON l.l_orderkey = o.o_orderkey
JOIN {WAREHOUSE}.nation AS n ON c.c_nationkey = n.n_nationkey
WHERE o_orderdate >= toDate32('1993-10-01') AND o_orderdate < toDate32('1994-01-01') AND l_returnflag = 'R'
GROUP BY c_custkey, c_name, c_acctbal, c_phone, n_name, c_address, c_comment
ORDER BY revenue DESC
LIMIT 20""",
        ("customer", "orders", "lineitem", "nation"),
        "revenue DESC",
        10,
    ),
    Mart(
        "tpch_q12_shipping_modes",
        "Q12 shipping modes and order priority",
        f"""
SELECT l_shipmode,
       countIf(o_orderpriority IN ('1-URGENT', '2-HIGH')) AS high_line_count,
       countIf(o_orderpriority NOT IN ('1-URGENT', '2-HIGH')) AS low_line_count
FROM {WAREHOUSE}.orders AS o
JOIN {WAREHOUSE}.lineitem AS l ON o.o_orderkey = l.l_orderkey
WHERE l_shipmode IN ('MAIL', 'SHIP') AND l_commitdate < l_receiptdate AND l_shipdate < l_commitdate
  AND l_receiptdate >= toDate32('1994-01-01') AND l_receiptdate < toDate32('1995-01-01')
GROUP BY l_shipmode""",
        ("orders", "lineitem"),
        "l_shipmode",
        12,
    ),
    Mart(
        "tpch_q14_promotion_effect",
        "Q14 promotion effect",
        f"""
SELECT 100.0 * toFloat64(sumIf(l_extendedprice * (1 - l_discount), p_type LIKE 'PROMO%'))
       / toFloat64(sum(l_extendedprice * (1 - l_discount))) AS promo_revenue
FROM {WAREHOUSE}.lineitem AS l
JOIN {WAREHOUSE}.part AS p ON l.l_partkey = p.p_partkey
WHERE l_shipdate >= toDate32('1995-09-01') AND l_shipdate < toDate32('1995-10-01')""",
        ("lineitem", "part"),
        "promo_revenue",
        14,
    ),
    Mart(
        "tpch_q18_large_volume_customers",
        "Q18 large volume customer",
        f"""
SELECT c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice, sum(l_quantity) AS sum_quantity
FROM {WAREHOUSE}.customer AS c
JOIN {WAREHOUSE}.orders AS o ON c.c_custkey = o.o_custkey
JOIN {WAREHOUSE}.lineitem AS l ON o.o_orderkey = l.l_orderkey
WHERE o_orderkey IN (SELECT l_orderkey FROM {WAREHOUSE}.lineitem GROUP BY l_orderkey HAVING sum(l_quantity) > 300)
GROUP BY c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice
ORDER BY o_totalprice DESC, o_orderdate
LIMIT 100""",
        ("customer", "orders", "lineitem"),
        "o_totalprice DESC, o_orderdate",
        18,
    ),
)

CUSTOMER_FEATURES = Mart(
    "customer_features",
    "Customer features: orders, revenue, first/last order, recency",
    f"""
WITH (SELECT max(o_orderdate) FROM {WAREHOUSE}.fct_lineitem) AS as_of
SELECT c.c_custkey AS c_custkey, c.c_name AS c_name, c.c_mktsegment AS c_mktsegment,
       c.n_name AS nation, c.r_name AS region,
       toUInt64(coalesce(f.order_count, 0)) AS order_count,
       toDecimal128(coalesce(f.revenue, 0), 4) AS revenue,
       f.first_order_date AS first_order_date,
       f.last_order_date AS last_order_date,
       if(f.last_order_date IS NULL, NULL, dateDiff('day', f.last_order_date, as_of)) AS days_since_last_order,
       as_of AS as_of_date
FROM {WAREHOUSE}.dim_customer AS c
LEFT JOIN (
    SELECT o_custkey, uniqExact(l_orderkey) AS order_count, sum(l_net_revenue) AS revenue,
           min(o_orderdate) AS first_order_date, max(o_orderdate) AS last_order_date
    FROM {WAREHOUSE}.fct_lineitem
    GROUP BY o_custkey
) AS f ON f.o_custkey = c.c_custkey""",
    ("dim_customer", "fct_lineitem"),
    "c_custkey",
)

MARTS: tuple[Mart, ...] = (*TPCH, CUSTOMER_FEATURES)
# `global`: a JOIN/IN over two Distributed tables ships the right side to every shard once (correct for any
# sharding keys; the default `deny` rejects such queries on a cluster).
MART_SETTINGS = "final = 1, join_use_nulls = 1, distributed_product_mode = 'global'"
