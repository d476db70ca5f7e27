"""Files dropped under ``landing/<table>/<day>/`` (Parquet or CSV) become raw objects of that table and day.

The file is read as a stream of record batches (never whole: memory is a batch, plus the file's key columns for the
duplicate check), with the catalog's schema. Every row is checked (types, nulls, dates ClickHouse can hold,
``updated_at`` on the day the path names, each key once, and no key the OLTP holds: the OLTP is the source of truth
for its keys, so a landed row must not replace one). The batches are written as they are checked to a staging object
of the day (``_staging-*``: no reader picks it up), copied to ``raw/<table>/<day>/landed-<id>.parquet`` only once
the whole file has passed, and deleted either way: a file that fails is refused whole, nothing of it is written.
``<id>`` derives from the landing key, so ingesting the same file again replaces its raw object, never adds a second
one. From there the file takes the same path as OLTP changes: curated (Spark) and the warehouse.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from platform_assets.catalog import AUDIT_COLUMN, TABLES_BY_NAME, Table, arrow_schema
from platform_assets.oltp.keys import held_by_oltp
from platform_assets.paths import LANDED_FILES, LANDING, raw_prefix
from platform_assets.raw.extract import SchemaMismatchError, conform_batch
from resources.object_store import ObjectStoreResource
from resources.oltp_postgres import OltpPostgresResource

LANDING_KEY = re.compile(
    LANDING + r"(?P<table>[a-z_][a-z0-9_]*)/(?P<day>\d{4}-\d{2}-\d{2})/[^/]+\.(?P<fmt>parquet|csv)$"
)
BATCH_ROWS = 65_536  # rows per batch read from a landed Parquet file
CSV_BLOCK_BYTES = 16 << 20  # bytes per CSV block, so also the longest row a landed CSV may have
STAGING = "_staging-"  # name prefix of a file's raw object while it is checked (no reader lists it)
SHOWN = 5  # offending keys named in an error
_CSV_COLUMN = re.compile(r"^In CSV column #(\d+): ")


@dataclass(frozen=True)
class LandedFile:
    key: str
    table: Table
    day: date
    fmt: str


def parse_landing_key(key: str) -> LandedFile:
    """``landing/<table>/<YYYY-MM-DD>/<name>.parquet|csv`` -> what it holds; anything else is a clear error."""
    m = LANDING_KEY.fullmatch(key)
    if not m:
        raise ValueError(f"{key}: expected {LANDING}<table>/<YYYY-MM-DD>/<name>.parquet|csv")
    if m["table"] not in TABLES_BY_NAME:
        raise ValueError(f"{key}: table {m['table']!r} is not in the catalog")
    try:
        day = date.fromisoformat(m["day"])
    except ValueError:
        raise ValueError(f"{key}: {m['day']!r} is not a day") from None
    return LandedFile(key, TABLES_BY_NAME[m["table"]], day, m["fmt"])


def _digest(file: LandedFile) -> str:
    return hashlib.sha1(file.key.encode()).hexdigest()[:12]


def landed_key(file: LandedFile) -> str:
    return f"{raw_prefix(file.table.name, file.day)}{LANDED_FILES}{_digest(file)}.parquet"


def staging_key(file: LandedFile) -> str:
    """Where the file is written while it is checked: one per landing key, so a run that died leaves at most one,
    which the next ingestion of the file replaces and deletes."""
    return f"{raw_prefix(file.table.name, file.day)}{STAGING}{LANDED_FILES}{_digest(file)}.parquet"


def _csv_names(fs: pafs.FileSystem, path: str) -> list[str]:
    """The CSV's column names in file order (its first block read without the catalog's types: cannot fail on
    a value)."""
    with fs.open_input_stream(path) as stream:
        return pacsv.open_csv(stream, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES)).schema.names


def _reason(exc: Exception, fs: pafs.FileSystem, path: str, fmt: str) -> str:
    """Arrow's error as one line, with the CSV column named instead of numbered."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if fmt == "csv" and (m := _CSV_COLUMN.match(reason)):
        with contextlib.suppress(pa.ArrowException, OSError, IndexError):
            reason = f"column {_csv_names(fs, path)[int(m[1])]}: {reason[m.end() :]}"
    elif "straddles two block boundaries" in reason:
        reason = f"a row longer than {CSV_BLOCK_BYTES} bytes (an overlong value or an unclosed quote)"
    return reason


