"""What a statement says: plain, immutable data handed to the renderer.

The pipeline assembles a :class:`StatementDocument` from DuckDB; the renderer only formats it.
Every value is checked when the object is built (types, cents, dates inside the period), and
the document refuses totals that do not add up (SPEC R7): a statement that cannot be printed
correctly cannot be constructed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

from core.money import EXACT, ZERO, D, Decimal, tax_on, to_cents
from core.period import Period
from core.statement_rules import DueRules
from reports.credit_model import CreditSummary

if TYPE_CHECKING:
    from reports.invoice_model import PaymentTerms, TaxSummary

__all__ = [
    "DEFAULT_BILLING_NOTES",
    "NON_BILLED_REASONS",
    "TOKEN_CLASSES",
    "AdjustmentLine",
    "DailyUsage",
    "NonBilledCount",
    "Party",
    "PriceVersionRef",
    "StatementDocument",
    "StatementLine",
]

#: Token classes a statement line can bill, with the label printed for each.
TOKEN_CLASSES: dict[str, str] = {
    "input_uncached": "Input",
    "input_cached": "Cached input",
    "output": "Output",
}

#: Reason codes (SPEC section 3) an attempt can be left unbilled with, and what each means to a
#: customer. The first five are final; the others are held records that may be billed later
#: as a prior-period adjustment once corrected.
NON_BILLED_REASONS: dict[str, str] = {
    "superseded_attempt": "An earlier attempt of a request that was retried or failed over. "
    "Only one attempt per request is billed.",
    "client_error": "The request was rejected with a 4xx status (for example an invalid key or a rate limit).",
    "upstream_error": "The provider or the gateway failed with a 5xx status. Not billed even "
    "where the provider reported usage.",
    "status_not_billable": "The attempt ended with an informational or redirect status (1xx or 3xx).",
    "no_output": "The response was cut off before any output was produced.",
    "parse_error": "Held: the log record could not be read. Under review.",
    "invalid_record": "Held: the log record lacked a required field. Under review.",
    "bad_timestamp": "Held: the log record had a time without a time zone. Under review.",
    "duplicate_conflict": "Held: a conflicting copy of an attempt already recorded; the first record stands.",
    "usage_inconsistent": "Held: the usage reported by the provider contradicted itself. Under review.",
    "usage_missing": "Held: no usage was reported and no text was kept to count it from.",
    "unknown_account": "Held: the account was not yet set up when the request was made.",
    "unpriced_model": "Held: no price was in force for the model at the time of the request.",
}

#: The codes of held or quarantined records (SPEC section 3): those whose explanation says
#: "Held" (the quarantine command's --reason choices).
HELD_OR_QUARANTINED: tuple[str, ...] = tuple(
    code for code, text in NON_BILLED_REASONS.items() if text.startswith("Held:")
)

#: The statement layout new statements are printed with. Issued statements keep the layout
#: they were issued with (``statements.layout_version``): replay re-renders each with its own.
#: 1: the first layout; 2: every usage and adjustment row carries its line number, the number
#: a credit note names (row N of the lines CSV), and the row summing the lines under half a
#: cent lists theirs; 3: the tighter spacing (reports.render.TIGHT_CSS_RULES) from the start.
#: Layouts 1 and 2 are laid out a second time with it when their last page is nearly empty
#: (reports/pdf.py), which most month-end statements were: a third page for two notes, and
#: twice the renderer's work. Layout 3 is laid out once, and a draft has the pages its issued
#: statement will have (a draft's watermark hid the near-empty page from that check).
#: 4: printed as 3, except that a statement with 0.00 due says "Nothing to pay" (prepaid
#: credit covering it all) instead of "Payable by"; and a prior-period adjustment line's amount
#: is its own tokens x unit price, rounded half-up (R7), so the printed line adds up
#: (sql/statement_lines_due.sql). Layouts 1-3 printed the period's rounded line now minus the
#: cents already issued for it. Its e-invoice names the seller by its registration (BT-30).
#: 5: printed as 4; a negative adjustment never refunds more than the customer paid for the
#: line (issued less credited by credit notes: a credited line is not refunded twice, and the
#: line says what was credited), and a period without usage of its own draws prepaid credit for
#: its adjustments at its end (core.statement_rules); its lines CSV has a row for the prepaid
#: credit applied, and credit notes against it say why a part is not credited.
#: 6: printed as 5; a line is one model, token class and unit price, summed over the price
#: versions that priced it and rounded once (its price_version lists them, ';'), where 1-5
#: printed one line per version, each rounded; a period whose lines were issued per version
#: keeps that key for its adjustments (sql/statement_lines_due.sql).
#: 7: printed as 6; of a negative adjustment, what the customer paid in money for the adjusted
#: period is refunded in money and what prepaid credit paid is restored to prepaid credit (the
#: line says "$X of it restored to prepaid credit", the totals and the lines CSV have a row for
#: it, and it carries no tax), where 1-6 gave all of it back in money and tax.
#: 8: printed as 7; the detail CSV lists the requests behind each prior-period adjustment (rows
#: of kind ``adjustment``: the attempts billed since the period was issued, those no longer
#: billed, pipeline/adjustment_detail.py), so its rows add up to the adjustment lines, and an
#: adjustment line's "(prices ...)" names the versions that priced its own tokens, where 6-7
#: named every version of the period's line now (one that priced none of the late usage too).
#: 9: the content of 8 (every number, table, note, the chart, the page header and footer),
#: laid out with a fifth less of WeasyPrint's work (issue 14 item 4, reports/templates/
#: statement-9.css): the masthead and parties blocks as floats instead of flexbox, the billing
#: notes as two lists side by side instead of two balanced CSS columns, every table
#: ``table-layout: fixed``, the chart's day numbers as one SVG text; and under the adjustments,
#: a sentence saying that the detail CSV lists the requests behind each of them.
#: 10: printed as 9; of a negative adjustment of period P, the money refunded is at most P's
#: statement's part (the lower of its net and what it asked for its usage, less its notes)
#: plus what later statements asked for positive adjustments of P less what credit notes gave
#: back of those asks (layouts 7-9 subtracted only notes against P's statement, so a note on
#: a later ask of P was refunded again); the rest is restored to the prepaid credit that paid
#: P, including what later statements drew for asks of P (layouts 7-9 refunded that in money;
#: docs/credits.md "Restoring credit", point 6).
#: 11: printed as 10; a month after the last issued period in which no account with prepaid
#: credit was billed is closed by the next statement: its credit block covers the movements
#: dated in it (a grant bought the month before the first statement, or in a month without
#: usage) and then names its first day ("Opening balance, 1 October 2026", "Credit granted
#: since 1 October 2026"), they are stored with it, and its prior-period adjustments draw and
#: restore prepaid credit there
#: (layouts 1-10 never stored those movements, so the statement after next failed on a
#: negative opening balance, and refunded in money what credit had paid; docs/credits.md).
#: 12: printed as 11; when a credit note on a statement gave back more money than the lines it
#: credited had asked (a note gives back the statement's money first, and credit paid those
#: lines in part), the part that goes to a positive adjustment of an earlier period Q it did not
#: credit moves the prepaid credit with it: that ask is now paid with the statement's credit, so
#: a refund of Q restores it to prepaid credit (layouts 7-11 counted it as the noted period's,
#: whose credited line is never refunded again, and refunded Q's part in money;
#: docs/credits.md "A note's money moved to an ask"); and a period whose statement (layout 10
#: on) netted a refund of an earlier period counts as its money all it asked for its usage, not
#: at most its net (that refund was genuine), so a later refund of it gives back that much in
#: money (layouts 10-11 gave back the netted refund less); and a negative adjustment of a line
#: a rule-2 credit note credited gives back what was paid for it since, not counting twice the
#: part a later statement had refunded before the note (layouts 5-11 kept 0.75 of a customer's
#: money once tokens came back and went again).
#: 13: printed as 12; that refund cap subtracts all a note printed as already refunded by a
#: later statement, not only the part it still holds back (from credit note rule 3 a note holds
#: back only refunded tokens that did not come back since, e.g. through an ask a note credited),
#: so tokens billed again after such a note are refunded in full when they go (layout 12 kept
#: 1.50 + 0.29 VAT; docs/credits.md "A credited ask, then a note, then tokens back and gone");
#: and of a line a note credited, the money the note gave back is at most its money less that
#: printed part, so the rest goes to the statement's other lines and the prepaid credit moves
#: with it to an ask of an earlier period also when a refund came before the note.
#: 14 (migration 050): printed as 13; counts the money a credit note of rule 7 on gave
#: back of each line as the note attributed it when issued (``credit_note_money``): its money
#: beyond its own lines goes to an ask of an earlier period only as far as that period has money
#: left, so the prepaid credit moves with it only where a refund of the period can restore it
#: (docs/credits.md "Closed (credit note rule 7)").
#: 15: printed as 14, its usage charges and attempts not billed laid out as one fixed-width text
#: a row and its billing notes as one fixed-width text of two columns (issue 14 item 4:
#: WeasyPrint's cost is per cell and line; a third of a statement's CPU was the eight-cell
#: charges table).
LAYOUT_VERSION = 15
LAYOUT_VERSIONS = tuple(range(1, LAYOUT_VERSION + 1))
NUMBERED_FROM = 2  # the first layout that prints line numbers
TIGHT_FROM = 3  # the first layout with the tighter spacing from the start
ADJUSTMENTS_BY_TOKENS_FROM = 4  # the first whose adjustment lines are their tokens x unit price
NOTHING_DUE_FROM = 4  # the first that says "Nothing to pay" instead of a due date when 0.00 is due
# the first whose e-invoice (and the e-invoices of credit notes against it) carries the issuer's
# registration as BT-30 (EN 16931 BR-CO-26: a seller identifier; out-of-scope invoices carry no VAT ID)
SELLER_LEGAL_ID_FROM = 4
NET_OF_CREDIT_NOTES_FROM = 5  # the first whose negative adjustments stop at what was paid for the line
IDLE_PERIOD_DRAWS_AT_END_FROM = 5  # the first whose usage-less period draws credit at its end
# the first whose credit notes say whether the part not credited was prepaid credit or offset by
# the statement's negative lines (before: always "paid with prepaid credit")
RETAINED_CAUSE_FROM = 5
PREPAID_ROW_FROM = 5  # the first whose lines CSV has a row for the prepaid credit applied
# the first whose row of lines under half a cent sums their tokens only within one model and class
ZERO_ROW_TOKENS_FROM = 5
# the first whose lines are one per (model, token class, unit price), summed over the price
# versions that priced them and rounded once (before: one line per price version, each rounded)
LINES_BY_UNIT_PRICE_FROM = 6
# the first whose negative adjustments restore to prepaid credit the part prepaid credit paid
RESTORES_PREPAID_CREDIT_FROM = 7
# the first whose detail CSV lists the requests behind each adjustment, and whose adjustment
# lines name only the price versions that priced their own tokens
ADJUSTMENT_DETAIL_FROM = 8
LEAN_LAYOUT_FROM = 9  # the first laid out by statement-9.css (floats, notes side by side, fixed tables)
# the first whose usage charges and attempts not billed are one fixed-width text a row, and its
# billing notes one fixed-width text of two columns (reports/text_tables.py, statement-15.css)
TEXT_TABLES_FROM = 15
# the first whose refunds count what credit notes gave back of later asks of a period
PERIOD_MONEY_GIVEN_BACK_FROM = 10
# the first that stores the credit movements of months without statements before it, and draws
# and restores credit for its adjustments even when such a month lies between it and the last issued
SKIPPED_MONTHS_CLOSED_FROM = 11
# the first whose refunds count as prepaid credit an earlier period's ask whose money a credit
# note on its statement gave back in place of the credited lines' own (the credit moved with it)
NOTE_MONEY_MOVES_CREDIT_FROM = 12
# the first whose refunds of a period count as its money all its statement asked for its usage
# when that statement (layout 10 on) netted a refund of an earlier period (before: at most its net)
NETTED_REFUNDS_PAID_FROM = 12
# the first whose refund of a credited line subtracts all a note printed as already refunded
# (credit_note_lines.printed_refunded_usd), not only the part it still holds back
PRINTED_REFUNDED_FROM = 13
# the first that reads what a credit note of rule 7 on gave back of each line from the
# attribution the note stored when issued (credit_note_money), not as its lines attribute it now
NOTE_MONEY_AS_ISSUED_FROM = 14
VERSION_SEPARATOR = ";"  # between the price versions of one line (layout 6 on)


def price_versions_of(field: str) -> list[str]:
    """The price versions a line's ``price_version`` names (one before layout 6)."""
    return field.split(VERSION_SEPARATOR)


