"""Test fixtures: a real local stack (PostgreSQL, SeaweedFS, chDB, Spark) in its own data folder and ports.

The stack is started once per test session under ``.data/pytest`` with generated credentials and ports
that do not collide with a developer's running ``make up`` stack, and is stopped and removed at the end.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.shared_platform import PRISTINE, SharedPlatform, clone_database, drop_database

REPO = Path(__file__).resolve().parent.parent
SCALE_FACTOR = 0.01
# Ports and folder of the test stack: PLATFORM_TEST_PORT_BASE moves both, so two suites can run side by side; each
# pytest-xdist worker (``make test`` runs two) has a stack of its own 1000 ports further.
WORKER_ID = os.environ.get("PYTEST_XDIST_WORKER", "")
WORKER = int(WORKER_ID.removeprefix("gw") or 0)
PORT_BASE = int(os.environ.get("PLATFORM_TEST_PORT_BASE", "25000")) + 1000 * WORKER
TEST_DATA = REPO / ".data" / ("pytest" if PORT_BASE == 25000 else f"pytest-{PORT_BASE}")

# Everything the resources read, pinned for the tests (a developer's .env must not leak in).
TEST_ENV = {
    "PLATFORM_ENV": "local",
    "PLATFORM_DATA_DIR": str(TEST_DATA),
    "DAGSTER_HOME": str(TEST_DATA / "dagster"),
    "LOCAL_PORT_OLTP_POSTGRES": str(PORT_BASE + 432),
    "LOCAL_PORT_OBJECT_STORE_S3": str(PORT_BASE + 333),
    "LOCAL_PORT_OBJECT_STORE_MASTER": str(PORT_BASE + 334),
    "LOCAL_PORT_OBJECT_STORE_VOLUME": str(PORT_BASE + 335),
    "LOCAL_PORT_OBJECT_STORE_FILER": str(PORT_BASE + 336),
    # weed's gRPC ports inside the block too: its default (port + 10000) lands in the ephemeral range
    "LOCAL_PORT_OBJECT_STORE_S3_GRPC": str(PORT_BASE + 337),
    "LOCAL_PORT_OBJECT_STORE_MASTER_GRPC": str(PORT_BASE + 338),
    "LOCAL_PORT_OBJECT_STORE_VOLUME_GRPC": str(PORT_BASE + 339),
    "LOCAL_PORT_OBJECT_STORE_FILER_GRPC": str(PORT_BASE + 340),
    "LOCAL_PORT_SPARK_CONNECT": str(PORT_BASE + 2),
    "OLTP_USER": "platform",
    "OLTP_DB": "tpch",
    "OLTP_PASSWORD": secrets.token_urlsafe(12),
    # the pipeline's: a space, a quote, a backslash and `=` must survive every conninfo and SQL literal it is put in
    "OLTP_EXTRACT_PASSWORD": "ex tr'act\\pw=" + secrets.token_urlsafe(12),
    "OLTP_CAPTURE_PASSWORD": secrets.token_urlsafe(12),
    "OLTP_APP_PASSWORD": secrets.token_urlsafe(12),
    "OLTP_BACKUP_PASSWORD": secrets.token_urlsafe(12),
    "S3_BUCKET": "lake",
    "S3_ACCESS_KEY_ID": "test" + secrets.token_hex(4),
    "S3_SECRET_ACCESS_KEY": secrets.token_urlsafe(16),
    "SPARK_CONNECT_TOKEN": secrets.token_urlsafe(16),
}
# Settings of a developer's shell or .env that would point the resources elsewhere.
UNSET = ("OLTP_HOST", "OLTP_PORT", "S3_ENDPOINT_URL", "SPARK_REMOTE", "SPARK_MASTER", "CLICKHOUSE_DSN",
         "CLICKHOUSE_CLUSTER")  # fmt: skip
# Scratch files of the suite (Dagster's ephemeral instances, pytest's tmp_path) stay in the project, not /tmp.
# A worker's own (pytest-xdist's controller keeps every worker's basetemp in its own, which no worker may remove).
TEST_TMP = TEST_DATA.with_name(TEST_DATA.name + "-tmp" + (f"-{os.environ['PYTEST_XDIST_WORKER']}" if WORKER_ID else ""))
_SAVED_ENV = pytest.StashKey[dict[str, str | None]]()


def _pin_environment(config: pytest.Config) -> None:
    """The suite's environment, set when pytest starts (before any test module is imported, since modules read
    settings at import) and given back when it ends."""
    names = (*TEST_ENV, *UNSET, "TMPDIR")
    config.stash[_SAVED_ENV] = {name: os.environ.get(name) for name in names}
    for name in UNSET:
        os.environ.pop(name, None)
    os.environ.update(TEST_ENV)
    TEST_TMP.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(TEST_TMP)
    tempfile.tempdir = None  # re-read TMPDIR


def pytest_unconfigure(config: pytest.Config) -> None:
    for name, value in config.stash.get(_SAVED_ENV, {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    tempfile.tempdir = None


@pytest.fixture(scope="session")
def stack() -> Iterator[None]:
    from deploy.local import stack as local_stack

    local_stack.down()  # a stack left by an interrupted earlier session
    shutil.rmtree(TEST_DATA, ignore_errors=True)
    local_stack.up()
    try:
        yield
    finally:
        local_stack.down()
        shutil.rmtree(TEST_DATA, ignore_errors=True)
        shutil.rmtree(TEST_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def resources(stack) -> dict:
    from resources.environments import resource_defs

    return resource_defs("local")


@pytest.fixture(scope="session")
def oltp(resources):
    """The OLTP as its superuser: tests seed it, write it behind the platform's back, copy databases. The
    pipeline's own resources (``resources``) connect as the narrow roles (platform_assets/oltp/roles.py)."""
    from resources.environments import oltp_resource

    with oltp_resource("local", "admin").process_config_and_initialize_cm() as r:
        yield r


