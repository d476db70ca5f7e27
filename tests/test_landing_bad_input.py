"""Bad input at the raw door (real PostgreSQL and SeaweedFS): a landed file is read a batch at a time and refused
whole, and every value the warehouse would get wrong is refused with one line naming table, column, partition and
file, landed or extracted from the OLTP.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
from collections.abc import Iterator
from decimal import Decimal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from platform_assets.catalog import TABLES_BY_NAME, arrow_schema
from platform_assets.oltp.capture import CHANGE_TIME_SETTING
from platform_assets.paths import landing_prefix, raw_prefix
from platform_assets.raw import landing
from platform_assets.raw.extract import QUERY, TABLE_SCAN, SchemaMismatchError, conform_batch, extract_days
from platform_assets.raw.landing import ingest, landed_key, parse_landing_key
from resources.settings import data_dir

ORDERS = TABLES_BY_NAME["orders"]
DAY = dt.date(1998, 8, 10)
STAMP = dt.datetime(1998, 8, 10, 9, 0, tzinfo=dt.UTC)
FIRST_KEY = 10_000_000  # beyond the OLTP's order keys: the file's rows are its own


@pytest.fixture(scope="module")
def store(object_store):
    """A bucket of this module's own."""
    store = object_store.model_copy(update={"bucket": "test-landing-bad-input"})
    store.ensure_bucket()
    return store


@pytest.fixture
def lake(store):
    """The module's bucket, emptied after each test (a failed test leaves nothing for the next)."""
    yield store
    store.delete_keys([k for k, _ in store.list_keys("")])


def orders(n: int, first: int = FIRST_KEY, comment: str = "landed", **columns) -> pa.Table:
    """``n`` landed orders the OLTP does not hold, changed on ``DAY`` (``columns`` replace some)."""
    data = {
        "o_orderkey": pa.array(range(first, first + n), pa.int64()),
        "o_custkey": pa.array([1] * n, pa.int64()),
        "o_orderstatus": ["O"] * n,
        "o_totalprice": pa.array([Decimal("10.50")] * n, pa.decimal128(15, 2)),
        "o_orderdate": pa.array([DAY] * n, pa.date32()),
        "o_orderpriority": ["1-URGENT"] * n,
        "o_clerk": ["Clerk#1"] * n,
        "o_shippriority": pa.array([0] * n, pa.int32()),
        "o_comment": [comment] * n,
        "updated_at": pa.array([STAMP] * n, pa.timestamp("us", "UTC")),
    }
    data.update(columns)
    return pa.table(data)


def land(store, name: str, body: pa.Table | bytes, table: str = "orders", **parquet) -> landing.LandedFile:
    key = f"{landing_prefix(table)}{DAY}/{name}"
    path, fs = f"{store.bucket}/{key}", store.arrow_fs()
    if isinstance(body, bytes):
        with fs.open_output_stream(path) as out:
            out.write(body)
    elif name.endswith(".csv"):
        with fs.open_output_stream(path) as out:
            pacsv.write_csv(body, out)
    else:
        pq.write_table(body, path, filesystem=fs, **parquet)
    return parse_landing_key(key)


def written(store, table: str = "orders") -> list[str]:
    return sorted(k for k, _ in store.list_keys(raw_prefix(table, DAY)))


def refused(store, oltp, file: landing.LandedFile) -> str:
    """The one-line error of a refused file; nothing of it (nor a staging object) is left in raw/."""
    before = written(store, file.table.name)
    with pytest.raises(SchemaMismatchError) as exc:
        ingest(store, oltp, file)
    message = str(exc.value)
    assert "\n" not in message and file.key in message
    assert f"table {file.table.name}, partition {DAY}" in message
    assert written(store, file.table.name) == before
    return message


# --- reading a landed file a batch at a time --------------------------------------------------------------------


