"""CSV cells that a spreadsheet cannot run, and one deterministic CSV writer.

A text cell starting with ``=``, ``+``, ``-``, ``@``, tab or CR is a formula to Excel and
LibreOffice; it is prefixed with ``'``. Numbers stay numbers, written exactly.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

from pipeline.money import Decimal

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralize(cell: object) -> str:
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return "true" if cell else "false"
    if isinstance(cell, int):
        return str(cell)
    if isinstance(cell, Decimal):
        return format(cell, "f")
    text = str(cell)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(header)
        for row in rows:
            writer.writerow([neutralize(cell) for cell in row])
