"""Credit notes against issued statements (issue 16 item 4): plan, number, store, render, publish.

``issue_credit_note`` is the whole job, one recorded run (command ``credit-note``) under the
run lock, like ``statements --finalize``:

1. **Plan** (:func:`plan`): the statement must be issued; the lines are its stored lines
   (``statement_issued_lines.line_no``: row N of the statement's lines CSV), each credited in
   full and at most once (the amounts credited per line never exceed the line's amount). The
   net credited is capped by what is left of the statement's net (the part of the lines the
   statement covered with prepaid credit is not credited, see docs/invoicing.md); tax follows
   the statement's treatment and rate, by ``core.money.tax_on`` on the note's net, the last
   note of a statement taking the remainder of its tax.
2. **Number** from the credit notes' own gap-free sequence: ``CN-2026-000001`` (the issuer's
   ``credit_note_number_prefix``, default ``CN``; the issue year; one global sequence).
3. **Store** the row (with the bill-to, tax and issuer hash it prints) and its lines, then
   build the document **from those rows** (:func:`document_from_stored`), which is also how a
   replay rebuilds it, render PDF + lines CSV, stage the files, store their bytes, commit,
   publish (rename) them to ``OUT/credit_notes/PERIOD/``.

Nothing is ever updated: a mistake in a credit note is corrected by another document.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb

from core.db import column_exists, transaction
from core.errors import BillingError, UsageProblem
from core.money import ZERO, D, Decimal, tax_on
from pipeline import jobs, reference, statements
from pipeline.filenames import checked_file_name
from pipeline.issuer import BUILT_IN, DEFAULT_CREDIT_NOTE_PREFIX, Issuer
from reports.credit_note_model import CreditedLine, CreditNoteDocument
from reports.csvsafe import csv_bytes
from reports.invoice_model import REVERSE_CHARGE_NOTE, IssuerParty, TaxSummary
from reports.statement_model import PERIOD_MONEY_GIVEN_BACK_FROM, AdjustmentLine, Party, StatementLine

__all__ = [
    "LINES_HEADER",
    "CreditNoteError",
    "CreditNoteReport",
    "document_from_stored",
    "issue_credit_note",
    "plan",
    "render_files",
]

COMMAND = "credit-note"
#: How much money a new credit note may credit (``credit_notes.money_rule``, migration 036):
#: 1, the statement's net less earlier credit notes (notes issued before rule 2 have NULL, and
#: their runs re-execute with it); 2, also less the money later statements refunded for the
#: period through negative prior-period adjustments, plus the money they asked for positive
#: adjustments of it that no credit note credited, and per line at most its amount less the
#: refunds of its key (docs/invoicing.md "Credit notes"); 3, also the adjustment lines of an
#: earlier period Q on a later statement at most what is left of all the money asked for Q
#: (:func:`_period_money_left`), so a note on a later statement's positive adjustment of Q does
#: not credit money that Q's own credit notes and refunds already gave back; 4, also all lines
#: together at most what is left of the statement's money line by line (:func:`_money_left_on`:
#: its usage lines' money at most what is left of its period's, each positive adjustment line's
#: at most what is left of its period's): rules 2-3 counted the statement's money as its net less
#: refunds of its own period, so a note on its usage lines credited again the money it asked for
#: an earlier period once a refund of that period had given it back; 5, counts what is left of
#: a period's money exactly as statements count it (:func:`statements.period_money_left`: a
#: note's money goes to the lines it credited, then to its statement's other lines, and a
#: statement of layout 10 on that netted a refund keeps its usage money), and of a line what
#: notes gave back of it; credits the chosen lines' money even beyond the statement's net when
#: it netted a refund of an earlier period (with the tax of that money); and keeps as prepaid
#: the part of the chosen lines prepaid credit paid when their money is short (rule 4 printed
#: it as already given back, so credit used was never accounted for; docs/invoicing.md); and
#: credits charges only: a refund line (a negative adjustment) stands, as crediting it took the
#: refund back while the period's tokens stayed removed; 6 (migration 049), credits as rule 5 and
#: stores per line the part it printed as already given back by refunds and notes (rules 3-5's
#: ``given_back_of``, ``credit_note_lines.printed_given_back_usd``) beside rule 2's part (the
#: refunds of the line's key for its own period): rules 3-5 stored only rule 2's, so the refund
#: cap of statement_lines_due.sql (issued less credited less the part printed) counted the rest
#: as credited, and where a refund of the same key had given it back (in the issued amount),
#: subtracted it twice (docs/credits.md "Closed (credit note rule 6)"); 7 (migration 050),
#: credits as rule 6 and stores how it attributes its money to its statement's lines
#: (:func:`_attribution`, ``credit_note_money``): the lines it credits first, then the other lines
#: in printed order, each at most what is left of its money and of its period's money, as it
#: counted them when it was issued (then the period's money a later statement asked again).
#: Statements (layouts 10-13) attributed a note's money beyond its lines later, in printed order
#: whatever was left of each line's period, so it could go to an ask whose period was already
#: given back, and the prepaid credit moved with it was never restored (the random histories'
#: seed 53, docs/credits.md "Closed (credit note rule 7)"); 8 (migration 051), credits as rule 7
#: and also prints as already given back the part of a line of its own period that refunds of
#: the line's key restored to prepaid credit (:attr:`_GivenBack.restored_by_key`, net of later asks
#: of the key that drew credit again), stored with the rest in ``printed_given_back_usd``: rules
#: 2-7 printed only the money part of such a refund, so the restored part was still to credit and,
#: the statement's money being short, was kept as prepaid while the note gave back the money of
#: another line: counted twice (the random histories' seed 185: grant 3.00; December's usage 6.00,
#: 3.00 prepaid and 3.00 money, and +1.50 of November in money; January refunds 4.50 of December,
#: 3.00 in money and 1.50 restored to credit; a rule-7 note on December's usage line prints 3.00 as
#: refunded, gives back 1.50 (the ask's money) and keeps 1.50 as prepaid, though January restored
#: that credit already. Rule 8 prints 3.00 as refunded and 1.50 as given back, gives back 1.50 and
#: keeps nothing: its credit moves to the ask with its money. Seed 231: a refund gave a usage line
#: back in full, 3.00 in money and 3.00 restored; a rule-7 note printed the 3.00 refunded only and
#: gave back 1.50 of an ask's money, whose credit layout 12 moved to be restored a second time;
#: rule 8 refuses that note, nothing is left of the line; docs/credits.md "Closed (credit note
#: rule 8)"); 9 (migration 052), credits as rule 8 and also prints as already given back the part of
#: the prepaid credit the statement applied to a credited ask of an earlier period Q (a positive
#: adjustment line) that Q's credit pool lacks once the note credits the ask
#: (:func:`_asks_restored`: statement_lines_due.sql's ``paid.credit_left``, read from the same CTEs,
#: is what refunds of Q restored beyond the credit that stays in the pool), and takes it out of the
#: statement's credit still standing (:func:`_credit_standing`): rule 8 did so only for lines of the
#: note's own period, so a note on an ask kept as prepaid credit a refund had restored (the random
#: histories' seed 339: grant 3.00; January, no usage, +3.00 of November all prepaid and +1.50 of
#: December in money; a note gives back November's 3.00; February's -3.00 of November restores
#: January's 3.00; a rule-8 note on January's two asks gives back 1.50 and keeps 3.00, where rule 9
#: prints the 3.00 as given back and keeps nothing). Where Q's own credit still covers what was
#: restored, nothing is printed (a review's history: November's own 3.00 prepaid, February
#: restored 1.50, November's pool 4.50 holds the ask's 3.00): the first rule 9, reverted, printed
#: the credit refunds of Q's key restored, and March then refunded 1.50 of November's credit in
#: money (docs/credits.md "Closed (credit note rule 9)"). Rule 9 stores that part on its own too
#: (``credit_note_lines.printed_ask_restored_usd``), which Q's pool adds back (the restoration
#: was the credited ask's), so a later ask of Q stands in the pool; and it gives the part first
#: to the asks whose key's refunds restored credit, then in printed order (a second review).
MONEY_RULE = 9
#: the statement layout whose counting of money rules 5 and 6 read (statement_lines_due.sql's
#: `paid` and `line_money`): fixed, so a note re-executes with its figures after later layouts
RULE_5_STATEMENT_LAYOUT = 12
#: the layout rule 7 on reads: 14, which counts earlier rule-7 notes by what they stored (rules 8
#: and 9 store what rule 7 stores, in the same columns: the same layout reads it)
RULE_7_STATEMENT_LAYOUT = 14


def _layout_read_by(money_rule: int) -> int:
    """The statement layout whose counting of money a note of ``money_rule`` (5 on) reads."""
    return RULE_7_STATEMENT_LAYOUT if money_rule >= 7 else RULE_5_STATEMENT_LAYOUT


# a credited line is the statement's line (its columns up to amount_usd), under the note's number
LINES_HEADER = (
    "credit_note_number",
    *statements.LINES_HEADER[:3],  # statement_number, account_id, period
    "line_no",
    *statements.LINES_HEADER[3 : statements.LINES_HEADER.index("amount_usd") + 1],
)


class CreditNoteError(BillingError, RuntimeError):
    """A credit note that must not be issued (draft statement, line already credited...)."""

    default_hint = "nothing was issued; see docs/invoicing.md (Credit notes)"


@dataclass(frozen=True)
class _Line:
    line_no: int
    kind: str
    original_period: str
    model: str
    token_class: str
    price_version: str
    unit_price_per_1m: Decimal
    quantity_tokens: int
    amount: Decimal
    credited: Decimal  # by earlier credit notes
    credited_by: str | None


@dataclass(frozen=True)
class Plan:
    """What a credit note will credit, before it is numbered."""

    statement_number: str
    account_id: str
    period: str
    line_nos: tuple[int, ...]
    descriptions: tuple[str, ...]
    lines_total: Decimal
    prepaid_retained: Decimal
    net: Decimal
    tax_treatment: str | None
    tax_rate_pct: Decimal | None
    tax_rule: str
    tax: Decimal
    money_rule: int = 1
    refunded: Decimal = ZERO  # rule 2: the part of the lines later statements already refunded
    refunded_on: str | None = None  # the statements that refunded it, ", "-joined
    line_refunded: tuple[Decimal, ...] = ()  # rule 2: what each line of ``line_nos`` holds back of it
    # rule 2: the part of each line printed as already refunded (``line_refunded``: from rule 3
    # only the refunded tokens that did not come back since)
    line_printed_refunded: tuple[Decimal, ...] = ()
    # rule 6: the part of each line printed as already given back by refunds and notes (rules
    # 3-5's ``given_back_of``; ``credit_note_lines.printed_given_back_usd``); None before rule 6
    line_given_back: tuple[Decimal, ...] | None = None
    # rule 7: (line number, money) the note gives back of each line of its statement, its own
    # lines first (``credit_note_money``; :func:`_attribution`); None before rule 7
    money_by_line: tuple[tuple[int, Decimal], ...] | None = None
    # rule 9: of ``line_given_back``, the part of each line that is the credit refunds of an
    # earlier period Q restored of an ask of Q (:func:`_asks_restored`;
    # ``credit_note_lines.printed_ask_restored_usd``, which Q's credit pool adds back); None
    # before rule 9
    line_ask_restored: tuple[Decimal, ...] | None = None


@dataclass
class CreditNoteReport:
    number: str
    document: CreditNoteDocument
    written: list[Path] = field(default_factory=list)
    run_id: int = 0  # the recorded run that issued it


def _statement(con: duckdb.DuckDBPyConnection, number: str) -> tuple:
    row = con.execute(
        "SELECT s.account_id, s.period, s.issue_date, s.total_usd - coalesce(c.applied_usd, 0), "
        "coalesce(i.net_usd, s.total_usd - coalesce(c.applied_usd, 0)), coalesce(i.tax_usd, 0), "
        "i.tax_treatment, i.tax_rate_pct FROM statements s "
        "LEFT JOIN statement_credits c USING (statement_number) "
        "LEFT JOIN statement_invoicing i USING (statement_number) WHERE s.statement_number = ?",
        [number],
    ).fetchone()
    if row is None:
        raise CreditNoteError(
            f"{number} is not an issued statement; only issued (finalized) statements can be credited",
            hint="a draft is corrected by re-rating and re-drafting it; list issued statements with "
            '`infergate-billing sql "SELECT statement_number FROM statements"`',
        )
    return row


def _lines(con: duckdb.DuckDBPyConnection, number: str) -> list[_Line]:
    rows = con.execute(
        "SELECT l.line_no, l.kind, l.original_period, l.model, l.token_class, l.price_version, "
        "l.unit_price_per_1m, l.quantity_tokens, l.amount, coalesce(sum(c.amount_usd), 0), "
        "min(c.credit_note_number) FROM statement_issued_lines l "
        "LEFT JOIN (SELECT cl.* FROM credit_note_lines cl JOIN credit_notes n USING (credit_note_number) "
        "           WHERE n.statement_number = $n) c USING (line_no) "
        "WHERE l.statement_number = $n GROUP BY ALL ORDER BY l.line_no",
        {"n": number},
    ).fetchall()
    return [
        _Line(int(n), kind, original, model, klass, version, D(unit), int(qty), D(amount), D(credited), by)
        for n, kind, original, model, klass, version, unit, qty, amount, credited, by in rows
    ]


def plan(
    con: duckdb.DuckDBPyConnection,
    statement_number: str,
    line_nos: Sequence[int] | None,
    money_rule: int = MONEY_RULE,
) -> Plan:
    """The credit note of ``line_nos`` (None: every line not yet credited) of a statement, under
    ``money_rule`` (:data:`MONEY_RULE`; 1 when a run recorded before rule 2 re-executes)."""
    account, period, _, _, net, tax, treatment, rate = _statement(con, statement_number)
    lines = _lines(con, statement_number)
    by_no = {ln.line_no: ln for ln in lines}
    if line_nos is None:
        # rule 5: charges only; a refund line of the statement stands (see below)
        chosen = [ln for ln in lines if ln.credited == 0 and (money_rule < 5 or ln.amount >= 0)]
        if not chosen and any(ln.credited == 0 for ln in lines):
            raise CreditNoteError(
                f"the lines of {statement_number} not yet credited are refunds of earlier periods, not charges: "
                "nothing to credit",
                hint="a credit note credits charges; a refund on a statement stands",
            )
        if not chosen:
            raise CreditNoteError(
                f"every line of {statement_number} is already credited",
                hint="see `SELECT * FROM credit_notes WHERE statement_number = '...'`; nothing is left to credit",
            )
    else:
        unknown = sorted(set(line_nos) - by_no.keys())
        if unknown:
            raise UsageProblem(
                f"{statement_number} has lines 1 to {len(lines)}, not {', '.join(map(str, unknown))}",
                hint="line N is the Nth row of the statement's lines CSV (its credit and tax rows are not lines)",
            )
        chosen = [by_no[n] for n in sorted(set(line_nos))]
        for ln in chosen:
            if ln.credited_by is not None:  # whole lines: a second credit would exceed the line's amount
                raise CreditNoteError(
                    f"line {ln.line_no} of {statement_number} ({ln.model} {ln.token_class}, {ln.amount}) "
                    f"is already credited by {ln.credited_by}",
                    hint="a line is credited once, in full; leave it out (or use --all for the lines not yet credited)",
                )
            if money_rule >= 5 and ln.amount < 0:
                # crediting a refund would take it back: the period's tokens stay removed, and
                # nothing would refund them again (a history paid 9.75 for no tokens)
                raise CreditNoteError(
                    f"line {ln.line_no} of {statement_number} is a refund of {ln.original_period} ({ln.amount}), "
                    "not a charge: a credit note credits charges, and the refund stands",
                    hint="leave it out; the note may then give back more than the statement's net (the refund "
                    "was paid out with it)",
                )
    lines_total = sum((ln.amount for ln in chosen), ZERO)
    done_net, done_tax = (D(v) for v in con.execute(
        "SELECT coalesce(sum(net_usd), 0), coalesce(sum(tax_usd), 0) FROM credit_notes WHERE statement_number = ?",
        [statement_number],
    ).fetchone() or (0, 0))  # fmt: skip
    left_net, left_tax = D(net) - done_net, D(tax) - done_tax
    # rule 5: the statement's money left line by line (its net may be lower: a refund netted)
    lines_left = _money_left_on(con, account, statement_number, period, lines, money_rule) if money_rule >= 5 else None
    money_of = _line_money(con, statement_number, lines) if lines_left is not None else {}
    asked = sum(money_of.values(), ZERO)
    # rule 9: per chosen ask of an earlier period not yet credited, the part of its credit refunds
    # restored that its period's credit pool no longer holds once the note credits it
    asks_restored = (
        _asks_restored(con, account, statement_number, period, chosen, money_of, money_rule) if money_rule >= 9 else {}
    )
    if (
        lines_left is not None
        and rate is not None
        and _layout_of(con, statement_number) >= PERIOD_MONEY_GIVEN_BACK_FROM
    ):
        # the tax of the money its lines asked: a refund netted on the statement took part of its
        # tax back, which a note crediting the lines does not undo (statements of layouts 1-9
        # count their money at most their net, and so their tax)
        left_tax = max(D(tax), tax_on(asked, D(rate))) - done_tax
    if lines_total <= 0:
        raise CreditNoteError(
            f"lines {', '.join(str(ln.line_no) for ln in chosen)} of {statement_number} amount to {lines_total}: "
            "nothing to credit",
            hint="credit lines with an amount (lines under half a cent are 0.00)",
        )
    if left_net <= 0 and (lines_left is None or lines_left[0] <= 0):
        prepaid = _credits_applied(con, statement_number) > 0
        raise CreditNoteError(
            f"the net amount of {statement_number} ({net}) is already credited in full; the rest of its lines was "
            + ("paid with prepaid credit" if prepaid else "offset by its negative lines (prior-period adjustments)")
            + ", which a credit note does not refund",
            hint="give the customer prepaid credit back with a goodwill grant in the credits file (docs/credits.md)"
            if prepaid
            else "nothing the customer paid is left to credit on this statement",
        )
    # rule 2: less the money later statements already gave back for the period (and its tax),
    # per line: a line gets back at most what is left of it (its amount less the refunds of its
    # key), and all lines together at most the money left of the statement
    refunded_by_line: dict[int, Decimal] = {}
    stored_by_line: dict[int, Decimal] = {}  # credit_note_lines.refunded_usd
    restored_of: dict[int, Decimal] = {}  # rule 8's part, restored to credit (below)
    refunders: tuple[str, ...] = ()
    cap, own_refunded = left_net, ZERO
    if money_rule >= 2:
        given = _given_back(con, account, period, None if treatment is None or rate is None else D(rate))
        taken, own_refunded = min(left_net, given.money), given.money
        if treatment is not None:
            left_tax = max(ZERO, left_tax - given.tax)
        cap = left_net - taken
        if cap <= 0 and (lines_left is None or lines_left[0] <= 0):
            beyond = given.refunded - taken
            raise CreditNoteError(
                f"the money {statement_number} asked for {period} ({net}) is already given back: {taken} of it "
                f"refunded on statement{'s' if len(given.refunders) > 1 else ''} {', '.join(given.refunders)} "
                f"(negative prior-period adjustments of {period})"
                + (f", which refunded {given.refunded} in money in all: the other {beyond} beyond the money "
                   "asked" if beyond > 0 else "")
                + (f"; the rest by earlier credit notes ({done_net})" if done_net else ""),
                hint="nothing the customer paid in money for the period is left to credit; the part prepaid "
                "credit paid was restored to prepaid credit by the refunding statement (statement layout 7) or "
                "stays used",
            )  # fmt: skip
        names_of: dict[str, None] = {}
        for ln in chosen:
            if ln.original_period != period:  # an adjustment line of an earlier period: not P's money
                continue
            key = _line_key(ln.model, ln.token_class, ln.unit_price_per_1m, ln.price_version, given.split)
            part = max(ZERO, min(ln.amount, given.by_key.get(key, ZERO)))
            if part > 0:
                refunded_by_line[ln.line_no] = part
                names_of.update(dict.fromkeys(given.key_refunders[key]))
                # stored as a hold-back: only refunded tokens that did not come back since (an
                # ask a note credited brought them back); rule 2 stored the printed part
                stored_by_line[ln.line_no] = (
                    part if money_rule < 3 else min(part, max(ZERO, given.tokens_by_key.get(key, ZERO)))
                )
        if money_rule >= 8:
            # rule 8: the part of the line refunds of its key restored to prepaid credit (net of
            # later asks of the key that drew credit again) is given back too: printed as such
            # (``given_back_of``, stored in ``printed_given_back_usd``), not credited, and not
            # kept as prepaid (the refund restored that credit already). Seed 185: December's
            # usage line 6.00, January's refund 3.00 in money (printed as refunded above) and
            # 1.50 restored (printed here): 1.50 left, which the note gives back in money
            for ln in chosen:
                if ln.original_period != period:
                    continue
                key = _line_key(ln.model, ln.token_class, ln.unit_price_per_1m, ln.price_version, given.split)
                restored = min(given.restored_by_key.get(key, ZERO), ln.amount - refunded_by_line.get(ln.line_no, ZERO))
                if restored > 0:
                    restored_of[ln.line_no] = restored
                    names_of.update(dict.fromkeys(given.key_restorers.get(key, ())))
        if money_rule >= 9:
            # rule 9: rule 8's part of an ask of an earlier period Q too (a positive adjustment
            # line): of the credit the statement applied to it, what Q's credit pool
            # (statement_lines_due.sql's credit_left) lacks once the note credits it, restored
            # by refunds of Q already. Seed 339: January's +3.00 of November, all prepaid;
            # February's -3.00 of November restored that 3.00, November's credit left is 0.00
            for ln in chosen:
                if ln.line_no in asks_restored:
                    restored_of[ln.line_no], restorers = asks_restored[ln.line_no]
                    names_of.update(dict.fromkeys(restorers))
        refunders = tuple(names_of)
    # rule 3: adjustment lines of earlier periods, the part not credited as already given back
    # for their period (printed with rule 2's part; not stored per line: see the function)
    given_back_of: dict[int, Decimal] = {}
    given_periods: list[str] = []
    completes_at: Decimal | None = cap
    if money_rule >= 3:
        given_for, given_periods = _earlier_periods_given_back(
            con, account, statement_number, chosen, period, given_back_of, money_rule
        )
        if given_for:  # documents are named with their kind: they may be statements and notes
            refunders = tuple(dict.fromkeys([*_with_kind(refunders), *given_for]))
        # the part given back was money this statement asked: it is not credited again (and the
        # note completes the statement's money, taking the rest of its tax, only as before: the
        # tax of the part given back is not this statement's to give back)
        completes_at, cap = cap, cap - sum(given_back_of.values(), ZERO)
    # printed as already given back too, from here on (rule 4's room, the note's lines): rule 8's
    # part, of the lines of the note's own period (rule 3's are of earlier periods). It was credit,
    # not the statement's money, so rule 3's cap above does not count it
    for line_no, part in restored_of.items():
        given_back_of[line_no] = given_back_of.get(line_no, ZERO) + part
    if money_rule >= 4:
        # all lines together: no more than is left of the statement's money line by line; what
        # rules 2-3 would credit beyond it was given back (by refunds and notes of its periods)
        left, givers, short = lines_left or _money_left_on(con, account, statement_number, period, lines)
        before = sum(refunded_by_line.values(), ZERO) + sum(given_back_of.values(), ZERO)
        # what rules 2-3 credit for the chosen lines (rule 5: their amount, not capped by the net)
        wanted = lines_total - before if lines_left is not None else min(lines_total - before, cap)
        gone = wanted - min(wanted, left)  # of that, what is not left: none when they fit in it
        if lines_left is not None:
            # rule 5: what prepaid credit paid of the chosen lines stays used (kept as prepaid),
            # only the rest was given back; the note credits at most the statement's money left,
            # and beyond its net only the money of the refunds netted on it (paid out for their
            # own periods)
            # (rule 9: nor what refunds of its asks' periods restored of their credit)
            restored_asks = sum((part for part, _ in asks_restored.values()), ZERO)
            gone -= min(gone, _credit_standing(con, account, statement_number, period, restored_asks))
            cap = min(left, cap + _netted_refunds(con, statement_number, lines))
            # it completes the statement, taking the rest of its tax, when it credits all of that
            # and only its own period's refunds (whose tax rule 2 deducts) gave any of it back (not
            # when it reaches the net: a review's 6.00 + 1.48; nor when a refund of an ask's
            # period gave part back, whose tax is not deducted: 2.00 + 1.81)
            completes_at = cap if left == asked - done_net - own_refunded else None
        if gone > 0:
            rest = gone
            for ln in chosen:  # printed as already given back, line by line
                part = min(rest, max(ZERO, ln.amount - refunded_by_line.get(ln.line_no, ZERO)
                                     - given_back_of.get(ln.line_no, ZERO)))  # fmt: skip
                if part > 0:
                    given_back_of[ln.line_no] = given_back_of.get(ln.line_no, ZERO) + part
                    rest -= part
            refunders = tuple(dict.fromkeys([*_with_kind(refunders), *givers]))
            given_periods += [q for q in short if q not in given_periods]
            cap = min(cap, left)
    if lines_left is not None and cap <= 0 and not refunded_by_line and not given_back_of:
        raise CreditNoteError(
            f"line{'s' if len(chosen) > 1 else ''} {', '.join(str(ln.line_no) for ln in chosen)} of "
            f"{statement_number} ({lines_total}) {'were' if len(chosen) > 1 else 'was'} paid with prepaid credit, "
            "which a credit note does not refund",
            hint="give the customer prepaid credit back with a goodwill grant in the credits file (docs/credits.md)",
        )
    refunded = sum(refunded_by_line.values(), ZERO) + sum(given_back_of.values(), ZERO)
    if lines_total - refunded <= 0 or cap <= 0:
        several = len(chosen) > 1
        where = (
            f"the money asked for {', '.join(given_periods)} is given back"
            + (f" (on {', '.join(refunders)})" if refunders else "")
            if given_periods
            else f"refunded on statement{'s' if len(refunders) > 1 else ''} {', '.join(refunders)} "
            f"(negative prior-period adjustments of {period})"
        )
        raise CreditNoteError(
            f"line{'s' if several else ''} {', '.join(str(ln.line_no) for ln in chosen)} of {statement_number} "
            f"({lines_total}) {'are' if several else 'is'} already given back: {where}",
            hint="nothing is left to credit for these lines; credit the statement's other lines",
        )
    credited_net = min(lines_total - refunded, cap)
    rule, tax_amount = "on_net", ZERO
    if treatment is not None:
        tax_amount = tax_on(credited_net, D(rate))
        if (credited_net == completes_at and tax_amount != left_tax) or tax_amount > left_tax:
            rule, tax_amount = "remainder", left_tax  # the statement's tax, to the cent, never more
    names = statements.model_names(con)
    descriptions = tuple(_description(ln, names) for ln in chosen)
    return Plan(
        statement_number, account, period, tuple(ln.line_no for ln in chosen), descriptions, lines_total,
        lines_total - credited_net - refunded, credited_net, treatment, None if rate is None else D(rate), rule,
        tax_amount, money_rule, refunded, ", ".join(refunders) if refunded > 0 else None,
        tuple(stored_by_line.get(ln.line_no, ZERO) for ln in chosen),
        tuple(refunded_by_line.get(ln.line_no, ZERO) for ln in chosen),
        tuple(given_back_of.get(ln.line_no, ZERO) for ln in chosen) if money_rule >= 6 else None,
        _attribution(con, account, statement_number, lines, money_of, chosen, credited_net, refunded_by_line,
                     money_rule) if money_rule >= 7 else None,
        tuple(asks_restored[ln.line_no][0] if ln.line_no in asks_restored else ZERO for ln in chosen)
        if money_rule >= 9 else None,
    )  # fmt: skip


def _attribution(
    con: duckdb.DuckDBPyConnection,
    account: str,
    statement_number: str,
    lines: Sequence[_Line],
    asked: dict[int, Decimal],
    chosen: Sequence[_Line],
    net: Decimal,
    printed_refunded: dict[int, Decimal],
    money_rule: int,
) -> tuple[tuple[int, Decimal], ...]:
    """Rule 7: which lines' money a note of ``net`` gives back, as (line number, money) in
    printed order, stored in ``credit_note_money`` and read by statements of layout 14 on;
    ``asked`` is each line's money (:func:`_line_money`, as ``plan`` read it).

    A note gives back the statement's money first, whichever lines paid it: its net goes to the
    lines it credits, in printed order, each up to its money (less what earlier notes gave back
    of it and the part this note prints as already refunded by a later statement), then to the
    statement's other lines (and what its own lines have left) in printed order. Each line takes
    at most what is left of its period's money (:func:`_period_money_left`, shared by the lines
    of one period): money a refund or note of the period already gave back is not given back
    again. That is how rules 4-6 count what a note may credit (:func:`_money_left_on`);
    statements of layouts 10-13 attributed the rest in printed order whatever was left of each
    line's period, so it could go to an ask whose period was given back in full (docs/credits.md,
    credit note rule 7). What is left after that is money of the statement's own period that a
    later statement asked again after refunding it (the period's money left counts such an ask,
    so the note may credit it): it goes to the statement's usage lines, up to their money, as
    that period's. The rows add up to the net: a note never credits more than those bounds
    (its cap is :func:`_money_left_on`'s count), else nothing is issued."""
    noted = _noted_money(con, statement_number, money_rule)
    money_left = {ln.line_no: max(ZERO, asked.get(ln.line_no, ZERO) - noted.get(ln.line_no, ZERO)) for ln in lines}
    period_left: dict[str, Decimal] = {}
    given: dict[int, Decimal] = {}
    rest = net

    def give(ln: _Line, room: Decimal) -> None:
        nonlocal rest
        q = ln.original_period
        if q not in period_left:
            period_left[q] = _period_money_left(con, account, q, money_rule)[0]
        part = min(rest, room - given.get(ln.line_no, ZERO), period_left[q])
        if part > 0:
            given[ln.line_no] = given.get(ln.line_no, ZERO) + part
            period_left[q] -= part
            rest -= part

    order = [*chosen, *(ln for ln in lines if ln not in chosen)]
    for ln in order:  # each line's money, less the part the note prints as already refunded
        if rest > 0:
            give(ln, money_left[ln.line_no] - printed_refunded.get(ln.line_no, ZERO))
    for ln in order:  # then the period's money a later statement asked again: its usage lines
        if rest > 0 and ln.kind == "usage":
            give(ln, money_left[ln.line_no])
    if rest > 0:  # the note's cap says otherwise: a defect, never a note that does not add up
        raise CreditNoteError(
            f"{statement_number}: {rest} of the note's {net} is no line's money; nothing was issued",
            hint="a defect of the credit note rules: report it with the statement and the lines named",
        )
    return tuple((n, given[n]) for n in sorted(given))


def _with_kind(documents: Sequence[str]) -> list[str]:
    """Rule 2 names the refunding statements by number; from rule 3 documents are named with
    their kind ("statement ...", "credit note ..."), as they may be either."""
    return [d if " " in d else f"statement {d}" for d in documents]


Key = tuple[str, str, Decimal, str]  # model, token class, unit price, price version ('' from layout 6)


@dataclass(frozen=True)
class _GivenBack:
    """Rule 2: what later statements gave back in money for a period (refunds of negative
    adjustment lines of it less the money asked for positive ones not credited by a note)."""

    refunded: Decimal  # refunded in money for the period in all (before the asked money is netted)
    money: Decimal  # refunded less asked, >= 0: the period's money they gave back
    tax: Decimal  # the tax deemed given back with it: per statement, tax_on its own net of the period
    refunders: tuple[str, ...]  # the statements whose refund stands (a later ask did not reverse it)
    by_key: dict[Key, Decimal]  # the same per line key, >= 0
    key_refunders: dict[Key, tuple[str, ...]]
    split: bool  # the period's lines are keyed by price version too (see :func:`_line_key`)
    asked: Decimal = ZERO  # the money asked for positive adjustment lines no credit note credited
    refund_statements: tuple[str, ...] = ()  # every statement that refunded money for the period
    # per line key, refunds less every later ask, credited or not: what stands refunded in tokens
    tokens_by_key: dict[Key, Decimal] = field(default_factory=dict)
    # rule 8: per line key, what refunds restored to prepaid credit (their amount less the money
    # part counted above) less the credit later asks of the key drew again, credited or not (the
    # credit is used again); and the statements whose restoring stands
    restored_by_key: dict[Key, Decimal] = field(default_factory=dict)
    key_restorers: dict[Key, tuple[str, ...]] = field(default_factory=dict)
    # rule 9: per statement (period, number) and line key, what it restored to prepaid credit for
    # the period less the credit its asks of the key drew (``restored_by_key``'s events)
    credit_nets: dict[tuple[str, str], dict[Key, Decimal]] = field(default_factory=dict)


def _line_key(model: str, token_class: str, unit: Decimal, version: str, split: bool) -> Key:
    """The key statement_lines_due.sql matches a period's lines and their adjustments by:
    (model, token class, unit price), and the price version while the period is split (a
    statement of layouts 1-5 issued lines of it)."""
    return (model, token_class, D(unit), version if split else "")


def _standing(events: list[tuple[str, Decimal]]) -> tuple[Decimal, tuple[str, ...]]:
    """Statements' nets of a period in issue order (> 0 refunded, < 0 asked): what stands
    refunded, and which statements' refunds stand. A later ask takes back the latest refund
    first; a refund takes back money asked before it first (so a refund that only undid an
    earlier ask, or one undone by a later ask, names no statement)."""
    stack: list[list] = []  # [statement, refund standing]
    asked = ZERO
    for number, net in events:
        if net > 0:
            back = min(net, asked)
            asked -= back
            if net - back > 0:
                stack.append([number, net - back])
        else:
            ask = -net
            while ask > 0 and stack:
                back = min(ask, stack[-1][1])
                stack[-1][1] -= back
                ask -= back
                if stack[-1][1] == 0:
                    stack.pop()
            asked += ask
    return sum((s[1] for s in stack), ZERO), tuple(dict.fromkeys(str(s[0]) for s in stack))


def _standing_by_key(
    nets: dict[tuple[str, str], dict[Key, Decimal]],
) -> tuple[dict[Key, Decimal], dict[Key, tuple[str, ...]]]:
    """:func:`_standing` per line key over statements' nets (keyed (period, number), taken in
    that order): what stands per key, and the statements whose part of it stands."""
    order = sorted(nets)
    standing: dict[Key, Decimal] = {}
    names: dict[Key, tuple[str, ...]] = {}
    for key in {k for per in nets.values() for k in per}:
        standing[key], names[key] = _standing([(number, nets[(p, number)].get(key, ZERO)) for p, number in order])
    return standing, names


def _given_back(con: duckdb.DuckDBPyConnection, account: str, period: str, rate: Decimal | None) -> _GivenBack:
    """Rule 2: what later statements gave back in money for ``period``, in all and per line key.

    Refunded: later statements' negative adjustment lines of the period, less what each
    restored to prepaid credit for it (``credit_ledger.restored_for``, statement layout 7 on;
    money first, then credit, over its negative lines of the period in printed order, as
    statement_lines_due.sql restores). Asked: the money later statements asked for positive
    adjustment lines of the period (a line's amount less the prepaid credit its statement
    applied to it, usage lines first, then positive adjustment lines in printed order:
    ``adjustment_money`` of pipeline/sql/statement_lines_due.sql), except lines a credit note
    credited (given back there). Tax: each statement taxes its own net, so the tax given back
    for the period is, per statement, the tax on its refunds less its asks of the period."""
    split_row = con.execute(
        "SELECT coalesce(bool_or(coalesce(s.layout_version, 1) < 6), FALSE) FROM statement_issued_lines l "
        "JOIN statements s USING (statement_number) WHERE s.account_id = $a AND l.original_period = $p",
        {"a": account, "p": period},
    ).fetchone()
    split = bool(split_row[0]) if split_row else False
    negatives = con.execute(
        "SELECT s.period, s.statement_number, l.model, l.token_class, l.unit_price_per_1m, l.price_version, "
        "-l.amount, coalesce(r.restored, 0) "
        "FROM statement_issued_lines l JOIN statements s USING (statement_number) "
        "LEFT JOIN (SELECT period, sum(amount) AS restored FROM credit_ledger WHERE entry_kind = 'restored' "
        "           AND account_id = $a AND restored_for = $p GROUP BY period) r ON r.period = s.period "
        "WHERE s.account_id = $a AND l.kind = 'adjustment' AND l.original_period = $p AND l.amount < 0 "
        "ORDER BY s.period, s.statement_number, l.line_no",
        {"a": account, "p": period},
    ).fetchall()
    positives = con.execute(
        "SELECT period, statement_number, model, token_class, unit_price_per_1m, price_version, money, "
        "       EXISTS (SELECT 1 FROM credit_note_lines cl JOIN credit_notes n USING (credit_note_number)"
        "               WHERE n.statement_number = a.statement_number AND cl.line_no = a.line_no), amount "
        f"FROM ({_ADJUSTMENT_MONEY} AND s.account_id = $a) a WHERE original_period = $p "
        "ORDER BY period, statement_number, line_no",
        {"a": account, "p": period},
    ).fetchall()
    # per statement (in issue order) and line key: its refunds (> 0) less its asks of the period
    nets: dict[tuple[str, str], dict[Key, Decimal]] = {}
    refunds_of: dict[str, Decimal] = {}  # per statement: all its refunds of the period
    for row in negatives:
        refunds_of[row[1]] = refunds_of.get(row[1], ZERO) + D(row[6])
    refunded, before = ZERO, ZERO
    money_by: dict[str, Decimal] = {}  # per statement: the money its negative lines refunded
    credit_nets: dict[tuple[str, str], dict[Key, Decimal]] = {}  # rule 8: restored less drawn again
    last = None
    for st_period, number, model, klass, unit, version, refund, restored in negatives:
        if (st_period, number) != last:  # money first: the credit part is the last lines' refunds
            last, before = (st_period, number), ZERO
            money_of_statement = max(ZERO, refunds_of[number] - D(restored))
        money = min(D(refund), max(ZERO, money_of_statement - before))
        before += D(refund)
        refunded += money
        money_by[number] = money_by.get(number, ZERO) + money
        key = _line_key(model, klass, unit, version, split)
        per = nets.setdefault((st_period, number), {})
        per[key] = per.get(key, ZERO) + money
        per = credit_nets.setdefault((st_period, number), {})  # rule 8: the rest was restored
        per[key] = per.get(key, ZERO) + D(refund) - money
    # tokens: every ask counts, also one a credit note credited (the tokens came back there), so
    # a refund whose tokens came back is no hold-back for a line credited now (rule 3 on)
    token_nets = {k: dict(per) for k, per in nets.items()}
    for st_period, number, model, klass, unit, version, money, credited, amount in positives:
        key = _line_key(model, klass, unit, version, split)
        per = token_nets.setdefault((st_period, number), {})
        per[key] = per.get(key, ZERO) - D(money)
        if D(amount) > D(money):  # rule 8: the ask drew prepaid credit for the key
            per = credit_nets.setdefault((st_period, number), {})
            per[key] = per.get(key, ZERO) - (D(amount) - D(money))
        if credited:  # money: an ask a credit note credited was given back there
            continue
        per = nets.setdefault((st_period, number), {})
        per[key] = per.get(key, ZERO) - D(money)
    order = sorted(nets)
    events = [(number, sum(nets[(p, number)].values(), ZERO)) for p, number in order]
    money, refunders = _standing(events)
    tax = ZERO
    if rate is not None:
        for _, net in events:
            tax += tax_on(net, rate) if net >= 0 else -tax_on(-net, rate)
    by_key, key_refunders = _standing_by_key(nets)
    tokens_by_key, _ = _standing_by_key(token_nets)
    restored_by_key, key_restorers = _standing_by_key(credit_nets)
    asked = sum((D(row[6]) for row in positives if not row[7]), ZERO)
    refund_statements = tuple(number for number, m in money_by.items() if m > 0)
    return _GivenBack(
        refunded,
        money,
        max(ZERO, tax),
        refunders,
        by_key,
        key_refunders,
        split,
        asked,
        refund_statements,
        tokens_by_key,
        restored_by_key,
        key_restorers,
        credit_nets,
    )


# The money later statements asked for their positive adjustment lines: a line's amount less
# the prepaid credit its statement applied to it (usage lines first, then positive adjustment
# lines in printed order), as statement_lines_due.sql's `adjustment_money` attributes it (layout
# 7). A WHERE clause to extend with AND.
_ADJUSTMENT_MONEY = (
    "SELECT s.period, l.statement_number, l.line_no, l.original_period, l.model, l.token_class, "
    "       l.unit_price_per_1m, l.price_version, l.amount, "
    "       l.amount - least(l.amount, greatest(0, greatest(0, coalesce(c.applied_usd, 0) - u.usage)"
    "           - coalesce(sum(l.amount) OVER (PARTITION BY l.statement_number ORDER BY l.line_no"
    "                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0))) AS money "
    "FROM statement_issued_lines l JOIN statements s USING (statement_number) "
    "LEFT JOIN statement_credits c USING (statement_number) "
    "JOIN (SELECT statement_number, coalesce(sum(amount) FILTER (WHERE kind = 'usage'), 0) AS usage "
    "      FROM statement_issued_lines GROUP BY statement_number) u USING (statement_number) "
    "WHERE l.kind = 'adjustment' AND l.amount > 0"
)


def _earlier_periods_given_back(
    con: duckdb.DuckDBPyConnection,
    account: str,
    statement_number: str,
    chosen: Sequence[_Line],
    period: str,
    given_back_of: dict[int, Decimal],
    money_rule: int = 4,
) -> tuple[tuple[str, ...], list[str]]:
    """Rule 3: the money the chosen adjustment lines of each earlier period Q asked (a line's
    amount less the prepaid credit the statement applied to it, :data:`_ADJUSTMENT_MONEY`)
    credits, together and in line order, at most what is left of the money asked for Q
    (:func:`_period_money_left`); the rest goes into ``given_back_of`` as already given back
    (the prepaid part stays "paid with prepaid credit"). The documents that gave Q's money
    back, named with their kind, and the periods Q, when a line was not credited in full.

    That part is printed with rule 2's (from rule 6 stored in ``printed_given_back_usd``, which
    statements' refund cap subtracts from the credited amount as it does rule 2's part) but not
    stored in ``credit_note_lines.refunded_usd``:
    rule 2's part is tokens a later statement refunded, which statement_lines_due.sql takes
    back like a hold-back when they return; this part is money Q's own notes and refunds gave
    back, whose tokens no statement refunded, so tokens of Q arriving later are billed (the
    line's credited amount already keeps a later negative adjustment from refunding it). Rule 5:
    a line's money less what notes gave back of it (:func:`statements.money_given_back_by_line`)."""
    noted = _noted_money(con, statement_number, money_rule)
    money_of = dict(
        con.execute(
            f"SELECT line_no, money FROM ({_ADJUSTMENT_MONEY} AND l.statement_number = $s)", {"s": statement_number}
        ).fetchall()
    )
    names: dict[str, None] = {}
    periods: list[str] = []
    for q in sorted({ln.original_period for ln in chosen if ln.original_period != period}):
        left, givers = _period_money_left(con, account, q, money_rule)
        for ln in chosen:
            if ln.original_period != q or ln.amount <= 0:
                continue
            money = D(money_of.get(ln.line_no, ln.amount)) - noted.get(ln.line_no, ZERO)
            credit = min(money, left)
            left -= credit
            if money - credit > 0:
                given_back_of[ln.line_no] = money - credit
                names.update(dict.fromkeys(givers))
                if q not in periods:
                    periods.append(q)
    return tuple(names), periods


def _money_left_on(
    con: duckdb.DuckDBPyConnection,
    account: str,
    statement_number: str,
    period: str,
    lines: Sequence[_Line],
    money_rule: int = 4,
) -> tuple[Decimal, tuple[str, ...], list[str]]:
    """Rule 4: what is left to give back of the money a statement asked, whichever of its lines
    a note names (a note gives back the statement's money first, as statement_lines_due.sql's
    `line_money` attributes it): of what its usage lines asked in money (usage less the prepaid
    credit it applied), at most what is left of its period's money; and of each positive
    adjustment line's money, in printed order, at most what is left of its period Q's
    (:func:`_period_money_left` for both). Rules 2-3 counted the statement's net less later
    refunds of its period: the money it asked for Q stayed creditable after refunds of Q had
    given it back. With the documents that gave back what is short (named with their kind).
    Rule 5: each line's money less what notes gave back of it (a note's money goes to the lines
    it credited, then to the statement's other lines), and periods' money as statements count it."""
    noted = _noted_money(con, statement_number, money_rule)
    asked = _line_money(con, statement_number, lines)
    usage_money = sum((asked[ln.line_no] - noted.get(ln.line_no, ZERO) for ln in lines if ln.kind == "usage"), ZERO)
    own, givers = _period_money_left(con, account, period, money_rule)
    left, names = min(usage_money, own), dict.fromkeys(givers if own < usage_money else ())
    short = [period] if own < usage_money else []
    left_of: dict[str, Decimal] = {}
    for ln in lines:  # the positive adjustment lines, in printed order
        if ln.kind != "adjustment" or ln.amount <= 0:
            continue
        original, money = ln.original_period, asked[ln.line_no] - noted.get(ln.line_no, ZERO)
        if original not in left_of:
            left_of[original], q_givers = _period_money_left(con, account, original, money_rule)
            if left_of[original] < money:
                names.update(dict.fromkeys(q_givers))
                short.append(original)
        part = min(money, left_of[original])
        left_of[original] -= part
        left += part
    return max(ZERO, left), tuple(names), short


def _period_money_left(
    con: duckdb.DuckDBPyConnection, account: str, q: str, money_rule: int = 4
) -> tuple[Decimal, tuple[str, ...]]:
    """Rule 3: what is left to give back of the money asked for period ``q``; never below 0:

    * what ``q``'s own statement asked in money for its usage lines (its usage less the prepaid
      credit it applied, which goes to usage first; not its net, which also carries the
      adjustments of earlier periods it printed),
    * less what its credit notes credited of them (a note's net, at most the usage lines it
      credited),
    * plus the money later statements asked for positive adjustments of ``q`` that no credit
      note credited, less the money later statements refunded for it (:func:`_given_back`).

    With the documents that gave some of it back: ``q``'s credit notes and the statements whose
    negative adjustments refunded money. Whichever of a note on ``q``'s statement (rule 2) and
    a note on a later statement's adjustment of ``q`` comes first, together they give back at
    most what was asked for ``q``: the second is capped, or refused when nothing is left.

    Rule 5: the amount as statements count it (:func:`statements.period_money_left`), so a
    note's money counts against the lines it went to, not against its statement's period only."""
    own = con.execute(
        "SELECT s.statement_number, coalesce(sum(l.amount) FILTER (WHERE l.kind = 'usage'), 0), "
        "       coalesce(any_value(c.applied_usd), 0) "
        "FROM statements s LEFT JOIN statement_issued_lines l USING (statement_number) "
        "LEFT JOIN statement_credits c USING (statement_number) "
        "WHERE s.account_id = ? AND s.period = ? GROUP BY s.statement_number ORDER BY s.statement_number",
        [account, q],
    ).fetchall()
    left, givers = ZERO, []
    for number, usage, applied in own:
        left += max(ZERO, D(usage) - min(D(applied), D(usage)))
        notes = con.execute(
            "SELECT n.credit_note_number, n.net_usd, "
            "       coalesce(sum(cl.amount_usd) FILTER (WHERE cl.kind = 'usage'), 0) "
            "FROM credit_notes n JOIN credit_note_lines cl USING (credit_note_number) "
            "WHERE n.statement_number = ? GROUP BY n.credit_note_number, n.net_usd, n.sequence_no "
            "ORDER BY n.sequence_no",
            [number],
        ).fetchall()
        for note, net, usage_credited in notes:
            part = min(D(net), D(usage_credited))
            if part > 0:
                left -= part
                givers.append(f"credit note {note}")
    given = _given_back(con, account, q, None)
    givers += [f"statement {n}" for n in given.refund_statements]
    if money_rule >= 5:
        return statements.period_money_left(con, account, q, _layout_read_by(money_rule)), tuple(givers)
    return max(ZERO, left + given.asked - given.refunded), tuple(givers)


def _line_money(con: duckdb.DuckDBPyConnection, statement_number: str, lines: Sequence[_Line]) -> dict[int, Decimal]:
    """Line number -> the money each positive line of an issued statement asked: a usage line
    its amount less the prepaid credit its statement applied to it (credit pays usage lines
    first, in printed order), a positive adjustment line as :data:`_ADJUSTMENT_MONEY`."""
    applied = _credits_applied(con, statement_number)
    asks = dict(
        con.execute(
            f"SELECT line_no, money FROM ({_ADJUSTMENT_MONEY} AND l.statement_number = $s)", {"s": statement_number}
        ).fetchall()
    )
    money: dict[int, Decimal] = {}
    for ln in lines:
        if ln.kind == "usage":
            paid = min(ln.amount, max(ZERO, applied))
            applied -= paid
            money[ln.line_no] = ln.amount - paid
        elif ln.amount > 0:
            money[ln.line_no] = D(asks.get(ln.line_no, ln.amount))
    return money


def _netted_refunds(con: duckdb.DuckDBPyConnection, statement_number: str, lines: Sequence[_Line]) -> Decimal:
    """Rule 5: the money a statement's negative lines refunded (their amounts less what the
    statement restored to prepaid credit instead): paid out for earlier periods with the
    statement, so its lines' money exceeds its net by as much (a note never credits those
    lines: the refunds stand)."""
    refunds = sum((-ln.amount for ln in lines if ln.amount < 0), ZERO)
    row = con.execute(
        "SELECT coalesce(max(restored_usd), 0) FROM statement_credits WHERE statement_number = ?", [statement_number]
    ).fetchone()
    return max(ZERO, refunds - (D(row[0]) if row else ZERO))


def _noted_money(con: duckdb.DuckDBPyConnection, statement_number: str, money_rule: int) -> dict[int, Decimal]:
    """Rule 5: line number -> what credit notes gave back of the money the line asked, as
    statements attribute it (:func:`statements.money_given_back_by_line`); none before rule 5."""
    if money_rule < 5:
        return {}
    return statements.money_given_back_by_line(con, statement_number, _layout_read_by(money_rule))


def _layout_of(con: duckdb.DuckDBPyConnection, statement_number: str) -> int:
    """The layout an issued statement was printed with (1 before layouts were versioned)."""
    row = con.execute(
        "SELECT coalesce(layout_version, 1) FROM statements WHERE statement_number = ?", [statement_number]
    ).fetchone()
    return int(row[0]) if row else 1


def _asks_restored(
    con: duckdb.DuckDBPyConnection,
    account: str,
    statement_number: str,
    period: str,
    chosen: Sequence[_Line],
    money_of: dict[int, Decimal],
    money_rule: int,
) -> dict[int, tuple[Decimal, tuple[str, ...]]]:
    """Rule 9: line number -> the part of the credit the statement applied to each chosen ask
    (a positive adjustment line of an earlier period Q no note credited yet; its amount less its
    money, ``money_of``: :func:`_line_money`) that refunds of Q already restored to prepaid
    credit, with the statements that restored credit for Q.

    Statements pool a period's credit (statement_lines_due.sql's `paid`: ``credit_left``, Q's
    own statement's credit less what its notes kept, plus the credit later statements applied
    to asks of Q no note credited, plus the credit notes' money moved to such asks, less what
    refunds restored for Q, plus what earlier rule-9 notes printed of this kind on asks of Q:
    ``credit_note_lines.printed_ask_restored_usd``, that restoration was the ask's and left the
    pool with it). Once this note credits the asks, their credit (and the credit moved
    to them) leaves that pool: what the pool then lacks to stay at 0 or more, ``R - C`` (R what
    refunds restored for Q, C the credit that stays in the pool), was restored of these asks'
    credit already and is printed as given back; what the pool still holds of them stays the
    note's to keep. As ``credit_left`` is the pool never below 0, that part is ``X - min(X,
    credit_left)`` (X: the chosen asks' credit and moved credit of Q), exactly also when the pool
    is below 0; at most the credit the asks drew, and at most what was restored for Q in all
    less what earlier rule-9 notes printed on asks of Q. It goes first to the asks whose key's
    refunds (on statements after this one) restored credit, net of the credit later asks of the
    key drew again (:func:`_standing_by_key` over :attr:`_GivenBack.credit_nets`), up to that;
    the rest to the asks in printed order. (A second review: two asks of November, input and
    output keys, only the output key refunded, restoring 4.50 of 7.50; shared in printed order,
    3.00 of it went to the input key's ask, which then counted as not credited for that key,
    and its later refund was paid in money.)

    Seed 339 (docs/credits.md "Closed (credit note rule 9)"): November's pool is January's ask's
    3.00 less February's 3.00 restored, 0.00: the 3.00 is given back. The review's history:
    November's own 3.00 of credit plus the ask's 3.00 less 1.50 restored, 4.50: 3.00 of it stays
    once the ask is credited, nothing is given back (rule 8's figures; rule 9 as first issued
    printed the 1.50 restored for the ask's key, and March refunded November's 1.50 in money)."""
    layout = _layout_read_by(money_rule)
    asks: dict[str, list[_Line]] = {}
    for ln in chosen:
        if ln.kind == "adjustment" and ln.amount > 0 and ln.original_period != period and ln.credited == 0:
            asks.setdefault(ln.original_period, []).append(ln)
    if not asks:
        return {}
    moved = statements.money_given_back_by_line(con, statement_number, layout)
    result: dict[int, tuple[Decimal, tuple[str, ...]]] = {}
    for q, q_asks in asks.items():
        pool = statements.period_credit_pool(con, account, q, layout)
        if pool is None:  # no statement of Q: its refunds restore nothing
            continue
        credit_left, printed_restored = pool
        row = con.execute(
            "SELECT coalesce(sum(c.amount), 0), list(DISTINCT s.statement_number ORDER BY s.statement_number) "
            "FROM credit_ledger c LEFT JOIN statements s ON s.account_id = c.account_id AND s.period = c.period "
            "WHERE c.entry_kind = 'restored' AND c.account_id = $a AND c.restored_for = $q",
            {"a": account, "q": q},
        ).fetchone()
        restored, restorers = (D(row[0]), tuple(row[1] or ())) if row else (ZERO, ())
        # what earlier rule-9 notes printed of asks of Q already counts a restoration as theirs
        restored -= min(restored, printed_restored)
        drawn = {ln.line_no: ln.amount - money_of.get(ln.line_no, ln.amount) for ln in q_asks}
        leaving = sum(drawn.values(), ZERO) + sum((max(ZERO, moved.get(n, ZERO)) for n in drawn), ZERO)
        rest = min(sum(drawn.values(), ZERO), restored, leaving - min(leaving, credit_left))
        if rest <= 0:
            continue
        # first to the asks whose key's refunds (statements after this one) restored credit, net
        # of the credit later asks of the key drew again, up to that; then in printed order
        given = _given_back(con, account, q, None)
        later = {k: per for k, per in given.credit_nets.items() if k[0] > period}
        by_key, key_names = _standing_by_key(later)
        parts: dict[int, Decimal] = {}
        names: dict[int, dict[str, None]] = {}
        for ln in q_asks:
            key = _line_key(ln.model, ln.token_class, ln.unit_price_per_1m, ln.price_version, given.split)
            part = min(rest, drawn[ln.line_no], max(ZERO, by_key.get(key, ZERO)))
            if part > 0:
                parts[ln.line_no] = part
                names[ln.line_no] = dict.fromkeys(key_names.get(key, ()))
                by_key[key] -= part
                rest -= part
        for ln in q_asks:  # the rest in printed order
            part = min(rest, drawn[ln.line_no] - parts.get(ln.line_no, ZERO))
            if part > 0:
                parts[ln.line_no] = parts.get(ln.line_no, ZERO) + part
                names.setdefault(ln.line_no, {}).update(dict.fromkeys(restorers))
                rest -= part
        for n, part in parts.items():
            result[n] = (part, tuple(names[n]) or restorers)
    return result


def _credit_standing(
    con: duckdb.DuckDBPyConnection, account: str, statement_number: str, period: str, restored_asks: Decimal = ZERO
) -> Decimal:
    """Rule 5: the prepaid credit that still pays a statement's lines: what it applied, less
    what its credit notes kept as prepaid (that credit went with the lines they credited) and
    what refunds of its period restored to prepaid credit since; rule 9, also less
    ``restored_asks``, what refunds of its chosen asks' periods restored of those asks' credit
    (:func:`_asks_restored`; 0 before rule 9)."""
    row = con.execute(
        "SELECT coalesce((SELECT applied_usd FROM statement_credits WHERE statement_number = $s), 0) "
        "     - coalesce((SELECT sum(prepaid_retained_usd) FROM credit_notes WHERE statement_number = $s), 0) "
        "     - coalesce((SELECT sum(amount) FROM credit_ledger WHERE entry_kind = 'restored' "
        "                 AND account_id = $a AND restored_for = $p), 0)",
        {"s": statement_number, "a": account, "p": period},
    ).fetchone()
    return max(ZERO, D(row[0]) - restored_asks) if row else ZERO


def _description(ln: _Line, names: dict[str, str]) -> str:
    if ln.kind == "usage":
        return names.get(ln.model, ln.model)
    due = statements.DueLine(ln.kind, ln.original_period, ln.model, ln.token_class, ln.price_version,
                             ln.unit_price_per_1m, ln.quantity_tokens, ln.amount)  # fmt: skip
    return statements.adjustment_text(due, names)


def next_number(con: duckdb.DuckDBPyConnection, issue_date: date) -> tuple[str, int]:
    """The next number of the one gap-free credit-note sequence, with the issuer's prefix."""
    row = con.execute("SELECT coalesce(max(sequence_no), 0) + 1 FROM credit_notes").fetchone()
    sequence = int(row[0]) if row else 1
    prefix = _current_issuer(con)[1].credit_note_number_prefix or DEFAULT_CREDIT_NOTE_PREFIX
    return f"{prefix}-{issue_date.year}-{sequence:06d}", sequence


def _current_issuer(con: duckdb.DuckDBPyConnection) -> tuple[str, Issuer]:
    """The issuer loaded by the last rating run (the built-in one before any)."""
    row = con.execute("SELECT max(sha256) FROM issuer").fetchone()
    sha = row[0] if row and row[0] else BUILT_IN.sha256
    return sha, reference.stored_issuer(con, sha)


def store(
    con: duckdb.DuckDBPyConnection, p: Plan, number: str, sequence: int, issue_date: date, reason: str, run_id: int
) -> None:
    """Record the credit note and the lines it credits (inside the run's transaction)."""
    sha, issuer = _current_issuer(con)
    name, address, email = con.execute(
        "SELECT legal_name, address, email FROM accounts WHERE account_id = ?", [p.account_id]
    ).fetchone() or (p.account_id, [], None)  # fmt: skip
    vat_id, note, e_invoice, country = con.execute(
        "SELECT vat_id, tax_note, e_invoice, country FROM account_invoicing WHERE account_id = ?", [p.account_id]
    ).fetchone() or (None, None, None, None)  # fmt: skip
    if p.tax_treatment == "eu_reverse_charge":
        note = REVERSE_CHARGE_NOTE
    if p.tax_treatment is None:  # a statement issued before tax existed: no VAT category, no e-invoice
        e_invoice = None
    con.execute(
        "INSERT INTO credit_notes (credit_note_number, sequence_no, statement_number, account_id, period, "
        "issue_date, reason, lines_usd, prepaid_retained_usd, net_usd, tax_treatment, tax_rate_pct, tax_label, "
        "tax_rule, tax_usd, total_credited_usd, account_name, account_address, account_email, customer_vat_id, "
        "tax_note, issuer_sha256, run_id, issued_at, e_invoice, account_country, money_rule, refunded_usd, "
        "refunded_on) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now(), "
        "?, ?, ?, ?, ?)",
        [
            number, sequence, p.statement_number, p.account_id, p.period, issue_date, reason, p.lines_total,
            p.prepaid_retained, p.net, p.tax_treatment, p.tax_rate_pct,
            issuer.tax_label if p.tax_treatment else None, p.tax_rule, p.tax, p.net + p.tax,
            name, list(address), email, vat_id if p.tax_treatment else None,
            note if p.tax_treatment else None, sha, run_id, e_invoice, country if e_invoice else None,
            # rule 1 (a run recorded before rule 2, re-executed): NULL, as such notes were stored
            *((None, None, None) if p.money_rule < 2 else (p.money_rule, p.refunded, p.refunded_on)),
        ],
    )  # fmt: skip
    amounts = dict(
        con.execute(
            "SELECT line_no, amount FROM statement_issued_lines WHERE statement_number = ?", [p.statement_number]
        ).fetchall()
    )
    if p.money_by_line:  # rule 7: the lines whose money it gives back, as counted now
        con.executemany(
            "INSERT INTO credit_note_money (credit_note_number, line_no, money_usd) VALUES (?, ?, ?)",
            [(number, n, money) for n, money in p.money_by_line],
        )
    con.executemany(
        "INSERT INTO credit_note_lines (credit_note_number, line_no, kind, description, amount_usd, refunded_usd, "
        "printed_refunded_usd, printed_given_back_usd, printed_ask_restored_usd) "
        "VALUES (?, ?, (SELECT kind FROM statement_issued_lines WHERE statement_number = ? AND line_no = ?), "
        "?, ?, ?, ?, ?, ?)",
        [
            # rule 2: the part of the line not credited as already refunded (printed), and of
            # it what a later adjustment of the line that brings tokens back takes back like a
            # hold-back (statement_lines_due.sql); rule 1: NULL, as such lines were stored.
            # Rule 6: the part not credited as already given back (printed; NULL before)
            (
                number,
                n,
                p.statement_number,
                n,
                text,
                amounts[n],
                *((None, None) if p.money_rule < 2 else (held, shown)),
                given,
                ask_restored,
            )
            for n, text, held, shown, given, ask_restored in zip(
                p.line_nos,
                p.descriptions,
                p.line_refunded or (ZERO,) * len(p.line_nos),
                p.line_printed_refunded or (ZERO,) * len(p.line_nos),
                p.line_given_back or (None,) * len(p.line_nos),
                p.line_ask_restored or (None,) * len(p.line_nos),
                strict=True,
            )
        ],
    )
    over = con.execute(
        "SELECT l.line_no FROM statement_issued_lines l JOIN credit_note_lines c USING (line_no) "
        "JOIN credit_notes n USING (credit_note_number) WHERE l.statement_number = $s AND n.statement_number = $s "
        "GROUP BY l.line_no, l.amount HAVING abs(sum(c.amount_usd)) > abs(l.amount)",
        {"s": p.statement_number},
    ).fetchall()
    if over:  # the invariant, checked on the stored rows (plan refuses this before)
        raise CreditNoteError(f"lines {over} of {p.statement_number} would be credited more than their amount")


def _credits_applied(con: duckdb.DuckDBPyConnection, statement_number: str, db: str = "") -> Decimal:
    """The prepaid credit an issued statement drew (0 for an account without grants)."""
    row = con.execute(
        f"SELECT coalesce(max(applied_usd), 0) FROM {db}statement_credits WHERE statement_number = ?",
        [statement_number],
    ).fetchone()
    return D(row[0]) if row else ZERO


def document_from_stored(con: duckdb.DuckDBPyConnection, number: str, db: str = "") -> CreditNoteDocument:
    """The credit note as issued, from its stored rows only (``db``: ``live.`` in a replay)."""
    # the credited statement's layout (a database not yet migrated to 024, replayed, has none: 1)
    has_layout = column_exists(con, "statements", "layout_version", db.rstrip(".") or None)
    layout = "coalesce(s.layout_version, 1)" if has_layout else "1"
    # credit note rule 2 (migration 036): what later statements had refunded; 0 before
    has_refunded = column_exists(con, "credit_notes", "refunded_usd", db.rstrip(".") or None)
    refunded = "coalesce(n.refunded_usd, 0), n.refunded_on" if has_refunded else "0, NULL"
    row = con.execute(
        "SELECT n.statement_number, s.issue_date, n.account_id, n.period, n.issue_date, n.reason, n.lines_usd, "
        "n.prepaid_retained_usd, n.tax_treatment, n.tax_rate_pct, n.tax_label, n.tax_rule, n.tax_usd, "
        "n.total_credited_usd, n.account_name, n.account_address, n.account_email, n.customer_vat_id, "
        f"n.tax_note, n.issuer_sha256, n.e_invoice, n.account_country, {layout}, {refunded} "
        f"FROM {db}credit_notes n JOIN {db}statements s USING (statement_number) "
        "WHERE n.credit_note_number = ?",
        [number],
    ).fetchone()
    if row is None:
        raise CreditNoteError(f"{number} is not an issued credit note")
    (statement, st_date, account, period, issue_date, reason, lines_total, retained, treatment, rate, label,
     rule, tax, total, name, address, email, vat_id, note, sha, e_invoice, country, st_layout, refunded_usd,
     refunded_on) = row  # fmt: skip
    issuer = reference.stored_issuer(con, sha, db)
    lines = con.execute(
        "SELECT c.line_no, c.kind, c.description, l.original_period, l.model, l.token_class, l.price_version, "
        f"l.unit_price_per_1m, l.quantity_tokens, l.amount FROM {db}credit_note_lines c "
        f"JOIN {db}statement_issued_lines l ON l.statement_number = ? AND l.line_no = c.line_no "
        "WHERE c.credit_note_number = ? ORDER BY c.line_no",
        [statement, number],
    ).fetchall()
    credited = tuple(
        CreditedLine(
            int(n),
            StatementLine(model, text, klass, int(qty), D(unit), version, D(amount))
            if kind == "usage"
            else AdjustmentLine(original, text, D(amount)),
        )
        for n, kind, text, original, model, klass, version, unit, qty, amount in lines
    )
    summary = None
    if treatment is not None:
        summary = TaxSummary(treatment, label, D(rate), issuer.vat_id, vat_id, note)
    return CreditNoteDocument(
        credit_note_number=number,
        statement_number=statement,
        statement_issue_date=st_date,
        account_id=account,
        account=Party(name=name, address_lines=tuple(address), email=email, country=country),
        issuer=_party(issuer),
        period=period,
        issue_date=issue_date,
        currency="USD",
        reason=reason,
        lines=credited,
        lines_total=D(lines_total),
        prepaid_retained=D(retained),
        tax_amount=D(tax),
        total_credited=D(total),
        tax=summary,
        tax_rule=rule,
        e_invoice=e_invoice,
        statement_layout_version=int(st_layout),
        statement_credits_applied=_credits_applied(con, statement, db),
        refunded=D(refunded_usd),
        refunded_on=refunded_on,
    )


def _party(i: Issuer) -> IssuerParty:
    return IssuerParty(
        name=i.legal_name,
        address_lines=tuple(i.address),
        email=i.email,
        tax_id=i.tax_id,
        vat_id=i.vat_id,
        registration=i.registration,
        remittance_lines=tuple(i.remittance),
        logo_png_base64=i.logo_png_base64,
        country=i.country,  # not printed; the seller's country of an e-invoice (BT-40)
    )


def lines_csv(doc: CreditNoteDocument) -> bytes:
    """The credited lines (amounts credited, positive), then a prepaid row and a tax row if any."""
    head = (doc.credit_note_number, doc.statement_number, doc.account_id, doc.period)
    rows: list[tuple[object, ...]] = []
    for c in doc.lines:
        ln = c.line
        if isinstance(ln, StatementLine):
            unit = ln.unit_price_per_1m.normalize()
            rows.append(head + (c.line_no, "usage", doc.period, ln.model, ln.model_name, ln.token_class,
                                ln.price_version, unit, ln.quantity, ln.amount))  # fmt: skip
        else:
            rows.append(head + (c.line_no, "adjustment", ln.original_period, None, ln.description)
                        + (None,) * 4 + (ln.amount,))  # fmt: skip
    if doc.prepaid_retained:
        rows.append(head + (None, "prepaid_retained", doc.period, None, f"{doc.retained_label}, not credited")
                    + (None,) * 4 + (-doc.prepaid_retained,))  # fmt: skip
    if doc.refunded:  # credit note rule 2: money a later statement already refunded
        rows.append(head + (None, "refunded", doc.period, None, f"{doc.refunded_label}, not credited")
                    + (None,) * 4 + (-doc.refunded,))  # fmt: skip
    if doc.tax is not None:
        rows.append(head + (None, "tax", doc.period, None, doc.tax.heading) + (None,) * 4 + (doc.tax_amount,))
    return csv_bytes(LINES_HEADER, rows)


def render_files(doc: CreditNoteDocument) -> dict[str, tuple[str, bytes]]:
    """kind -> (file name, bytes): the PDF (PDF/A-3 with Factur-X XML for an e-invoice note), the
    lines CSV and the HTML (stored only)."""
    # jinja2 (and WeasyPrint, factur-x): only where a note is rendered
    from reports.credit_note_render import credit_note_pdf, render_credit_note_html

    html = render_credit_note_html(doc)
    stem = doc.credit_note_number
    return {
        "pdf": (f"{stem}.pdf", credit_note_pdf(doc, html)),
        "html": (f"{stem}.html", html.encode("utf-8")),
        "lines_csv": (f"{stem}-lines.csv", lines_csv(doc)),
    }


def issue_credit_note(
    settings: jobs.Settings,
    statement_number: str,
    reason: str,
    out_dir: Path,
    *,
    line_nos: Sequence[int] | None = None,
    issue_date: date | None = None,
    money_rule: int = MONEY_RULE,
) -> CreditNoteReport:
    """Issue one credit note (``line_nos`` None: every line not yet credited); one recorded run.
    ``money_rule``: :data:`MONEY_RULE`, recorded in the run's arguments so that ``replay
    --verify`` re-executes a note with the rule it was issued by (1 for runs without it)."""
    if not reason.strip():
        raise UsageProblem("a credit note needs a reason", hint='give --reason "why the lines are credited"')
    when = issue_date or statements.today_utc()
    args = {
        "statement": statement_number,
        "lines": None if line_nos is None else sorted(set(line_nos)),
        "reason": reason,
        "issue_date": when.isoformat(),
        **({"rule": money_rule} if money_rule >= 2 else {}),
    }
    with jobs.recorded_run(settings, COMMAND, args, None) as (con, report):
        p = plan(con, statement_number, line_nos, money_rule)
        st_date = _statement(con, statement_number)[2]
        if when < st_date:
            raise UsageProblem(f"issue date {when} is before {statement_number} was issued ({st_date})")
        target = out_dir / "credit_notes" / p.period
        staged: list[tuple[Path, Path]] = []
        try:
            with transaction(con):
                number, sequence = next_number(con, when)
                store(con, p, number, sequence, when, reason.strip(), report.run_id)
                doc = document_from_stored(con, number)
                files = render_files(doc)
                staged = statements.stage_issued(
                    target,
                    [statements.StatementFiles(doc.account_id, number, None, files)],  # type: ignore[arg-type]
                )
                con.executemany(
                    "INSERT INTO credit_note_files VALUES (?, ?, ?, ?, ?)",
                    [(number, k, n, hashlib.sha256(d).hexdigest(), d) for k, (n, d) in files.items()],
                )
                published = [(n, d) for k, (n, d) in files.items() if k != "html"]  # the HTML: stored only
                report.outputs = [(str(target / n), hashlib.sha256(d).hexdigest(), len(d)) for n, d in published]
                jobs.close_succeeded(con, report)
        except BaseException:
            statements.clear_staging(target)  # rolled back: nothing was issued
            raise
        try:
            written = statements.publish_staged(staged)
        except statements.StatementError as exc:
            raise CreditNoteError(
                f"{number} IS issued, but its files could not be renamed into place: {exc.message}",
                hint=f'its exact bytes are stored: `infergate-billing sql "SELECT file_name, content FROM '
                f"credit_note_files WHERE credit_note_number = '{number}'\"`",
            ) from exc
    return CreditNoteReport(number, doc, written, report.run_id)


def reproduce(con: duckdb.DuckDBPyConnection, period: str, db: str = "live.") -> list[tuple[str, str, bool]]:
    """Rebuild every credit note of ``period``'s statements from its stored rows and compare
    the PDF, lines CSV and HTML with the stored bytes: (number, kind, identical)."""
    result = []
    numbers = con.execute(
        f"SELECT credit_note_number FROM {db}credit_notes WHERE period = ? ORDER BY sequence_no", [period]
    ).fetchall()
    for (number,) in numbers:
        stored = {
            kind: (checked_file_name(name, CreditNoteError), bytes(content))
            for kind, name, content in con.execute(
                f"SELECT kind, file_name, content FROM {db}credit_note_files WHERE credit_note_number = ?", [number]
            ).fetchall()
        }
        for kind, (_, data) in render_files(document_from_stored(con, number, db)).items():
            result.append((number, kind, stored.get(kind, ("", b""))[1] == data))
    return result
