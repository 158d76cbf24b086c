"""Statement rendering: a :class:`StatementDocument` in, self-contained HTML and a PDF out.

Safety (SPEC section 6): every value from account or log data is autoescaped by Jinja, the
stylesheet and the chart are inlined, and WeasyPrint gets a URL fetcher that refuses every URL
except ``data:`` URIs. A statement therefore never makes WeasyPrint read a local file or the
network, whatever an account name or log field contains; should anything try, rendering stops
with :class:`UnsafeResourceError` instead of quietly leaving the resource out.

Determinism: the HTML is a pure function of the document. The PDF carries no creation or
modification date (WeasyPrint only writes them when the HTML has ``dcterms.created`` /
``dcterms.modified`` meta tags, which the template does not), its file identifier is derived
from the HTML, and embedded font subsets are named by a content hash. One source of variance
remains inside WeasyPrint: without the HarfBuzz-Subset library it subsets fonts with fontTools,
which stamps every embedded font with the current time unless ``SOURCE_DATE_EPOCH`` is set;
:func:`write_pdf` sets it (to 0, for the duration of the render) when the caller has not. So
the same HTML gives byte-identical PDFs on one machine. A different WeasyPrint version changes
at least the ``/Producer`` field, and different fonts or shaping libraries can move glyphs:
compare statements across machines by their text, not their bytes. E-invoices (PDF/A-3 with
Factur-X XML, :func:`statement_pdf`) carry the issue date as creation and modification date,
never the clock (:func:`reports.pdf.factur_x`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from core.errors import BillingError
from core.money import Decimal

from . import formatting
from .atomic import write_atomic
from .chart import daily_usage_svg
from .statement_model import (
    LEAN_LAYOUT_FROM,
    NOTHING_DUE_FROM,
    NUMBERED_FROM,
    TEXT_TABLES_FROM,
    TIGHT_FROM,
    ZERO_ROW_TOKENS_FROM,
    StatementDocument,
    StatementLine,
    price_versions_of,
    versions_text,
)
from .text_tables import charges_rows, not_billed_rows, notes_text

if TYPE_CHECKING:
    from reports.pdf import RefusingURLFetcher

__all__ = [
    "TEMPLATES_DIR",
    "RefusingURLFetcher",
    "UnsafeResourceError",
    "render_html",
    "pdf_bytes",
    "render_statement",
    "statement_pdf",
    "write_pdf",
]

TEMPLATES_DIR = Path(__file__).parent / "templates"


class UnsafeResourceError(BillingError, RuntimeError):
    """The statement HTML asked for an external resource (a file or URL); nothing was read."""

    default_hint = "nothing was fetched; look for HTML or URLs in the account names and addresses of the accounts file"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        money=formatting.money,
        unit_price=formatting.unit_price,
        tokens=formatting.tokens,
        long_date=formatting.long_date,
        versions=versions_text,
    )
    return env


_ENV = _environment()


@dataclass(frozen=True)
class PrintedLines:
    """The usage lines as printed: lines worth a cent or more, and the rest summed in one row.

    ``at_input_price`` holds the cached-input lines billed at their model's input price: they
    say so instead of repeating the same price, which reads like a mistake.
    """

    shown: tuple[StatementLine, ...]
    zero: tuple[StatementLine, ...]
    at_input_price: tuple[StatementLine, ...]
    # each line's number (its row of the lines CSV, the number a credit note names), in the
    # order of ``shown`` and of ``zero``: printed from layout 2 on
    shown_numbers: tuple[int, ...] = ()
    zero_numbers: tuple[int, ...] = ()

    @property
    def zero_amount(self) -> Decimal:
        return sum((line.amount for line in self.zero), Decimal(0))

    @property
    def zero_tokens(self) -> int:
        return sum(line.quantity for line in self.zero)

    @property
    def zero_models(self) -> str:
        return ", ".join(dict.fromkeys(f"{line.model_name} {line.token_class_label.lower()}" for line in self.zero))


def printed_lines(doc: StatementDocument) -> PrintedLines:
    # per model and price version (a line of layout 6 on may name several: any one shared)
    input_prices = {
        (line.model, version): line.unit_price_per_1m
        for line in doc.lines
        if line.token_class == "input_uncached"
        for version in price_versions_of(line.price_version)
    }
    at_input = tuple(
        line
        for line in doc.lines
        if line.token_class == "input_cached"
        and any(
            input_prices.get((line.model, version)) == line.unit_price_per_1m
            for version in price_versions_of(line.price_version)
        )
    )
    numbered = list(enumerate(doc.lines, start=1))  # usage lines come first in the lines CSV
    return PrintedLines(
        shown=tuple(line for line in doc.lines if line.amount != 0),
        zero=tuple(line for line in doc.lines if line.amount == 0),
        at_input_price=at_input,
        shown_numbers=tuple(n for n, line in numbered if line.amount != 0),
        zero_numbers=tuple(n for n, line in numbered if line.amount == 0),
    )


#: The tighter spacing: a statement of layout 3 on has it in its stylesheet; reports/pdf.py lays
#: a statement without it out again with it when its last page is nearly empty. Frozen: layouts
#: 1-2's PDFs and layout 3's HTML (replayed byte for byte) depend on this exact text, and
#: pdf.py tells layout 3 by it; other spacing is a new layout with rules of its own.
TIGHT_CSS_RULES = (
    "html{line-height:1.25}h2{margin:9pt 0 3pt}table.lines td{padding:1.5pt 5pt}"
    ".totals,.parties{margin-top:8pt}.masthead{padding-bottom:6pt}"
)


def _zero_tokens_summed(doc: StatementDocument, zero: Sequence[StatementLine]) -> bool:
    """Whether the row of the lines under half a cent (``zero``) prints their tokens' sum:
    always before layout 5; from it only when they are one model's one token class (a sum of
    tokens of different models or classes counts nothing a customer can check)."""
    if doc.layout_version < ZERO_ROW_TOKENS_FROM:
        return True
    return len({(line.model, line.token_class) for line in zero}) <= 1


def notes_halves(notes: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The billing notes split in two for layout 9's two lists side by side: the first k notes
    and the rest, k making the longer half (in characters, a note's end counted as a line's
    worth) as short as it can be. Layouts 1-8 printed one list in two CSS columns, which
    WeasyPrint balances by laying the list out again and again (issue 14)."""
    sizes = [len(note) + 60 for note in notes]
    total = sum(sizes)
    best = min(range(len(notes) + 1), key=lambda k: (max(sum(sizes[:k]), total - sum(sizes[:k])), -k))
    return tuple(notes[:best]), tuple(notes[best:])


