"""TPC-H reference answers (DuckDB's bundled copy of the published answers) and a tolerant comparison."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

from platform_assets.oltp.seed import duckdb_with_extensions


def reference_answer(query: int, scale_factor: float, extension_dir: Path) -> list[list[str]]:
    con = duckdb_with_extensions(extension_dir, "tpch")
    row = con.execute(
        "SELECT answer FROM tpch_answers() WHERE query_nr = ? AND scale_factor = ?", [query, scale_factor]
    ).fetchone()
    if row is None:
        raise LookupError(f"no TPC-H answer for Q{query} at SF {scale_factor}")
    lines = row[0].strip("\n").split("\n")
    return [line.split("|") for line in lines[1:]]  # drop the header


def _same(expected: str, actual: object) -> bool:
    if isinstance(actual, int | float | Decimal):
        exp, act = float(expected), float(actual)
        return abs(exp - act) <= max(0.01, 1e-9 * abs(exp))
    if isinstance(actual, dt.date):
        return expected == actual.isoformat()
    return expected.strip() == str(actual).strip()


def mismatches(expected: list[list[str]], actual: list[tuple]) -> list[str]:
    """Row-by-row, cell-by-cell differences (empty when the result equals the reference)."""
    problems = []
    if len(expected) != len(actual):
        problems.append(f"{len(actual)} rows, expected {len(expected)}")
    for i, (exp_row, act_row) in enumerate(zip(expected, actual, strict=False)):
        if len(exp_row) != len(act_row):
            problems.append(f"row {i}: {len(act_row)} columns, expected {len(exp_row)}")
            continue
        for j, (e, a) in enumerate(zip(exp_row, act_row, strict=True)):
            if not _same(e, a):
                problems.append(f"row {i} col {j}: {a!r} != {e!r}")
    return problems
