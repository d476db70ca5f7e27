"""Files dropped under ``landing/<table>/<day>/`` (Parquet or CSV) become raw objects of that table and day.

The file is read with the catalog's schema, every row is checked (types, nulls, ``updated_at`` on the day the path
names, and no key the OLTP holds: the OLTP is the source of truth for its keys, so a landed row must not replace
one) and written as ``raw/<table>/<day>/landed-<id>.parquet``, where ``<id>`` derives from the landing key:
ingesting the same file again replaces its raw object, never adds a second one. From there the file takes the same
path as OLTP changes: curated (Spark) and the warehouse.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
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


def landed_key(file: LandedFile) -> str:
    digest = hashlib.sha1(file.key.encode()).hexdigest()[:12]
    return f"{raw_prefix(file.table.name, file.day)}{LANDED_FILES}{digest}.parquet"


def _read(store: ObjectStoreResource, file: LandedFile, schema: pa.Schema) -> pa.Table:
    path = f"{store.bucket}/{file.key}"
    fs = store.arrow_fs()
    if file.fmt == "parquet":
        return pq.read_table(path, filesystem=fs)
    with fs.open_input_stream(path) as stream:
        return pacsv.read_csv(
            stream, convert_options=pacsv.ConvertOptions(column_types=schema, strings_can_be_null=False)
        )


def ingest(store: ObjectStoreResource, oltp: OltpPostgresResource, file: LandedFile) -> tuple[str, int]:
    """Validate a landed file against the catalog and the OLTP's keys and write it as a raw object of its day;
    (raw key, rows). A file that fails is refused whole: nothing of it is written."""
    table, schema = file.table, arrow_schema(file.table)
    where = f"{file.key} (table {table.name}, partition {file.day})"
    try:
        data = _read(store, file, schema)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SchemaMismatchError(f"{where}: cannot read: {str(exc).splitlines()[0]}") from None
    batches = [conform_batch(b, table, schema, f"{file.day} of {file.key}") for b in data.to_batches()]
    conformed = pa.Table.from_batches(batches, schema=schema)
    days = pc.cast(conformed.column(AUDIT_COLUMN), pa.date32())
    outside = (pc.sum(pc.not_equal(days, pa.scalar(file.day, pa.date32()))).as_py() or 0) if len(conformed) else 0
    if outside:
        raise SchemaMismatchError(f"{where}, column {AUDIT_COLUMN}: {outside} row(s) not changed on {file.day}")
    keys = sorted(set(zip(*(conformed.column(k).to_pylist() for k in table.primary_key), strict=True)))
    held = sorted(held_by_oltp(oltp, table, keys))
    if held:
        shown = ", ".join(str(k[0] if len(k) == 1 else k) for k in held[:5]) + (", …" if len(held) > 5 else "")
        raise SchemaMismatchError(
            f"{where}, column {', '.join(table.primary_key)}: {len(held)} key(s) the OLTP holds ({shown}); the OLTP "
            "is their source of truth, so the file is refused (land only keys the OLTP does not have)"
        )
    target = landed_key(file)
    pq.write_table(conformed, f"{store.bucket}/{target}", filesystem=store.arrow_fs(), compression="zstd")
    return target, conformed.num_rows
