"""Deterministic OLTP activity: n simulated days of orders, status changes, corrections and cancellations.

Each day is seeded from (seed, day), so the same starting state and seed always give the same database. Every
change is stamped with the simulated day (the session's ``platform.change_time``, which the capture triggers
honour); cancelled orders are deleted (with their lines) and the
delete triggers record them in the tombstone table with that same day.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from platform_assets.oltp.capture import CHANGE_TIME_SETTING
from platform_assets.oltp.seed import SEED_TIMESTAMP
from resources.oltp_postgres import OltpPostgresResource

SHIPMODES = ("AIR", "FOB", "MAIL", "RAIL", "REG AIR", "SHIP", "TRUCK")
PRIORITIES = ("1-URGENT", "2-HIGH", "3-MEDIUM", "4-NOT SPECIFIED", "5-LOW")


@dataclass
class DayReport:
    day: date
    new_orders: int = 0
    new_lineitems: int = 0
    status_changes: int = 0
    corrections: int = 0
    deleted_orders: int = 0
    deleted_lineitems: int = 0


@dataclass
class SimulationReport:
    days: list[DayReport] = field(default_factory=list)


def next_day(conn) -> date:
    """The day after the latest simulated day (the seed's day for a freshly seeded one).

    Changes applications make on the wall clock (today, UTC) do not move it; simulating past today is refused, as
    no partition holds a day that has not begun.
    """
    latest = conn.execute(
        "SELECT max(updated_at) FROM orders WHERE updated_at < date_trunc('day', now() AT TIME ZONE 'UTC') "
        "AT TIME ZONE 'UTC'"
    ).fetchone()[0]
    day = ((latest or SEED_TIMESTAMP).astimezone(UTC) + timedelta(days=1)).date()
    if day > datetime.now(UTC).date():
        raise ValueError(f"cannot simulate {day}: it has not begun (the current day is {datetime.now(UTC).date()})")
    return day


def _sample(rng: random.Random, keys: list, k: int) -> list:
    return sorted(rng.sample(keys, min(k, len(keys))))


def simulate_day(conn, day: date, seed: int, change_rate: float, on_wall_clock: bool = False) -> DayReport:
    """One day's activity in the caller's transaction, stamped with the day's noon; ``on_wall_clock``: as an
    application writes it now (the capture triggers stamp each row with the clock, today's partition)."""
    rng = random.Random(f"{seed}-{day.isoformat()}")
    if on_wall_clock:
        stamp = datetime.now(UTC)
    else:
        stamp = datetime.combine(day, time(12, 0), tzinfo=UTC)
        conn.execute("SELECT set_config(%s, %s, true)", (CHANGE_TIME_SETTING, stamp.isoformat()))
    report = DayReport(day)
    n_orders = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
    k = max(1, round(n_orders * change_rate))

    # new orders with 1-7 lines, priced from the parts' retail prices
    next_key = conn.execute("SELECT max(o_orderkey) FROM orders").fetchone()[0] + 1
    customers = [r[0] for r in conn.execute("SELECT c_custkey FROM customer ORDER BY c_custkey")]
    partsupp = conn.execute(
        "SELECT ps_partkey, ps_suppkey, p_retailprice FROM partsupp JOIN part ON p_partkey = ps_partkey "
        "ORDER BY ps_partkey, ps_suppkey"
    ).fetchall()
    for i in range(k):
        okey = next_key + i
        lines = []
        for ln in range(1, rng.randint(1, 7) + 1):
            partkey, suppkey, retail = partsupp[rng.randrange(len(partsupp))]
            qty = Decimal(rng.randint(1, 50))
            price = (qty * retail).quantize(Decimal("0.01"))
            disc, tax = Decimal(rng.randint(0, 10)) / 100, Decimal(rng.randint(0, 8)) / 100
            ship = day + timedelta(days=rng.randint(1, 30))
            lines.append((okey, partkey, suppkey, ln, qty, price, disc, tax, "N", "O", ship,
                          day + timedelta(days=rng.randint(30, 90)), ship + timedelta(days=rng.randint(1, 30)),
                          "NONE", rng.choice(SHIPMODES), "simulated", stamp))  # fmt: skip
        total = sum((li[5] * (1 - li[6]) * (1 + li[7]) for li in lines), Decimal(0)).quantize(Decimal("0.01"))
        conn.execute(
            "INSERT INTO orders VALUES (%s, %s, 'O', %s, %s, %s, %s, 0, 'simulated', %s)",
            (okey, rng.choice(customers), total, day, rng.choice(PRIORITIES), f"Clerk#{rng.randint(1, 1000):09d}",
             stamp),
        )  # fmt: skip
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO lineitem VALUES (" + ", ".join(["%s"] * 17) + ")", lines)
        report.new_orders += 1
        report.new_lineitems += len(lines)

    # open orders move on: shipped lines become F, then the order
    open_orders = [r[0] for r in conn.execute("SELECT o_orderkey FROM orders WHERE o_orderstatus = 'O' "
                                               "AND o_orderdate < %s ORDER BY o_orderkey", (day,))]  # fmt: skip
    to_fulfil = _sample(rng, open_orders, k)
    if to_fulfil:
        conn.execute("UPDATE lineitem SET l_linestatus = 'F', updated_at = %s WHERE l_orderkey = ANY(%s)",
                     (stamp, to_fulfil))  # fmt: skip
        conn.execute("UPDATE orders SET o_orderstatus = 'F', updated_at = %s WHERE o_orderkey = ANY(%s)",
                     (stamp, to_fulfil))  # fmt: skip
    report.status_changes = len(to_fulfil)

    # quantity/price corrections on individual lines
    line_keys = conn.execute("SELECT l_orderkey, l_linenumber FROM lineitem WHERE l_orderkey %% 97 = %s "
                             "ORDER BY 1, 2", (rng.randrange(97),)).fetchall()  # fmt: skip
    for okey, ln in _sample(rng, line_keys, k):
        delta = rng.choice((-1, 1))
        conn.execute(
            "UPDATE lineitem SET l_quantity = greatest(l_quantity + %s, 1), "
            "l_extendedprice = round(l_extendedprice / l_quantity * greatest(l_quantity + %s, 1), 2), "
            "updated_at = %s WHERE l_orderkey = %s AND l_linenumber = %s",
            (delta, delta, stamp, okey, ln),
        )
        report.corrections += 1

    # cancellations: some still-open orders are deleted with their lines
    fulfilled = set(to_fulfil)  # built once: ~730 k open orders at SF 1
    still_open = [o for o in open_orders if o not in fulfilled]
    cancelled = _sample(rng, still_open, max(1, k // 2))
    if cancelled:
        report.deleted_lineitems = conn.execute("DELETE FROM lineitem WHERE l_orderkey = ANY(%s)",
                                                (cancelled,)).rowcount  # fmt: skip
        report.deleted_orders = conn.execute("DELETE FROM orders WHERE o_orderkey = ANY(%s)", (cancelled,)).rowcount
    return report


def simulate_now(oltp: OltpPostgresResource, seed: int = 42, change_rate: float = 0.01) -> DayReport:
    """A day's worth of activity committed now, in one transaction, as an application on the wall clock writes it."""
    with oltp.connect() as conn, conn.transaction():
        return simulate_day(conn, datetime.now(UTC).date(), seed, change_rate, on_wall_clock=True)


def simulate(oltp: OltpPostgresResource, days: int, seed: int = 42, change_rate: float = 0.01) -> SimulationReport:
    """Apply ``days`` days of activity after the latest change, one transaction per day."""
    report = SimulationReport()
    with oltp.connect() as conn:
        for _ in range(days):
            with conn.transaction():
                report.days.append(simulate_day(conn, next_day(conn), seed, change_rate))
    return report