def test_a_landed_file_is_read_and_written_a_batch_at_a_time(seeded, oltp, lake, monkeypatch):
    """pyarrow's allocations while a file of 40 row groups is ingested stay a fraction of the file's decoded size
    (reading it whole, as ``pq.read_table`` did, needs all of it at once)."""
    monkeypatch.setattr(landing, "BATCH_ROWS", 8192)
    groups, group_rows = 40, 8192
    key = f"{landing_prefix('orders')}{DAY}/many-groups.parquet"
    decoded = 0
    with pq.ParquetWriter(f"{lake.bucket}/{key}", arrow_schema(ORDERS), filesystem=lake.arrow_fs()) as writer:
        for g in range(groups):  # long repeated comments: a small file that decodes to over 100 MB
            batch = orders(group_rows, FIRST_KEY + g * group_rows, comment="x" * 300).cast(arrow_schema(ORDERS))
            writer.write_table(batch, row_group_size=group_rows)
            decoded += batch.nbytes
    file = parse_landing_key(key)
    assert pq.ParquetFile(f"{lake.bucket}/{key}", filesystem=lake.arrow_fs()).num_row_groups == groups

    pool, default = pa.proxy_memory_pool(pa.default_memory_pool()), pa.default_memory_pool()
    pa.set_memory_pool(pool)  # its own statistics: the peak of this ingestion alone
    try:
        target, rows = ingest(lake, oltp, file)
    finally:
        pa.set_memory_pool(default)
    assert rows == groups * group_rows == lake.parquet_rows(target)
    assert decoded > 100e6 and pool.max_memory() < decoded / 4, (pool.max_memory(), decoded)
    # ingesting it again replaces its raw object: one object, no staging left behind
    ingest(lake, oltp, file)
    assert written(lake) == [target]


def test_a_file_failing_in_its_last_batch_is_refused_whole_and_its_earlier_version_stays(
    seeded, oltp, lake, monkeypatch
):
    monkeypatch.setattr(landing, "BATCH_ROWS", 1000)
    good = land(lake, "late.parquet", orders(5000))
    target, _ = ingest(lake, oltp, good)
    before = pq.read_table(f"{lake.bucket}/{target}", filesystem=lake.arrow_fs())
    # the same file uploaded again, its last row group with a null: four batches pass before it is read
    bad = orders(5000, o_clerk=pa.array(["Clerk#1"] * 4999 + [None]))
    land(lake, "late.parquet", bad, row_group_size=1000)
    message = refused(lake, oltp, good)
    assert message.endswith("column o_clerk: 1 null value(s)")
    assert written(lake) == [target]
    assert pq.read_table(f"{lake.bucket}/{target}", filesystem=lake.arrow_fs()).equals(before)


def test_duplicate_keys_in_one_file_are_refused_naming_them(seeded, oltp, lake, monkeypatch):
    """Keys repeated in one batch and across batches (once silently dropped: the file was deduplicated)."""
    monkeypatch.setattr(landing, "BATCH_ROWS", 1000)
    keys = list(range(FIRST_KEY, FIRST_KEY + 3000))
    keys[10] = keys[11] = keys[2999] = FIRST_KEY + 5  # in the first batch, and again in the last
    keys[1500] = FIRST_KEY + 1000
    file = land(lake, "dups.parquet", orders(3000, o_orderkey=pa.array(keys, pa.int64())), row_group_size=1000)
    assert refused(lake, oltp, file).endswith(
        f"column o_orderkey: 2 key(s) appear more than once ({FIRST_KEY + 5}, {FIRST_KEY + 1000}); a file holds one "
        "row per key, so it is refused"
    )
    partsupp = TABLES_BY_NAME["partsupp"]
    rows = pa.table(
        {"ps_partkey": pa.array([900_001, 900_001, 900_002, 900_001], pa.int64()),
         "ps_suppkey": pa.array([7, 8, 7, 7], pa.int64()), "ps_availqty": pa.array([1] * 4, pa.int64()),
         "ps_supplycost": pa.array([Decimal("1.00")] * 4, pa.decimal128(15, 2)), "ps_comment": ["c"] * 4,
         "updated_at": pa.array([STAMP] * 4, pa.timestamp("us", "UTC"))},
        schema=arrow_schema(partsupp),
    )  # fmt: skip
    file = land(lake, "dups.csv", rows, table="partsupp")
    assert refused(lake, oltp, file).endswith(
        "column ps_partkey, ps_suppkey: 1 key(s) appear more than once ((900001, 7)); a file holds one row per key, "
        "so it is refused"
    )


