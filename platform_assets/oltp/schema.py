"""OLTP DDL derived from the catalog: types, primary keys, foreign keys and the ``updated_at`` audit column."""

from __future__ import annotations

from platform_assets.catalog import AUDIT_COLUMN, TABLES, Table, pg_type
from platform_assets.oltp import capture, recapture


def create_table_sql(t: Table) -> str:
    cols = [f"{c.name} {pg_type(c.type)} NOT NULL" for c in t.columns]
    cols.append(f"{AUDIT_COLUMN} timestamptz NOT NULL DEFAULT now()")
    cols.append(f"{capture.CHANGE_XID} bigint NOT NULL DEFAULT pg_current_xact_id()::text::bigint")
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
        *recapture.drop_sql(),
        *capture.drop_sql(),
    ]
