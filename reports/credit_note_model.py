"""What a credit note says (issue 16 item 4): plain, immutable data handed to the renderer.

A credit note credits whole lines of an issued statement, with a reason. It reuses the
statement's types (:class:`~reports.statement_model.StatementLine` and
:class:`~reports.statement_model.AdjustmentLine` for the lines, :class:`Party` /
:class:`~reports.invoice_model.IssuerParty` for the parties, :class:`TaxSummary` for the tax)
so that an e-invoice (EN 16931 type code 381, credit note, with the statement as the
preceding invoice reference) is generated from it like from a statement
(:func:`reports.einvoice.build_xml`, when ``e_invoice`` is set).

Amounts are positive: what is credited. The rule (docs/invoicing.md, "Credit notes"):

* ``lines_total`` = the credited lines' amounts; ``prepaid_retained`` = the part of them the
  statement covered with prepaid credit (not credited in money); ``refunded`` (credit note
  rule 2) = the part later statements already refunded in money through negative
  prior-period adjustments of the period (``refunded_on`` names them);
  ``net_amount = lines_total - prepaid_retained - refunded`` (> 0).
* ``tax_rule`` ``on_net``: ``tax_amount = tax_on(net_amount, rate)``, per note, half-up;
  ``remainder``: the statement's tax less the tax already credited (the note that completes
  the statement's net, or one the cap reached), so a statement is never credited more tax
  than it charged and a fully credited statement is credited its tax to the cent.
* ``total_credited = net_amount + tax_amount``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from core.money import EXACT, ZERO, Decimal, tax_on
from reports.invoice_model import TaxSummary
from reports.statement_model import (
    RETAINED_CAUSE_FROM,
    AdjustmentLine,
    Party,
    StatementLine,
    _amount,
    _day,
    _exact_sum,
    _fail,
    _text,
)

__all__ = ["TAX_RULES", "CreditNoteDocument", "CreditedLine"]

#: How a credit note's tax was computed (see the module docstring).
TAX_RULES = ("on_net", "remainder")

_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")
_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class CreditedLine:
    """One statement line credited in full: its number on the statement (row N of the
    statement's lines CSV) and the line as the statement billed it."""

    line_no: int
    line: StatementLine | AdjustmentLine

    def __post_init__(self) -> None:
        if not isinstance(self.line_no, int) or isinstance(self.line_no, bool) or self.line_no < 1:
            raise _fail(self, f"line_no {self.line_no!r} is not a statement line number")
        if not isinstance(self.line, StatementLine | AdjustmentLine):
            raise TypeError("CreditedLine.line must be a StatementLine or an AdjustmentLine")

    @property
    def amount(self) -> Decimal:
        return self.line.amount

    @property
    def kind(self) -> str:
        return "usage" if isinstance(self.line, StatementLine) else "adjustment"

    @property
    def description(self) -> str:
        if isinstance(self.line, StatementLine):
            return f"{self.line.model_name}, {self.line.token_class_label.lower()}"
        return self.line.description


@dataclass(frozen=True)
class CreditNoteDocument:
    """Everything printed on one credit note."""

    credit_note_number: str
    statement_number: str
    statement_issue_date: date
    account_id: str
    account: Party
    issuer: Party
    period: str  # the statement's period, 'YYYY-MM'
    issue_date: date
    currency: str
    reason: str
    lines: tuple[CreditedLine, ...]
    lines_total: Decimal
    prepaid_retained: Decimal
    tax_amount: Decimal
    total_credited: Decimal
    tax: TaxSummary | None = None
    tax_rule: str = "on_net"
    #: "factur-x": the PDF is PDF/A-3 with the note as an EN 16931 credit note (type code 381)
    #: embedded (``reports.einvoice``); None: a plain PDF, as before.
    e_invoice: str | None = None
    #: the layout the credited statement was printed with: its e-invoice rules hold for the
    #: note's e-invoice too (reports.statement_model.SELLER_LEGAL_ID_FROM); 1 when unknown
    statement_layout_version: int = 1
    #: the prepaid credit the credited statement drew (statement_credits.applied_usd; 0 for a
    #: statement of an account without grants): says why part of the lines is not credited
    statement_credits_applied: Decimal = ZERO
    #: credit note rule 2 (pipeline.credit_notes.MONEY_RULE): the part of the lines not
    #: credited because later statements already refunded it in money (0 for rule 1 notes)
    refunded: Decimal = ZERO
    #: the statements that refunded it, as printed ("IG-2026-12-000001"); from rule 3, when an
    #: adjustment line of an earlier period is not credited in full, the documents that gave
    #: that period's money back, with their kind ("statement IG-2026-12-000001, credit note
    #: CN-2027-000001"); None when none
    refunded_on: str | None = None

    #: EN 16931 / UNTDID 1001 document type code of a credit note (for an e-invoice).
    type_code = "381"

    @property
    def retained_cause(self) -> str:
        """Why ``prepaid_retained`` is not credited: "prepaid", "offset" or "both".

        The part of the credited lines beyond the statement's net was paid with prepaid credit,
        or offset by the statement's negative lines (prior-period adjustments), or both. Notes
        against statements of layouts 1-4 always said prepaid credit (replayed as issued); from
        layout 5 (reports.statement_model.RETAINED_CAUSE_FROM) they say which."""
        if (
            self.statement_layout_version < RETAINED_CAUSE_FROM
            or self.prepaid_retained <= self.statement_credits_applied
        ):
            return "prepaid"
        return "offset" if self.statement_credits_applied == 0 else "both"

    @property
    def refunded_label(self) -> str:
        """The refunded row's words on the note and in its lines CSV (rule 2)."""
        if self.given_back_elsewhere:
            return f"Already given back on {self.refunded_on}"
        several = self.refunded_on is not None and "," in self.refunded_on
        return f"Already refunded on statement{'s' if several else ''} {self.refunded_on}"

    @property
    def given_back_elsewhere(self) -> bool:
        """Rule 3: ``refunded_on`` names documents with their kind ("statement IG-...",
        "credit note CN-..."): money asked for an earlier period was given back by its own
        credit notes or by refunds, not only by later statements' refunds of this period."""
        return self.refunded_on is not None and self.refunded_on.startswith(("statement ", "credit note "))

    @property
    def retained_label(self) -> str:
        """The retained row's words on the note and in its lines CSV."""
        return {
            "prepaid": "Paid with prepaid credit",
            "offset": "Offset by the statement's negative lines",
            "both": "Paid with prepaid credit or offset by negative lines",
        }[self.retained_cause]

    def __post_init__(self) -> None:
        for name in ("credit_note_number", "statement_number"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _NUMBER.match(value):
                raise _fail(self, f"{name} {value!r} is not a plain identifier")
        _text(self, "account_id", self.account_id)
        _text(self, "reason", self.reason)
        if not isinstance(self.account, Party) or not isinstance(self.issuer, Party):
            raise TypeError("CreditNoteDocument.account and .issuer must be Party")
        if not isinstance(self.period, str) or not _PERIOD.match(self.period):
            raise _fail(self, f"period {self.period!r} is not 'YYYY-MM'")
        _day(self, "issue_date", self.issue_date)
        _day(self, "statement_issue_date", self.statement_issue_date)
        if self.issue_date < self.statement_issue_date:
            raise _fail(self, f"issue date {self.issue_date} is before the statement's ({self.statement_issue_date})")
        if not isinstance(self.lines, tuple) or not all(isinstance(x, CreditedLine) for x in self.lines):
            raise TypeError("CreditNoteDocument.lines must be a tuple of CreditedLine")
        if not self.lines:
            raise _fail(self, "credits no line")
        numbers = [x.line_no for x in self.lines]
        if numbers != sorted(set(numbers)):
            raise _fail(self, "lines are not in statement order, or a line is credited twice")
        self._check_amounts()
        if self.e_invoice not in (None, "factur-x"):
            raise _fail(self, f"e_invoice {self.e_invoice!r} is not 'factur-x'")
        if self.e_invoice is not None and self.tax is None:
            raise _fail(self, "an e-invoice credit note needs the statement's tax treatment (a VAT category)")

    def _check_amounts(self) -> None:
        for name in ("lines_total", "prepaid_retained", "refunded", "tax_amount", "total_credited"):
            _amount(self, name, getattr(self, name))
        lines_sum = _exact_sum(x.amount for x in self.lines)
        if self.lines_total != lines_sum:
            raise _fail(self, f"lines_total {self.lines_total} != sum of lines {lines_sum}")
        if not ZERO <= self.prepaid_retained < self.lines_total:
            raise _fail(self, f"prepaid_retained {self.prepaid_retained} is not within [0, {self.lines_total})")
        if self.refunded < 0 or self.net_amount <= 0:
            raise _fail(self, f"refunded {self.refunded} is negative or leaves nothing to credit")
        if (self.refunded > 0) != (self.refunded_on is not None):
            raise _fail(self, "refunded_on names the statements that refunded, exactly when refunded > 0")
        if self.tax is not None and not isinstance(self.tax, TaxSummary):
            raise TypeError("CreditNoteDocument.tax must be a TaxSummary")
        if self.tax_rule not in TAX_RULES:
            raise _fail(self, f"tax_rule {self.tax_rule!r} is not one of {TAX_RULES}")
        if self.tax is None and self.tax_amount != 0:
            raise _fail(self, f"tax_amount {self.tax_amount} without a tax treatment")
        if self.tax is not None and self.tax_rule == "on_net":
            expected = tax_on(self.net_amount, self.tax.rate_pct)
            if self.tax_amount != expected:
                raise _fail(self, f"tax_amount {self.tax_amount} is not the tax on net {self.net_amount} ({expected})")
        if self.tax_amount < 0:
            raise _fail(self, f"tax_amount {self.tax_amount} is negative")
        if self.total_credited != EXACT.add(self.net_amount, self.tax_amount):
            raise _fail(self, f"total_credited {self.total_credited} != net {self.net_amount} + tax {self.tax_amount}")

    @property
    def net_amount(self) -> Decimal:
        """The credited lines less the part paid with prepaid credit and (rule 2) the part later
        statements already refunded: what tax is computed on."""
        return self.lines_total - self.prepaid_retained - self.refunded

    @property
    def terms(self) -> None:
        """A credit note has no payment terms (the shared template partials ask)."""
        return None