def versions_text(field: str) -> str:
    """A line's price versions as printed: "2026-11-01, 2026-11-15"."""
    return ", ".join(price_versions_of(field))


def due_rules(layout_version: int = LAYOUT_VERSION) -> DueRules:
    """The adjustment and credit rules of a statement of ``layout_version`` (above)."""
    return DueRules(
        adjustments_by_tokens=layout_version >= ADJUSTMENTS_BY_TOKENS_FROM,
        adjustments_net_of_credit_notes=layout_version >= NET_OF_CREDIT_NOTES_FROM,
        idle_period_draws_at_end=layout_version >= IDLE_PERIOD_DRAWS_AT_END_FROM,
        lines_by_unit_price=layout_version >= LINES_BY_UNIT_PRICE_FROM,
        restores_prepaid_credit=layout_version >= RESTORES_PREPAID_CREDIT_FROM,
        period_money_given_back=layout_version >= PERIOD_MONEY_GIVEN_BACK_FROM,
        skipped_months_closed=layout_version >= SKIPPED_MONTHS_CLOSED_FROM,
        note_money_moves_credit=layout_version >= NOTE_MONEY_MOVES_CREDIT_FROM,
        netted_refunds_paid=layout_version >= NETTED_REFUNDS_PAID_FROM,
        refunded_not_credited=layout_version >= NETTED_REFUNDS_PAID_FROM,
        printed_refunded_not_credited=layout_version >= PRINTED_REFUNDED_FROM,
        line_money_net_of_refunds=layout_version >= PRINTED_REFUNDED_FROM,
        note_money_as_issued=layout_version >= NOTE_MONEY_AS_ISSUED_FROM,
    )


