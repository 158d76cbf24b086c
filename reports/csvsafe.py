"""CSV files that are safe to open in a spreadsheet (SPEC section 6).

A text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would be run
as a formula by Excel, LibreOffice or Google Sheets; it is written with a leading ``'`` so it
stays text. The same holds after every line break inside a cell (``\r`` or ``\n`` followed by
one of ``= + - @ \t`` gets a ``'`` in between): a reader that splits lines itself, or a
spreadsheet import that treats CR as a row end, would otherwise start a row with a live formula.
Every cell holding a CR, an LF, the delimiter or the quote character is quoted (Python's
``csv`` module with ``lineterminator="\n"`` leaves a lone CR unquoted, so the quoting is ours).

Numbers are passed as ``int`` or ``Decimal`` and written exactly, so a negative amount stays
the number ``-1.23``. An amount that arrives as a string is text and gets neutralized like any
other string: pass numbers as numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path

from core.money import D, Decimal

from .atomic import write_atomic

__all__ = ["FORMULA_PREFIXES", "csv_bytes", "neutralize", "sql_csv_lines", "sql_neutralized", "write_csv"]

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# a formula start right after a line break inside a cell (CR and LF are not in the class: a
# match never overlaps the next one, so Python's re and DuckDB's RE2 give the same text)
AFTER_BREAK_PATTERN = r"([\r\n])([=+\-@\t])"
_AFTER_BREAK = re.compile(AFTER_BREAK_PATTERN)
# a cell holding any of these is quoted (the delimiter, the quote character, CR, LF)
QUOTE_TRIGGERS = (",", '"', "\r", "\n")


def neutralize(cell: object) -> str:
    """The text of one CSV cell: formula-looking strings quoted with ', numbers exact.

    >>> neutralize("=1+1"), neutralize(D("-1.23")), neutralize(None)
    ("'=1+1", '-1.23', '')
    """
    if cell is None:
        return ""
    if isinstance(cell, str):
        text = "'" + cell if cell.startswith(FORMULA_PREFIXES) else cell
        return _AFTER_BREAK.sub(r"\1'\2", text) if "\r" in text or "\n" in text else text
    if isinstance(cell, bool):
        raise TypeError("a bool is not a CSV cell; write 'true'/'false' or 1/0 explicitly")
    if isinstance(cell, int):
        return str(cell)
    if isinstance(cell, Decimal):
        value = D(cell)  # refuses NaN and infinities
        return f"{abs(value) if value == 0 else value:f}"  # no exponent, no '-0'
    if isinstance(cell, date):
        return cell.isoformat()
    raise TypeError(f"{type(cell).__name__} is not a CSV cell (floats never are: use Decimal)")


def quote(text: str) -> str:
    """One neutralized cell as written: in double quotes (doubled inside) when it holds a
    delimiter, a quote, CR or LF; otherwise as is (``csv.QUOTE_MINIMAL`` plus CR)."""
    if any(ch in text for ch in QUOTE_TRIGGERS):
        return '"' + text.replace('"', '""') + '"'
    return text


def _line(cells: Sequence[str]) -> str:
    if len(cells) == 1 and cells[0] == "":
        return '""\n'  # a row of one empty cell is not a blank line (as the csv module writes it)
    return ",".join(quote(cell) for cell in cells) + "\n"


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    """A UTF-8 CSV with '\\n' line endings, every cell through :func:`neutralize` and :func:`quote`."""
    lines = [_line([neutralize(name) for name in header])]
    for number, row in enumerate(rows, start=1):
        if len(row) != len(header):
            raise ValueError(f"row {number} has {len(row)} cells, header has {len(header)}")
        lines.append(_line([neutralize(cell) for cell in row]))
    return "".join(lines).encode("utf-8")


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Write :func:`csv_bytes` to ``path``; the file appears all at once, never half-written."""
    try:
        data = csv_bytes(header, rows)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    write_atomic(Path(path), data)


def sql_neutralized(expr: str) -> str:
    """DuckDB SQL for :func:`neutralize` of a text ``expr``: the cell before quoting, which is
    what a CSV reader gives back (a reader matches a cell it read against it)."""
    prefixes = ", ".join(f"chr({ord(p)})" for p in FORMULA_PREFIXES)
    first = f"CASE WHEN left({expr}, 1) IN ({prefixes}) THEN chr(39) || {expr} ELSE coalesce({expr}, '') END"
    breaks = f"contains({expr}, chr(10)) OR contains({expr}, chr(13))"
    return f"CASE WHEN {breaks} THEN regexp_replace({first}, '{AFTER_BREAK_PATTERN}', '\\1''\\2', 'g') ELSE {first} END"


def _sql_cell(column: str, kind: str) -> str:
    """DuckDB SQL for one cell exactly as :func:`csv_bytes` writes it (``kind``: text,
    integer, or decimal: a DECIMAL with scale > 0, written like ``Decimal.normalize()``).
    ``column`` is a column name, not an expression: the SQL names it up to four times (a text
    cell arrives neutralized, :func:`sql_csv_lines`)."""
    if kind == "integer":
        return f"coalesce(CAST({column} AS VARCHAR), '')"
    if kind == "decimal":  # fixed point without trailing zeros: '2.50' -> '2.5', '0.00' -> '0'
        text = f"CAST({column} AS VARCHAR)"
        return f"coalesce(CASE WHEN contains({text}, '.') THEN rtrim(rtrim({text}, '0'), '.') ELSE {text} END, '')"
    if kind != "text":
        raise ValueError(f"unknown cell kind {kind!r}")
    # quote(): a cell holding ',', '"', CR or LF is quoted (neutralizing adds no CR or LF)
    special = " OR ".join(f"contains({column}, {char})" for char in ("','", "'\"'", "chr(10)", "chr(13)"))
    return f"CASE WHEN {special} THEN '\"' || replace({column}, '\"', '\"\"') || '\"' ELSE {column} END"


def sql_csv_lines(cells: Sequence[tuple[str, str]], source: str, keep: Sequence[str] = ()) -> str:
    """A DuckDB query of the columns ``keep`` of ``source`` and ``line``: the CSV line
    (without its newline) that :func:`csv_bytes` writes for a row of ``cells``, given as (SQL
    expression over ``source``, kind) pairs. For files of millions of rows: DuckDB formats them
    on every core instead of Python cell by cell. The neutralization is the same
    (FORMULA_PREFIXES, one character each); tests compare both byte for byte.

    Three nested projections (the cells' values, then neutralized, then quoted and joined) so
    that each expression is written once: written inline, a text cell's expression appeared 34
    times, and planning the 17-cell line cost ~100 ms of a statement run's time."""
    assert all(len(p) == 1 for p in FORMULA_PREFIXES)
    kept = "".join(f"{name}, " for name in keep)
    named = [(f"_csv{i}", expr, kind) for i, (expr, kind) in enumerate(cells)]
    values = ", ".join(f"{expr} AS {name}" for name, expr, _ in named)
    neutralized = ", ".join(f"{sql_neutralized(name)} AS {name}" if kind == "text" else name for name, _, kind in named)
    line = " || ',' || ".join(f"({_sql_cell(name, kind)})" for name, _, kind in named)
    return f"SELECT {kept}{line} AS line FROM (SELECT {kept}{neutralized} FROM (SELECT {kept}{values} FROM {source}))"
