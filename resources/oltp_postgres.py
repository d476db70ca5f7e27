"""PostgreSQL OLTP on vps_1: the source of truth the raw layer extracts from."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import psycopg

from resources.errors import ServiceUnavailableError

# ``password=`` and its value in a conninfo, quoted (libpq: '…' with \\ and \\' escaped) or not
_CONNINFO_PASSWORD = re.compile(r"password\s*=\s*('(?:[^'\\]|\\.)*'?|\S*)", re.IGNORECASE)


def sql_literal(text: str) -> str:
    """``text`` as a standard SQL string literal (DuckDB's: quotes doubled, backslashes as they are)."""
    return "'" + text.replace("'", "''") + "'"


class OltpPostgresResource(dg.ConfigurableResource):
    """Connection settings for the OLTP database as one role; the password comes from the environment
    (``resources/environments.py``: ``OLTP_ROLES``)."""

    host: str
    port: int
    database: str
    user: str
    password: str
    node: str = "vps_1"
    connect_timeout_s: int = 5

    @property
    def endpoint(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    def conninfo(self) -> str:
        return psycopg.conninfo.make_conninfo(
            host=self.host,
            port=self.port,
            dbname=self.database,
            user=self.user,
            password=self.password,
            connect_timeout=self.connect_timeout_s,
        )

    def mask(self, text: str) -> str:
        """``text`` without the password: as given, as quoted in a conninfo or in an SQL literal, or after
        ``password=`` (an error may echo the connection string, whole or from where parsing stopped)."""
        forms = {self.password, self.password.replace("\\", "\\\\").replace("'", "\\'")}
        forms |= {f.replace("'", "''") for f in forms}
        for form in sorted((f for f in forms if f), key=len, reverse=True):
            text = text.replace(form, "***")
        return _CONNINFO_PASSWORD.sub("password=***", text)

    def unavailable(self, reason: object) -> ServiceUnavailableError:
        return ServiceUnavailableError(self.node, "oltp-postgres", self.endpoint, self.mask(str(reason)))

    def attach(self, duckdb_con: Any, alias: str, read_only: bool = True) -> None:
        """``ATTACH`` this database to a DuckDB connection (its postgres extension) as ``alias``. The credentials go
        into a temporary DuckDB secret, each value an SQL literal (any password works), never into the connection
        string, which the extension quotes whole in its errors; an error is masked as well."""
        v = sql_literal
        options = f"TYPE postgres, SECRET {alias}" + (", READ_ONLY" if read_only else "")
        try:
            duckdb_con.execute(
                f"CREATE OR REPLACE TEMPORARY SECRET {alias} (TYPE postgres, HOST {v(self.host)}, "
                f"PORT {int(self.port)}, DATABASE {v(self.database)}, USER {v(self.user)}, PASSWORD {v(self.password)})"
            )
            duckdb_con.execute(f"ATTACH {v(f'connect_timeout={self.connect_timeout_s}')} AS {alias} ({options})")
        except Exception as exc:
            raise self.unavailable(exc) from None

    @contextmanager
    def connect(self, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        try:
            conn = psycopg.connect(self.conninfo(), autocommit=autocommit)
        except psycopg.OperationalError as exc:
            raise self.unavailable(exc) from None
        try:
            yield conn
        finally:
            conn.close()

    def ping(self) -> str:
        with self.connect() as conn:
            return conn.execute("select version()").fetchone()[0]
