"""Credit note rendering: a :class:`CreditNoteDocument` in, self-contained HTML out (the PDF is
made by :func:`reports.render.pdf_bytes`, like a statement's). The template reuses the
statement's stylesheet and partials (issuer, bill-to, tax), with the same safety rules:
autoescaped values, nothing fetched, the HTML a pure function of the document."""

from __future__ import annotations

from core.period import Period
from reports import formatting
from reports.credit_note_model import CreditNoteDocument
from reports.render import _ENV

__all__ = ["render_credit_note_html"]


def render_credit_note_html(doc: CreditNoteDocument) -> str:
    """The credit note as one deterministic HTML page."""
    period = Period.parse(doc.period)
    return _ENV.get_template("credit_note.html.j2").render(
        doc=doc, period_days=formatting.day_range(period.first_day, period.end_day)
    )
