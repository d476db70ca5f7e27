"""The test stack's one OLTP database, lake bucket and warehouse: most tests read them, a few modules change them.

Tests declare which they do through fixtures (see conftest), never through their order:

- ``lineage``: the pristine TPC-H, fully loaded. Loaded on first use, and loaded again from a blank lake and
  warehouse when a module that changed the platform came before.
- ``changing_platform``: the same loaded platform for a module that changes the OLTP, the lake and the warehouse;
  when the module ends the OLTP is restored from its pristine copy and the lake and warehouse are emptied.
- ``oltp_copy``: a database of the module's own, cloned from the pristine copy, for changes that touch only the
  OLTP (and a warehouse of the test's own, as the daemon's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # conftest imports this before it pins the suite's environment: no product import here
    from resources.oltp_postgres import OltpPostgresResource

PRISTINE = "tpch_pristine"
SYSTEM_DATABASES = ("system", "information_schema", "INFORMATION_SCHEMA", "default")


def instance_with_days(*days: str) -> Any:
    """An ephemeral Dagster instance in which ``days`` are change-day partitions (they exist once added)."""
    import dagster as dg

    from platform_assets.partitions import add_days

    instance = dg.DagsterInstance.ephemeral()
    add_days(instance, days)
    return instance


def admin(oltp: OltpPostgresResource) -> OltpPostgresResource:
    """The same server through its maintenance database: a database cannot be dropped or copied while connected."""
    return oltp.model_copy(update={"database": "postgres"})


def clone_database(oltp: OltpPostgresResource, source: str, target: str) -> OltpPostgresResource:
    """``target`` as a file-level copy of ``source`` (``CREATE DATABASE … TEMPLATE``); returns its resource.

    A template must have no open sessions: the suite owns this server, so any left over are ended first."""
    with admin(oltp).connect(autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (source,),
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')
    return oltp.model_copy(update={"database": target})


def drop_database(oltp: OltpPostgresResource, name: str) -> None:
    with admin(oltp).connect(autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class SharedPlatform:
    oltp: Any
    object_store: Any
    clickhouse: Any
    loaded: Any = None  # the pristine full load's result while the lake and warehouse hold it

    def keep_pristine_copy(self) -> None:
        """Called once the OLTP is seeded: the copy every restore and every ``oltp_copy`` starts from."""
        clone_database(self.oltp, self.oltp.database, PRISTINE)

    def full_load(self):
        """The ``full_lineage`` job (the one ``make demo`` runs) over every change day, with its checks — once per
        pristine state."""
        if self.loaded is None:
            import dagster as dg

            from platform_assets.definitions import LINEAGE_JOB, defs
            from platform_assets.jobs import full_load_tags

            instance = dg.DagsterInstance.ephemeral()  # the change days become its partitions
            tags = full_load_tags(instance, self.oltp)
            job = defs().resolve_job_def(LINEAGE_JOB)
            self.loaded = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
        return self.loaded

    def reset(self) -> None:
        """Back to the pristine OLTP with an empty lake and warehouse; the next ``full_load`` loads again."""
        self.loaded = None
        clone_database(self.oltp, PRISTINE, self.oltp.database)
        self.object_store.delete_keys([k for k, _ in self.object_store.list_keys("")])
        for (name,) in self.clickhouse.rows("SELECT name FROM system.databases"):
            if name not in SYSTEM_DATABASES:
                self.clickhouse.command(f"DROP DATABASE `{name}` SYNC")
