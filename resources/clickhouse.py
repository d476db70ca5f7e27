"""ClickHouse on vps_3 through clickhouse-connect: HTTP in ``prod``, the in-process engine (chDB) locally."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import clickhouse_connect
import dagster as dg
from clickhouse_connect.driver.client import Client

from resources.errors import ServiceUnavailableError

# chDB allows one engine path per process: share a client per DSN across resource instances.
_CHDB_CLIENTS: dict[str, Client] = {}


class ClickHouseResource(dg.ConfigurableResource):
    """``dsn`` (``chdb:///path``) selects the in-process engine; otherwise host/port over HTTP."""

    dsn: str | None = None
    host: str = "localhost"
    port: int = 8123
    username: str = "default"
    password: str = ""
    secure: bool = False
    cluster: str | None = None  # when set, DDL is issued ON CLUSTER (prod)
    node: str = "vps_3"
    connect_timeout_s: int = 10

    @property
    def endpoint(self) -> str:
        if self.dsn:
            return self.dsn
        return f"{'https' if self.secure else 'http'}://{self.host}:{self.port}"

    def unavailable(self, reason: object) -> ServiceUnavailableError:
        return ServiceUnavailableError(self.node, "clickhouse", self.endpoint, reason)

    def client(self) -> Client:
        try:
            if self.dsn:
                if self.dsn not in _CHDB_CLIENTS:
                    _CHDB_CLIENTS[self.dsn] = clickhouse_connect.get_client(dsn=self.dsn)
                return _CHDB_CLIENTS[self.dsn]
            return clickhouse_connect.get_client(
                host=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                secure=self.secure,
                connect_timeout=self.connect_timeout_s,
                send_receive_timeout=3600,
            )
        except Exception as exc:
            raise self.unavailable(exc) from None

    def on_cluster(self) -> str:
        return f" ON CLUSTER {self.cluster}" if self.cluster else ""

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        return self.client().command(sql, parameters=parameters)

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple]:
        return self.client().query(sql, parameters=parameters).result_rows

    def scalar(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        return self.rows(sql, parameters)[0][0]

    @contextmanager
    def replacing(self, database: str, table: str) -> Iterator[str]:
        """Yield a fresh staging table name; on success it atomically replaces ``database.table``.

        Readers see the old table or the new one, never a half-loaded one; on failure the old table stays.
        """
        staging = f"{database}.{table}__staging"
        self.command(f"CREATE DATABASE IF NOT EXISTS {database}{self.on_cluster()}")
        self.command(f"DROP TABLE IF EXISTS {staging}{self.on_cluster()}")
        try:
            yield staging
            self.command(f"CREATE TABLE IF NOT EXISTS {database}.{table}{self.on_cluster()} AS {staging}")
            self.command(f"EXCHANGE TABLES {staging} AND {database}.{table}{self.on_cluster()}")
        finally:
            self.command(f"DROP TABLE IF EXISTS {staging}{self.on_cluster()}")

    def table_stats(self, database: str, table: str) -> tuple[int, int]:
        """(rows, bytes) of a table from system.tables."""
        found = self.rows(
            "SELECT total_rows, total_bytes FROM system.tables WHERE database = {db:String} AND name = {t:String}",
            {"db": database, "t": table},
        )
        if not found:
            raise LookupError(f"table {database}.{table} does not exist")
        return int(found[0][0] or 0), int(found[0][1] or 0)

    def columns(self, database: str, table: str) -> list[tuple[str, str]]:
        return [
            (r[0], r[1])
            for r in self.rows(
                "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String} "
                "ORDER BY position",
                {"db": database, "t": table},
            )
        ]

    def ping(self) -> str:
        try:
            return str(self.scalar("SELECT version()"))
        except ServiceUnavailableError:
            raise
        except Exception as exc:
            raise self.unavailable(exc) from None
