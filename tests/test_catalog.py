"""The catalog matches what TPC-H's generator produces, and the DDL derived from it is complete."""

import pyarrow as pa

from platform_assets.catalog import TABLES, arrow_schema, clickhouse_type, pg_type
from platform_assets.oltp.schema import constraint_sql, create_table_sql
from platform_assets.oltp.seed import duckdb_with_extensions

DUCK_TO_LOGICAL = {"INTEGER": "int32", "BIGINT": "int64", "DATE": "date", "VARCHAR": "string",
                   "DECIMAL(15,2)": "decimal(15,2)"}  # fmt: skip


def test_catalog_columns_match_tpch_dbgen(tmp_path):
    con = duckdb_with_extensions(tmp_path / "ext", "tpch")
    con.execute("CALL dbgen(sf=0)")
    for t in TABLES:
        described = [(r[0], DUCK_TO_LOGICAL[r[1]]) for r in con.execute(f"DESCRIBE {t.name}").fetchall()]
        assert described == [(c.name, c.type) for c in t.columns], t.name


def test_decimals_stay_decimal_everywhere():
    assert pg_type("decimal(15,2)") == "numeric(15,2)"
    assert clickhouse_type("decimal(15,2)") == "Decimal(15, 2)"
    lineitem = next(t for t in TABLES if t.name == "lineitem")
    assert arrow_schema(lineitem).field("l_extendedprice").type == pa.decimal128(15, 2)


def test_every_table_has_audit_column_and_keys():
    for t in TABLES:
        ddl = create_table_sql(t)
        assert "updated_at timestamptz NOT NULL" in ddl
        constraints = constraint_sql(t)
        assert constraints[0] == f"ALTER TABLE {t.name} ADD PRIMARY KEY ({', '.join(t.primary_key)})"
        assert sum("FOREIGN KEY" in c for c in constraints) == len(t.foreign_keys)
        for col in t.primary_key:
            t.column(col)  # raises if the key names an undeclared column


def test_every_column_says_what_it_means_in_the_ui():
    """The catalog's TPC-H meanings reach the column tables the UI shows (raw, curated, warehouse, models)."""
    import dagster as dg

    from platform_assets.catalog import MODELS, TABLES, column_meaning
    from platform_assets.definitions import defs
    from platform_assets.warehouse.models import MODEL_SQL

    names = {c.name for t in TABLES for c in t.all_columns} | {n for m in MODELS for n, _ in MODEL_SQL[m.name].columns}
    assert [n for n in sorted(names) if not column_meaning(n)] == []
    specs = {s.key: s for s in defs().resolve_all_asset_specs()}
    schema = specs[dg.AssetKey(["raw", "lineitem"])].metadata["dagster/column_schema"]
    meanings = {c.name: c.description for c in schema.columns}
    assert meanings["l_returnflag"] == "R: returned, A: accepted, N: not yet received." and all(meanings.values())
    assert "| `l_returnflag` | string | R: returned" in specs[dg.AssetKey(["curated", "lineitem"])].description