def _batches(store: ObjectStoreResource, file: LandedFile, schema: pa.Schema, where: str) -> Iterator[pa.RecordBatch]:
    """The landed file's record batches, read as a stream; a file Arrow cannot read is a clear error."""
    path, fs = f"{store.bucket}/{file.key}", store.arrow_fs()
    try:
        if file.fmt == "parquet":
            with fs.open_input_file(path) as source:
                yield from pq.ParquetFile(source).iter_batches(batch_size=BATCH_ROWS)
        else:
            with fs.open_input_stream(path) as stream:
                yield from pacsv.open_csv(
                    stream,
                    read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                    convert_options=pacsv.ConvertOptions(column_types=schema, strings_can_be_null=False),
                )
    except (pa.ArrowException, OSError) as exc:
        raise SchemaMismatchError(f"{where}: cannot read: {_reason(exc, fs, path, file.fmt)}") from None


def _shown(keys: list[tuple], total: int) -> str:
    return ", ".join(str(k[0] if len(k) == 1 else k) for k in keys[:SHOWN]) + (", …" if total > SHOWN else "")


@dataclass
class _FileChecks:
    """The checks that span the whole file, fed batch by batch: rows off the day, keys the OLTP holds (looked up a
    batch at a time), keys that appear twice (the key columns are kept: a few bytes a row)."""

    oltp: OltpPostgresResource
    file: LandedFile
    where: str
    outside: int = 0
    held: list[tuple] = field(default_factory=list)
    keys: list[pa.RecordBatch] = field(default_factory=list)

    def add(self, batch: pa.RecordBatch) -> None:
        table, pk = self.file.table, list(self.file.table.primary_key)
        days = pc.cast(batch.column(AUDIT_COLUMN), pa.date32())
        self.outside += pc.sum(pc.not_equal(days, pa.scalar(self.file.day, pa.date32()))).as_py() or 0
        keys = batch.select(pk)
        self.keys.append(keys)
        rows = list(zip(*(keys.column(k).to_pylist() for k in pk), strict=True))
        self.held.extend(held_by_oltp(self.oltp, table, sorted(set(rows))))

    def duplicates(self) -> tuple[int, list[tuple]]:
        """(number of keys that appear more than once, the first few of them)."""
        pk = list(self.file.table.primary_key)
        if not self.keys:
            return 0, []
        counts = pa.Table.from_batches(self.keys).group_by(pk).aggregate([([], "count_all")])
        dups = counts.filter(pc.greater(counts["count_all"], 1)).select(pk)
        first = dups.sort_by([(k, "ascending") for k in pk]).slice(0, SHOWN)
        return dups.num_rows, list(zip(*(first.column(k).to_pylist() for k in pk), strict=True))

    def refuse(self) -> None:
        """Raise the first reason to refuse the file, if any."""
        day, pk = self.file.day, ", ".join(self.file.table.primary_key)
        if self.outside:
            raise SchemaMismatchError(
                f"{self.where}, column {AUDIT_COLUMN}: {self.outside} row(s) not changed on {day}"
            )
        n, dups = self.duplicates()
        if n:
            raise SchemaMismatchError(
                f"{self.where}, column {pk}: {n} key(s) appear more than once ({_shown(dups, n)}); a file holds one "
                "row per key, so it is refused"
            )
        if self.held:
            held = sorted(set(self.held))
            raise SchemaMismatchError(
                f"{self.where}, column {pk}: {len(held)} key(s) the OLTP holds ({_shown(held, len(held))}); the OLTP "
                f"is their source of truth, so the file is refused (land only keys the OLTP does not have)"
            )


def ingest(store: ObjectStoreResource, oltp: OltpPostgresResource, file: LandedFile) -> tuple[str, int]:
    """Validate a landed file against the catalog and the OLTP's keys and write it as a raw object of its day;
    (raw key, rows). A file that fails is refused whole: nothing of it is written."""
    table, schema = file.table, arrow_schema(file.table)
    where = f"{file.key} (table {table.name}, partition {file.day})"
    checks, rows = _FileChecks(oltp, file, where), 0
    staging, target = staging_key(file), landed_key(file)
    try:
        with pq.ParquetWriter(
            f"{store.bucket}/{staging}", schema, filesystem=store.arrow_fs(), compression="zstd"
        ) as writer:
            for batch in _batches(store, file, schema, where):
                conformed = conform_batch(batch, table, schema, f"{file.day} of {file.key}")
                checks.add(conformed)
                writer.write_batch(conformed)
                rows += conformed.num_rows
        checks.refuse()
        # the whole file passed: it replaces its raw object in one step (a server-side copy)
        store.client().copy({"Bucket": store.bucket, "Key": staging}, store.bucket, target)
    finally:
        with contextlib.suppress(Exception):  # the error that stopped the ingestion is the one to report
            store.delete_keys([staging])
    return target, rows
