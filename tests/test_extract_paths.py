"""The raw extract's two read paths give the same objects: DuckDB's parallel scan of the attached table (what the
planner's sequential scan of a whole-table day becomes) and one ``postgres_query`` on the ``updated_at`` index (a
small change day). Same object names and sizes in rows, the catalog's exact schema, the same rows; a day is
replaced whole, and an error half-way through a day leaves the earlier objects as they were.

The objects go to a scratch bucket, never the lake the other tests read.
"""

from __future__ import annotations

import re
import threading
from datetime import date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from platform_assets.catalog import TABLES, TABLES_BY_NAME, arrow_schema
from platform_assets.oltp.seed import SEED_TIMESTAMP
from platform_assets.paths import raw_prefix
from platform_assets.raw import extract
from platform_assets.raw.extract import QUERY, TABLE_SCAN, SchemaMismatchError, extract_days, scan_for
from resources.settings import data_dir

SEED_DAY = SEED_TIMESTAMP.date()
SMALL_DAY = date(1999, 1, 15)  # no other test writes this day
TAG = re.compile(r"-[0-9a-f]{8}\.parquet$")


@pytest.fixture(scope="module")
def scratch(object_store):
    store = object_store.model_copy(update={"bucket": "test-extract-paths"})
    store.ensure_bucket()
    yield store
    store.delete_keys([k for k, _ in store.list_keys("")])


@pytest.fixture
def small_batches(monkeypatch):
    """Many batches and several objects per day even at the test scale (lineitem: 60 k rows → 3 objects)."""
    monkeypatch.setattr(extract, "BATCH_ROWS", 4096)
    monkeypatch.setattr(extract, "ROWS_PER_FILE", 20_000)


def run(oltp, store, table, day, scan=None):
    return extract_days(oltp, store, table, [day], data_dir() / "duckdb_extensions", scan=scan)


def stored_day(store, table, day) -> dict:
    """Object names without their run tag, rows and schema per object, and all the day's rows in key order."""
    fs, out = store.arrow_fs(), {}
    for kind in ("part-", "deleted-"):
        files = sorted(
            k for k, _ in store.list_keys(raw_prefix(table.name, day)) if k.rsplit("/", 1)[-1].startswith(kind)
        )
        tables = [pq.read_table(f"{store.bucket}/{k}", filesystem=fs) for k in files]
        rows = pa.concat_tables(tables) if tables else None
        keys = [(k, "ascending") for k in table.primary_key]
        out[kind] = {
            "objects": [(TAG.sub("", k), t.num_rows, t.schema) for k, t in zip(files, tables, strict=True)],
            "rows": rows.sort_by(keys) if rows is not None else None,
        }
    return out


def assert_same_day(a: dict, b: dict, table) -> None:
    for kind in a:
        assert [o[:2] for o in a[kind]["objects"]] == [o[:2] for o in b[kind]["objects"]], (table.name, kind)
        for _, _, schema in a[kind]["objects"] + b[kind]["objects"]:
            assert schema.equals(arrow_schema(table) if kind == "part-" else extract.tombstone_schema(table))
        if a[kind]["rows"] is None:
            assert b[kind]["rows"] is None
        else:
            assert a[kind]["rows"].equals(b[kind]["rows"]), (table.name, kind)


def no_attached_catalogs() -> bool:
    con = extract._duckdb(data_dir() / "duckdb_extensions")
    try:
        names = [r[0] for r in con.execute("SELECT database_name FROM duckdb_databases()").fetchall()]
    finally:
        con.close()
    return not [n for n in names if n.startswith("oltp_")]


@pytest.mark.parametrize("table", TABLES, ids=[t.name for t in TABLES])
def test_whole_table_day_same_objects_by_either_path(seeded, oltp, scratch, small_batches, table):
    with oltp.connect() as conn:
        if table.name in ("lineitem", "orders"):  # the planner reads the whole-table seed day sequentially
            assert scan_for(conn, table, SEED_DAY) == TABLE_SCAN
    by_query = run(oltp, scratch, table, SEED_DAY, QUERY)
    assert [d.scan for d in by_query.days] == [QUERY]
    queried = stored_day(scratch, table, SEED_DAY)
    by_scan = run(oltp, scratch, table, SEED_DAY, TABLE_SCAN)
    assert [d.scan for d in by_scan.days] == [TABLE_SCAN]
    scanned = stored_day(scratch, table, SEED_DAY)
    assert by_scan.rows == by_query.rows == seeded[table.name] and by_scan.deleted == by_query.deleted == 0
    assert_same_day(queried, scanned, table)
    # re-running a day replaces its objects: only the last run's are left
    left = {k for k, _ in scratch.list_keys(raw_prefix(table.name, SEED_DAY))}
    assert left == set(by_scan.files) and not left & set(by_query.files)
    assert no_attached_catalogs()
    if table.name == "lineitem":
        assert len(by_scan.files) == 3  # several objects per day, cut at the same rows by both paths


