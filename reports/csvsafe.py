"""CSV files that are safe to open in a spreadsheet (SPEC section 6).

A text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would be run
as a formula by Excel, LibreOffice or Google Sheets; it is written with a leading ``'`` so it
stays text. Numbers are passed as ``int`` or ``Decimal`` and written exactly, so a negative
amount stays the number ``-1.23``. An amount that arrives as a string is text and gets
neutralized like any other string: pass numbers as numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path

from pipeline.money import D, Decimal

from .atomic import write_atomic

__all__ = ["FORMULA_PREFIXES", "neutralize", "write_csv"]

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralize(cell: object) -> str:
    """The text of one CSV cell: formula-looking strings quoted with ', numbers exact.

    >>> neutralize("=1+1"), neutralize(D("-1.23")), neutralize(None)
    ("'=1+1", '-1.23', '')
    """
    if cell is None:
        return ""
    if isinstance(cell, str):
        return "'" + cell if cell.startswith(FORMULA_PREFIXES) else cell
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


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    """A UTF-8 CSV with '\\n' line endings, every cell through :func:`neutralize`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    writer.writerow([neutralize(name) for name in header])
    for number, row in enumerate(rows, start=1):
        if len(row) != len(header):
            raise ValueError(f"row {number} has {len(row)} cells, header has {len(header)}")
        writer.writerow([neutralize(cell) for cell in row])
    return buffer.getvalue().encode("utf-8")


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Write :func:`csv_bytes` to ``path``; the file appears all at once, never half-written."""
    try:
        data = csv_bytes(header, rows)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    write_atomic(Path(path), data)
