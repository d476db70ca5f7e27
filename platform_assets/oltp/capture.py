"""Change capture maintained by the OLTP database itself: whatever an application writes, it is seen.

Applications write the way they do (plain INSERT/UPDATE/DELETE/TRUNCATE, with or without touching ``updated_at``);
triggers installed here make the database record every change:

* ``BEFORE INSERT OR UPDATE``: ``updated_at`` := the session's ``platform.change_time`` when set (the simulator
  stamps its simulated day; any session can set it, so a time after now, or ``infinity``, is refused with an error
  rather than stored: a stamp in year 9999 stands for a change day that never comes), else ``clock_timestamp()`` —
  taken after the row lock, so of two writers of one key the later one always carries the later stamp (``now()``,
  the transaction's start, would not); and ``change_xid`` := the writing transaction's id.
* ``AFTER DELETE`` and ``AFTER UPDATE`` of the primary key: the old key goes to the tombstone table
  ``deleted_rows`` with the same two stamps; ``BEFORE TRUNCATE``: every key of the table does.

The change sensor reads changes by transaction id, not by time. Its cursor is the snapshot it last read with
(``pg_current_snapshot()``: the lowest running transaction, the next id, the ids running in between). A tick reads,
in one new snapshot, the rows and tombstones whose ``change_xid`` was not visible in the cursor's snapshot — the
transactions that committed since, however long they ran and whenever they started. A transaction still open is
invisible now and was invisible then, so it is read on the tick after its commit; transactions that committed while
it was open are read at once, not held back behind it. Nothing committed is skipped and nothing is read twice. The
change day (the partition) stays the day of ``updated_at``.
"""

from __future__ import annotations

from platform_assets.catalog import AUDIT_COLUMN, TABLES, Table

CHANGE_XID = "change_xid"  # OLTP only: the id of the transaction that last wrote the row (never replicated)
TOMBSTONE_TABLE = "deleted_rows"
CHANGE_TIME_SETTING = "platform.change_time"

# bigint: psycopg, DuckDB and JSON cursors all take it as is (xid8 is 64-bit, so no wraparound either)
_XID = "pg_current_xact_id()::text::bigint"
_STAMP = "change_stamp()"
SNAPSHOT_SQL = "SELECT pg_current_snapshot()::text"
# the tombstone triggers write as the superuser that installed them: a writer needs no privilege on the tombstones
_DEFINER = "SECURITY DEFINER SET search_path = public, pg_temp"
NOTHING_SEEN = "1:1:"  # a snapshot in which no transaction is visible: read everything


def snapshot_xmin(snapshot: str) -> int:
    """The lowest transaction id a snapshot did not see as finished (ids below it were all visible)."""
    return int(snapshot.split(":", 1)[0])


def unseen_sql(column: str = CHANGE_XID) -> str:
    """Rows written by transactions that were not visible in the snapshot ``%(seen)s`` (``%(xmin)s`` its xmin: the
    index range that holds them)."""
    return f"{column} >= %(xmin)s AND NOT pg_visible_in_snapshot({column}::text::xid8, %(seen)s::pg_snapshot)"


def _pk_json(row: str) -> str:
    """The primary-key columns (the trigger's arguments) of ``row`` as one JSON object."""
    return f"(SELECT jsonb_object_agg(key, value) FROM jsonb_each(to_jsonb({row})) WHERE key = ANY (TG_ARGV))"


