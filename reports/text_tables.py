"""The usage charges, the attempts not billed and the billing notes of a statement of layout 15
on, as fixed-width text (issue 14 item 4).

WeasyPrint's cost of a statement is per box and line it lays out, not per character: each cell
of the charges table (eight a line) cost ~0.5 ms of CPU, about a third of a statement's time
(docs/performance.md, "Statements: layout 15"). From layout 15 each row of these two tables is
one text in DejaVu Sans Mono, its columns padded with spaces (numbers right-aligned, words
left-aligned and wrapped within their column), in a table of one cell a row, so that the header
still repeats on every page and no row splits across pages. The words and numbers are those of
the tables of layouts 2-14, cell for cell (tested against their PDF text). The billing notes,
two numbered lists side by side in layouts 9-14 (~0.6 ms of CPU a line of prose), are one text
of two columns of the same notes split at the same place.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import formatting
from .statement_model import versions_text

if TYPE_CHECKING:
    from .render import PrintedLines
    from .statement_model import NonBilledCount, StatementDocument

#: characters a row holds: 7.5pt DejaVu Sans Mono (1233/2048 em a character) in the 178 mm
#: between the page margins holds 111; one is left spare
WIDTH = 110
GAP = 2  # spaces between two columns
#: the columns' headers, over two lines, with the words the eight-cell table printed
HEADER = (
    ("", "No."),
    ("", "Model"),
    ("", "Tokens"),
    ("Quantity", "(tokens)"),
    ("List", "price / 1M"),
    ("", "Your price"),
    ("Net", "price / 1M"),
    ("", "Amount"),
)
#: columns whose text is a number, right-aligned; the others are left-aligned (the model and the
#: price basis wrap within theirs)
NUMERIC = (True, False, False, True, True, False, True, True)
MODEL, BASIS = 1, 5
MODEL_MIN, BASIS_MAX = 16, 18  # a longer price basis wraps within its column


@dataclass(frozen=True)
class Cell:
    """``text`` (a newline starts a new line within the cell) over ``span`` columns."""

    text: str
    span: int = 1
    centred: bool = False


@dataclass(frozen=True)
class Row:
    """One printed row: its kind (``head``, ``line``, ``group`` for a line that starts another
    model, ``zero``, ``none``, ``subtotal``) and its text, its lines joined by newlines."""

    kind: str
    text: str


def _widths(sized: Sequence[Sequence[str]], bases: Sequence[str]) -> list[int]:
    """Each column's width: the widest header, number or token class, the price basis up to
    BASIS_MAX, and what is left of WIDTH for the model."""
    widths = [max(len(top), len(bottom)) for top, bottom in HEADER]
    for row in sized:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))
    widths[BASIS] = max(widths[BASIS], min(BASIS_MAX, max(map(len, bases), default=0)))
    widths[MODEL] = 0
    widths[MODEL] = max(MODEL_MIN, WIDTH - sum(widths) - GAP * (len(widths) - 1))
    return widths


def _wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` characters, broken at spaces only (a longer word
    stays whole and pushes the row's next columns right: never a word printed in two parts)."""
    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False) or [""]


def _text(widths: Sequence[int], cells: Sequence[Cell], numeric_columns: Sequence[bool] = NUMERIC) -> str:
    """``cells`` side by side as lines of fixed-width text (trailing spaces dropped); a cell of
    a numeric column is right-aligned and never wrapped, any other is wrapped to its width."""
    columns: list[list[str]] = []
    start = 0
    for cell in cells:
        width = sum(widths[start : start + cell.span]) + GAP * (cell.span - 1)
        numeric = cell.span == 1 and numeric_columns[start]
        lines = [line for part in cell.text.split("\n") for line in ([part] if numeric else _wrap(part, width))]
        align = str.center if cell.centred else str.rjust if numeric else str.ljust
        columns.append([align(line, width) for line in lines])
        columns[-1].extend([" " * width])  # the blank a shorter cell leaves (sliced off below)
        start += cell.span
    height = max(len(column) for column in columns) - 1
    out = []
    for n in range(height):
        out.append((" " * GAP).join(column[min(n, len(column) - 1)] for column in columns).rstrip())
    return "\n".join(out)


