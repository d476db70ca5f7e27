"""The OLTP's roles on the real PostgreSQL: the pipeline's credentials read, or re-capture, and nothing more.

A leaked pipeline password used to be the superuser's: ``COPY … TO PROGRAM`` ran a shell in the database's
container. The resources the pipeline is given (``resource_defs``) are checked here as they are configured, each on
a database of this module's own (cloned from the pristine TPC-H, grants included).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

import psycopg
import pytest

from platform_assets.catalog import TABLES, TABLES_BY_NAME
from platform_assets.oltp.capture import CHANGE_TIME_SETTING, TOMBSTONE_TABLE
from platform_assets.oltp.roles import migrate, role_passwords
from platform_assets.oltp.seed import duckdb_with_extensions
from platform_assets.raw.extract import extract_days
from platform_assets.warehouse.divergence import recapture
from platform_assets.warehouse.table_diff import TableDiff
from resources.environments import OLTP_ROLES, resource_defs
from resources.errors import ServiceUnavailableError
from resources.oltp_postgres import OltpPostgresResource
from resources.settings import data_dir

DENIED = psycopg.errors.InsufficientPrivilege
NASTY = "a b'c\\d=e f''g"  # a space, quotes, a backslash, `=`: every character a conninfo or SQL literal treats apart


def pipeline(key: str, database: str) -> OltpPostgresResource:
    """The pipeline's resource ``key`` as Dagster configures it, on ``database``."""
    with resource_defs("local")[key].process_config_and_initialize_cm() as r:
        return r.model_copy(update={"database": database})


def as_role(oltp: OltpPostgresResource, role: str) -> OltpPostgresResource:
    user, var = OLTP_ROLES[role]
    return oltp.model_copy(update={"user": user, "password": os.environ[var]})


def refused(oltp: OltpPostgresResource, statement: str, params: tuple = ()) -> bool:
    """Whether PostgreSQL refuses ``statement`` to this role for want of a privilege (nothing is kept either way)."""
    with oltp.connect() as conn:
        try:
            conn.execute(statement, params)
        except DENIED:
            return True
        finally:
            conn.rollback()
    return False


def shell_refused(oltp: OltpPostgresResource, tmp_path) -> bool:
    proof = tmp_path / f"shell-{uuid.uuid4().hex}"
    denied = refused(oltp, f"COPY (SELECT 1) TO PROGRAM 'touch {proof}'")
    return denied and not proof.exists()


def test_the_pipeline_reads_as_a_role_that_cannot_write_create_or_run_a_shell(oltp_copy, tmp_path):
    extract = pipeline("oltp", oltp_copy.database)
    assert extract.user == OLTP_ROLES["extract"][0]
    with extract.connect() as conn:  # what the extract, the sensor and the checks read
        for t in TABLES:
            conn.execute(f"SELECT count(*) FROM {t.name}").fetchone()
        conn.execute(f"SELECT count(*) FROM {TOMBSTONE_TABLE}").fetchone()
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)
    assert shell_refused(extract, tmp_path)
    for statement in (
        "INSERT INTO region VALUES (99, 'X', 'x')",
        "UPDATE region SET r_comment = 'x' WHERE r_regionkey = 1",
        "DELETE FROM region WHERE r_regionkey = 1",
        "TRUNCATE region",
        f"INSERT INTO {TOMBSTONE_TABLE} (table_name, pk, deleted_at) VALUES ('region', '{{}}', now())",
        "CREATE TABLE public.scratch (x int)",
        "CREATE SCHEMA scratch",
        "SELECT * FROM recapture_region('[]', '[]')",
    ):
        assert refused(extract, statement), statement


def test_repair_recaptures_through_its_functions_and_has_no_other_privilege(oltp_copy, tmp_path):
    capture = pipeline("oltp_capture", oltp_copy.database)
    assert capture.user == OLTP_ROLES["capture"][0]
    region = TABLES_BY_NAME["region"]
    with oltp_copy.connect() as conn:
        before = conn.execute("SELECT updated_at, change_xid FROM region WHERE r_regionkey = 1").fetchone()
    diff = TableDiff("region", 0, 0, 0, 0, only_in_oltp=[(1,)], only_in_warehouse=[(77,), (2,)])
    started = datetime.now(UTC)
    assert recapture(capture, region, diff) == (1, 1)  # key 2 is the OLTP's: never tombstoned
    with oltp_copy.connect() as conn:
        stamp, xid = conn.execute("SELECT updated_at, change_xid FROM region WHERE r_regionkey = 1").fetchone()
        assert stamp >= started and xid > before[1]
        tombs = conn.execute(f"SELECT pk FROM {TOMBSTONE_TABLE} WHERE table_name = 'region'").fetchall()
        assert tombs == [({"r_regionkey": 77},)]
    # the session's change time is not the function's: a re-capture cannot stamp a change in the past
    with capture.connect() as conn, conn.transaction():
        conn.execute("SELECT set_config(%s, %s, true)", (CHANGE_TIME_SETTING, "1998-08-05 12:00:00+00"))
        conn.execute("SELECT * FROM recapture_nation(%s, '[]')", (json.dumps([{"n_nationkey": 4}]),))
    with oltp_copy.connect() as conn:
        assert conn.execute("SELECT updated_at FROM nation WHERE n_nationkey = 4").fetchone()[0] >= started
    assert shell_refused(capture, tmp_path)
    for statement in (
        "SELECT count(*) FROM region",
        f"SELECT count(*) FROM {TOMBSTONE_TABLE}",
        "UPDATE region SET r_regionkey = r_regionkey WHERE r_regionkey = 1",
        "DELETE FROM region WHERE r_regionkey = 1",
        "INSERT INTO region VALUES (99, 'X', 'x')",
        f"INSERT INTO {TOMBSTONE_TABLE} (table_name, pk, deleted_at) VALUES ('region', '{{}}', now())",
        "CREATE TABLE public.scratch (x int)",
    ):
        assert refused(capture, statement), statement


