"""Where each layer keeps its objects in the bucket (one layout for every engine).

Raw day partitions: ``raw/<table>/<day>/`` holds ``part-*`` (rows extracted from the OLTP), ``deleted-*`` (that
day's tombstones) and ``landed-*`` (files ingested from the landing prefix). Each kind is replaced as a whole by the
step that writes it. Curated tables are Hive-partitioned by change date, so Spark, ClickHouse and pyarrow all read
one day or the whole table from the same layout.
"""

from __future__ import annotations

from datetime import date

# file-name prefixes of a day's raw objects: extracted rows, deleted keys (the OLTP's tombstones), landed files
ROW_FILES, DELETE_FILES, LANDED_FILES = "part-", "deleted-", "landed-"
LANDING = "landing/"


def raw_prefix(table: str, day: date | str | None = None) -> str:
    return f"raw/{table}/" + (f"{day}/" if day is not None else "")


def curated_prefix(name: str, day: date | str | None = None) -> str:
    return f"curated/{name}/" + (f"change_date={day}/" if day is not None else "")


def landing_prefix(table: str | None = None) -> str:
    return LANDING + (f"{table}/" if table else "")