def due_parameters(period: str, layout_version: int = LAYOUT_VERSION) -> dict[str, object]:
    """The parameters of pipeline/sql/statement_lines_due.sql for a statement of ``layout_version``
    (its adjustment rules, above)."""
    return due_rules(layout_version).sql_parameters(period)


#: The billing notes printed on every statement: the public API docs (section 5) and how
#: retried and failed requests are treated (SPEC R2, R3, R7, R8).
DEFAULT_BILLING_NOTES: tuple[str, ...] = (
    "InferGate pricing is usage-based and calculated per 1M tokens.",
    "List prices are set at 1.5\u00d7 the current official upstream reference price of each model.",
    "Final billed usage may depend on request type, model route, tokenization, provider "
    "behavior, failed/retried requests, and account-specific settings.",
    "Only one attempt per request is billed: when a request is retried or failed over to "
    "another provider, the final successful attempt is billed and the others are not.",
    "Requests that fail with an error status (4xx or 5xx) are not billed, even where the provider reported usage.",
    "Responses cut off before producing any output are not billed.",
    "Requests closed by the client before completion (status 499) are billed for the output "
    "generated up to the moment the connection closed.",
    "Charges are computed exactly, summed per line and rounded half-up to the cent; the total "
    "is the sum of the rounded lines. Periods are calendar months in UTC.",
)


