"""OLTP table -> Parquet objects, streamed in bounded Arrow batches.

DuckDB's postgres scanner reads the table with binary COPY (the fastest Arrow path measured here) and
hands out record batches; each batch is checked against the catalog's schema and appended to a Parquet
file in the object store. Reading runs a few batches ahead of writing, in a thread (``_stream``), so decoding
and Parquet encoding overlap. Memory is bounded by the batch and file size, not by the table size.

How a day's rows are read is PostgreSQL's planner's call (``scan_for``, an ``EXPLAIN`` of the day's query):

* it would read the day with a sequential scan (the day is most of the table: the seed day, a full reload, a tiny
  table): DuckDB scans the attached table (``TABLE_SCAN``), split into ctid ranges read by parallel connections
  that share one snapshot, the day's ``updated_at`` range pushed down into each range's ``COPY``;
* it would use the ``updated_at`` index (an ordinary change day): one ``postgres_query`` (``QUERY``) reads
  just that range, so a day's cost follows the rows it changed, not the size of the table.

Both give the same rows with the same types (tested); only their order within a day can differ.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from platform_assets.catalog import AUDIT_COLUMN, Table, arrow_schema, arrow_type, pg_type
from platform_assets.oltp.capture import CHANGE_XID, TOMBSTONE_TABLE
from platform_assets.oltp.seed import duckdb_with_extensions
from platform_assets.partitions import day_bounds, span
from platform_assets.paths import DELETE_FILES, ROW_FILES, raw_prefix
from resources.object_store import ObjectStoreResource
from resources.oltp_postgres import OltpPostgresResource

BATCH_ROWS = 122_880  # a multiple of DuckDB's vector size
ROWS_PER_FILE = 2_000_000
TABLE_SCAN, QUERY = "table_scan", "query"
Scan = Literal["table_scan", "query"]
IN_FLIGHT = 2  # batches read ahead of the Parquet writer (memory stays a few batches, whatever the table size)
WAREHOUSE_DAYS = (date(1900, 1, 1), date(2299, 12, 31))  # ClickHouse's Date32 and DateTime64 range


class SchemaMismatchError(ValueError):
    """The source does not have the columns/types the catalog declares."""


@dataclass
class ExtractResult:
    rows: int
    bytes: int
    files: list[str]
    seconds: float
    deleted: int = 0
    days: list[DayExtract] = dataclasses.field(default_factory=list)


def _same_kind(got: pa.DataType, want: pa.DataType) -> bool:
    """Representation differences that carry the same values (anything else is schema drift)."""
    if pa.types.is_string(want):
        return pa.types.is_large_string(got)
    if pa.types.is_timestamp(want):
        return pa.types.is_timestamp(got) and got.unit in ("us", "ns") and got.tz is not None
    return False


def conform_batch(batch: pa.RecordBatch, table: Table, expected: pa.Schema, partition: str) -> pa.RecordBatch:
    """Cast a batch to the catalog's schema; any missing column, bad type or null names its table/column."""
    where = f"table {table.name}, partition {partition}"
    names = batch.schema.names
    missing = [f.name for f in expected if f.name not in names]
    extra = [n for n in names if n not in expected.names]
    if missing or extra:
        raise SchemaMismatchError(f"{where}: columns missing {missing}, unexpected {extra}")
    arrays = []
    for field in expected:
        col = batch.column(field.name)
        if col.null_count:
            raise SchemaMismatchError(f"{where}, column {field.name}: {col.null_count} null value(s)")
        if col.type != field.type:
            if not _same_kind(col.type, field.type):
                raise SchemaMismatchError(f"{where}, column {field.name}: expected {field.type}, got {col.type}")
            try:
                col = col.cast(field.type, safe=True)
            except pa.ArrowInvalid as exc:  # e.g. nanoseconds a microsecond timestamp cannot hold
                raise SchemaMismatchError(f"{where}, column {field.name}: {exc}") from None
        if outside := _outside_warehouse_range(col):
            raise SchemaMismatchError(
                f"{where}, column {field.name}: {outside[0]} value(s) outside {'..'.join(map(str, WAREHOUSE_DAYS))}, "
                f"the days ClickHouse's Date32/DateTime64 hold (e.g. {outside[1]})"
            )
        arrays.append(col)
    return pa.RecordBatch.from_arrays(arrays, schema=expected)


