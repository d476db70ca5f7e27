"""Shared asset conventions: owners, node tags, column schemas and Markdown for the UI."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

import dagster as dg

from platform_assets.catalog import Table, column_meaning

OWNERS = ["team:data-platform"]


def node_tags(node: str) -> dict[str, str]:
    """Shows in the UI which of the three nodes does the work of an asset."""
    return {"platform/node": node}


def version_of(*parts: str) -> str:
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:12]


def code_version(spec: object, *logic: str) -> str:
    """An asset's code version from what defines it: its catalog entry (columns, types, keys) and its layer's logic
    (SQL, the transform's source), so the UI marks exactly the assets a change touched, with no number to bump."""
    return version_of(repr(spec), *logic)


def column_schema(columns: Iterable[tuple[str, str]]) -> dg.TableSchema:
    """The UI's column table: name, type and what the column means (the catalog's TPC-H meanings)."""
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(typ), description=column_meaning(name)) for name, typ in columns]
    )


def catalog_columns(table: Table) -> list[tuple[str, str]]:
    return [(c.name, c.type) for c in table.all_columns]


def describe(summary: str, table: Table | None = None, extra: str = "") -> str:
    """Asset description in Markdown: what it is, then the catalog's columns and keys."""
    text = summary.strip()
    if table is not None:
        text += f"\n\n**Primary key:** `{', '.join(table.primary_key)}` · **cursor:** `{table.cursor_column}`"
        text += "\n\n| column | type | meaning |\n|---|---|---|\n"
        text += "\n".join(f"| `{c.name}` | {c.type} | {column_meaning(c.name) or ''} |" for c in table.all_columns)
    if extra:
        text += "\n\n" + extra.strip()
    return text


# Every ASCII punctuation character: CommonMark lets a backslash make any of them literal, so escaping them all leaves
# no link, image, emphasis, code span, HTML, entity or autolink for a value to start, whatever its text.
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def markdown_text(value: object) -> str:
    """``value`` as Markdown that renders as its literal text on one line: cells hold OLTP text (``c_comment``), which
    must not become links, images or HTML in the UI, nor end a table row with a line break (shown as a space)."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", " ".join(str(value).splitlines()))


def markdown_preview(header: Sequence[str], rows: Sequence[Sequence[object]], limit: int = 10) -> str:
    lines = ["| " + " | ".join(markdown_text(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(markdown_text(v) for v in row) + " |" for row in rows[:limit]]
    return "\n".join(lines)


# Seconds a step spent on the checks it runs itself (a null-key scan before a load, check results yielded with the
# materialization), kept apart from ``seconds`` (the engine work) so the benchmark can tell them from Dagster's own.
CHECK_SECONDS = "check_seconds"


def timing(rows: int, nbytes: int, seconds: float) -> dict[str, object]:
    return {
        "dagster/row_count": rows,
        "bytes": nbytes,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds) if seconds > 0 else 0,
    }
