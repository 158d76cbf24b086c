"""The result of an analyst's ``sql`` query as a table, CSV, JSON Lines or Parquet (docs/analysts.md).

Money stays exact in every format: a DECIMAL is written with all its digits (``36.23`` in
CSV, the string ``"36.23"`` in JSON, a Parquet DECIMAL of the same precision and scale),
never through a float. A DOUBLE the query itself computes stays a number (allow-float: the
analyst's own arithmetic, not money this pipeline computes).

- ``table``: today's padded text table, at most ``max_rows`` rows (a screenful, for people).
- ``csv``: every row, through the spreadsheet-safe writer of :mod:`reports.csvsafe` (a text
  cell that looks like a formula gets a leading ``'``).
- ``json``: every row, JSON Lines (one object per line, keys in column order): streamable,
  ``jq``-friendly and read by ``polars.read_ndjson``; DECIMAL and HUGEINT become strings,
  dates and times ISO 8601 strings, BLOBs hex strings, NULL ``null``.
- ``parquet``: every row, written by DuckDB's ``COPY (query) TO`` (needs a file).

A file named with ``--out`` is written beside itself and renamed into place when complete, so
a failing query leaves no half file; an existing file is refused unless ``overwrite``.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import IO, Any

import duckdb

from core.db import sql_identifier
from core.errors import UsageProblem
from core.money import Decimal
from reports.csvsafe import csv_bytes
from reports.texttable import cell_text, render_table

__all__ = ["FORMATS", "OutputExists", "write_query_result"]

FORMATS = ("table", "csv", "json", "parquet")
WIDE_INTEGERS = ("HUGEINT", "UHUGEINT")  # beyond what JSON numbers and Parquet integers hold
FETCH_ROWS = 10_000  # rows per fetch when writing every row (CSV, JSON)
JS_SAFE_INT = 2**53 - 1  # integers beyond this lose digits in JavaScript: written as strings


class OutputExists(UsageProblem):
    """``--out`` names a file that exists; results are not silently replaced."""

    default_hint = "choose another --out, delete the file, or pass --overwrite"


def json_value(value: Any) -> Any:
    """A value as JSON can hold it exactly (see the module docstring)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if abs(value) <= JS_SAFE_INT else str(value)
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, float):  # allow-float: a DOUBLE the query computed, not money
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return str(value)


def csv_cell(value: Any) -> object:
    """A value the safe CSV writer accepts: exact numbers and dates as they are, the rest as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None or isinstance(value, int | Decimal | date):
        return value
    if isinstance(value, float):  # allow-float: a DOUBLE the query computed, not money
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, dict | list | tuple):
        return json.dumps(json_value(value), separators=(",", ":"))
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def _batches(cursor: duckdb.DuckDBPyConnection) -> Iterator[list[tuple[Any, ...]]]:
    while rows := cursor.fetchmany(FETCH_ROWS):
        yield rows


@contextmanager
def _destination(out: Path | None, overwrite: bool) -> Iterator[IO[bytes]]:
    """stdout, or a temporary file beside ``out`` renamed into place when the block succeeds."""
    if out is None:
        import sys

        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    tmp = _claim(out, overwrite)
    try:
        with open(tmp, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _claim(out: Path, overwrite: bool) -> Path:
    """Refuse an existing ``out`` (unless ``overwrite``); the temporary name to write first."""
    if out.is_dir():
        raise OutputExists(f"{out} is a directory; --out names the file to write")
    if out.exists() and not overwrite:
        raise OutputExists(f"{out} exists; not replaced")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out.with_name(f".{out.name}.tmp-{os.getpid()}")


def write_query_result(
    con: duckdb.DuckDBPyConnection,
    query: str,
    fmt: str,
    out: Path | None = None,
    *,
    max_rows: int = 200,
    overwrite: bool = False,
    echo: Callable[[str], None] = print,
) -> int | None:
    """Run ``query`` and write its result as ``fmt`` to ``out`` (stdout when None).

    Returns the number of rows written (None for a statement without a result). ``echo``
    prints the table format's text and its "only the first N rows" note.
    """
    if fmt == "parquet":
        return _write_parquet(con, query, out, overwrite)
    cursor = con.execute(query)
    if cursor.description is None:
        return None
    header = [d[0] for d in cursor.description]
    if fmt == "table":
        rows = cursor.fetchmany(max_rows + 1)
        text = render_table(header, [[cell_text(v) for v in row] for row in rows[:max_rows]])
        if out is None:
            echo(text)
        else:
            with _destination(out, overwrite) as handle:
                handle.write((text + "\n").encode("utf-8"))
        if len(rows) > max_rows:
            echo(f"(only the first {max_rows} rows are shown)")
        return min(len(rows), max_rows)
    written = 0
    with _destination(out, overwrite) as handle:
        if fmt == "csv":
            head = csv_bytes(header, [])
            handle.write(head)
            for batch in _batches(cursor):
                handle.write(csv_bytes(header, [[csv_cell(v) for v in row] for row in batch])[len(head) :])
                written += len(batch)
        elif fmt == "json":
            # a HUGEINT column (e.g. a sum of BIGINTs) is strings in every row, not only in the
            # rows past 2^53: a reader gets one type per key
            wide = [str(d[1]).upper() in WIDE_INTEGERS for d in cursor.description]
            for batch in _batches(cursor):
                lines = (
                    json.dumps(
                        {
                            name: (str(value) if is_wide and value is not None else json_value(value))
                            for name, value, is_wide in zip(header, row, wide, strict=True)
                        },
                        ensure_ascii=False,
                    )
                    + "\n"
                    for row in batch
                )
                handle.write("".join(lines).encode("utf-8"))
                written += len(batch)
        else:
            raise ValueError(f"unknown format {fmt!r}; one of {FORMATS}")
    return written


def _write_parquet(con: duckdb.DuckDBPyConnection, query: str, out: Path | None, overwrite: bool) -> int:
    """DuckDB's own Parquet writer: DECIMAL columns keep their precision and scale."""
    if out is None:
        raise UsageProblem("--format parquet writes a file: give --out FILE.parquet")
    tmp = _claim(out, overwrite)
    body = query.strip().rstrip(";").strip()
    try:
        # DuckDB writes a HUGEINT column (a sum of BIGINTs) to Parquet as a DOUBLE: allow-float
        # (names the float this avoids): as DECIMAL(38,0) it stays exact, and every reader takes it (SPEC E3)
        columns = con.execute(f"DESCRIBE ({body})").fetchall()
        wide = [str(name) for name, kind, *_ in columns if str(kind).upper() in WIDE_INTEGERS]
        if wide:
            casts = ", ".join(f"CAST({sql_identifier(n)} AS DECIMAL(38,0)) AS {sql_identifier(n)}" for n in wide)
            body = f"SELECT * REPLACE ({casts}) FROM ({body})"
        row = con.execute(f"COPY ({body}) TO $path (FORMAT parquet)", {"path": str(tmp)}).fetchone()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return int(row[0]) if row else 0