def test_the_application_writes_the_tables_and_its_deletes_are_still_captured(oltp_copy, tmp_path):
    app = as_role(oltp_copy, "app")
    with app.connect() as conn, conn.transaction():
        conn.execute("UPDATE region SET r_comment = 'app' WHERE r_regionkey = 3")
        conn.execute("DELETE FROM lineitem WHERE l_orderkey = 1")
    with oltp_copy.connect() as conn:
        assert conn.execute(f"SELECT count(*) FROM {TOMBSTONE_TABLE} WHERE table_name = 'lineitem' "
                            "AND (pk->>'l_orderkey')::int = 1").fetchone()[0] > 0  # fmt: skip
    assert shell_refused(app, tmp_path)
    assert refused(app, f"DELETE FROM {TOMBSTONE_TABLE}")
    assert refused(app, "TRUNCATE region")


def test_backups_dump_everything_and_change_nothing(oltp_copy, tmp_path):
    backup = as_role(oltp_copy, "backup")
    dump = subprocess.run(
        ["/usr/lib/postgresql/15/bin/pg_dump", "--format=custom", "--no-owner", "-f", str(tmp_path / "oltp.dump"),
         f"postgresql://{backup.user}@{backup.host}:{backup.port}/{backup.database}"],
        env={**os.environ, "PGPASSWORD": backup.password}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert dump.returncode == 0, dump.stderr
    assert shell_refused(backup, tmp_path)
    assert refused(backup, "UPDATE region SET r_comment = 'x'")


def test_the_migration_is_idempotent_and_sets_a_rotated_password(oltp_copy):
    passwords = role_passwords()
    assert migrate(oltp_copy, passwords) == migrate(oltp_copy, passwords)
    rotated = {**passwords, "capture": "rotated " + uuid.uuid4().hex}
    try:
        migrate(oltp_copy, rotated)
        old = as_role(oltp_copy, "capture")
        with pytest.raises(ServiceUnavailableError):
            old.ping()
        old.model_copy(update={"password": rotated["capture"]}).ping()
    finally:
        migrate(oltp_copy, passwords)
    with pytest.raises(ValueError, match="OLTP_EXTRACT_PASSWORD"):
        role_passwords({"OLTP_CAPTURE_PASSWORD": "x", "OLTP_BACKUP_PASSWORD": "x"})


@contextmanager
def role_with_password(oltp: OltpPostgresResource, password: str) -> Iterator[OltpPostgresResource]:
    """A reader of ``oltp``'s database whose password is ``password``."""
    name = f"reader_{uuid.uuid4().hex[:8]}"
    with oltp.connect(autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            psycopg.sql.Identifier(name), psycopg.sql.Literal(password)))  # fmt: skip
        conn.execute(psycopg.sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(
            psycopg.sql.Identifier(name)))  # fmt: skip
    try:
        yield oltp.model_copy(update={"user": name, "password": password})
    finally:
        with oltp.connect(autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {name}")
            conn.execute(f"DROP ROLE {name}")


def test_any_password_attaches_and_a_wrong_one_is_never_shown(oltp_copy, object_store):
    extensions = data_dir() / "duckdb_extensions"
    scratch = object_store.model_copy(update={"bucket": "roles-" + uuid.uuid4().hex[:8]})  # not the shared lake
    region, seed_day = TABLES_BY_NAME["region"], date(1998, 8, 3)  # the seed's day: the whole table
    con = duckdb_with_extensions(extensions, "postgres_scanner")
    with role_with_password(oltp_copy, NASTY) as reader:
        reader.attach(con, "o")
        assert con.execute("SELECT count(*) FROM o.public.region").fetchone() == (5,)
        with oltp_copy.connect() as conn:  # the rows still on the seed's day (tests above changed some)
            on_day = conn.execute(
                "SELECT count(*) FROM region WHERE (updated_at AT TIME ZONE 'UTC')::date = %s", (seed_day,)
            ).fetchone()[0]
        assert extract_days(reader, scratch, region, [seed_day], extensions).rows == on_day > 0  # the same ATTACH
        wrong = reader.model_copy(update={"password": NASTY + " wrong"})
        with pytest.raises(ServiceUnavailableError) as attach_error:
            wrong.attach(con, "w")
        with pytest.raises(ServiceUnavailableError) as extract_error:
            extract_days(wrong, scratch, region, [seed_day], extensions)
    con.close()
    scratch.delete_keys([k for k, _ in scratch.list_keys("")])
    for error in (attach_error.value, extract_error.value):
        text = str(error)
        assert "password authentication failed" in text, text
        assert not any(part in text for part in ("b'c", "c\\d", "d=e", "wrong")), text
