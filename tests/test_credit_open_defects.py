"""A defect of the credit rules the random billing histories found (seed 339 of
tests/test_credit_histories.py, 2026-12-07, with credit note rule 8 and layout 14 and as well
with rule 7), made small by a helper's diagnosis (its plan shrunk, then the figures rounded by
hand), and a second form of it two reviews of fixes found (two asks of one period, one key
refunded). Strict xfails: they state what an even history needs and fail today (docs/credits.md
"Open points"); the fix turns them into passes, and the strict mark then fails the suite until
the mark is removed. Beside them, the histories the two reviews built that rule 8 keeps even
and a fix must keep even too (each broke one of the fixes tried).

acct_de (19% VAT), openai/gpt-5.5 input at 7.50/1M, prepaid credit from a grant; every figure
worked out by hand. "Even": money asked less money given back is 0.00, and the prepaid credit
used (applied less restored) is what the credit notes kept as prepaid.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from core.money import D
from tests.conftest import Billing
from tests.test_credit_histories import History
from tests.test_credit_note_after_refund import _note
from tests.test_credit_restore import _attempt, _german_account_with, _statement


def _november_to_january(billing: Billing, out: Path) -> tuple[Any, Any, Any]:
    """The three issued months both seed 339 and the first review's history start with:
    November r1 400,000 (3.00), December r2 200,000 (1.50), and January, no usage of its own,
    r1 up to 800,000 (+3.00 of November, line 1) and r2 up to 400,000 (+1.50 of December, line
    2); how each is paid is the grants' business."""
    _attempt(billing, "2026-11-03", "e1", "r1", 1, "2026-11-02T09:00:00Z", 400_000)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    _attempt(billing, "2026-12-03", "e2", "r2", 1, "2026-12-02T09:00:00Z", 200_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    _attempt(billing, "2027-01-03", "e3", "r1", 2, "2026-11-02T09:05:00Z", 800_000)
    _attempt(billing, "2027-01-04", "e4", "r2", 2, "2026-12-02T09:05:00Z", 400_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    return nov, dec, jan


def _seed_339_until_januarys_note(billing: Billing, tmp_path: Path) -> tuple[Path, list[Any], list[Any]]:
    """Seed 339 (shrunk) up to the note on January's asks: the statements of November to
    February and the two notes."""
    # grant 3.00 from 1 January. November: r1 400,000 = 3.00 in money. December: r2 200,000 =
    # 1.50 in money
    out = _german_account_with(billing, tmp_path, "g,acct_de,3.00,USD,2027-01-01T00:00:00Z,,purchased,INV-g,\n")
    # January, no usage of its own: r1 up to 800,000, +3.00 of November (line 1), and r2 up to
    # 400,000, +1.50 of December (line 2). The credit pays the asks in printed order: line 1 all
    # 3.00 prepaid, line 2 all money: net 1.50, credit applied 3.00
    nov, dec, jan = _november_to_january(billing, out)
    assert (nov.net_amount, dec.net_amount, jan.net_amount) == (D("3.00"), D("1.50"), D("1.50"))
    assert jan.credits_applied == D("3.00")
    # a note on November's line 1 gives back all of November's own money: 3.00 + 0.57, nothing
    # kept. November's money left is 0.00; its credit left is January's ask's 3.00
    first = _note(billing, str(nov.statement_number), out, lines=(1,), issue_date=date(2027, 2, 5)).document
    assert (first.net_amount, first.tax_amount, first.prepaid_retained) == (D("3.00"), D("0.57"), D("0.00"))
    # February: r1 back down to 400,000, -3.00 of November: no money is left of November, so
    # it restores the 3.00 of credit January applied to its ask (line 1 of January): net 0.00
    _attempt(billing, "2027-02-03", "e5", "r1", 3, "2026-11-02T09:10:00Z", 400_000)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    assert (feb.net_amount, feb.credits_restored) == (D("0.00"), D("3.00"))
    # a note on January's lines 1 and 2 (4.50): it gives back January's money, 1.50 + 0.29
    # (line 2's, credit_note_money), and today keeps as prepaid the 3.00 of credit January
    # applied to line 1, though February restored that credit already: rule 8 prints a
    # restored part as given back only on lines of the statement's own period, and rule 5's
    # credit standing subtracts only what refunds of the statement's own period restored, not
    # of the period of an ask (rule 7 alike). The seed's note kept 9.00, 4.50 of it restored
    second = _note(billing, str(jan.statement_number), out, lines=(1, 2), issue_date=date(2027, 3, 5)).document
    assert (second.net_amount, second.tax_amount) == (D("1.50"), D("0.29"))
    return out, [nov, dec, jan, feb], [first, second]


@pytest.mark.xfail(strict=True, reason="docs/credits.md: a note keeps as prepaid an ask's credit a refund restored")
def test_a_note_on_an_ask_a_refund_of_its_period_restored_keeps_no_credit(billing: Billing, tmp_path: Path) -> None:
    out, statements, notes = _seed_339_until_januarys_note(billing, tmp_path)
    # March, every request to 0: November's key is credited in full (issued 3.00 + 3.00 - 3.00,
    # credited 3.00 + 3.00): nothing; December's -3.00 refunds its own 1.50 in money (issued
    # 1.50 + 1.50, credited 1.50): net -1.50, nothing restored. Money 3.00 + 1.50 + 1.50 + 0.00
    # - 1.50 - 3.00 - 1.50 = 0.00; credit used 3.00 - 3.00 = 0.00, where the notes kept 3.00.
    # Even would be the second note keeping nothing (printing line 1's 3.00 as given back)
    _attempt(billing, "2027-03-03", "e6", "r1", 4, "2026-11-02T09:15:00Z", 0)
    _attempt(billing, "2027-03-04", "e7", "r2", 3, "2026-12-02T09:15:00Z", 0)
    mar = _statement(billing, out, "2027-03", date(2027, 4, 1))
    history = History(statements=[*statements, mar], notes=notes)
    assert (history.money, history.credit_used) == (D("0.00"), history.kept)


def test_a_note_on_an_ask_whose_period_paid_with_credit_too_keeps_its_credit_and_ends_even(
    billing: Billing, tmp_path: Path
) -> None:
    """What a fix of the defect above must keep even (a review of a first fix, 2026-12-07, which
    printed February's restored credit as given back on January's ask: March then found 1.50
    less of November's credit left and paid it out in money, money -1.50). November's own usage
    is paid with credit here, so a refund of November restores November's credit first, as
    statement_lines_due.sql pools it, and the ask's credit is still the note's to keep."""
    # grants g 3.00 from 1 November and h 3.00 from 1 January. November: r1 400,000 = 3.00, all
    # prepaid (g): net 0.00. December: r2 200,000 = 1.50 in money
    grants = (
        "g,acct_de,3.00,USD,2026-11-01T00:00:00Z,,purchased,INV-g,\n"
        "h,acct_de,3.00,USD,2027-01-01T00:00:00Z,,purchased,INV-h,\n"
    )
    out = _german_account_with(billing, tmp_path, grants)
    # January, no usage: +3.00 of November (line 1, all prepaid: h) and +1.50 of December (line 2,
    # money): net 1.50, credit applied 3.00
    nov, dec, jan = _november_to_january(billing, out)
    assert (nov.net_amount, dec.net_amount, jan.net_amount) == (D("0.00"), D("1.50"), D("1.50"))
    assert (nov.credits_applied, jan.credits_applied) == (D("3.00"), D("3.00"))
    # February: r1 down to 600,000, -1.50 of November: no money of November, 1.50 restored
    _attempt(billing, "2027-02-03", "e5", "r1", 3, "2026-11-02T09:10:00Z", 600_000)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    assert (feb.net_amount, feb.credits_restored) == (D("0.00"), D("1.50"))
    # a note on January's lines 1 and 2: line 2's money back, 1.50 + 0.29; line 1's 3.00 of
    # credit kept as prepaid (November's credit left, 3.00 + 3.00 - 1.50, still covers it)
    note = _note(billing, str(jan.statement_number), out, lines=(1, 2), issue_date=date(2027, 3, 5)).document
    assert (note.net_amount, note.tax_amount, note.prepaid_retained) == (D("1.50"), D("0.29"), D("3.00"))
    # March, every request to 0: -1.50 of November all restored to credit, -1.50 of December in
    # money. Money 0.00 + 1.50 + 1.50 + 0.00 - 1.50 - 1.50 = 0.00; credit used 3.00 + 3.00 - 1.50
    # - 1.50 = 3.00, what the note kept
    _attempt(billing, "2027-03-03", "e6", "r1", 4, "2026-11-02T09:15:00Z", 0)
    _attempt(billing, "2027-03-04", "e7", "r2", 3, "2026-12-02T09:15:00Z", 0)
    mar = _statement(billing, out, "2027-03", date(2027, 4, 1))
    history = History(statements=[nov, dec, jan, feb, mar], notes=[note])
    assert (history.money, history.credit_used, history.kept) == (D("0.00"), D("3.00"), D("3.00"))


def test_a_later_ask_of_q_drawing_the_restored_credit_then_reverted_ends_even(billing: Billing, tmp_path: Path) -> None:
    """What a fix of seed 339 must keep even (the review of a second fix, 2026-12-07, which
    printed February's 3.00 as given back on January's ask while statement_lines_due.sql's
    pool still subtracted it from November's credit: March's new ask of November then only
    filled that hole and April paid March's credit out in money, money -3.00)."""
    out, statements, notes = _seed_339_until_januarys_note(billing, tmp_path)
    # March asks November again: r1 up to 800,000, +3.00 of November (line 1), paid with the
    # 3.00 February restored; r2 up to 600,000, +1.50 of December (line 2) in money: net 1.50
    _attempt(billing, "2027-03-03", "e6", "r1", 4, "2026-11-02T09:15:00Z", 800_000)
    _attempt(billing, "2027-03-04", "e7", "r2", 3, "2026-12-02T09:15:00Z", 600_000)
    mar = _statement(billing, out, "2027-03", date(2027, 4, 1))
    assert (mar.net_amount, mar.tax_amount, mar.credits_applied, mar.credits_restored) == (
        D("1.50"), D("0.29"), D("3.00"), D("0.00"),
    )  # fmt: skip
    # April, every request to 0. November's key: issued 3.00 + 3.00 - 3.00 + 3.00, credited
    # 3.00 + 3.00: nothing; December's -4.50: issued 1.50 + 1.50 + 1.50, credited 1.50 (January's
    # line 2): 3.00 in money, its own 1.50 and March's ask's 1.50: net -3.00 + tax -0.57, nothing
    # restored. Money 3.00 + 1.50 + 1.50 + 0.00 + 1.50 - 3.00 - 1.50 - 3.00 = 0.00; credit used
    # 3.00 (January's) - 3.00 (February's) + 3.00 (March's) = 3.00, the 3.00 January's note kept
    _attempt(billing, "2027-04-03", "e8", "r1", 5, "2026-11-02T09:20:00Z", 0)
    _attempt(billing, "2027-04-04", "e9", "r2", 4, "2026-12-02T09:20:00Z", 0)
    apr = _statement(billing, out, "2027-04", date(2027, 5, 1))
    assert (apr.net_amount, apr.tax_amount, apr.credits_restored) == (D("-3.00"), D("-0.57"), D("0.00"))
    history = History(statements=[*statements, mar, apr], notes=notes)
    assert (history.money, history.credit_used, history.kept) == (D("0.00"), D("3.00"), D("3.00"))


def _output(billing: Billing, day: str, event: str, request: str, n: int, ts: str, tokens: int) -> None:
    """As ``_attempt``, with ``tokens`` output tokens (45/1M: another line key than input's)."""
    from tests.conftest import record, usage

    one = record(event_id=event, request_id=request, attempt=n, account_id="acct_de", ts=ts, usage=usage(0, tokens))
    billing.log(f"requests-{day}-{event}.jsonl", [one])
    billing.nightly(day)


@pytest.mark.xfail(strict=True, reason="docs/credits.md: a note keeps as prepaid an ask's credit a refund restored")
def test_two_asks_of_a_period_one_key_refunded_a_note_on_both_ends_even(billing: Billing, tmp_path: Path) -> None:
    """The review of a second fix of seed 339 (2026-12-07): two asks of November on one
    statement, only one key's refunded. Rule 8 keeps both asks' credit as prepaid (7.50 of
    3.00 used); a fix must print as given back the 4.50 the output key's refund restored, on
    that key's ask (the fix reviewed shared it in printed order, 3.00 on the input key's ask,
    and March's revert of that key paid 3.00 in money)."""
    # grant 7.50 from 1 January. November: r1 400,000 input = 3.00 (line 1), r3 100,000 output
    # x 45/1M = 4.50 (line 2), in money: net 7.50. December: r2 200,000 = 1.50 in money
    out = _german_account_with(billing, tmp_path, "g,acct_de,7.50,USD,2027-01-01T00:00:00Z,,purchased,INV-g,\n")
    _attempt(billing, "2026-11-03", "e1", "r1", 1, "2026-11-02T09:00:00Z", 400_000)
    _output(billing, "2026-11-04", "e1b", "r3", 1, "2026-11-02T10:00:00Z", 100_000)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    _attempt(billing, "2026-12-03", "e2", "r2", 1, "2026-12-02T09:00:00Z", 200_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    # January, no usage of its own: +3.00 of November's input key (line 1), +4.50 of its
    # output key (line 2), both prepaid (7.50), +1.50 of December (line 3) in money
    _attempt(billing, "2027-01-03", "e3", "r1", 2, "2026-11-02T09:05:00Z", 800_000)
    _output(billing, "2027-01-03", "e3b", "r3", 2, "2026-11-02T10:05:00Z", 200_000)
    _attempt(billing, "2027-01-04", "e4", "r2", 2, "2026-12-02T09:05:00Z", 400_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert (nov.net_amount, dec.net_amount, jan.net_amount, jan.credits_applied) == (
        D("7.50"), D("1.50"), D("1.50"), D("7.50"),
    )  # fmt: skip
    # a note gives back all of November's money: 7.50 + 1.43
    first = _note(billing, str(nov.statement_number), out, lines=(1, 2), issue_date=date(2027, 2, 5)).document
    assert (first.net_amount, first.tax_amount, first.prepaid_retained) == (D("7.50"), D("1.43"), D("0.00"))
    # February: r3 back to 100,000, -4.50 of November's output key only; no money is left of
    # November: it restores the 4.50 January applied to its line 2
    _output(billing, "2027-02-03", "e5", "r3", 3, "2026-11-02T10:10:00Z", 100_000)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    assert (feb.net_amount, feb.credits_restored) == (D("0.00"), D("4.50"))
    # a note on January's three lines gives back line 3's money, 1.50 + 0.29, and today keeps
    # both asks' 7.50 of credit as prepaid, 4.50 of it February restored already
    second = _note(billing, str(jan.statement_number), out, lines=(1, 2, 3), issue_date=date(2027, 3, 5)).document
    assert (second.net_amount, second.tax_amount) == (D("1.50"), D("0.29"))
    # March, every request to 0: November's input key -6.00, credited 3.00 + 3.00: nothing;
    # output key -4.50, issued 4.50 + 4.50 - 4.50, credited 4.50 + 4.50: nothing; December's
    # -4.50, credited 1.50 of 3.00: its 1.50 in money. Money 7.50 + 1.50 + 1.50 - 7.50 - 1.50 -
    # 1.50 = 0.00; credit used 7.50 - 4.50 = 3.00, where the notes kept 7.50. Even: the note
    # prints the output key's 4.50 as given back and keeps the input key's 3.00
    _attempt(billing, "2027-03-03", "e6", "r1", 3, "2026-11-02T09:15:00Z", 0)
    _output(billing, "2027-03-03", "e6b", "r3", 4, "2026-11-02T10:15:00Z", 0)
    _attempt(billing, "2027-03-04", "e7", "r2", 3, "2026-12-02T09:15:00Z", 0)
    mar = _statement(billing, out, "2027-03", date(2027, 4, 1))
    assert (mar.net_amount, mar.tax_amount, mar.credits_restored) == (D("-1.50"), D("-0.29"), D("0.00"))
    history = History(statements=[nov, dec, jan, feb, mar], notes=[first, second])
    assert history.credit_used == D("3.00")
    assert (history.money, history.credit_used) == (D("0.00"), history.kept)