def charges_rows(doc: StatementDocument, lines: PrintedLines, zero_tokens_summed: bool) -> list[Row]:
    """The charges table's rows, header first and the usage subtotal last, as layout 15 prints
    them (every word and number of layouts 2-14's table, in the same order)."""
    many_versions = len(doc.price_versions) > 1
    money, tokens, unit_price = formatting.money, formatting.tokens, formatting.unit_price
    printed: list[tuple[str, list[Cell]]] = []
    sized: list[list[str]] = []  # what sizes the columns (all but the model's and the basis')
    bases: list[str] = []
    for index, line in enumerate(lines.shown):
        previous = lines.shown[index - 1] if index else line
        new_model = not index or previous.model != line.model
        new_version = many_versions and (new_model or previous.price_version != line.price_version)
        model = line.model_name + ("\n" + line.model if new_model else "")
        model += "\nprices " + versions_text(line.price_version) if new_version else ""
        number, quantity, amount = str(lines.shown_numbers[index]), tokens(line.quantity), money(line.amount)
        if line in lines.at_input_price:
            prices = [Cell("same price as input", 3, centred=True)]
            sized.append([number, "", line.token_class_label, quantity, "", "", "", amount])
        else:
            listed = "" if line.list_price_per_1m is None else unit_price(line.list_price_per_1m)
            net = unit_price(line.unit_price_per_1m)
            prices = [Cell(listed), Cell(line.price_basis), Cell(net)]
            sized.append([number, "", line.token_class_label, quantity, listed, "", net, amount])
            bases.append(line.price_basis)
        cells = [Cell(number), Cell(model), Cell(line.token_class_label), Cell(quantity), *prices, Cell(amount)]
        printed.append(("group" if new_model and index else "line", cells))
    if not lines.shown and not lines.zero:
        printed.append(("none", [Cell("No billed usage in this period.", 8)]))
    if lines.zero:
        count, zero_amount = len(lines.zero), money(lines.zero_amount)
        label = f"{count} line{'s' if count != 1 else ''} under half a cent"
        if lines.zero_numbers:
            s = "s" if len(lines.zero_numbers) != 1 else ""
            label += f" (line{s} {', '.join(map(str, lines.zero_numbers))})"
        zero_tokens = tokens(lines.zero_tokens) if zero_tokens_summed else ""
        cells = [Cell(""), Cell(label + "\n" + lines.zero_models, 2), Cell(zero_tokens)]
        printed.append(("zero", [*cells, Cell(f"each rounds to {zero_amount}", 3), Cell(zero_amount)]))
        sized.append(["", "", "", zero_tokens, "", "", "", zero_amount])
    subtotal = money(doc.usage_total)
    printed.append(("subtotal", [Cell("Usage subtotal", 7), Cell(subtotal)]))
    sized.append(["", "", "", "", "", "", "", subtotal])
    widths = _widths(sized, bases)
    header = _text(widths, [Cell(f"{top}\n{bottom}" if top else f"\n{bottom}") for top, bottom in HEADER])
    return [Row("head", header), *(Row(kind, _text(widths, cells)) for kind, cells in printed)]


#: the attempts-not-billed table: reason (its words, then its code), attempts, what it means
NOT_BILLED_HEADER = ("Reason", "Attempts", "What it means")
NOT_BILLED_NUMERIC = (False, True, False)


def not_billed_rows(counts: Sequence[NonBilledCount]) -> list[Row]:
    """The attempts-not-billed table's rows, header first, as layout 15 prints them: each
    reason as layouts 9-14 printed it (its words, its code below), the attempts, and the
    explanation wrapped in what is left of WIDTH."""
    cells = [
        (f"{c.reason.replace('_', ' ').capitalize()}\n{c.reason}", formatting.tokens(c.attempts), c.explanation)
        for c in counts
    ]
    reason = max([len(NOT_BILLED_HEADER[0])] + [len(part) for text, _, _ in cells for part in text.split("\n")])
    attempts = max([len(NOT_BILLED_HEADER[1])] + [len(number) for _, number, _ in cells])
    widths = [reason, attempts, WIDTH - reason - attempts - 2 * GAP]
    header = _text(widths, [Cell(text) for text in NOT_BILLED_HEADER], NOT_BILLED_NUMERIC)
    rows = [Row("head", header)]
    for text, number, explanation in cells:
        rows.append(Row("line", _text(widths, [Cell(text), Cell(number), Cell(explanation)], NOT_BILLED_NUMERIC)))
    return rows


#: characters a line of one column of the billing notes holds (7pt DejaVu Sans Mono: two
#: columns and NOTES_GAP make 115 characters, 484 of the 505 points between the margins)
NOTES_COLUMN = 56
NOTES_GAP = 3


def notes_text(halves: tuple[Sequence[str], Sequence[str]]) -> str:
    """The billing notes as layout 15 prints them: the two halves layouts 9-14 printed as two
    numbered lists side by side (``reports.render.notes_halves``), as two columns of one
    fixed-width text, each note numbered ("1. ", the second half's numbers going on from the
    first's) and wrapped within its column under its first word."""
    columns: list[list[str]] = []
    number = 1
    for half in halves:
        lines: list[str] = []
        for note in half:
            marker = f"{number}. ".rjust(4)
            wrapped = _wrap(note, NOTES_COLUMN - len(marker))
            lines += [marker + wrapped[0], *(" " * len(marker) + line for line in wrapped[1:])]
            number += 1
        columns.append(lines)
    left, right = columns
    height = max(len(left), len(right))
    left += [""] * (height - len(left))
    right += [""] * (height - len(right))
    return "\n".join((a.ljust(NOTES_COLUMN) + " " * NOTES_GAP + b).rstrip() for a, b in zip(left, right, strict=True))
