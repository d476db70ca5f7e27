"""PostgreSQL OLTP on vps_1: the source of truth the raw layer extracts from."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg

from resources.errors import ServiceUnavailableError


class OltpPostgresResource(dg.ConfigurableResource):
    """Connection settings for the OLTP database; the password comes from ``OLTP_PASSWORD``."""

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

    def unavailable(self, reason: object) -> ServiceUnavailableError:
        return ServiceUnavailableError(self.node, "oltp-postgres", self.endpoint, reason)

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
