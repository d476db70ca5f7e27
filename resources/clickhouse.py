"""ClickHouse on vps_3 through clickhouse-connect: HTTP in ``prod``, the in-process engine (chDB) locally."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import clickhouse_connect
import dagster as dg
from clickhouse_connect.driver.client import Client

from resources.errors import ServiceUnavailableError

# chDB allows one engine path per process: share a client per DSN across resource instances.
_CHDB_CLIENTS: dict[str, Client] = {}


# A one-shard cluster for the in-process engine: the Distributed path of prod runs unchanged on it.
# ``tcp_port`` must equal the replica's port so the engine knows the shard is itself (read/write in-process).
LOCAL_CLUSTER_XML = """<clickhouse>
  <tcp_port>9000</tcp_port>
  <remote_servers>
    <{cluster}>
      <shard><replica><host>localhost</host><port>9000</port></replica></shard>
    </{cluster}>
  </remote_servers>
  <macros><shard>1</shard><replica>local</replica></macros>
</clickhouse>
"""


class ClickHouseResource(dg.ConfigurableResource):
    """``dsn`` (``chdb:///path``) selects the in-process engine; otherwise host/port over HTTP.

    ``cluster`` makes every warehouse table a local table per shard plus a Distributed table. DDL is then
    issued ``ON CLUSTER`` — unless ``ddl_on_cluster`` is off, as in chDB, which cannot run distributed DDL
    (its one-shard cluster is itself, so plain DDL reaches every shard there).
    """

    dsn: str | None = None
    host: str = "localhost"
    port: int = 8123
    username: str = "default"
    password: str = ""
    secure: bool = False
    cluster: str | None = None
    ddl_on_cluster: bool = True
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
                    _CHDB_CLIENTS[self.dsn] = clickhouse_connect.get_client(
                        dsn=self.dsn, chdb_options=self._chdb_options()
                    )
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

    def _chdb_options(self) -> dict[str, str] | None:
        if not self.cluster:
            return None
        path = Path(self.dsn.removeprefix("chdb://"))
        path.mkdir(parents=True, exist_ok=True)
        config = path.parent / f"{path.name}-cluster.xml"
        config.write_text(LOCAL_CLUSTER_XML.format(cluster=self.cluster))
        return {"config-file": str(config)}

    def on_cluster(self) -> str:
        return f" ON CLUSTER {self.cluster}" if self.cluster and self.ddl_on_cluster else ""

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        return self.client().command(sql, parameters=parameters)

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple]:
        return self.client().query(sql, parameters=parameters).result_rows

    def scalar(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        return self.rows(sql, parameters)[0][0]

    @contextmanager
    def replacing(self, database: str, table: str, sharded: bool = False) -> Iterator[str]:
        """Yield a fresh staging table name; on success it atomically replaces ``database.table``.

        Readers see the old table or the new one, never a half-loaded one; on failure the old table stays.
        ``sharded`` issues the DDL on every shard of the cluster (the table then exists once per shard).
        """
        on_cluster = self.on_cluster() if sharded else ""
        staging = f"{database}.{table}__staging"
        self.command(f"CREATE DATABASE IF NOT EXISTS {database}{on_cluster}")
        self.command(f"DROP TABLE IF EXISTS {staging}{on_cluster} SYNC")
        try:
            yield staging
            self.command(f"CREATE TABLE IF NOT EXISTS {database}.{table}{on_cluster} AS {staging}")
            self.command(f"EXCHANGE TABLES {staging} AND {database}.{table}{on_cluster}")
        finally:
            self.command(f"DROP TABLE IF EXISTS {staging}{on_cluster} SYNC")

    def table_stats(self, database: str, table: str) -> tuple[int, int]:
        """(rows, bytes) of a table, summed over every shard when the resource has a cluster."""
        source = f"clusterAllReplicas({self.cluster}, system.tables)" if self.cluster else "system.tables"
        found = self.rows(
            f"SELECT sum(total_rows), sum(total_bytes), count() FROM {source} "
            "WHERE database = {db:String} AND name = {t:String}",
            {"db": database, "t": table},
        )
        if not found or not found[0][2]:
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
