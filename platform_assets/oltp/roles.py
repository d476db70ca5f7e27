"""The OLTP's roles and what each may do, created by the migration (the superuser's only job besides the schema).

A leaked pipeline password must not be a shell in the database's container (``COPY … TO PROGRAM`` is a
superuser's), nor a way to change the source of truth. So (names and password variables: ``OLTP_ROLES``):

* ``extract`` — the raw extract, the change sensor, the checks: SELECT on the replicated tables and the
  tombstones, nothing else (no write, no CREATE, not a superuser);
* ``capture`` — ``repair_warehouse``: EXECUTE on the ``recapture_<table>`` functions (``recapture.py``), no DML;
* ``app`` — the application's writes (seed's simulator plays it): SELECT, INSERT, UPDATE, DELETE on the replicated
  tables; the capture triggers write the tombstones as their owner;
* ``backup`` — ``pg_dump``: ``pg_read_all_data`` (PostgreSQL 14 and later).

Idempotent: a role is created when missing, and its password, attributes and grants are set again each time (a
rotated password takes effect at the next migration). The password is sent as a SCRAM verifier, never in clear
text. ``app`` is created only when its password is set (in production the application has credentials of its own).
"""

from __future__ import annotations

import os

import psycopg
from psycopg import sql

from platform_assets.catalog import TABLES
from platform_assets.oltp import recapture
from platform_assets.oltp.capture import TOMBSTONE_TABLE, capture_sql
from resources.environments import OLTP_ROLES
from resources.oltp_postgres import OltpPostgresResource

OPTIONAL = {"app"}
ATTRIBUTES = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"


def role_passwords(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Each role's password from its variable; a required one missing is one clear error."""
    environ = os.environ if environ is None else environ
    out, missing = {}, []
    for role, (_, var) in OLTP_ROLES.items():
        if role == "admin":
            continue
        if environ.get(var):
            out[role] = environ[var]
        elif role not in OPTIONAL:
            missing.append(var)
    if missing:
        raise ValueError(f"the OLTP migration needs {', '.join(missing)} (the roles' passwords) in the environment")
    return out


def ensure_role(conn: psycopg.Connection, name: str, password: str) -> None:
    role = sql.Identifier(name)
    if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
    verifier = conn.pgconn.encrypt_password(password.encode(), name.encode(), b"scram-sha-256").decode()
    conn.execute(sql.SQL(f"ALTER ROLE {{}} WITH {ATTRIBUTES} PASSWORD {{}}").format(role, sql.Literal(verifier)))


def grant_sql(database: str, roles: set[str]) -> list[sql.Composable]:
    """What each role may do in ``database``: everything it had is revoked first, so a grant never lingers."""
    names = {r: sql.Identifier(OLTP_ROLES[r][0]) for r in roles}
    tables = [sql.Identifier(t.name) for t in TABLES]
    out: list[sql.Composable] = [sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC")]  # PostgreSQL < 15 grants it
    for role, name in names.items():
        out += [
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), name),
            sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(name),
            sql.SQL("REVOKE ALL ON {} FROM {}").format(sql.SQL(", ").join([*tables, sql.Identifier(TOMBSTONE_TABLE)]),
                                                        name),
        ]  # fmt: skip
        if role == "extract":
            out.append(
                sql.SQL("GRANT SELECT ON {} TO {}").format(
                    sql.SQL(", ").join([*tables, sql.Identifier(TOMBSTONE_TABLE)]), name
                )
            )
        elif role == "app":
            out.append(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(sql.SQL(", ").join(tables),
                                                                                         name))  # fmt: skip
        elif role == "backup":
            out.append(sql.SQL("GRANT pg_read_all_data TO {}").format(name))
        verb = "GRANT" if role == "capture" else "REVOKE"
        out += [
            sql.SQL(
                f"{verb} EXECUTE ON FUNCTION {recapture.signature(t)} {'TO' if verb == 'GRANT' else 'FROM'} {{}}"
            ).format(name)
            for t in TABLES
        ]
    return out


def migrate(admin: OltpPostgresResource, passwords: dict[str, str] | None = None) -> list[str]:
    """Change capture, the re-capture functions, the roles and their grants, in one transaction, as the superuser
    (``admin``) on the seeded or existing OLTP; returns the roles set up."""
    passwords = role_passwords() if passwords is None else passwords
    with admin.connect() as conn, conn.transaction():
        for statement in [*capture_sql(), *recapture.recapture_sql()]:
            conn.execute(statement)
        for role, password in passwords.items():
            ensure_role(conn, OLTP_ROLES[role][0], password)
        for statement in grant_sql(admin.database, set(passwords)):
            conn.execute(statement)
    return sorted(OLTP_ROLES[r][0] for r in passwords)
