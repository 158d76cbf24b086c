"""Credit note rendering: a :class:`CreditNoteDocument` in, self-contained HTML out (the PDF is
made by :func:`credit_note_pdf`, like a statement's by :func:`reports.render.statement_pdf`).
The template reuses the statement's stylesheet and partials (issuer, bill-to, tax), with the same safety rules:
autoescaped values, nothing fetched, the HTML a pure function of the document."""

from __future__ import annotations

from core.period import Period
from reports import formatting
from reports.credit_note_model import CreditNoteDocument
from reports.render import _ENV, pdf_bytes

__all__ = ["credit_note_pdf", "render_credit_note_html"]


def render_credit_note_html(doc: CreditNoteDocument) -> str:
    """The credit note as one deterministic HTML page."""
    period = Period.parse(doc.period)
    return _ENV.get_template("credit_note.html.j2").render(
        doc=doc, period_days=formatting.day_range(period.first_day, period.end_day)
    )


def credit_note_pdf(doc: CreditNoteDocument, html: str) -> bytes:
    """The PDF of a credit note rendered from ``html`` (its :func:`render_credit_note_html`).

    A credit note marked for e-invoicing (``doc.e_invoice``: its account was marked when it was
    issued) is PDF/A-3b with its EN 16931 credit note XML (type code 381, :mod:`reports.einvoice`)
    embedded as Factur-X, dated its issue date; every other credit note is the plain PDF it
    always was (same bytes)."""
    if doc.e_invoice is None:
        return pdf_bytes(html)
    from reports import einvoice, pdf

    xml = einvoice.build_xml(doc)
    title = f"{doc.issuer.name}: credit note {doc.credit_note_number}"
    return pdf.factur_x(pdf.pdf_bytes(html, pdf_variant="pdf/a-3b"), xml, doc.issue_date, title=title)
