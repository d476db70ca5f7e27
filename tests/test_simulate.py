"""OLTP activity simulation: deterministic, stamped with the simulated day, deletes recorded by triggers."""

from datetime import UTC, datetime

import pytest

from platform_assets.oltp.seed import seed_tpch
from platform_assets.oltp.simulate import simulate, simulate_now
from resources.settings import data_dir
from tests.conftest import SCALE_FACTOR

# every column but the capture's transaction id, which differs between two loads of the same rows
ROW = "(to_jsonb(t) - 'change_xid')::text"
CHECKSUM = f"""
SELECT (SELECT md5(string_agg({ROW}, ',' ORDER BY o_orderkey)) FROM orders t),
       (SELECT md5(string_agg({ROW}, ',' ORDER BY l_orderkey, l_linenumber)) FROM lineitem t),
       (SELECT md5(string_agg({ROW}, ',' ORDER BY deleted_at, pk::text)) FROM deleted_rows t)"""


@pytest.fixture(scope="module")
def sim_db(oltp):
    """A database of its own, so the lineage tests keep the pristine TPC-H."""
    with oltp.connect(autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS tpch_sim")
        conn.execute("CREATE DATABASE tpch_sim")
    return oltp.model_copy(update={"database": "tpch_sim"})


def fresh(sim_db):
    seed_tpch(sim_db, SCALE_FACTOR, data_dir() / "duckdb_extensions")
    return sim_db


def test_two_days_of_activity_are_stamped_and_deletes_recorded(sim_db):
    db = fresh(sim_db)
    with db.connect() as conn:
        orders_before = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
    report = simulate(db, days=2, seed=7)
    assert [d.day.isoformat() for d in report.days] == ["1998-08-04", "1998-08-05"]
    with db.connect() as conn:
        orders_after = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
        new = sum(d.new_orders for d in report.days)
        gone = sum(d.deleted_orders for d in report.days)
        assert new > 0 and gone > 0 and orders_after == orders_before + new - gone
        # every change carries its simulated day; untouched rows keep the seed's day
        days = {r[0].isoformat() for r in conn.execute("SELECT DISTINCT updated_at::date FROM lineitem")}
        assert days == {"1998-08-03", "1998-08-04", "1998-08-05"}
        tomb = conn.execute("SELECT table_name, count(*), min(deleted_at)::date FROM deleted_rows GROUP BY 1 "
                            "ORDER BY 1").fetchall()  # fmt: skip
        assert [(t, n) for t, n, _ in tomb] == [
            ("lineitem", sum(d.deleted_lineitems for d in report.days)),
            ("orders", gone),
        ]
        assert tomb[0][2].isoformat() == "1998-08-04"
        deleted = conn.execute("SELECT (pk->>'o_orderkey')::bigint FROM deleted_rows WHERE table_name = 'orders'")
        keys = [r[0] for r in deleted]
        assert conn.execute("SELECT count(*) FROM orders WHERE o_orderkey = ANY(%s)", (keys,)).fetchone()[0] == 0


def test_same_seed_same_database(sim_db):
    sums = []
    for _ in range(2):
        db = fresh(sim_db)
        simulate(db, days=2, seed=11)
        with db.connect() as conn:
            sums.append(conn.execute(CHECKSUM).fetchone())
    assert sums[0] == sums[1]
    db = fresh(sim_db)
    simulate(db, days=2, seed=12)
    with db.connect() as conn:
        assert conn.execute(CHECKSUM).fetchone() != sums[0]


def test_activity_on_the_wall_clock_is_stamped_now_and_leaves_the_simulated_calendar_alone(sim_db):
    db = fresh(sim_db)
    simulate(db, days=1, seed=7)
    before = datetime.now(UTC)
    report = simulate_now(db, seed=7)
    after = datetime.now(UTC)
    assert report.day == before.date() and report.new_orders > 0 and report.deleted_orders > 0
    with db.connect() as conn:
        # each row the clock's time of its write (the triggers' clock_timestamp()), inside the transaction's span
        lo, hi = conn.execute("SELECT min(updated_at), max(updated_at) FROM orders WHERE updated_at > %s",
                              ("1998-08-04 12:00Z",)).fetchone()  # fmt: skip
        assert before <= lo <= hi <= after
        deleted = conn.execute("SELECT min(deleted_at) FROM deleted_rows WHERE deleted_at > %s", ("1998-08-05",))
        assert before <= deleted.fetchone()[0] <= after
    # the next simulated day follows the last simulated one, not today
    assert [d.day.isoformat() for d in simulate(db, days=1, seed=7).days] == ["1998-08-05"]