# --- files and values Arrow cannot read, or the warehouse cannot hold -----------------------------------------


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _csv(text: str) -> bytes:
    header = "o_orderkey,o_custkey,o_orderstatus,o_totalprice,o_orderdate,o_orderpriority,o_clerk,o_shippriority,"
    return (header + "o_comment,updated_at\n" + text).encode()


ROW = "10000001,1,O,{price},{date},1-URGENT,Clerk#1,0,c,1998-08-10T09:00:00Z\n"
NANOS = pa.array([int(STAMP.timestamp()) * 10**9 + 1], pa.int64()).cast(pa.timestamp("ns", "UTC"))
BAD_FILES = [
    ("empty.parquet", b"", "Parquet file size is 0 bytes"),
    ("empty.csv", b"", "cannot read: Empty CSV file"),
    ("truncated.parquet", _parquet_bytes(orders(100))[:1000], "Parquet magic bytes not found"),
    ("not-parquet.parquet", _csv(ROW.format(price="1.00", date=DAY)), "Parquet magic bytes not found"),
    ("letter.csv", _csv(ROW.replace(",1,O,", ",x,O,").format(price="1.00", date=DAY)),
     "cannot read: column o_custkey: CSV conversion error to int64: invalid value 'x'"),
    ("scale.csv", _csv(ROW.format(price="1.005", date=DAY)),
     "cannot read: column o_totalprice: Rescaling Decimal value would cause data loss"),
    ("scale.parquet", _parquet_bytes(orders(1, o_totalprice=pa.array([Decimal("1.005")], pa.decimal128(15, 3)))),
     "column o_totalprice: expected decimal128(15, 2), got decimal128(15, 3)"),
    ("old.csv", _csv(ROW.format(price="1.00", date="1899-12-31")),
     "column o_orderdate: 1 value(s) outside 1900-01-01..2299-12-31, the days ClickHouse's Date32/DateTime64 hold "
     "(e.g. 1899-12-31)"),
    ("future.parquet", _parquet_bytes(orders(3, o_orderdate=pa.array([DAY, dt.date(2300, 1, 1), DAY]))),
     "column o_orderdate: 1 value(s) outside 1900-01-01..2299-12-31"),
    ("nanos.parquet", _parquet_bytes(orders(1, updated_at=NANOS)),
     "column updated_at: Casting from timestamp[ns, tz=UTC] to timestamp[us, tz=UTC] would lose data"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "body", "reason"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_a_file_arrow_cannot_read_or_the_warehouse_cannot_hold_is_refused_naming_it(
    seeded, oltp, lake, name, body, reason
):
    message = refused(lake, oltp, land(lake, name, body))
    assert reason in message, message
    if "column " in reason:
        assert message.index("column ") > message.index(f"partition {DAY}")  # file, table, partition, column


def test_a_csv_row_longer_than_a_block_is_refused_and_a_long_parquet_string_kept(seeded, oltp, lake, monkeypatch):
    """The catalog declares no string lengths (text, String): a long value is carried as it is, except a CSV row
    longer than the reader's block, refused naming the limit."""
    monkeypatch.setattr(landing, "CSV_BLOCK_BYTES", 1 << 16)
    long = "y" * (1 << 17)
    message = refused(lake, oltp, land(lake, "long.csv", _csv(ROW.replace(",c,", f",{long},").format(
        price="1.00", date=DAY))))  # fmt: skip
    assert message.endswith("cannot read: a row longer than 65536 bytes (an overlong value or an unclosed quote)")
    target, rows = ingest(lake, oltp, land(lake, "long.parquet", orders(2, comment=long)))
    assert rows == 2
    assert pq.read_table(f"{lake.bucket}/{target}", filesystem=lake.arrow_fs())["o_comment"].to_pylist() == [long] * 2


def test_landed_key_is_stable_per_landing_key():
    file = parse_landing_key(f"{landing_prefix('orders')}{DAY}/a.parquet")
    assert landed_key(file) == landed_key(parse_landing_key(file.key)) != landing.staging_key(file)
    assert landing.staging_key(file).rsplit("/", 1)[1].startswith("_staging-")


def test_conform_batch_refuses_dates_clickhouse_cannot_hold():
    schema = arrow_schema(ORDERS)
    batch = orders(2, o_orderdate=pa.array([dt.date(1900, 1, 1), dt.date(2299, 12, 31)])).cast(schema).to_batches()[0]
    assert conform_batch(batch, ORDERS, schema, "p").num_rows == 2  # the range's own ends are kept
    early = orders(1, updated_at=pa.array([dt.datetime(1899, 12, 31, 23, tzinfo=dt.UTC)], pa.timestamp("us", "UTC")))
    with pytest.raises(
        SchemaMismatchError, match=r"table orders, partition p, column updated_at: 1 value\(s\) outside"
    ):
        conform_batch(early.cast(schema).to_batches()[0], ORDERS, schema, "p")


# --- values in the OLTP the warehouse would get wrong -----------------------------------------------------------


def _change(oltp, day: dt.date, sql: str) -> None:
    with oltp.connect(autocommit=True) as conn:  # the capture trigger stamps the session's change time
        conn.execute("SELECT set_config(%s, %s, false)", (CHANGE_TIME_SETTING, f"{day} 12:00:00+00"))
        conn.execute(sql)


def _extract(oltp, store, table: str, day: dt.date, scan: str):
    return extract_days(oltp, store, TABLES_BY_NAME[table], [day], data_dir() / "duckdb_extensions", scan=scan)


@contextlib.contextmanager
def changed(oltp, day: dt.date, sql: str, undo: str) -> Iterator[None]:
    """``sql`` applied on ``day`` in the module's database while the block runs, then ``undo``."""
    _change(oltp, day, sql)
    try:
        yield
    finally:
        _change(oltp, day, undo)


@pytest.mark.parametrize("scan", [QUERY, TABLE_SCAN])
def test_nan_in_a_numeric_oltp_column_is_refused_not_read_as_zero(oltp_copy, lake, scan):
    """PostgreSQL's numeric(15,2) holds NaN (not ±Infinity); DuckDB's scanner read it as 0.00 (a silent wrong
    balance)."""
    day = dt.date(1998, 8, 20)
    _change(oltp_copy, day, "UPDATE supplier SET s_acctbal = 1 WHERE s_suppkey = 2")
    assert _extract(oltp_copy, lake, "supplier", day, scan).rows > 0  # the day extracts while its values are good
    before = sorted(lake.list_keys(raw_prefix("supplier", day)))
    with (
        changed(oltp_copy, day, "UPDATE supplier SET s_acctbal = 'NaN' WHERE s_suppkey = 1",
                "UPDATE supplier SET s_acctbal = 0 WHERE s_suppkey = 1"),
        pytest.raises(SchemaMismatchError) as exc,
    ):  # fmt: skip
        _extract(oltp_copy, lake, "supplier", day, scan)
    assert str(exc.value) == (
        f"table supplier, partition {day}, column s_acctbal (1): NaN value(s), which the catalog's decimal cannot "
        "hold; correct them in the OLTP"
    )
    assert sorted(lake.list_keys(raw_prefix("supplier", day))) == before  # what was extracted stays


@pytest.mark.parametrize("value", ["1899-12-31", "2300-01-01"])
def test_an_oltp_date_clickhouse_cannot_hold_is_refused_at_the_extract(oltp_copy, lake, value):
    """ClickHouse documents Date32 for 1900-01-01..2299-12-31 (PostgreSQL's date holds far more); chDB stored
    1800-01-01 read from Parquet as it is, outside that range. The day is refused where the value enters."""
    day = dt.date(1998, 8, 21)
    with (
        changed(oltp_copy, day, f"UPDATE orders SET o_orderdate = '{value}' WHERE o_orderkey = 1",
                "UPDATE orders SET o_orderdate = '1996-01-02' WHERE o_orderkey = 1"),
        pytest.raises(SchemaMismatchError) as exc,
    ):  # fmt: skip
        _extract(oltp_copy, lake, "orders", day, QUERY)
    assert str(exc.value) == (
        f"table orders, partition {day}, column o_orderdate: 1 value(s) outside 1900-01-01..2299-12-31, the days "
        f"ClickHouse's Date32/DateTime64 hold (e.g. {value})"
    )
    assert not lake.list_keys(raw_prefix("orders", day))