def capture_sql() -> list[str]:
    """Idempotent DDL that installs capture on an existing OLTP (columns, indexes, tombstones, triggers)."""
    out = [
        f"CREATE TABLE IF NOT EXISTS {TOMBSTONE_TABLE} (table_name text NOT NULL, pk jsonb NOT NULL, "
        f"deleted_at timestamptz NOT NULL, {CHANGE_XID} bigint NOT NULL DEFAULT {_XID})",
        f"ALTER TABLE {TOMBSTONE_TABLE} ADD COLUMN IF NOT EXISTS {CHANGE_XID} bigint NOT NULL DEFAULT {_XID}",
        f"CREATE INDEX IF NOT EXISTS {TOMBSTONE_TABLE}_deleted_at_idx ON {TOMBSTONE_TABLE} (deleted_at)",
        f"CREATE INDEX IF NOT EXISTS {TOMBSTONE_TABLE}_{CHANGE_XID}_idx ON {TOMBSTONE_TABLE} ({CHANGE_XID})",
        f"""CREATE OR REPLACE FUNCTION change_stamp() RETURNS timestamptz LANGUAGE plpgsql AS $$
DECLARE
  requested text := nullif(current_setting('{CHANGE_TIME_SETTING}', true), '');
  stamp timestamptz;
BEGIN
  IF requested IS NULL THEN
    RETURN clock_timestamp();
  END IF;
  stamp := requested::timestamptz;
  IF NOT isfinite(stamp) OR stamp > clock_timestamp() THEN
    RAISE EXCEPTION '{CHANGE_TIME_SETTING} = %: a change is stamped at a time up to now', requested
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  RETURN stamp;
END $$""",
        f"""CREATE OR REPLACE FUNCTION stamp_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.{AUDIT_COLUMN} := {_STAMP};
  NEW.{CHANGE_XID} := {_XID};
  RETURN NEW;
END $$""",
        f"""CREATE OR REPLACE FUNCTION record_delete() RETURNS trigger LANGUAGE plpgsql {_DEFINER} AS $$
BEGIN
  INSERT INTO {TOMBSTONE_TABLE} (table_name, pk, deleted_at) VALUES (TG_TABLE_NAME, {_pk_json("OLD")}, {_STAMP});
  RETURN NULL;
END $$""",
        f"""CREATE OR REPLACE FUNCTION record_truncate() RETURNS trigger LANGUAGE plpgsql {_DEFINER} AS $$
BEGIN
  EXECUTE format('INSERT INTO {TOMBSTONE_TABLE} (table_name, pk, deleted_at) SELECT %L, '
                 '(SELECT jsonb_object_agg(key, value) FROM jsonb_each(to_jsonb(t)) WHERE key = ANY ($1)), '
                 '$2 FROM %I t', TG_TABLE_NAME, TG_TABLE_NAME)
    USING TG_ARGV, {_STAMP};
  RETURN NULL;
END $$""",
    ]
    for t in TABLES:
        out += table_capture_sql(t)
    return out


def table_capture_sql(t: Table) -> list[str]:
    keys = ", ".join(f"'{k}'" for k in t.primary_key)
    old = ", ".join(f"OLD.{k}" for k in t.primary_key)
    new = ", ".join(f"NEW.{k}" for k in t.primary_key)
    return [
        f"ALTER TABLE {t.name} ADD COLUMN IF NOT EXISTS {CHANGE_XID} bigint NOT NULL DEFAULT {_XID}",
        f"CREATE INDEX IF NOT EXISTS {t.name}_{CHANGE_XID}_idx ON {t.name} ({CHANGE_XID})",
        f"CREATE OR REPLACE TRIGGER {t.name}_stamp_change BEFORE INSERT OR UPDATE ON {t.name} "
        "FOR EACH ROW EXECUTE FUNCTION stamp_change()",
        f"CREATE OR REPLACE TRIGGER {t.name}_record_delete AFTER DELETE ON {t.name} "
        f"FOR EACH ROW EXECUTE FUNCTION record_delete({keys})",
        f"CREATE OR REPLACE TRIGGER {t.name}_record_key_change AFTER UPDATE ON {t.name} "
        f"FOR EACH ROW WHEN (({old}) IS DISTINCT FROM ({new})) EXECUTE FUNCTION record_delete({keys})",
        f"CREATE OR REPLACE TRIGGER {t.name}_record_truncate BEFORE TRUNCATE ON {t.name} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION record_truncate({keys})",
    ]


def drop_sql() -> list[str]:
    return [
        f"DROP TABLE IF EXISTS {TOMBSTONE_TABLE}",
        *(f"DROP FUNCTION IF EXISTS {f}() CASCADE" for f in ("stamp_change", "record_delete", "record_truncate")),
        "DROP FUNCTION IF EXISTS change_stamp()",
    ]


def _day(column: str) -> str:
    """The change day of a stamp as ``YYYY-MM-DD`` text; a stamp no day can hold (``infinity``, year 10000 and
    later, written while the triggers were off) comes back as its own text, for the sensor to report."""
    return (
        f"CASE WHEN isfinite({column}) AND {column} < '10000-01-01 00:00:00+00' "
        f"THEN to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD') ELSE {column}::text END"
    )


def changes_by_day_sql(t: Table) -> str:
    """Rows (slot 0) and deletes (slot 1) of ``t`` written by transactions the snapshot ``%(seen)s`` did not see,
    per change day (text), with the newest writing transaction."""
    return (
        f"SELECT {_day(AUDIT_COLUMN)} AS day, 0 AS slot, count(*), max({CHANGE_XID}) "
        f"FROM {t.name} WHERE {unseen_sql()} GROUP BY 1 "
        f"UNION ALL SELECT {_day('deleted_at')}, 1, count(*), max({CHANGE_XID}) "
        f"FROM {TOMBSTONE_TABLE} WHERE table_name = '{t.name}' AND {unseen_sql()} GROUP BY 1"
    )
