"""Column lineage derived from the SQL (platform_assets/column_lineage.py) against lineage written by hand from the
TPC-H specification's query text (clause 2.4) and the models' definitions: what a user asking "which columns feed
this one?" gets in the UI and from ``platform lineage``."""

from __future__ import annotations

import dataclasses

import dagster as dg
import pytest

from control_plane import lineage as column_lineage
from control_plane.client import ControlPlaneError
from platform_assets.column_lineage import same_columns_lineage, sql_column_lineage, sql_sources
from platform_assets.marts.queries import MARTS
from platform_assets.warehouse.models import MODEL_SQL

MART = {m.name: m for m in MARTS}
L, O, C, N, P = "lineitem", "orders", "customer", "nation", "part"  # noqa: E741

# by hand, from the query text: each output column <- the columns its expression reads (not those only filtered on)
BY_HAND = {
    "tpch_q01_pricing_summary": {
        "l_returnflag": {(L, "l_returnflag")},
        "l_linestatus": {(L, "l_linestatus")},
        "sum_qty": {(L, "l_quantity")},
        "sum_base_price": {(L, "l_extendedprice")},
        "sum_disc_price": {(L, "l_extendedprice"), (L, "l_discount")},
        "sum_charge": {(L, "l_extendedprice"), (L, "l_discount"), (L, "l_tax")},
        "avg_qty": {(L, "l_quantity")},
        "avg_price": {(L, "l_extendedprice")},
        "avg_disc": {(L, "l_discount")},
        "count_order": set(),  # count(*): no column
    },
    "tpch_q03_shipping_priority": {
        "l_orderkey": {(L, "l_orderkey")},
        "revenue": {(L, "l_extendedprice"), (L, "l_discount")},
        "o_orderdate": {(O, "o_orderdate")},
        "o_shippriority": {(O, "o_shippriority")},
    },
    "tpch_q10_returned_items": {
        "c_custkey": {(C, "c_custkey")},
        "c_name": {(C, "c_name")},
        "revenue": {(L, "l_extendedprice"), (L, "l_discount")},
        "c_acctbal": {(C, "c_acctbal")},
        "n_name": {(N, "n_name")},
        "c_address": {(C, "c_address")},
        "c_phone": {(C, "c_phone")},
        "c_comment": {(C, "c_comment")},
    },
    "tpch_q12_shipping_modes": {
        "l_shipmode": {(L, "l_shipmode")},
        "high_line_count": {(O, "o_orderpriority")},  # sum(case when o_orderpriority … then 1 else 0)
        "low_line_count": {(O, "o_orderpriority")},
    },
    "tpch_q14_promotion_effect": {"promo_revenue": {(P, "p_type"), (L, "l_extendedprice"), (L, "l_discount")}},
    "customer_features": {
        "c_custkey": {("dim_customer", "c_custkey")},
        "nation": {("dim_customer", "n_name")},
        "order_count": {("fct_lineitem", "l_orderkey")},
        "revenue": {("fct_lineitem", "l_net_revenue")},
        "days_since_last_order": {("fct_lineitem", "o_orderdate")},  # through the scalar `as_of` as well
        "as_of_date": {("fct_lineitem", "o_orderdate")},
    },
}


@pytest.mark.parametrize("name", sorted(BY_HAND))
def test_derived_lineage_equals_the_lineage_read_from_the_query_text(name):
    derived = {column: set(sources) for column, sources in sql_sources(MART[name].sql).items()}
    expected = BY_HAND[name]
    assert {c: derived.get(c) for c in expected} == expected
    if name.startswith("tpch_"):  # every column of a TPC-H mart is written above
        assert set(derived) == set(expected)


def test_the_models_keep_their_inputs_columns_and_say_what_they_compute():
    fct = sql_sources(MODEL_SQL["fct_lineitem"].live(None))
    assert fct["l_net_revenue"] == ((L, "l_discount"), (L, "l_extendedprice"))
    assert fct["o_custkey"] == ((O, "o_custkey"),) and fct["l_comment"] == ((L, "l_comment"),)
    assert set(fct["updated_at"]) == {(L, "updated_at"), (O, "updated_at")}  # greatest(l.updated_at, o.updated_at)
    dim = sql_sources(MODEL_SQL["dim_customer"].live(None))
    assert dim["r_name"] == (("region", "r_name"),) and dim["n_name"] == ((N, "n_name"),)


