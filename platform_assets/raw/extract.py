"""OLTP table -> Parquet objects, streamed in bounded Arrow batches.

DuckDB's postgres scanner reads the table with binary COPY (the fastest Arrow path measured here) and
hands out record batches; each batch is checked against the catalog's schema and appended to a Parquet
file in the object store. Memory is bounded by the batch and file size, not by the table size.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from platform_assets.catalog import Table, arrow_schema
from platform_assets.oltp.seed import duckdb_with_extensions
from platform_assets.paths import raw_prefix
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


def check_source_columns(oltp: OltpPostgresResource, table: Table, partition: str) -> None:
    """A column added to or dropped from the OLTP table is drift: fail before anything is written."""
    with oltp.connect() as conn:
        actual = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
                "AND table_name = %s ORDER BY ordinal_position",
                (table.name,),
            )
        ]
    if not actual:
        raise SchemaMismatchError(f"table {table.name}, partition {partition}: table not found in the OLTP database")
    declared = [c.name for c in table.all_columns]
    added = [c for c in actual if c not in declared]
    dropped = [c for c in declared if c not in actual]
    if added or dropped:
        raise SchemaMismatchError(
            f"table {table.name}, partition {partition}: schema drift, column(s) added {added}, dropped {dropped}"
        )


def extract_table(
    oltp: OltpPostgresResource,
    store: ObjectStoreResource,
    table: Table,
    extension_dir: Path,
    partition: str = "full",
    where_sql: str | None = None,
) -> ExtractResult:
    """Replace the objects of ``raw/<table>/<partition>/`` with the rows of the OLTP table (or a slice)."""
    started = time.perf_counter()
    expected = arrow_schema(table)
    prefix = raw_prefix(table.name, partition)
    fs = store.arrow_fs()
    check_source_columns(oltp, table, partition)
    store.ensure_bucket()  # a fresh deployment's object store starts empty
    con = duckdb_with_extensions(extension_dir, "postgres_scanner")
    con.execute("SET threads = 2")
    try:
        con.execute(f"ATTACH '{oltp.conninfo()}' AS oltp (TYPE postgres, READ_ONLY)")
    except Exception as exc:
        raise oltp.unavailable(exc) from None
    cols = ", ".join(f.name for f in expected)
    sql = f"SELECT {cols} FROM oltp.public.{table.name}"
    if where_sql:
        sql += f" WHERE {where_sql}"
    try:
        reader = con.execute(sql).to_arrow_reader(BATCH_ROWS)
    except Exception as exc:  # a dropped/renamed column surfaces here
        raise SchemaMismatchError(f"table {table.name}, partition {partition}: {exc}") from None

    run_tag = uuid.uuid4().hex[:8]
    written: list[str] = []
    rows = 0
    writer: pq.ParquetWriter | None = None
    rows_in_file = 0
    try:
        for batch in reader:
            batch = conform_batch(batch, table, expected, partition)
            if writer is None or rows_in_file >= ROWS_PER_FILE:
                if writer is not None:
                    writer.close()
                key = f"{prefix}part-{len(written):05d}-{run_tag}.parquet"
                writer = pq.ParquetWriter(f"{store.bucket}/{key}", expected, filesystem=fs, compression="zstd")
                written.append(key)
                rows_in_file = 0
            writer.write_batch(batch, row_group_size=BATCH_ROWS)
            rows += batch.num_rows
            rows_in_file += batch.num_rows
        if writer is None:  # empty table: still one (empty) file, so readers see the schema
            key = f"{prefix}part-00000-{run_tag}.parquet"
            pq.write_table(expected.empty_table(), f"{store.bucket}/{key}", filesystem=fs)
            written.append(key)
    finally:
        if writer is not None:
            writer.close()
        con.close()
    # the new objects are complete: drop whatever an earlier run left under the prefix
    sizes = dict(store.list_keys(prefix))
    stale = [k for k in sizes if k not in written]
    store.delete_keys(stale)
    return ExtractResult(rows, sum(sizes[k] for k in written), written, time.perf_counter() - started)
