"""The ClickHouse cluster as the in-process engine (chDB) can stand in for it: one shard, or two shards emulated.

No ClickHouse server runs here, so the cluster's shards are the engine itself. With one shard that is simply true.
With two, both shards' replicas point at the engine (``localhost`` and ``127.0.0.1``, the engine's own TCP port,
so each is executed in-process) and row policies make each shard see only its part of one physical table:

- a sharded local table (``<table>_local`` behind a Distributed table) shows a shard the rows its sharding key
  sends there: ``(key) % 2 = shard - 1``, exactly how a Distributed insert places them;
- a table in a node-local database (a run's scratch tables, created on the node the client talks to) is seen by
  shard 1 only: a subquery that reads it on the shards without ``GLOBAL`` misses shard 2's rows, as on a real
  cluster where shard 2 has no such table.

``shardNum()`` is 1 or 2 inside a Distributed read and 0 outside; the filters take 0 as shard 1, the node clients
talk to. Policies are XML and read when the engine starts (chDB cannot reload them), so the tables they cover are
named up front (``sharded``: table -> sharding key; ``node_local``: databases).

What this cannot show (one physical table per name): merges collapse a key's versions across the emulated shards;
``clusterAllReplicas`` reaches the same engine twice; ``ON CLUSTER`` DDL is refused by chDB, so it is checked with
``formatQuery`` and then applied once, which reaches both emulated shards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

SHARD_HOSTS = ("localhost", "127.0.0.1")  # two names of the engine itself: the most shards it can emulate
TCP_PORT = 9000  # never listened on: the replicas' port equals tcp_port, so the engine treats them as itself
SHARD = "if(shardNum() = 0, 1, shardNum())"  # the shard reading the table; 0 (no Distributed read) is shard 1


def shard_filter(key: str, shards: int) -> str:
    """The rows of a sharded local table that a shard holds: where a Distributed insert sends them."""
    return f"({key}) % {shards} = {SHARD} - 1"


@dataclass(frozen=True)
class EmulatedCluster:
    name: str
    shards: int = 1
    sharded: dict[str, str] = field(default_factory=dict)  # "db.table" of a local table -> its sharding key
    node_local: tuple[str, ...] = ()  # databases whose tables exist only on the node that created them

    def __post_init__(self) -> None:
        if not 1 <= self.shards <= len(SHARD_HOSTS):
            raise ValueError(f"the in-process engine emulates 1 or {len(SHARD_HOSTS)} shards, not {self.shards}")

    def config_xml(self, users_file: Path | None) -> str:
        root = ET.Element("clickhouse")
        ET.SubElement(root, "tcp_port").text = str(TCP_PORT)
        cluster = ET.SubElement(ET.SubElement(root, "remote_servers"), self.name)
        for host in SHARD_HOSTS[: self.shards]:
            shard = ET.SubElement(cluster, "shard")
            ET.SubElement(shard, "internal_replication").text = "true"
            replica = ET.SubElement(shard, "replica")
            ET.SubElement(replica, "host").text = host
            ET.SubElement(replica, "port").text = str(TCP_PORT)
        macros = ET.SubElement(root, "macros")
        ET.SubElement(macros, "shard").text = "1"
        ET.SubElement(macros, "replica").text = "local"
        if users_file is not None:
            directories = ET.SubElement(root, "user_directories")
            ET.SubElement(ET.SubElement(directories, "users_xml"), "path").text = str(users_file)
        ET.indent(root)
        return ET.tostring(root, encoding="unicode") + "\n"

    def users_xml(self) -> str:
        """User ``default`` with one row policy per sharded table and per node-local database."""
        root = ET.Element("clickhouse")
        # a policy filters each shard's own rows before FINAL merges versions, as separate servers would
        profile = ET.SubElement(ET.SubElement(root, "profiles"), "default")
        ET.SubElement(profile, "apply_row_policy_after_final").text = "0"
        user = ET.SubElement(ET.SubElement(root, "users"), "default")
        ET.SubElement(user, "password")
        ET.SubElement(ET.SubElement(user, "networks"), "ip").text = "::/0"  # no listener: in-process only
        ET.SubElement(user, "profile").text = "default"
        ET.SubElement(user, "quota").text = "default"
        databases = ET.SubElement(user, "databases")
        by_db: dict[str, ET.Element] = {}

        def policy(database: str, table: str, condition: str) -> None:
            if database not in by_db:
                by_db[database] = ET.SubElement(databases, database)
            ET.SubElement(ET.SubElement(by_db[database], "table", name=table), "filter").text = condition

        for qualified, key in sorted(self.sharded.items()):
            database, table = qualified.split(".", 1)
            policy(database, table, shard_filter(key, self.shards))
        for database in self.node_local:
            policy(database, "", f"{SHARD} = 1")  # name="": every table of the database
        ET.SubElement(ET.SubElement(root, "quotas"), "default")
        ET.indent(root)
        return ET.tostring(root, encoding="unicode") + "\n"

    def write(self, folder: Path, stem: str) -> Path:
        """The engine's config file (and its users file with two shards) beside its data folder."""
        users = None
        if self.shards > 1:
            users = folder / f"{stem}-users.xml"
            users.write_text(self.users_xml())
        config = folder / f"{stem}-cluster.xml"
        config.write_text(self.config_xml(users))
        return config

    def local_ddl(self, sql: str, check) -> str:
        """``sql`` as the engine can run it: an ``ON CLUSTER`` statement is first checked by the engine's parser
        (``check`` runs ``formatQuery`` on it), then applied once, which reaches every emulated shard."""
        clause = f" ON CLUSTER {self.name}"
        if clause not in sql:
            return sql
        check(sql)
        return re.sub(rf" ON CLUSTER {re.escape(self.name)}\b", "", sql)
