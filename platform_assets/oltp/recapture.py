"""Re-capture of keys, the one write the pipeline makes to the OLTP: through a function per table, not table DML.

``repair_warehouse`` captures the keys that differ from the warehouse anew. Its role (``platform_capture``) holds
no privilege on the tables, only EXECUTE on ``recapture_<table>(present, absent)``: SECURITY DEFINER functions
(owned by the superuser that installs them) that can do exactly two things. Rows the table holds are touched with a
no-op update, which the capture trigger stamps with the clock (the function ignores the session's
``platform.change_time``); keys the table does not hold get a tombstone, and only those: a leaked capture password
cannot change a value, delete a row or stamp a change in the past.
"""

from __future__ import annotations

import json
from functools import partial

from psycopg.types.json import Jsonb

from platform_assets.catalog import TABLES, Table
from platform_assets.oltp.capture import CHANGE_TIME_SETTING, TOMBSTONE_TABLE
from resources.oltp_postgres import OltpPostgresResource


def function_name(t: Table) -> str:
    return f"recapture_{t.name}"


def signature(t: Table) -> str:
    return f"{function_name(t)}(jsonb, jsonb)"


def recapture_function_sql(t: Table) -> str:
    """``present``/``absent``: JSON arrays of ``{key column: value}``, typed by the table's own row type."""
    pk = ", ".join(t.primary_key)
    k_pk = ", ".join(f"k.{c}" for c in t.primary_key)
    t_pk = ", ".join(f"t.{c}" for c in t.primary_key)
    pairs = ", ".join(f"'{c}', k.{c}" for c in t.primary_key)
    k0 = t.primary_key[0]
    return f"""CREATE OR REPLACE FUNCTION {function_name(t)}(present jsonb, absent jsonb,
  OUT touched bigint, OUT tombstones bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET {CHANGE_TIME_SETTING} = '' AS $$
BEGIN
  UPDATE {t.name} SET {k0} = {k0}
  WHERE ({pk}) IN (SELECT {k_pk} FROM jsonb_populate_recordset(NULL::{t.name}, present) k);
  GET DIAGNOSTICS touched = ROW_COUNT;
  INSERT INTO {TOMBSTONE_TABLE} (table_name, pk, deleted_at)
  SELECT '{t.name}', jsonb_build_object({pairs}), clock_timestamp()
  FROM jsonb_populate_recordset(NULL::{t.name}, absent) k
  WHERE NOT EXISTS (SELECT FROM {t.name} t WHERE ({t_pk}) = ({k_pk}));
  GET DIAGNOSTICS tombstones = ROW_COUNT;
END $$"""


def recapture_sql() -> list[str]:
    """Idempotent DDL: one function per replicated table, callable by no one until a role is granted it."""
    out = []
    for t in TABLES:
        out += [recapture_function_sql(t), f"REVOKE ALL ON FUNCTION {signature(t)} FROM PUBLIC"]
    return out


def drop_sql() -> list[str]:
    return [f"DROP FUNCTION IF EXISTS {signature(t)}" for t in TABLES]


_dumps = partial(json.dumps, default=str)  # dates and decimals as their text: the row type parses them


def recapture_keys(
    capture: OltpPostgresResource, table: Table, present: list[tuple], absent: list[tuple]
) -> tuple[int, int]:
    """Touch ``present`` and tombstone those of ``absent`` the table does not hold: (rows touched, tombstones)."""

    def objects(keys: list[tuple]) -> Jsonb:
        return Jsonb([dict(zip(table.primary_key, k, strict=True)) for k in keys], dumps=_dumps)

    with capture.connect() as conn, conn.transaction():
        row = conn.execute(f"SELECT * FROM {function_name(table)}(%s, %s)", (objects(present), objects(absent)))
        touched, tombstones = row.fetchone()
    return int(touched), int(tombstones)