def _fail(owner: object, message: str) -> ValueError:
    return ValueError(f"{type(owner).__name__}: {message}")


def _text(owner: object, name: str, value: object, *, empty_ok: bool = False) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{type(owner).__name__}.{name} must be str, not {type(value).__name__}")
    if not empty_ok and not value.strip():
        raise _fail(owner, f"{name} is empty")


def _count(owner: object, name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{type(owner).__name__}.{name} must be int, not {type(value).__name__}")
    if value < 0:
        raise _fail(owner, f"{name} is negative ({value})")


def _amount(owner: object, name: str, value: object, *, cents: bool = True) -> None:
    if not isinstance(value, Decimal):
        raise TypeError(f"{type(owner).__name__}.{name} must be Decimal, not {type(value).__name__}")
    D(value)  # refuses NaN and infinities
    if cents and value != to_cents(value):
        raise _fail(owner, f"{name} {value} is not rounded to cents")


def _day(owner: object, name: str, value: object) -> None:
    if not isinstance(value, date) or isinstance(value, datetime):
        raise TypeError(f"{type(owner).__name__}.{name} must be a date, not {value!r}")


def _tuple_of(owner: object, name: str, value: object, kind: type) -> None:
    if not isinstance(value, tuple) or not all(isinstance(v, kind) for v in value):
        raise TypeError(f"{type(owner).__name__}.{name} must be a tuple of {kind.__name__}")


def _exact_sum(values: Iterable[Decimal]) -> Decimal:
    total = ZERO
    for value in values:
        total = EXACT.add(total, value)
    return total


_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_STATEMENT_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_PER_TOKEN = Decimal("0.000001")


@dataclass(frozen=True)
class Party:
    """Someone a statement is from or to: legal name, postal address, billing email."""

    name: str
    address_lines: tuple[str, ...]
    email: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2; not printed (the address says it), e-invoices need it

    def __post_init__(self) -> None:
        _text(self, "name", self.name)
        _tuple_of(self, "address_lines", self.address_lines, str)
        if self.email is not None:
            _text(self, "email", self.email)
        if self.country is not None and not (isinstance(self.country, str) and _COUNTRY.match(self.country)):
            raise _fail(self, f"country {self.country!r} is not an ISO 3166 alpha-2 code")


@dataclass(frozen=True)
class StatementLine:
    """Usage of one model and token class at one unit price, for the whole period.

    ``price_version``: the version that priced it; from layout 6 the versions, joined by
    ``;`` (VERSION_SEPARATOR), when the same unit price held across a new version.
    """

    model: str
    model_name: str
    token_class: str
    quantity: int
    unit_price_per_1m: Decimal
    price_version: str
    amount: Decimal
    list_price_per_1m: Decimal | None = None  # before group multiplier and discount (issue 16)
    price_basis: str = ""  # how unit price follows from list price: "12.5% discount", "negotiated price"

    def __post_init__(self) -> None:
        if self.list_price_per_1m is not None:
            _amount(self, "list_price_per_1m", self.list_price_per_1m, cents=False)
        _text(self, "price_basis", self.price_basis, empty_ok=True)
        _text(self, "model", self.model)
        _text(self, "model_name", self.model_name)
        if self.token_class not in TOKEN_CLASSES:
            raise _fail(self, f"token_class {self.token_class!r} is not one of {TOKEN_CLASSES}")
        _count(self, "quantity", self.quantity)
        _amount(self, "unit_price_per_1m", self.unit_price_per_1m, cents=False)
        if self.unit_price_per_1m < 0:
            raise _fail(self, f"unit price {self.unit_price_per_1m} is negative")
        _text(self, "price_version", self.price_version)
        _amount(self, "amount", self.amount)
        exact = EXACT.multiply(EXACT.multiply(D(self.quantity), self.unit_price_per_1m), _PER_TOKEN)
        if self.amount != to_cents(exact):
            raise _fail(
                self,
                f"{self.model} {self.token_class}: amount {self.amount} is not "
                f"{self.quantity} tokens x {self.unit_price_per_1m}/1M = {exact} rounded to cents",
            )

    @property
    def token_class_label(self) -> str:
        return TOKEN_CLASSES[self.token_class]


@dataclass(frozen=True)
class AdjustmentLine:
    """A correction for an earlier, already issued period (late records, SPEC R10)."""

    original_period: str
    description: str
    amount: Decimal

    def __post_init__(self) -> None:
        if not Period.is_valid(self.original_period):
            raise _fail(self, f"original_period {self.original_period!r} is not 'YYYY-MM'")
        _text(self, "description", self.description)
        _amount(self, "amount", self.amount)


@dataclass(frozen=True)
class DailyUsage:
    """Billed usage on one UTC day, for the chart."""

    day: date
    amount: Decimal
    requests: int

    def __post_init__(self) -> None:
        _day(self, "day", self.day)
        _amount(self, "amount", self.amount, cents=False)
        if self.amount < 0:
            raise _fail(self, f"{self.day}: amount {self.amount} is negative")
        _count(self, "requests", self.requests)


@dataclass(frozen=True)
class NonBilledCount:
    """How many attempts of the period were not billed, for one reason code."""

    reason: str
    attempts: int

    def __post_init__(self) -> None:
        if self.reason not in NON_BILLED_REASONS:
            raise _fail(self, f"unknown reason code {self.reason!r}")
        _count(self, "attempts", self.attempts)

    @property
    def explanation(self) -> str:
        return NON_BILLED_REASONS[self.reason]


@dataclass(frozen=True)
class PriceVersionRef:
    """A price table version used on the statement, identified by its content hash."""

    version_id: str
    effective_from: str
    sha256: str

    def __post_init__(self) -> None:
        _text(self, "version_id", self.version_id)
        _text(self, "effective_from", self.effective_from)
        if not isinstance(self.sha256, str) or not _SHA256.match(self.sha256):
            raise _fail(self, f"sha256 {self.sha256!r} is not 64 lowercase hex digits")

    @property
    def short_hash(self) -> str:
        return self.sha256[:12]


@dataclass(frozen=True)
class StatementDocument:
    """Everything printed on one account's statement for one period."""

    statement_number: str | None  # None: a DRAFT, not yet issued
    account_id: str
    account: Party
    issuer: Party
    period: str  # 'YYYY-MM'
    period_start: date
    period_end: date  # exclusive
    issue_date: date
    currency: str
    lines: tuple[StatementLine, ...]
    adjustments: tuple[AdjustmentLine, ...]
    usage_total: Decimal
    adjustments_total: Decimal
    total_due: Decimal
    billed_requests: int
    daily_usage: tuple[DailyUsage, ...]
    non_billed: tuple[NonBilledCount, ...]
    price_versions: tuple[PriceVersionRef, ...]
    estimated_attempts: int
    estimated_tokens: int
    credits_applied: Decimal = Decimal("0")  # prepaid credit drawn for this statement (issue 17)
    # layout 7 on: the part of negative adjustments that prepaid credit had paid, given back as
    # credit (so not netted from the money due, nor taxed)
    credits_restored: Decimal = Decimal("0")
    tax_amount: Decimal = Decimal("0")  # tax on net_amount (issue 16)
    billing_notes: tuple[str, ...] = field(default=DEFAULT_BILLING_NOTES)
    credits: CreditSummary | None = None
    tax: TaxSummary | None = None  # how the statement is taxed (None: no tax shown, issue 16)
    terms: PaymentTerms | None = None  # payment terms, due date, PO reference (issue 16)
    e_invoice: str | None = None  # "factur-x": the PDF is PDF/A-3 with an EN 16931 XML (issue 16 item 5)
    layout_version: int = LAYOUT_VERSION  # the template's layout (LAYOUT_VERSIONS): issued ones keep theirs

    def __post_init__(self) -> None:
        if self.layout_version not in LAYOUT_VERSIONS:
            raise _fail(self, f"layout_version {self.layout_version!r} is not one of {LAYOUT_VERSIONS}")
        number = self.statement_number
        if number is not None and (not isinstance(number, str) or not _STATEMENT_NUMBER.match(number)):
            raise _fail(self, f"statement_number {number!r} is not a plain identifier")
        _text(self, "account_id", self.account_id)
        if not isinstance(self.account, Party) or not isinstance(self.issuer, Party):
            raise TypeError("StatementDocument.account and .issuer must be Party")
        if not isinstance(self.currency, str) or not _CURRENCY.match(self.currency):
            raise _fail(self, f"currency {self.currency!r} is not an ISO 4217 code")
        self._check_period()
        _tuple_of(self, "lines", self.lines, StatementLine)
        _tuple_of(self, "adjustments", self.adjustments, AdjustmentLine)
        _tuple_of(self, "daily_usage", self.daily_usage, DailyUsage)
        _tuple_of(self, "non_billed", self.non_billed, NonBilledCount)
        _tuple_of(self, "price_versions", self.price_versions, PriceVersionRef)
        _tuple_of(self, "billing_notes", self.billing_notes, str)
        for name in ("billed_requests", "estimated_attempts", "estimated_tokens"):
            _count(self, name, getattr(self, name))
        self._check_daily_usage()
        self._check_totals()
        if self.e_invoice not in (None, "factur-x"):
            raise _fail(self, f"e_invoice {self.e_invoice!r} is not 'factur-x'")

    def _check_period(self) -> None:
        if not Period.is_valid(self.period):
            raise _fail(self, f"period {self.period!r} is not 'YYYY-MM'")
        for name in ("period_start", "period_end", "issue_date"):
            _day(self, name, getattr(self, name))
        period = Period.parse(self.period)
        start, end = period.first_day, period.end_day
        if (self.period_start, self.period_end) != (start, end):
            raise _fail(
                self,
                f"period {self.period} is [{start}, {end}), not [{self.period_start}, {self.period_end})",
            )

    def _check_daily_usage(self) -> None:
        days = [usage.day for usage in self.daily_usage]
        if len(set(days)) != len(days):
            raise _fail(self, "daily_usage lists a day twice")
        outside = [d for d in days if not self.period_start <= d < self.period_end]
        if outside:
            raise _fail(self, f"daily_usage day {outside[0]} is outside period {self.period}")

    def _check_totals(self) -> None:
        for name in ("usage_total", "adjustments_total", "total_due"):
            _amount(self, name, getattr(self, name))
        lines_sum = _exact_sum(line.amount for line in self.lines)
        if self.usage_total != lines_sum:
            raise _fail(self, f"usage_total {self.usage_total} != sum of lines {lines_sum}")
        adjustments_sum = _exact_sum(adj.amount for adj in self.adjustments)
        if self.adjustments_total != adjustments_sum:
            raise _fail(
                self,
                f"adjustments_total {self.adjustments_total} != sum of adjustments {adjustments_sum}",
            )
        for name in ("credits_applied", "tax_amount", "credits_restored"):
            _amount(self, name, getattr(self, name))
        self._check_restored()
        charges = EXACT.add(EXACT.add(self.usage_total, self.adjustments_total), self.credits_restored)
        if self.credits_applied < 0 or (charges > 0 and self.credits_applied > charges):
            raise _fail(self, f"credits_applied {self.credits_applied} is not within [0, charges {charges}]")
        if self.credits is not None:
            if not isinstance(self.credits, CreditSummary):
                raise TypeError("StatementDocument.credits must be a CreditSummary")
            if self.credits.applied != self.credits_applied:
                raise _fail(
                    self, f"credits_applied {self.credits_applied} != credit block applied {self.credits.applied}"
                )
            if self.credits.restored != self.credits_restored:
                raise _fail(
                    self, f"credits_restored {self.credits_restored} != credit block restored {self.credits.restored}"
                )
        self._check_tax()
        expected = EXACT.add(self.net_amount, self.tax_amount)
        if self.total_due != expected:
            raise _fail(
                self,
                f"total_due {self.total_due} != net_amount {self.net_amount} + tax_amount {self.tax_amount}",
            )

    def _check_restored(self) -> None:
        """Only layout 7 on restores credit, never more than its negative adjustments give back."""
        if self.credits_restored == 0:
            return
        if self.layout_version < RESTORES_PREPAID_CREDIT_FROM:
            raise _fail(self, f"layout {self.layout_version} restores no prepaid credit ({self.credits_restored})")
        given_back = -_exact_sum(adj.amount for adj in self.adjustments if adj.amount < 0)
        if not 0 < self.credits_restored <= given_back or self.credits is None:
            raise _fail(
                self,
                f"credits_restored {self.credits_restored} is not within (0, negative adjustments {given_back}]"
                " with a credit block",
            )

    def _check_tax(self) -> None:
        """The tax printed is the tax on the net at the statement's rate (none without a rate)."""
        from reports.invoice_model import PaymentTerms, TaxSummary

        if self.tax is not None and not isinstance(self.tax, TaxSummary):
            raise TypeError("StatementDocument.tax must be a TaxSummary")
        if self.terms is not None and not isinstance(self.terms, PaymentTerms):
            raise TypeError("StatementDocument.terms must be PaymentTerms")
        expected = tax_on(self.net_amount, self.tax.rate_pct) if self.tax is not None else ZERO
        if self.tax_amount != expected:
            raise _fail(self, f"tax_amount {self.tax_amount} is not the tax on net {self.net_amount} ({expected})")

    @property
    def is_draft(self) -> bool:
        return self.statement_number is None

    @property
    def net_amount(self) -> Decimal:
        """Charges plus the credit restored (layout 7 on: not given back in money) less prepaid
        credit applied: the amount tax is computed on."""
        return self.usage_total + self.adjustments_total + self.credits_restored - self.credits_applied