def _outside_warehouse_range(col: pa.Array) -> tuple[int, object] | None:
    """(count, an example) of the date or timestamp values outside the range ClickHouse documents for its date types
    (chDB keeps them as they are, but its date functions are not defined there)."""
    if not (pa.types.is_date32(col.type) or pa.types.is_timestamp(col.type)) or not len(col):
        return None
    days = col if pa.types.is_date32(col.type) else pc.cast(col, pa.date32())
    lo, hi = (pa.scalar(d, pa.date32()) for d in WAREHOUSE_DAYS)
    bad = pc.or_(pc.less(days, lo), pc.greater(days, hi))
    count = pc.sum(bad).as_py() or 0
    return (count, col.filter(bad)[0].as_py()) if count else None


def oltp_columns(oltp: OltpPostgresResource, table: str) -> list[tuple[str, str]]:
    """(column, PostgreSQL type as the catalog spells it) of the live OLTP table, in column order."""
    with oltp.connect() as conn:
        rows = conn.execute(
            "SELECT column_name, CASE WHEN data_type = 'numeric' "
            "THEN format('numeric(%%s,%%s)', numeric_precision, numeric_scale) "
            "WHEN data_type = 'timestamp with time zone' THEN 'timestamptz' ELSE data_type END "
            "FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s "
            "ORDER BY ordinal_position",
            (table,),
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def schema_drift(oltp: OltpPostgresResource, table: Table) -> list[str]:
    """Every difference between the OLTP table and the catalog, one message per column (empty: no drift)."""
    actual = {name: typ for name, typ in oltp_columns(oltp, table.name) if name != CHANGE_XID}  # capture's own
    if not actual:
        return [f"table {table.name}: not found in the OLTP database"]
    declared = {c.name: pg_type(c.type) for c in table.all_columns}
    problems = [
        f"table {table.name}, column {c}: added in the OLTP, not in the catalog (to replicate it, add it to the "
        "catalog's entry: the warehouse table gains it on the next load and repair_warehouse fills the rows loaded "
        "before)"
        for c in actual
        if c not in declared
    ]
    for name, want in declared.items():
        got = actual.get(name)
        if got is None:
            problems.append(f"table {table.name}, column {name}: dropped from the OLTP")
        elif got != want:
            problems.append(f"table {table.name}, column {name}: retyped in the OLTP, catalog {want}, OLTP {got}")
    return problems


def check_source_columns(oltp: OltpPostgresResource, table: Table, partition: str) -> None:
    """A column added, dropped or retyped in the OLTP table is drift: fail before anything is written."""
    problems = schema_drift(oltp, table)
    if problems:
        raise SchemaMismatchError(f"partition {partition}: schema drift: " + "; ".join(problems))


def rows_sql(table: Table, day: date) -> str:
    """The rows whose latest change happened on ``day`` (a range on the indexed ``updated_at``)."""
    lo, hi = day_bounds(day)
    cols = ", ".join(c.name for c in table.all_columns)
    return f"SELECT {cols} FROM {table.name} WHERE {AUDIT_COLUMN} >= '{lo}' AND {AUDIT_COLUMN} < '{hi}'"


def table_scan_sql(table: Table, day: date, attached: str = "oltp") -> str:
    """The same rows as ``rows_sql``, as DuckDB's scan of the attached table (parallel ctid ranges, the range
    pushed down to PostgreSQL)."""
    lo, hi = day_bounds(day)
    cols = ", ".join(c.name for c in table.all_columns)
    return (
        f"SELECT {cols} FROM {attached}.public.{table.name} "
        f"WHERE {AUDIT_COLUMN} >= TIMESTAMPTZ '{lo}' AND {AUDIT_COLUMN} < TIMESTAMPTZ '{hi}'"
    )


def postgres_query_sql(sql: str, attached: str = "oltp") -> str:
    """``sql`` run by PostgreSQL as one query (a literal, not a bound parameter: DuckDB's Python client imports
    pandas on the first statement with parameters, a cost paid by every run process)."""
    return f"SELECT * FROM postgres_query('{attached}', '" + sql.replace("'", "''") + "')"


def scan_for(conn, table: Table, day: date) -> Scan:
    """``TABLE_SCAN`` when PostgreSQL would read the day's rows with a sequential scan (it expects most of the
    table, or the table is tiny), else ``QUERY`` (an index or bitmap scan of the ``updated_at`` range)."""
    plan = conn.execute("EXPLAIN (FORMAT JSON) " + rows_sql(table, day)).fetchone()[0][0]["Plan"]
    while plan["Node Type"] in ("Gather", "Gather Merge") and plan.get("Plans"):
        plan = plan["Plans"][0]
    return TABLE_SCAN if plan["Node Type"] == "Seq Scan" else QUERY


def tombstones_sql(table: Table, day: date) -> str:
    """Keys deleted on ``day`` that do not exist again (a re-inserted key is a live row, not a delete)."""
    lo, hi = day_bounds(day)
    keys = [(k, pg_type(table.column(k).type)) for k in table.primary_key]
    select = ", ".join(f"(d.pk->>'{k}')::{t} AS {k}" for k, t in keys)
    live = " AND ".join(f"t.{k} = (d.pk->>'{k}')::{t}" for k, t in keys)
    group = ", ".join(str(i + 1) for i in range(len(keys)))
    return (
        f"SELECT {select}, max(d.deleted_at) AS {AUDIT_COLUMN} FROM {TOMBSTONE_TABLE} d "
        f"WHERE d.table_name = '{table.name}' AND d.deleted_at >= '{lo}' AND d.deleted_at < '{hi}' "
        f"AND NOT EXISTS (SELECT 1 FROM {table.name} t WHERE {live}) GROUP BY {group}"
    )


def tombstone_schema(table: Table) -> pa.Schema:
    full = arrow_schema(table)
    return pa.schema([full.field(k) for k in table.primary_key] + [full.field(AUDIT_COLUMN)])


class _Writer:
    """Streams conformed batches into ``<prefix><kind>NNNNN-<tag>.parquet`` objects of bounded size."""

    def __init__(self, store: ObjectStoreResource, fs, prefix: str, kind: str, schema: pa.Schema, tag: str):
        self.store, self.fs, self.prefix, self.kind, self.schema, self.tag = store, fs, prefix, kind, schema, tag
        self.keys: list[str] = []
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._in_file = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if self._writer is None or self._in_file >= ROWS_PER_FILE:
            self.close()
            key = f"{self.prefix}{self.kind}{len(self.keys):05d}-{self.tag}.parquet"
            self._writer = pq.ParquetWriter(
                f"{self.store.bucket}/{key}", self.schema, filesystem=self.fs, compression="zstd"
            )
            self.keys.append(key)
            self._in_file = 0
        self._writer.write_batch(batch, row_group_size=BATCH_ROWS)
        self.rows += batch.num_rows
        self._in_file += batch.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


@dataclass
class DayExtract:
    day: date
    rows: int
    deleted: int
    scan: str = QUERY


_DUCKDB: dict[str, duckdb.DuckDBPyConnection] = {}
_DUCKDB_LOCK = threading.Lock()


def _duckdb(extension_dir: Path) -> duckdb.DuckDBPyConnection:
    """A connection to this process's DuckDB with the postgres extension loaded once (loading it costs as much as
    a small table's whole extract)."""
    with _DUCKDB_LOCK:
        db = _DUCKDB.get(str(extension_dir))
        if db is None:
            db = _DUCKDB[str(extension_dir)] = duckdb_with_extensions(extension_dir, "postgres_scanner")
            db.execute("SET threads = 2")
        return db.cursor()


_END = object()


def _stream(reader: pa.RecordBatchReader, write: Callable[[pa.RecordBatch], None]) -> None:
    """``write`` every batch of ``reader``, reading ahead in a thread: DuckDB (and PostgreSQL behind it) decode the
    next batches while this thread encodes and uploads the last one (both release the GIL). At most ``IN_FLIGHT``
    batches wait; an error on either side stops both and is raised here."""
    ready: queue.Queue = queue.Queue(maxsize=IN_FLIGHT)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in reader:
                if not put(batch):
                    return
        except BaseException as exc:  # handed to the writing thread
            put(exc)
            return
        put(_END)

    thread = threading.Thread(target=read, name="extract-read-ahead", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            write(item)
    finally:
        stop.set()
        thread.join()


def _decimal_columns(table: Table) -> list[str]:
    return [c.name for c in table.columns if pa.types.is_decimal(arrow_type(c.type))]


def not_decimal_sql(table: Table, day: date) -> str | None:
    """Per decimal column of ``table``, its rows changed on ``day`` holding ``NaN`` (None: no decimal column).
    PostgreSQL's ``numeric(p,s)`` takes it (not ``±Infinity``); DuckDB's scanner reads it as 0."""
    cols = _decimal_columns(table)
    if not cols:
        return None
    lo, hi = day_bounds(day)
    counts = ", ".join(f"count(*) FILTER (WHERE {c} = 'NaN')" for c in cols)
    return f"SELECT {counts} FROM {table.name} WHERE {AUDIT_COLUMN} >= '{lo}' AND {AUDIT_COLUMN} < '{hi}'"


def check_decimals(oltp: OltpPostgresResource, table: Table, day: date) -> None:
    """A ``NaN`` in a decimal column is refused (one more read of the day's rows in PostgreSQL, without sending
    them): the extract would store 0 in its place."""
    sql = not_decimal_sql(table, day)
    if sql is None:
        return
    with oltp.connect() as conn:
        counts = conn.execute(sql).fetchone()
    if bad := [f"{c} ({n})" for c, n in zip(_decimal_columns(table), counts, strict=True) if n]:
        raise SchemaMismatchError(
            f"table {table.name}, partition {day}, column {', '.join(bad)}: NaN value(s), which the catalog's decimal "
            "cannot hold; correct them in the OLTP"
        )


def _copy(con, query: str, writer: _Writer, table: Table, day: date, oltp: OltpPostgresResource) -> None:
    """Every row of ``query``, checked against the catalog's schema, into ``writer``'s objects."""
    if writer.kind == ROW_FILES:
        check_decimals(oltp, table, day)
    try:
        reader = con.execute(query).to_arrow_reader(BATCH_ROWS)
        _stream(reader, lambda batch: writer.write(conform_batch(batch, table, writer.schema, str(day))))
    except SchemaMismatchError:
        raise
    except Exception as exc:
        # a column dropped/renamed between the check and the read is drift; anything else (a service restarting,
        # a dropped connection) is raised as it is, to be retried
        if drift := schema_drift(oltp, table):
            raise SchemaMismatchError(f"table {table.name}, partition {day}: {'; '.join(drift)} ({exc})") from None
        raise
    finally:
        writer.close()


def _stored(fs: pafs.FileSystem, bucket: str, prefix: str) -> dict[str, int]:
    """(key, size) of the objects under ``prefix``, through the Arrow filesystem the writer already holds (a boto3
    client costs more to build than a small table's whole extract)."""
    infos = fs.get_file_info(pafs.FileSelector(f"{bucket}/{prefix}", recursive=True, allow_not_found=True))
    return {i.path.split("/", 1)[1]: i.size for i in infos if i.type == pafs.FileType.File}


def extract_days(
    oltp: OltpPostgresResource,
    store: ObjectStoreResource,
    table: Table,
    days: list[date],
    extension_dir: Path,
    scan: Scan | None = None,
) -> ExtractResult:
    """Replace ``raw/<table>/<day>/`` for each day with the rows changed and the keys deleted that day.

    A day without changes ends with no ``part-``/``deleted-`` objects. Landed files (``landed-*``) are left to the
    landing ingestion that wrote them. ``scan`` forces how the rows are read (default: ``scan_for`` each day).
    """
    started = time.perf_counter()
    check_source_columns(oltp, table, span(days))
    expected, tombs = arrow_schema(table), tombstone_schema(table)
    fs = store.arrow_fs()
    if fs.get_file_info(store.bucket).type == pafs.FileType.NotFound:
        store.ensure_bucket()  # a fresh deployment's object store starts empty
    tag = uuid.uuid4().hex[:8]
    attached = f"oltp_{tag}"  # this extract's own catalog, fresh (DDL since an earlier extract is seen)
    con = _duckdb(extension_dir)
    try:
        oltp.attach(con, attached)
    except BaseException:
        con.close()
        raise
    result = ExtractResult(0, 0, [], 0.0)
    try:
        with oltp.connect() as pg:
            scans = {day: scan or scan_for(pg, table, day) for day in days}
        for day in days:
            prefix = raw_prefix(table.name, day)
            if scans[day] == TABLE_SCAN:
                changed = table_scan_sql(table, day, attached)
            else:
                changed = postgres_query_sql(rows_sql(table, day), attached)
            writers = [
                (_Writer(store, fs, prefix, ROW_FILES, expected, tag), changed),
                (
                    _Writer(store, fs, prefix, DELETE_FILES, tombs, tag),
                    postgres_query_sql(tombstones_sql(table, day), attached),
                ),
            ]
            try:
                for writer, query in writers:
                    _copy(con, query, writer, table, day, oltp)
            except BaseException:
                # a day is replaced whole or not at all: what this run wrote of it goes, the earlier objects stay
                with contextlib.suppress(Exception):  # the error that stopped the day is the one to report
                    store.delete_keys([k for w, _ in writers for k in w.keys])
                raise
            new = [k for w, _ in writers for k in w.keys]
            result.files.extend(new)
            # the new objects are complete: drop what an earlier run of this day left behind
            sizes = _stored(fs, store.bucket, prefix)
            stale = [k for k in sizes if k.rsplit("/", 1)[-1].startswith((ROW_FILES, DELETE_FILES)) and k not in new]
            if stale:
                store.delete_keys(stale)
            result.bytes += sum(sizes.get(k, 0) for k in new)
            counts = [w.rows for w, _ in writers]
            result.rows += counts[0]
            result.deleted += counts[1]
            result.days.append(DayExtract(day, counts[0], counts[1], scans[day]))
    finally:
        try:
            con.execute(f"DETACH {attached}")
        finally:
            con.close()
    result.seconds = time.perf_counter() - started
    return result
