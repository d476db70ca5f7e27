"""The full graph through the Dagster CLI on a PostgreSQL-backed instance: vps_1's dagster.yaml, real PostgreSQL.

Also the secrets check: no credential appears in the run's event log or in its compute logs.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from deploy import edge_stack
from platform_assets.jobs import range_tags
from platform_assets.partitions import add_days
from tests.conftest import REPO, TEST_DATA

PROD_INSTANCE = REPO / "deploy" / "vps_1" / "dagster" / "dagster.yaml"
COMPOSE = REPO / "deploy" / "vps_1" / "compose.yaml"
SECRETS = ("OLTP_PASSWORD", "S3_SECRET_ACCESS_KEY", "SPARK_CONNECT_TOKEN")


def _compose_env(service: str, names: object) -> dict[str, str]:
    """``names`` from the service's environment in vps_1's compose file, ``${VAR:?…}`` filled from this process."""
    spec = yaml.safe_load(COMPOSE.read_text())["services"][service]["environment"]
    return {name: re.sub(r"\$\{(\w+)(:\?[^}]*)?\}", lambda m: os.environ[m.group(1)], spec[name]) for name in names}


@pytest.fixture(scope="module")
def postgres_instance_home(stack, seeded, oltp, object_store) -> Path:
    """vps_1's dagster.yaml, with only the addresses of this machine's services swapped in."""
    with oltp.connect(autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS dagster")
        conn.execute("CREATE DATABASE dagster")
    config = yaml.safe_load(PROD_INSTANCE.read_text())
    db = config["storage"]["custom"]["config"]["postgres_db"]
    assert db["scheme"] == "postgresql+psycopg2"  # SQLAlchemy 2.1 would pick psycopg 3 for postgresql://
    db.update({"hostname": oltp.host, "port": oltp.port})
    config.pop("run_launcher")  # DockerRunLauncher needs a Docker engine; the CLI executes in-process anyway
    config["compute_logs"]["config"]["endpoint_url"] = object_store.endpoint_url
    home = TEST_DATA / "dagster-pg"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


@pytest.fixture
def dagster_pg_env(oltp, monkeypatch) -> None:
    """The credentials vps_1's dagster.yaml reads, for the test's database."""
    for name, value in {"DAGSTER_PG_USER": oltp.user, "DAGSTER_PG_PASSWORD": os.environ["OLTP_PASSWORD"],
                        "DAGSTER_PG_DB": "dagster"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)


def test_full_lineage_on_postgres_storage_via_cli(postgres_instance_home, dagster_pg_env, object_store):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        # the compute-log manager's credentials exactly as vps_1's compose file gives them to Dagster's processes
        **_compose_env("dagster-daemon", edge_stack.COMPUTE_LOG_CREDENTIALS),
        "DAGSTER_HOME": str(postgres_instance_home),
        # its own chDB engine folder: one engine path per process, and this test process holds the other
        "CLICKHOUSE_DSN": f"chdb://{TEST_DATA / 'clickhouse-pg-instance'}",
    }
    dagster = Path(sys.executable).parent / "dagster"
    with dg.DagsterInstance.from_config(str(postgres_instance_home)) as instance:  # the seed day, a partition
        add_days(instance, ["1998-08-03"])
    proc = subprocess.run(
        [str(dagster), "job", "execute", "-m", "platform_assets.definitions", "-j", "full_lineage",
         "--tags", json.dumps(range_tags("1998-08-03", "1998-08-03"))],
        cwd=postgres_instance_home,  # not the repo: the Dagster CLI would load a developer's .env from there
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]

    # the run and its materializations live in PostgreSQL
    with dg.DagsterInstance.from_config(str(postgres_instance_home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS
        assert instance.get_latest_materialization_event(dg.AssetKey(["marts", "customer_features"]))
        events = instance.all_logs(runs[0].run_id)
        log_text = "\n".join(str(e) for e in events)
    assert len(events) > 100
    compute_logs = [k for k, _ in object_store.list_keys("dagster/compute-logs/")]
    assert compute_logs, "compute logs were not written to the object store"
    for key in compute_logs:
        log_text += object_store.client().get_object(Bucket=object_store.bucket, Key=key)["Body"].read().decode()
    log_text += proc.stdout + proc.stderr
    for name in SECRETS:
        assert os.environ[name] not in log_text, f"{name} leaked into logs"


def _sessions(oltp, db: str) -> int:
    """Connections ever opened to ``db`` (PostgreSQL counts them in ``pg_stat_database.sessions``)."""
    with oltp.connect(autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", (db,)).fetchone()[0]


def test_a_run_keeps_its_connections_to_dagsters_database_open(postgres_instance_home, dagster_pg_env, oltp):
    """dagster-postgres alone opens a new connection for each storage call of a run (NullPool: about 190 for a
    day's run, 5 ms each with SCRAM); vps_1's storage classes keep one per storage (resources/dagster_metadata.py)."""

    @dg.op
    def start() -> int:
        return 0

    @dg.op
    def step(n: int) -> int:
        return n + 1

    @dg.job(executor_def=dg.in_process_executor)
    def thirty_steps():
        n = start()
        for i in range(29):
            n = step.alias(f"step_{i}")(n)

    with dg.DagsterInstance.from_config(str(postgres_instance_home)) as instance:
        before = _sessions(oltp, "dagster")
        result = thirty_steps.execute_in_process(instance=instance)
        opened = _sessions(oltp, "dagster") - before
        events = len(instance.all_logs(result.run_id))
    assert result.success and events > 150
    assert opened <= 6, f"the run opened {opened} connections to Dagster's database for its {events} events"


def test_the_deployed_bench_can_keep_its_instance_in_postgres_as_vps_1_does(oltp):
    """``make bench BENCH_ARGS='--dagster-storage postgres'``: the local deployment's dagster.yaml puts runs and
    events in a fresh database of the local PostgreSQL (dagster-postgres, vps_1's storage), none in SQLite files."""
    from benchmarks.deployed import DAGSTER_DB, dagster_database
    from deploy.local.daemon import instance_yaml

    @dg.asset
    def probe() -> int:
        return 1

    home = TEST_DATA / "dagster-bench-pg"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(instance_yaml(dagster_database(oltp)))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run_id = dg.materialize([probe], instance=instance).run_id
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    with dg.DagsterInstance.from_config(str(home)) as again:  # another process's view: the same server's rows
        assert again.get_run_by_id(run_id).is_success and again.get_latest_materialization_event(probe.key)
    assert not list(home.rglob("*.db")), "an instance on PostgreSQL wrote SQLite files"
    dagster_database(oltp)  # made afresh: the next bench starts from no runs
    with dg.DagsterInstance.from_config(str(home)) as fresh:
        assert fresh.get_run_by_id(run_id) is None, f"{DAGSTER_DB} kept the last bench's runs"
