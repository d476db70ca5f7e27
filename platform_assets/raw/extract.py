"""OLTP table -> Parquet objects, streamed in bounded Arrow batches.

DuckDB's postgres scanner reads the table with binary COPY (the fastest Arrow path measured here) and
hands out record batches; each batch is checked against the catalog's schema and appended to a Parquet
file in the object store. Memory is bounded by the batch and file size, not by the table size.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from platform_assets.catalog import AUDIT_COLUMN, Table, arrow_schema, pg_type
from platform_assets.oltp.schema import TOMBSTONES
from platform_assets.oltp.seed import duckdb_with_extensions
from platform_assets.partitions import day_bounds
from platform_assets.paths import ROWS, raw_prefix
from platform_assets.paths import TOMBSTONES as TOMBSTONE_FILES
from resources.object_store import ObjectStoreResource
from resources.oltp_postgres import OltpPostgresResource

BATCH_ROWS = 122_880  # a multiple of DuckDB's vector size
ROWS_PER_FILE = 2_000_000


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
            col = col.cast(field.type, safe=True)
        arrays.append(col)
    return pa.RecordBatch.from_arrays(arrays, schema=expected)


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
    actual = dict(oltp_columns(oltp, table.name))
    if not actual:
        return [f"table {table.name}: not found in the OLTP database"]
    declared = {c.name: pg_type(c.type) for c in table.all_columns}
    problems = [
        f"table {table.name}, column {c}: added in the OLTP, not in the catalog" for c in actual if c not in declared
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


def tombstones_sql(table: Table, day: date) -> str:
    """Keys deleted on ``day`` that do not exist again (a re-inserted key is a live row, not a delete)."""
    lo, hi = day_bounds(day)
    keys = [(k, pg_type(table.column(k).type)) for k in table.primary_key]
    select = ", ".join(f"(d.pk->>'{k}')::{t} AS {k}" for k, t in keys)
    live = " AND ".join(f"t.{k} = (d.pk->>'{k}')::{t}" for k, t in keys)
    group = ", ".join(str(i + 1) for i in range(len(keys)))
    return (
        f"SELECT {select}, max(d.deleted_at) AS {AUDIT_COLUMN} FROM {TOMBSTONES} d "
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


def extract_days(
    oltp: OltpPostgresResource,
    store: ObjectStoreResource,
    table: Table,
    days: list[date],
    extension_dir: Path,
) -> ExtractResult:
    """Replace ``raw/<table>/<day>/`` for each day with the rows changed and the keys deleted that day.

    A day without changes ends with no ``part-``/``deleted-`` objects. Landed files (``landed-*``) are left to the
    landing ingestion that wrote them.
    """
    started = time.perf_counter()
    span = f"{days[0]}..{days[-1]}" if len(days) > 1 else str(days[0])
    check_source_columns(oltp, table, span)
    expected, tombs = arrow_schema(table), tombstone_schema(table)
    fs = store.arrow_fs()
    store.ensure_bucket()  # a fresh deployment's object store starts empty
    con = duckdb_with_extensions(extension_dir, "postgres_scanner")
    con.execute("SET threads = 2")
    try:
        con.execute(f"ATTACH '{oltp.conninfo()}' AS oltp (TYPE postgres, READ_ONLY)")
    except Exception as exc:
        raise oltp.unavailable(exc) from None
    tag = uuid.uuid4().hex[:8]
    result = ExtractResult(0, 0, [], 0.0)
    try:
        for day in days:
            prefix = raw_prefix(table.name, day)
            counts = []
            for kind, sql, schema in (
                (ROWS, rows_sql(table, day), expected),
                (TOMBSTONE_FILES, tombstones_sql(table, day), tombs),
            ):
                writer = _Writer(store, fs, prefix, kind, schema, tag)
                try:
                    query = "SELECT * FROM postgres_query('oltp', ?)"
                    reader = con.execute(query, [sql]).to_arrow_reader(BATCH_ROWS)
                    for batch in reader:
                        writer.write(conform_batch(batch, table, schema, str(day)))
                except SchemaMismatchError:
                    raise
                except Exception as exc:  # a column dropped/renamed between the check and the read
                    raise SchemaMismatchError(f"table {table.name}, partition {day}: {exc}") from None
                finally:
                    writer.close()
                result.files.extend(writer.keys)
                counts.append(writer.rows)
            # the new objects are complete: drop what an earlier run of this day left behind
            sizes = dict(store.list_keys(prefix))
            stale = [
                k for k in sizes if k.rsplit("/", 1)[-1].startswith((ROWS, TOMBSTONE_FILES)) and k not in result.files
            ]
            store.delete_keys(stale)
            result.bytes += sum(size for k, size in sizes.items() if k in result.files)
            result.rows += counts[0]
            result.deleted += counts[1]
            result.days.append(DayExtract(day, counts[0], counts[1]))
    finally:
        con.close()
    result.seconds = time.perf_counter() - started
    return result
