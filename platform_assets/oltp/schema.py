"""OLTP DDL derived from the catalog: types, primary keys, foreign keys and the ``updated_at`` audit column."""

from __future__ import annotations

from platform_assets.catalog import AUDIT_COLUMN, TABLES, Table, pg_type


def create_table_sql(t: Table) -> str:
    cols = [f"{c.name} {pg_type(c.type)} NOT NULL" for c in t.columns]
    cols.append(f"{AUDIT_COLUMN} timestamptz NOT NULL DEFAULT now()")
    return f"CREATE TABLE {t.name} (\n  " + ",\n  ".join(cols) + "\n)"


def constraint_sql(t: Table) -> list[str]:
    """Keys are added after the bulk load (much faster than maintaining them row by row)."""
    out = [f"ALTER TABLE {t.name} ADD PRIMARY KEY ({', '.join(t.primary_key)})"]
    for i, fk in enumerate(t.foreign_keys):
        out.append(
            f"ALTER TABLE {t.name} ADD CONSTRAINT {t.name}_fk{i} FOREIGN KEY ({', '.join(fk.columns)}) "
            f"REFERENCES {fk.references} ({', '.join(fk.ref_columns)})"
        )
    out.append(f"CREATE INDEX {t.name}_{AUDIT_COLUMN}_idx ON {t.name} ({AUDIT_COLUMN})")
    return out


def drop_all_sql() -> list[str]:
    return [
        *(f"DROP TABLE IF EXISTS {t.name} CASCADE" for t in reversed(TABLES)),
        "DROP TABLE IF EXISTS deleted_rows",
        "DROP FUNCTION IF EXISTS record_delete() CASCADE",
    ]


TOMBSTONES = "deleted_rows"


def tombstone_sql() -> list[str]:
    """Deletes are recorded by triggers in one tombstone table, so incremental extraction can never miss one.

    ``deleted_at`` is the session's ``platform.change_time`` when set (the simulator stamps its simulated day),
    else now(); the primary key is kept as JSON so one table serves every catalog table.
    """
    out = [
        f"CREATE TABLE {TOMBSTONES} (table_name text NOT NULL, pk jsonb NOT NULL, deleted_at timestamptz NOT NULL)",
        f"CREATE INDEX {TOMBSTONES}_deleted_at_idx ON {TOMBSTONES} (deleted_at)",
        f"""CREATE FUNCTION record_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO {TOMBSTONES} VALUES (
    TG_TABLE_NAME,
    (SELECT jsonb_object_agg(key, value) FROM jsonb_each(to_jsonb(OLD)) WHERE key = ANY (TG_ARGV)),
    coalesce(nullif(current_setting('platform.change_time', true), '')::timestamptz, now()));
  RETURN OLD;
END $$""",
    ]
    for t in TABLES:
        keys = ", ".join(f"'{k}'" for k in t.primary_key)
        out.append(
            f"CREATE TRIGGER {t.name}_record_delete AFTER DELETE ON {t.name} "
            f"FOR EACH ROW EXECUTE FUNCTION record_delete({keys})"
        )
    return out
