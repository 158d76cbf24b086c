"""Plain-text tables for the terminal (the `margin` and `sql` commands)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from core.money import Decimal

__all__ = ["cell_text", "render_table"]


def cell_text(value: object) -> str:
    """A value as an analyst expects to read it: exact decimals, ISO dates, NULL."""
    if value is None:
        return "NULL"
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]], footer_rows: int = 0) -> str:
    """Columns padded to width; the first column left-aligned, the others right-aligned.

    The last ``footer_rows`` rows (e.g. a TOTAL) are set off by a rule.
    """
    lines = [list(header), *[list(r) for r in rows]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def fmt(line: list[str]) -> str:
        cells = zip(line, widths, strict=True)
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(cells))

    rule = "  ".join("-" * w for w in widths)
    text = [fmt(lines[0]), rule, *(fmt(line) for line in lines[1:])]
    if footer_rows:
        text.insert(len(text) - footer_rows, rule)
    return "\n".join(text).rstrip()