@pytest.fixture(scope="session")
def object_store(resources):
    with resources["object_store"].process_config_and_initialize_cm() as r:
        yield r


@pytest.fixture(scope="session")
def clickhouse(resources):
    with resources["clickhouse"].process_config_and_initialize_cm() as r:
        yield r


@pytest.fixture(scope="session")
def shared_platform(oltp, object_store, clickhouse) -> SharedPlatform:
    return SharedPlatform(oltp, object_store, clickhouse)


@pytest.fixture(scope="session")
def seeded(oltp, shared_platform) -> dict[str, int]:
    """TPC-H at the test scale factor in the OLTP database (and its pristine copy); returns rows per table."""
    from platform_assets.oltp.seed import seed_tpch
    from resources.settings import data_dir

    rows = seed_tpch(oltp, SCALE_FACTOR, data_dir() / "duckdb_extensions").rows
    shared_platform.keep_pristine_copy()
    return rows


@pytest.fixture(scope="module")
def lineage(seeded, shared_platform):
    """The pristine TPC-H through the ``full_lineage`` job (the one ``make demo`` runs) over every change day, with
    its checks: run once, and again only after a module that changed the platform."""
    return shared_platform.full_load()


@pytest.fixture(scope="module")
def changing_platform(lineage, shared_platform):
    """The loaded platform, for a module that changes the OLTP, lake and warehouse: reset when the module ends."""
    try:
        yield lineage
    finally:
        shared_platform.reset()


@pytest.fixture(scope="module")
def oltp_copy(seeded, oltp, request):
    """A database of the module's own, cloned from the pristine TPC-H, dropped when the module ends."""
    name = "tpch_" + request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    try:
        yield clone_database(oltp, PRISTINE, name)
    finally:
        drop_database(oltp, name)


# Real tools slow enough to leave out of the edit-run loop (a JVM, a VPN handshake, ansible-playbook runs).
SLOW_MODULES = {
    "test_spark_connect_tls.py", "test_openvpn.py", "test_ansible_k3s_images.py", "test_seaweedfs_start.py",
    "test_make_dev.py",  # a dagster dev: webserver, daemon and code server
}  # fmt: skip


# Files by duration, longest first (`--durations` of a full run); the rest keep their order after these. pytest-xdist
# hands files to the workers in this order (`--no-loadscope-reorder`, or it would order them by their number of tests).
LONGEST_FILES = (
    "tests/topology/test_end_to_end.py", "tests/test_wall_clock_capture.py", "tests/test_incremental.py",
    "tests/test_two_shards.py", "tests/test_wall_clock_daemon.py",
    "tests/test_lineage.py", "tests/test_failures.py", "tests/test_dagster_on_postgres.py",
    "tests/test_spark_connect.py", "tests/topology/test_compute_node.py", "tests/test_ui_browser.py",
    "tests/deploy/test_ansible_k3s_images.py",
)  # fmt: skip


def pytest_configure(config):
    _pin_environment(config)
    config.addinivalue_line(
        "markers", "slow: needs the local stack, network namespaces or a slow real tool; `make test-fast` skips it"
    )


def _slow(item: pytest.Item) -> bool:
    path = Path(str(item.fspath))
    return "stack" in item.fixturenames or "topology" in path.parts or path.name in SLOW_MODULES


def pytest_collection_modifyitems(config, items):
    """Tests on the stack (directly or through a fixture that needs it), in namespaces or on a slow tool are marked
    ``slow``. Tests that share state declare it through fixtures; within a file the order is the file's own."""
    for item in items:
        if _slow(item):
            item.add_marker(pytest.mark.slow)
    # the longest files first, so that two workers do not end with one of them alone on a long file
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).relative_to(REPO).as_posix(), len(rank)))
