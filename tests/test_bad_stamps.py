"""A change stamp no change day can hold never stalls or crashes the change sensor (real PostgreSQL).

Any OLTP session can set ``platform.change_time``. A row stamped 9999-12-31 once held the sensor's cursor at its old
snapshot for good (every later tick requested every changed day again); ``infinity`` or a year past 9999 made every
tick crash. Now the capture trigger refuses such a stamp, and rows that carry one anyway (written with the triggers
off, as a restore does) are reported by the sensor, which moves on.
"""

from __future__ import annotations

import json

import dagster as dg
import psycopg
import pytest

from platform_assets.automation.oltp_changes import SENSOR, current_cursor
from platform_assets.definitions import defs
from platform_assets.oltp.capture import CHANGE_TIME_SETTING
from resources.oltp_postgres import OltpPostgresResource


@pytest.mark.parametrize("stamp", ["9999-12-31 00:00:00+00", "infinity", "2999-01-01 00:00:00+00"])
def test_the_capture_trigger_refuses_a_change_time_after_now(oltp_copy, stamp):
    with (
        oltp_copy.connect() as conn,
        pytest.raises(psycopg.errors.InvalidParameterValue) as refused,
        conn.transaction(),
    ):
        conn.execute("SELECT set_config(%s, %s, true)", (CHANGE_TIME_SETTING, stamp))
        conn.execute("UPDATE region SET r_comment = 'x' WHERE r_regionkey = 1")
    assert f"{CHANGE_TIME_SETTING} = {stamp}: a change is stamped at a time up to now" in str(refused.value)
    with oltp_copy.connect() as conn:  # nothing was written
        assert conn.execute("SELECT r_comment FROM region WHERE r_regionkey = 1").fetchone()[0] != "x"


def tick(oltp, cursor: str | None):
    """One tick of the change sensor on ``oltp``'s database (a resource built anew: Dagster configures the sensor's
    resources from their config, which a copied resource does not carry)."""
    definitions = defs()
    oltp = OltpPostgresResource(**{f: getattr(oltp, f) for f in ("host", "port", "database", "user", "password")})
    errors: list[str] = []
    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(
            instance=instance, instance_ref=instance.get_ref(), cursor=cursor, definitions=definitions,
            sensor_name=SENSOR,
            resources={**definitions.resources, "oltp": oltp},
        ) as context,
    ):  # fmt: skip
        context.log.error = errors.append
        return definitions.resolve_sensor_def(SENSOR).evaluate_tick(context), errors


def test_rows_stamped_where_no_day_holds_them_are_reported_and_the_cursor_moves_on(oltp_copy):
    cursor = json.dumps(current_cursor(oltp_copy))
    with oltp_copy.connect() as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")  # triggers off: a restore, a bulk tool
        conn.execute("UPDATE region SET updated_at = '9999-12-31 00:00:00+00', change_xid = "
                     "pg_current_xact_id()::text::bigint WHERE r_regionkey = 2")  # fmt: skip
        conn.execute("UPDATE nation SET updated_at = 'infinity', change_xid = pg_current_xact_id()::text::bigint "
                     "WHERE n_nationkey = 3")  # fmt: skip
    with oltp_copy.connect() as conn, conn.transaction():  # an ordinary change beside them, on a simulated day
        conn.execute("SELECT set_config(%s, %s, true)", (CHANGE_TIME_SETTING, "1998-08-05 12:00:00+00"))
        conn.execute("UPDATE orders SET o_comment = 'late' WHERE o_orderkey = 1")
    first, errors = tick(oltp_copy, cursor)
    assert [r.partition_key for r in first.run_requests] == ["1998-08-05"]  # the good change is requested
    assert len(errors) == 1 and "cannot be loaded" in errors[0]
    assert "'9999-12-31': {'region': [1, 0]}" in errors[0] and "'infinity': {'nation': [1, 0]}" in errors[0]
    # the cursor moved past them: the next tick finds nothing and reports nothing
    again, errors = tick(oltp_copy, first.cursor)
    assert again.run_requests in (None, []) and errors == []
    assert json.loads(again.cursor) != json.loads(cursor)