def test_a_mart_whose_sql_changes_changes_its_lineage_with_no_hand_edit():
    q1 = MART["tpch_q01_pricing_summary"]
    edited = dataclasses.replace(
        q1, sql=q1.sql.replace("sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) AS sum_charge",
                               "sum(l_extendedprice * (1 + l_tax)) AS sum_charge, max(l_comment) AS last_comment")
    )  # fmt: skip
    assert edited.sql != q1.sql
    derived = sql_sources(edited.sql)
    assert set(derived["sum_charge"]) == {(L, "l_extendedprice"), (L, "l_tax")}
    assert derived["last_comment"] == ((L, "l_comment"),)


def test_the_ui_gets_it_as_dagster_column_lineage_onto_warehouse_assets():
    lineage = sql_column_lineage(MART["tpch_q14_promotion_effect"].sql)
    deps = lineage.deps_by_column["promo_revenue"]
    assert {(d.asset_key.path[0], d.asset_key.path[1], d.column_name) for d in deps} == {
        ("warehouse", P, "p_type"), ("warehouse", L, "l_extendedprice"), ("warehouse", L, "l_discount")}  # fmt: skip
    assert "count_order" not in sql_column_lineage(MART["tpch_q01_pricing_summary"].sql).deps_by_column


class _Webserver:
    """The GraphQL answer ``platform lineage`` reads, built from what the assets attach to their materializations."""

    def __init__(self, lineages: dict[str, dg.TableColumnLineage], unmaterialized: list[str]):
        def entry(lin: dg.TableColumnLineage) -> dict:
            return {
                "label": "dagster/column_lineage",
                "lineage": [
                    {"columnName": c, "columnDeps": [{"assetKey": {"path": list(d.asset_key.path)},
                                                      "columnName": d.column_name} for d in deps]}
                    for c, deps in lin.deps_by_column.items()
                ],
            }  # fmt: skip

        self.nodes = [
            {"assetKey": {"path": key.split("/")}, "assetMaterializations": [{"metadataEntries": [entry(lin)]}]}
            for key, lin in lineages.items()
        ] + [{"assetKey": {"path": key.split("/")}, "assetMaterializations": []} for key in unmaterialized]

    def query(self, document: str, variables: dict | None = None) -> dict:
        assert "TableColumnLineageMetadataEntry" in document
        return {"assetNodes": self.nodes}


def _platform_graph() -> _Webserver:
    from platform_assets.catalog import TABLES

    lineages: dict[str, dg.TableColumnLineage] = {}
    for t in TABLES:
        columns = [c.name for c in t.all_columns]
        for layer, upstream in (("raw", "oltp"), ("curated", "raw"), ("warehouse", "curated")):
            lineages[f"{layer}/{t.name}"] = same_columns_lineage(columns, upstream, t.name)
    for name, spec in MODEL_SQL.items():
        lineages[f"warehouse/{name}"] = sql_column_lineage(spec.live(None))
    for mart in MARTS:
        lineages[f"marts/{mart.name}"] = sql_column_lineage(mart.sql)
    return _Webserver(lineages, [f"oltp/{t.name}" for t in TABLES])


def test_platform_lineage_walks_a_mart_column_back_to_the_oltp():
    out = column_lineage.lineage(_platform_graph(), "marts/tpch_q10_returned_items.revenue", downstream=False)
    got = {(u["asset"], u["column"], u["depth"]) for u in out["upstream"]}
    assert got == {
        (f"{layer}/lineitem", column, depth)
        for depth, layer in enumerate(("warehouse", "curated", "raw", "oltp"), start=1)
        for column in ("l_extendedprice", "l_discount")
    }
    assert "downstream" not in out


def test_platform_lineage_answers_what_breaks_if_a_column_is_dropped():
    out = column_lineage.lineage(_platform_graph(), "oltp/customer.c_comment", upstream=False)
    assert [(d["asset"], d["depth"]) for d in out["downstream"]] == [
        ("raw/customer", 1), ("curated/customer", 2), ("warehouse/customer", 3),
        ("marts/tpch_q10_returned_items", 4), ("warehouse/dim_customer", 4)]  # fmt: skip
    whole = column_lineage.lineage(_platform_graph(), "warehouse/dim_customer", upstream=True, downstream=True)
    assert ("marts/customer_features", "region", 1) in {
        (d["asset"], d["column"], d["depth"]) for d in whole["downstream"]
    }
    assert ("warehouse/region", "r_name", 1) in {(u["asset"], u["column"], u["depth"]) for u in whole["upstream"]}


def test_platform_lineage_refuses_an_unknown_asset_or_column_by_name():
    with pytest.raises(ControlPlaneError, match="unknown asset 'marts/nope'"):
        column_lineage.lineage(_platform_graph(), "marts/nope.x")
    with pytest.raises(ControlPlaneError, match=r"no column 'revenu' .*revenue"):
        column_lineage.lineage(_platform_graph(), "marts/tpch_q06_forecast_revenue_change.revenu")