def test_small_day_is_read_through_the_index_and_both_paths_agree(seeded, oltp_copy, scratch, small_batches):
    """2% of orders and lineitem move to a later day (in a database of its own): the planner picks the index, the
    extract follows, and the table scan of that day gives the same objects."""
    stamp = datetime(SMALL_DAY.year, SMALL_DAY.month, SMALL_DAY.day, 12, tzinfo=SEED_TIMESTAMP.tzinfo)
    moves = {"orders": "o_orderkey %% 50 = 0", "lineitem": "l_orderkey %% 50 = 0"}
    with oltp_copy.connect(autocommit=True) as conn:  # the capture triggers stamp the session's change time
        conn.execute("SELECT set_config('platform.change_time', %s, false)", (stamp.isoformat(),))
        moved = {
            t: conn.execute(f"UPDATE {t} SET {t[0]}_comment = {t[0]}_comment WHERE {w}", ()).rowcount
            for t, w in moves.items()
        }
    for name, n in moved.items():
        table = TABLES_BY_NAME[name]
        assert 0 < n < seeded[name] / 10
        with oltp_copy.connect() as conn:
            assert scan_for(conn, table, SMALL_DAY) == QUERY
            assert scan_for(conn, table, SEED_DAY) == TABLE_SCAN
        auto = run(oltp_copy, scratch, table, SMALL_DAY)
        assert [d.scan for d in auto.days] == [QUERY] and auto.rows == n
        queried = stored_day(scratch, table, SMALL_DAY)
        scanned_run = run(oltp_copy, scratch, table, SMALL_DAY, TABLE_SCAN)
        assert scanned_run.rows == n
        assert_same_day(queried, stored_day(scratch, table, SMALL_DAY), table)


def test_error_half_way_through_a_day_keeps_the_earlier_objects(seeded, oltp, scratch, small_batches, monkeypatch):
    table = TABLES_BY_NAME["lineitem"]
    first = run(oltp, scratch, table, SEED_DAY)
    before = scratch.list_keys(raw_prefix(table.name, SEED_DAY))
    calls = {"n": 0}
    conform = extract.conform_batch

    def failing(batch, *args):
        calls["n"] += 1
        if calls["n"] == 8:  # after the first object is complete
            raise SchemaMismatchError("injected")
        return conform(batch, *args)

    monkeypatch.setattr(extract, "conform_batch", failing)
    for scan in (TABLE_SCAN, QUERY):
        calls["n"] = 0
        with pytest.raises(SchemaMismatchError, match="injected"):
            run(oltp, scratch, table, SEED_DAY, scan)
        assert scratch.list_keys(raw_prefix(table.name, SEED_DAY)) == before
    assert sorted(k for k, _ in before) == sorted(first.files)
    assert not [t for t in threading.enumerate() if t.name == "extract-read-ahead"]
    assert no_attached_catalogs()


def test_read_ahead_hands_errors_across_and_stops_both_sides() -> None:
    batch = pa.record_batch({"x": [1, 2]})

    def reader(n: int, fail: bool):
        for _ in range(n):
            yield batch
        if fail:
            raise RuntimeError("reader broke")

    got: list = []
    extract._stream(reader(5, False), got.append)
    assert len(got) == 5
    with pytest.raises(RuntimeError, match="reader broke"):
        extract._stream(reader(3, True), got.append)

    def broken_writer(_):
        raise OSError("disk full")

    endless = iter(lambda: batch, None)  # a reader that never ends: the writer's error must still stop it
    with pytest.raises(OSError, match="disk full"):
        extract._stream(endless, broken_writer)
    assert not [t for t in threading.enumerate() if t.name == "extract-read-ahead"]
