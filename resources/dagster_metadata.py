"""Dagster's own metadata database (vps_1's ``dagster-postgres``): dagster-postgres's storages, each keeping one
connection open instead of opening one per call.

dagster-postgres gives every process but the webserver SQLAlchemy's ``NullPool`` ("not to accumulate connections per
DagsterInstance"), so each storage call opens a new PostgreSQL connection: a backend fork and a SCRAM handshake,
5.4 ms here against 0.07 ms for a query on an open connection. A day's run writes about 190 events and reads its
checks' state: measured on one 30-step job, 11.3 ms an event with ``NullPool`` against 2.4 ms with one pooled
connection per storage (``benchmarks/README.md``). These classes are dagster-postgres's with that one change, named
by ``dagster.yaml``'s ``storage: custom`` (:func:`instance_storage`) on vps_1 and in the deployed bench.

Bounded: a process holds at most one idle connection per storage (three), opens up to ``MAX_OVERFLOW`` more for
concurrent threads (closed when returned), checks a connection before use (``pool_pre_ping``: PostgreSQL restarted
or the connection dropped, a new one is opened) and renews it after ``RECYCLE_SECONDS``. Run processes are short;
the daemon and the code server keep theirs. ``dispose`` closes them (``DagsterInstance.dispose``).
"""

from __future__ import annotations

from typing import Any

from dagster._core.storage.base_storage import DagsterStorage
from dagster._core.storage.config import PostgresStorageConfig
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.schedule_storage import PostgresScheduleStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

MAX_OVERFLOW = 8  # the daemon's threads may call at once; beyond the one kept, connections close on return
RECYCLE_SECONDS = 3600


class _Pooled:
    """Mixin: swap the ``NullPool`` engine dagster-postgres built for a pooled one (same URL, token and isolation)."""

    postgres_url: str
    _token_provider: Any
    _engine: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # dagster-postgres's: creates the tables if asked, with a NullPool engine
        self._engine.dispose()
        self._engine = create_pg_engine(
            self.postgres_url,
            self._token_provider,
            isolation_level="AUTOCOMMIT",
            pool_size=1,
            max_overflow=MAX_OVERFLOW,
            pool_pre_ping=True,
            pool_recycle=RECYCLE_SECONDS,
        )

    def dispose(self) -> None:
        super().dispose()  # type: ignore[misc]
        self._engine.dispose()


class PooledPostgresRunStorage(_Pooled, PostgresRunStorage):
    pass


class PooledPostgresEventLogStorage(_Pooled, PostgresEventLogStorage):
    pass


class PooledPostgresScheduleStorage(_Pooled, PostgresScheduleStorage):
    pass


class PooledPostgresStorage(DagsterPostgresStorage):
    """``DagsterPostgresStorage`` (same ``postgres_db`` config) whose run, event and schedule storages are pooled."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: Any = None,
    ):
        # DagsterPostgresStorage.__init__ with the pooled classes (calling it would open and drop three NullPool ones)
        self.postgres_url = postgres_url
        self.should_autocreate_tables = should_autocreate_tables
        self._inst_data = inst_data
        self._run_storage = PooledPostgresRunStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )
        self._event_log_storage = PooledPostgresEventLogStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )
        self._schedule_storage = PooledPostgresScheduleStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )
        DagsterStorage.__init__(self)

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: PostgresStorageConfig
    ) -> PooledPostgresStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )


def instance_storage(postgres_db: dict[str, Any]) -> dict[str, Any]:
    """``dagster.yaml``'s ``storage`` block for Dagster's metadata database: dagster-postgres's ``postgres_db``
    settings, through :class:`PooledPostgresStorage`."""
    return {
        "custom": {
            "module": __name__,
            "class": PooledPostgresStorage.__name__,
            "config": {"postgres_db": postgres_db},
        }
    }
