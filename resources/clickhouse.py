"""ClickHouse on vps_3 through clickhouse-connect: HTTP in ``prod``, the in-process engine (chDB) locally."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import clickhouse_connect
import dagster as dg
from clickhouse_connect.driver.client import Client

from resources.chdb_cluster import EmulatedCluster
from resources.errors import ServiceUnavailableError

# Distributed('cluster', 'database', 'local_table'[, sharding_key]) as system.tables shows it
_DISTRIBUTED = re.compile(
    r"Distributed\('?[^',]+'?, '?[^',]+'?, '?(?P<local>[^',]+)'?(?:, (?P<key>.+?))?\)(?: SETTINGS .*)?$"
)
# chDB allows one engine path per process: share a client per DSN across resource instances.
_CHDB_CLIENTS: dict[str, Client] = {}


class ClickHouseResource(dg.ConfigurableResource):
    """``dsn`` (``chdb:///path``) selects the in-process engine; otherwise host/port over HTTP.

    ``cluster`` makes every warehouse table a local table per shard plus a Distributed table, and DDL is issued
    ``ON CLUSTER``. The in-process engine cannot run distributed DDL: it checks each such statement's syntax and
    applies it once, to the shards it stands in for (``shards``: 1, or 2 as in production; see
    ``resources/chdb_cluster.py`` for the emulation and the tables it needs named: ``sharded_tables``,
    ``node_local_databases``).
    """

    dsn: str | None = None
    host: str = "localhost"
    port: int = 8123
    username: str = "default"
    password: str = ""
    secure: bool = False
    cluster: str | None = None
    shards: int = 1
    sharded_tables: dict[str, str] = {}
    node_local_databases: list[str] = []
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

    def emulated_cluster(self) -> EmulatedCluster | None:
        """The cluster the in-process engine stands in for (None over HTTP, or without a cluster)."""
        if not (self.dsn and self.cluster):
            return None
        return EmulatedCluster(self.cluster, self.shards, dict(self.sharded_tables), tuple(self.node_local_databases))

    def _chdb_options(self) -> dict[str, str] | None:
        emulated = self.emulated_cluster()
        if emulated is None:
            return None
        path = Path(self.dsn.removeprefix("chdb://"))
        path.mkdir(parents=True, exist_ok=True)
        return {"config-file": str(emulated.write(path.parent, path.name))}

    def on_cluster(self) -> str:
        return f" ON CLUSTER {self.cluster}" if self.cluster else ""

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        emulated = self.emulated_cluster()
        if emulated is not None:
            sql = emulated.local_ddl(sql, self._check_syntax)
        return self.client().command(sql, parameters=parameters)

    def _check_syntax(self, sql: str) -> None:
        """The engine's parser on a statement it will not run (chDB refuses distributed DDL)."""
        try:
            self.client().query("SELECT formatQuery({q:String})", parameters={"q": sql})
        except Exception as exc:
            raise ValueError(f"ClickHouse cannot parse: {sql}\n{exc}") from None

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple]:
        return self.client().query(sql, parameters=parameters).result_rows

    def scalar(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        return self.rows(sql, parameters)[0][0]

    @contextmanager
    def replacing(self, database: str, table: str) -> Iterator[str]:
        """Yield a fresh staging table name; on success it atomically replaces ``database.table`` on this server.

        Readers see the old table or the new one, never a half-loaded one; on failure the old table stays. (On a
        cluster, ``EXCHANGE`` would swap each shard on its own: see ``warehouse/models.py`` for the switch there.)
        """
        staging = f"{database}.{table}__staging"
        self.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        self.command(f"DROP TABLE IF EXISTS {staging} SYNC")
        try:
            yield staging
            self.command(f"CREATE TABLE IF NOT EXISTS {database}.{table} AS {staging}")
            self.command(f"EXCHANGE TABLES {staging} AND {database}.{table}")
        finally:
            self.command(f"DROP TABLE IF EXISTS {staging} SYNC")

    def table_stats(self, database: str, table: str, sharded: bool = True) -> tuple[int, int]:
        """(rows, bytes) of a table: with a cluster and ``sharded``, summed over the cluster's servers (``hostName()``
        is each server's own in a cluster read; a server listed under two shards, as in the emulation, counts once);
        else this node's copy."""
        source = "system.tables"
        if self.cluster and sharded:
            source = f"clusterAllReplicas({self.cluster}, system.tables)"
        found = self.rows(
            "SELECT sum(r), sum(b), count() FROM (SELECT hostName() AS server, any(total_rows) AS r, "
            f"any(total_bytes) AS b FROM {source} WHERE database = {{db:String}} AND name = {{t:String}} "
            "GROUP BY server)",
            {"db": database, "t": table},
        )
        if not found or not found[0][2]:
            raise LookupError(f"table {database}.{table} does not exist")
        return int(found[0][0] or 0), int(found[0][1] or 0)

    def columns(self, database: str, table: str) -> list[tuple[str, str]]:
        """The table's columns on the node this resource talks to ([] if it has no such table)."""
        return [
            (r[0], r[1])
            for r in self.rows(
                "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String} "
                "ORDER BY position",
                {"db": database, "t": table},
            )
        ]

    def shard_columns(self, database: str, table: str) -> dict[int, list[tuple[str, str]]]:
        """The table's columns on every shard of the cluster, by shard number ([] where a shard has no such table:
        an ``ON CLUSTER`` statement still queued or failed there)."""
        if not self.cluster:
            return {1: self.columns(database, table)}
        shards = [int(r[0]) for r in self.rows(
            "SELECT DISTINCT shard_num FROM system.clusters WHERE cluster = {c:String} ORDER BY shard_num",
            {"c": self.cluster},
        )]  # fmt: skip
        found: dict[int, list[tuple[str, str]]] = {s: [] for s in shards}
        for shard, name, typ in self.rows(
            f"SELECT _shard_num, name, type FROM clusterAllReplicas({self.cluster}, system.columns) "
            "WHERE database = {db:String} AND table = {t:String} ORDER BY _shard_num, position",
            {"db": database, "t": table},
        ):
            found.setdefault(int(shard), []).append((name, typ))
        return found

    def distributed_target(self, database: str, table: str) -> tuple[str, str] | None:
        """(local table, sharding key) of a Distributed table on the node this resource talks to, the node whose
        definition readers use; None if there is no such Distributed table."""
        found = self.rows(
            "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {t:String} "
            "AND engine = 'Distributed'",
            {"db": database, "t": table},
        )
        if not found:
            return None
        match = _DISTRIBUTED.match(found[0][0])
        if not match:
            raise ValueError(f"{database}.{table}: cannot read its Distributed engine: {found[0][0]}")
        return match["local"], match["key"] or ""

    def ping(self) -> str:
        try:
            return str(self.scalar("SELECT version()"))
        except ServiceUnavailableError:
            raise
        except Exception as exc:
            raise self.unavailable(exc) from None