def render_html(doc: StatementDocument) -> str:
    """The statement as one self-contained, deterministic HTML page (CSS and chart inline)."""
    lean = doc.layout_version >= LEAN_LAYOUT_FROM
    chart = daily_usage_svg(doc.period_start, doc.period_end, doc.daily_usage, day_labels_as_one_text=lean)
    lines = printed_lines(doc)
    zero_tokens_summed = _zero_tokens_summed(doc, lines.zero)
    text_rows = doc.layout_version >= TEXT_TABLES_FROM  # one fixed-width text a row (reports/text_tables.py)
    halves = notes_halves(doc.billing_notes) if lean else None
    return _ENV.get_template("statement.html.j2").render(
        doc=doc,
        lines=lines,
        chart=Markup(chart),  # built from dates and amounts only, never from user text
        numbered=doc.layout_version >= NUMBERED_FROM,
        tight_css=Markup(TIGHT_CSS_RULES) if doc.layout_version >= TIGHT_FROM else None,
        nothing_due_note=doc.layout_version >= NOTHING_DUE_FROM,
        lean=lean,
        notes_halves=halves,
        text_notes=notes_text(halves) if text_rows and halves is not None else None,
        zero_tokens_summed=zero_tokens_summed,
        text_charges=charges_rows(doc, lines, zero_tokens_summed) if text_rows else None,
        text_not_billed=not_billed_rows(doc.non_billed) if text_rows else None,
        period_label=formatting.period_label(doc.period_start),
        period_days=formatting.day_range(doc.period_start, doc.period_end),
    )


def write_pdf(html: str, path: Path, *, fetcher: RefusingURLFetcher | None = None) -> None:
    """Render statement HTML to a PDF file; refuses to load any file or URL it references."""
    write_atomic(path, pdf_bytes(html, fetcher=fetcher))


def pdf_bytes(html: str, *, fetcher: RefusingURLFetcher | None = None) -> bytes:
    """Render statement HTML to PDF bytes; refuses to load any file or URL it references.

    WeasyPrint (~1-3 s to import, most of the CLI's start) is imported here, on first use, so
    commands that render nothing start fast (issue 14); see :mod:`reports.pdf`.
    """
    from reports import pdf

    return pdf.pdf_bytes(html, fetcher=fetcher)


def statement_pdf(doc: StatementDocument, html: str) -> bytes:
    """The PDF of a statement rendered from ``html`` (its :func:`render_html`).

    An issued statement of an account marked for e-invoices (``doc.e_invoice``) is PDF/A-3b
    with its EN 16931 XML (:mod:`reports.einvoice`) embedded as Factur-X; every other
    statement, and every draft, is the plain PDF it always was."""
    if doc.e_invoice is None or doc.is_draft:
        return pdf_bytes(html)
    from reports import einvoice, pdf

    xml = einvoice.build_xml(doc, "380")
    title = f"{doc.issuer.name}: statement {doc.statement_number}"
    return pdf.factur_x(pdf.pdf_bytes(html, pdf_variant="pdf/a-3b"), xml, doc.issue_date, title=title)


def __getattr__(name: str) -> object:
    """``RefusingURLFetcher`` and ``near_empty_last_page`` live in :mod:`reports.pdf` (WeasyPrint);
    imported from here on first access."""
    if name in ("RefusingURLFetcher", "near_empty_last_page"):
        from reports import pdf

        return getattr(pdf, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def render_statement(doc: StatementDocument, pdf_path: Path) -> str:
    """Write the statement PDF to ``pdf_path`` and return the HTML it was rendered from."""
    html = render_html(doc)
    write_atomic(pdf_path, statement_pdf(doc, html))
    return html
