"""The catalog of replicated tables: the one place a table is declared.

Each entry gives the OLTP table's columns (in a small logical type vocabulary), its primary key, the
cursor column used for change tracking, and how ClickHouse orders and shards it. The OLTP DDL, the
raw layer's expected Arrow schema, the curated dedupe key and the warehouse DDL are all derived from it.
Replace the TPC-H demo tables by editing ``TABLES``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pyarrow as pa

AUDIT_COLUMN = "updated_at"
DELETED_COLUMN = "is_deleted"  # curated/warehouse only: 1 for a key deleted in the OLTP (a tombstone)


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # int32 | int64 | decimal(p,s) | date | string | timestamp


@dataclass(frozen=True)
class ForeignKey:
    columns: tuple[str, ...]
    references: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    shard_key: str  # ClickHouse sharding expression for the Distributed table
    foreign_keys: tuple[ForeignKey, ...] = ()
    cursor_column: str = AUDIT_COLUMN
    order_by: tuple[str, ...] = field(default=())
    description: str = ""

    @property
    def all_columns(self) -> tuple[Column, ...]:
        """Declared columns plus the audit column every replicated table carries."""
        return (*self.columns, Column(AUDIT_COLUMN, "timestamp"))

    @property
    def sort_key(self) -> tuple[str, ...]:
        return self.order_by or self.primary_key

    def column(self, name: str) -> Column:
        for c in self.all_columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name} has no column {name}")


_DECIMAL = re.compile(r"decimal\((\d+),\s*(\d+)\)")


def pg_type(logical: str) -> str:
    if m := _DECIMAL.fullmatch(logical):
        return f"numeric({m[1]},{m[2]})"
    return {
        "int32": "integer",
        "int64": "bigint",
        "date": "date",
        "string": "text",
        "timestamp": "timestamptz",
    }[logical]


def arrow_type(logical: str) -> pa.DataType:
    if m := _DECIMAL.fullmatch(logical):
        return pa.decimal128(int(m[1]), int(m[2]))
    return {
        "int32": pa.int32(),
        "int64": pa.int64(),
        "date": pa.date32(),
        "string": pa.string(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }[logical]


def clickhouse_type(logical: str) -> str:
    if m := _DECIMAL.fullmatch(logical):
        return f"Decimal({m[1]}, {m[2]})"
    return {
        "int32": "Int32",
        "int64": "Int64",
        "date": "Date32",
        "string": "String",
        "timestamp": "DateTime64(6, 'UTC')",
    }[logical]


def spark_type(logical: str) -> str:
    if _DECIMAL.fullmatch(logical):
        return logical
    return {"int32": "int", "int64": "bigint", "date": "date", "string": "string", "timestamp": "timestamp"}[logical]


def arrow_schema(table: Table) -> pa.Schema:
    return pa.schema([pa.field(c.name, arrow_type(c.type), nullable=False) for c in table.all_columns])


def _cols(spec: str) -> tuple[Column, ...]:
    """``"a int64, b string"`` -> columns (keeps the catalog readable)."""
    out = []
    for part in re.split(r",(?![^()]*\))", spec):
        name, typ = part.split(maxsplit=1)
        out.append(Column(name.strip(), typ.strip().replace(" ", "")))
    return tuple(out)


def _fk(cols: str, ref: str, ref_cols: str) -> ForeignKey:
    return ForeignKey(tuple(cols.split(",")), ref, tuple(ref_cols.split(",")))


MONEY = "decimal(15,2)"

TABLES: tuple[Table, ...] = (
    Table(
        "region",
        _cols("r_regionkey int32, r_name string, r_comment string"),
        primary_key=("r_regionkey",),
        shard_key="r_regionkey",
        description="The five TPC-H regions.",
    ),
    Table(
        "nation",
        _cols("n_nationkey int32, n_name string, n_regionkey int32, n_comment string"),
        primary_key=("n_nationkey",),
        shard_key="n_nationkey",
        foreign_keys=(_fk("n_regionkey", "region", "r_regionkey"),),
        description="The 25 TPC-H nations.",
    ),
    Table(
        "supplier",
        _cols(
            f"s_suppkey int64, s_name string, s_address string, s_nationkey int32, s_phone string, "
            f"s_acctbal {MONEY}, s_comment string"
        ),
        primary_key=("s_suppkey",),
        shard_key="cityHash64(s_suppkey)",
        foreign_keys=(_fk("s_nationkey", "nation", "n_nationkey"),),
        description="Suppliers of parts.",
    ),
    Table(
        "customer",
        _cols(
            f"c_custkey int64, c_name string, c_address string, c_nationkey int32, c_phone string, "
            f"c_acctbal {MONEY}, c_mktsegment string, c_comment string"
        ),
        primary_key=("c_custkey",),
        shard_key="cityHash64(c_custkey)",
        foreign_keys=(_fk("c_nationkey", "nation", "n_nationkey"),),
        description="Customers who place orders.",
    ),
    Table(
        "part",
        _cols(
            f"p_partkey int64, p_name string, p_mfgr string, p_brand string, p_type string, "
            f"p_size int32, p_container string, p_retailprice {MONEY}, p_comment string"
        ),
        primary_key=("p_partkey",),
        shard_key="cityHash64(p_partkey)",
        description="Parts sold.",
    ),
    Table(
        "partsupp",
        _cols(f"ps_partkey int64, ps_suppkey int64, ps_availqty int64, ps_supplycost {MONEY}, ps_comment string"),
        primary_key=("ps_partkey", "ps_suppkey"),
        shard_key="cityHash64(ps_partkey)",
        foreign_keys=(
            _fk("ps_partkey", "part", "p_partkey"),
            _fk("ps_suppkey", "supplier", "s_suppkey"),
        ),
        description="Which supplier offers which part, at what cost.",
    ),
    Table(
        "orders",
        _cols(
            f"o_orderkey int64, o_custkey int64, o_orderstatus string, o_totalprice {MONEY}, "
            f"o_orderdate date, o_orderpriority string, o_clerk string, o_shippriority int32, "
            f"o_comment string"
        ),
        primary_key=("o_orderkey",),
        shard_key="cityHash64(o_orderkey)",
        foreign_keys=(_fk("o_custkey", "customer", "c_custkey"),),
        description="Order headers.",
    ),
    Table(
        "lineitem",
        _cols(
            f"l_orderkey int64, l_partkey int64, l_suppkey int64, l_linenumber int64, l_quantity {MONEY}, "
            f"l_extendedprice {MONEY}, l_discount {MONEY}, l_tax {MONEY}, l_returnflag string, l_linestatus string, "
            f"l_shipdate date, l_commitdate date, l_receiptdate date, l_shipinstruct string, "
            f"l_shipmode string, l_comment string"
        ),
        primary_key=("l_orderkey", "l_linenumber"),
        # co-located with its order on the same shard, so order-level joins stay local
        shard_key="cityHash64(l_orderkey)",
        foreign_keys=(
            _fk("l_orderkey", "orders", "o_orderkey"),
            _fk("l_partkey,l_suppkey", "partsupp", "ps_partkey,ps_suppkey"),
        ),
        description="Order lines: the fact table of TPC-H.",
    ),
)

TABLES_BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}


def table(name: str) -> Table:
    try:
        return TABLES_BY_NAME[name]
    except KeyError:
        raise KeyError(f"table {name!r} is not in the catalog; known: {sorted(TABLES_BY_NAME)}") from None


@dataclass(frozen=True)
class Model:
    """A conformed model: a join of catalog tables that ClickHouse maintains in the warehouse (warehouse/models.py)."""

    name: str
    primary_key: tuple[str, ...]
    shard_key: str
    depends_on: tuple[str, ...]
    description: str

    @property
    def sort_key(self) -> tuple[str, ...]:
        return self.primary_key


MODELS: tuple[Model, ...] = (
    Model(
        "fct_lineitem",
        primary_key=("l_orderkey", "l_linenumber"),
        shard_key="cityHash64(l_orderkey)",
        depends_on=("lineitem", "orders"),
        description="Order lines enriched with their order (customer, date, status, priority) and net revenue.",
    ),
    Model(
        "dim_customer",
        primary_key=("c_custkey",),
        shard_key="cityHash64(c_custkey)",
        depends_on=("customer", "nation", "region"),
        description="Customers with their nation and region names.",
    ),
)


# What each column means (TPC-H's specification, clause 1.4, in short): the UI's column tables and the asset
# descriptions show it wherever the column appears (raw, curated, warehouse, the models and marts that keep it).
COLUMN_MEANINGS: dict[str, str] = {
    "r_regionkey": "Region key (0-4).",
    "r_name": "Region name (AFRICA, AMERICA, ASIA, EUROPE, MIDDLE EAST).",
    "r_comment": "Free text.",
    "n_nationkey": "Nation key (0-24).",
    "n_name": "Nation name.",
    "n_regionkey": "The nation's region (region.r_regionkey).",
    "n_comment": "Free text.",
    "s_suppkey": "Supplier key.",
    "s_name": "Supplier name (Supplier#<key>).",
    "s_address": "Supplier's street address.",
    "s_nationkey": "The supplier's nation (nation.n_nationkey).",
    "s_phone": "Phone number; its country code follows the nation.",
    "s_acctbal": "Account balance (may be negative).",
    "s_comment": "Free text; a few mention customer complaints (TPC-H Q16).",
    "c_custkey": "Customer key.",
    "c_name": "Customer name (Customer#<key>).",
    "c_address": "Customer's street address.",
    "c_nationkey": "The customer's nation (nation.n_nationkey).",
    "c_phone": "Phone number; its country code follows the nation.",
    "c_acctbal": "Account balance (may be negative).",
    "c_mktsegment": "Market segment: AUTOMOBILE, BUILDING, FURNITURE, HOUSEHOLD or MACHINERY.",
    "c_comment": "Free text.",
    "p_partkey": "Part key.",
    "p_name": "Part name: five colour words.",
    "p_mfgr": "Manufacturer (Manufacturer#1-5).",
    "p_brand": "Brand (Brand#<manufacturer><1-5>).",
    "p_type": "Type: size, finish and material words (e.g. STANDARD POLISHED TIN).",
    "p_size": "Size (1-50).",
    "p_container": "Container (e.g. SM BOX, JUMBO PKG).",
    "p_retailprice": "Retail price per unit.",
    "p_comment": "Free text.",
    "ps_partkey": "The part (part.p_partkey).",
    "ps_suppkey": "The supplier offering it (supplier.s_suppkey).",
    "ps_availqty": "Units this supplier has available.",
    "ps_supplycost": "This supplier's cost per unit.",
    "ps_comment": "Free text.",
    "o_orderkey": "Order key.",
    "o_custkey": "The customer who ordered (customer.c_custkey).",
    "o_orderstatus": "F: every line shipped, O: every line open, P: partly shipped.",
    "o_totalprice": "Order total: its lines' extended price after discount, plus tax.",
    "o_orderdate": "Day the order was placed.",
    "o_orderpriority": "Priority: 1-URGENT, 2-HIGH, 3-MEDIUM, 4-NOT SPECIFIED or 5-LOW.",
    "o_clerk": "Clerk who took the order (Clerk#<n>).",
    "o_shippriority": "Shipping priority (0).",
    "o_comment": "Free text.",
    "l_orderkey": "The order this line belongs to (orders.o_orderkey).",
    "l_partkey": "The part ordered (part.p_partkey).",
    "l_suppkey": "The supplier shipping it (supplier.s_suppkey; with l_partkey a partsupp row).",
    "l_linenumber": "Line number within the order (1-7).",
    "l_quantity": "Units ordered (1-50).",
    "l_extendedprice": "Quantity times the part's retail price, before discount and tax.",
    "l_discount": "Discount as a fraction (0.00-0.10).",
    "l_tax": "Tax as a fraction (0.00-0.08).",
    "l_returnflag": "R: returned, A: accepted, N: not yet received.",
    "l_linestatus": "F: shipped, O: open.",
    "l_shipdate": "Day the line shipped.",
    "l_commitdate": "Day delivery was promised.",
    "l_receiptdate": "Day the customer received it.",
    "l_shipinstruct": "Shipping instruction (e.g. DELIVER IN PERSON).",
    "l_shipmode": "Mode: AIR, FOB, MAIL, RAIL, REG AIR, SHIP or TRUCK.",
    "l_comment": "Free text.",
    AUDIT_COLUMN: "When the row last changed in the OLTP (set by the capture trigger): the change day it belongs to.",
    DELETED_COLUMN: "1: the key was deleted in the OLTP (kept as a marker so the warehouse drops it).",
    "l_net_revenue": "The line's revenue after discount: l_extendedprice * (1 - l_discount).",
}


def column_meaning(name: str) -> str | None:
    """What a column means, for any layer's column of that name (None for a column the catalog does not know)."""
    return COLUMN_MEANINGS.get(name)
