"""Credit note rule 9: a note prints as already given back the part of the credit the statement
applied to an ask of an earlier period Q (a positive adjustment line) that Q's credit pool lacks
once the note credits the ask: what refunds of Q restored beyond the credit that stays in
statement_lines_due.sql's ``paid.credit_left`` (docs/credits.md, "Closed (credit note rule 9)").
Found by the random billing histories (seed 339 of tests/test_credit_histories.py, with rules 7
and 8), made small by a helper's diagnosis (it was the strict xfail of
tests/test_credit_open_defects.py: its plan shrunk, then the figures rounded by hand). The
review's history a first rule 9 made uneven (November's own usage paid with credit too: nothing
is printed) is in tests/test_credit_open_defects.py, with rules 9 and 8.

acct_de (19% VAT), openai/gpt-5.5 input at 7.50/1M, prepaid credit from a grant; every figure
worked out by hand. "Even": money asked less money given back is 0.00, and the prepaid credit
used (applied less restored) is what the credit notes kept as prepaid.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.money import D
from pipeline import replay
from tests.conftest import Billing, superseded
from tests.test_credit_histories import History
from tests.test_credit_note_after_refund import _note
from tests.test_credit_restore import _attempt, _german_account_with, _statement


@pytest.mark.parametrize("rule", [9, superseded(8)])
def test_a_note_on_an_ask_a_refund_of_its_period_restored_keeps_no_credit(
    billing: Billing, tmp_path: Path, rule: int
) -> None:
    # the random histories' seed 339, shrunk. Grant 3.00 from 1 January. November: r1 400,000 =
    # 3.00 in money. December: r2 200,000 = 1.50 in money. January, no usage of its own: r1 up to
    # 800,000, +3.00 of November (line 1), and r2 up to 400,000, +1.50 of December (line 2). The
    # credit pays the asks in printed order: line 1 all 3.00 prepaid, line 2 all money: net 1.50,
    # credit applied 3.00. A note on November's line 1 gives back all of November's own money:
    # 3.00 + 0.57, nothing kept. November's money left is 0.00; its credit left is January's
    # ask's 3.00
    out, nov, dec, jan, first = _until_the_first_note(billing, tmp_path, rule)
    assert (nov.net_amount, dec.net_amount, jan.net_amount) == (D("3.00"), D("1.50"), D("1.50"))
    assert jan.credits_applied == D("3.00")
    assert (first.net_amount, first.tax_amount, first.prepaid_retained) == (D("3.00"), D("0.57"), D("0.00"))
    # February: r1 back down to 400,000, -3.00 of November: no money is left of November, so
    # it restores the 3.00 of credit January applied to its ask (line 1 of January): net 0.00
    _attempt(billing, "2027-02-03", "e5", "r1", 3, "2026-11-02T09:10:00Z", 400_000)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    assert (feb.net_amount, feb.credits_restored) == (D("0.00"), D("3.00"))
    # a note on January's lines 1 and 2 (4.50): it gives back January's money, 1.50 + 0.29
    # (line 2's, credit_note_money). Rule 9 prints line 1's 3.00, the credit February restored,
    # as already given back, and keeps nothing: November's credit left is 0.00 (its own statement
    # 0.00, January's ask 3.00, restored 3.00), so once the note credits the ask the pool lacks
    # 3.00 - 0.00 of it. Rule 8 printed a restored part only on lines of
    # the statement's own period, and rule 5's credit standing subtracted only what refunds of
    # that period restored: it kept the 3.00 as prepaid, credit February had restored already
    # (the seed's note kept 9.00, 4.50 of it restored)
    second = _note(billing, str(jan.statement_number), out, rule=rule, lines=(1, 2), issue_date=date(2027, 3, 5))
    given_back = D("3.00") if rule >= 9 else D("0.00")
    assert (second.document.net_amount, second.document.tax_amount) == (D("1.50"), D("0.29"))
    assert (second.document.prepaid_retained, second.document.refunded) == (D("3.00") - given_back, given_back)
    assert _printed(billing, second.number) == [
        (1, D("0.00"), D("0.00"), given_back),
        (2, D("0.00"), D("0.00"), D("0.00")),
    ]
    assert _attribution(billing, second.number) == [(2, D("1.50"))]
    if rule >= 9:
        assert second.document.refunded_on == str(feb.statement_number)
    # March, every request to 0: November's key is credited in full (issued 3.00 + 3.00 - 3.00,
    # credited 3.00 + 3.00): nothing; December's -3.00 refunds its own 1.50 in money (issued
    # 1.50 + 1.50, credited 1.50): net -1.50, nothing restored. Money 3.00 + 1.50 + 1.50 + 0.00
    # - 1.50 - 3.00 - 1.50 = 0.00; credit used 3.00 - 3.00 = 0.00: what a rule-9 note keeps; the
    # rule-8 note kept 3.00
    _attempt(billing, "2027-03-03", "e6", "r1", 4, "2026-11-02T09:15:00Z", 0)
    _attempt(billing, "2027-03-04", "e7", "r2", 3, "2026-12-02T09:15:00Z", 0)
    mar = _statement(billing, out, "2027-03", date(2027, 4, 1))
    assert (mar.net_amount, mar.tax_amount, mar.credits_restored) == (D("-1.50"), D("-0.29"), D("0.00"))
    history = History(statements=[nov, dec, jan, feb, mar], notes=[first, second.document])
    assert (history.money, history.credit_used) == (D("0.00"), D("0.00"))
    assert history.kept == D("3.00") - given_back  # rule 9: even; rule 8: 3.00 kept of no credit used
    # every run re-executed in order and compared, the note's with its rule (verify_run of the
    # last run does the note's run too: verifying that one alone would repeat it)
    last = billing.one("SELECT max(run_id) FROM runs WHERE status = 'succeeded'")
    assert replay.verify_run(billing.settings, last).status == "MATCH"


@pytest.mark.parametrize("rule", [9, superseded(8)])
def test_an_ask_whose_restored_credit_a_later_ask_drew_again_keeps_that_part(
    billing: Billing, tmp_path: Path, rule: int
) -> None:
    # the same November, December, January, note on November and February (-3.00 of November,
    # 3.00 restored). March: r1 back up to 600,000, +1.50 of November, paid with 1.50 of the
    # credit February restored (no usage: credit pays the ask): net 0.00, credit applied 1.50
    out, nov, dec, jan, first = _until_the_first_note(billing, tmp_path, rule)
    _attempt(billing, "2027-02-03", "e5", "r1", 3, "2026-11-02T09:10:00Z", 400_000)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    _attempt(billing, "2027-03-03", "e6", "r1", 4, "2026-11-02T09:15:00Z", 600_000)
    mar = _statement(billing, out, "2027-03", date(2027, 4, 1))
    assert (feb.net_amount, feb.credits_applied, feb.credits_restored) == (D("0.00"), D("0.00"), D("3.00"))
    assert (mar.net_amount, mar.credits_applied, mar.credits_restored) == (D("0.00"), D("1.50"), D("0.00"))
    # a note on January's lines 1 and 2 (4.50): of line 1's 3.00 of credit, February restored
    # 3.00 and March's ask of November's key drew 1.50 again: November's credit left is 0.00 +
    # 3.00 + 1.50 - 3.00 = 1.50, so once the note credits January's ask the pool lacks 3.00 - 1.50
    # of it: rule 9 prints 1.50 as given back (3.00 would keep nothing, credit used 1.50 against
    # 0.00 kept). January's money left is line 2's 1.50: given back (1.50 + 0.29); of the 4.50 - 1.50
    # - 1.50 left, the credit still standing on January (3.00 applied less the 1.50 restored)
    # is kept as prepaid: 1.50. Rule 8 printed nothing and kept 3.00
    second = _note(billing, str(jan.statement_number), out, rule=rule, lines=(1, 2), issue_date=date(2027, 4, 5))
    given_back = D("1.50") if rule >= 9 else D("0.00")
    assert (second.document.net_amount, second.document.tax_amount) == (D("1.50"), D("0.29"))
    assert (second.document.prepaid_retained, second.document.refunded) == (D("3.00") - given_back, given_back)
    assert _printed(billing, second.number) == [
        (1, D("0.00"), D("0.00"), given_back),
        (2, D("0.00"), D("0.00"), D("0.00")),
    ]
    assert _attribution(billing, second.number) == [(2, D("1.50"))]
    # April, every request to 0: November's -4.50 finds its key credited (issued 3.00 + 3.00 -
    # 3.00 + 1.50, credited 3.00 + 3.00 less the 1.50 printed): nothing; December's -3.00
    # refunds its own 1.50 in money: net -1.50, nothing restored. Money 3.00 + 1.50 + 1.50 -
    # 1.50 - 3.00 - 1.50 = 0.00; credit applied 3.00 + 1.50, restored 3.00: used 1.50, what a
    # rule-9 note keeps (March's ask's credit stays used, as the note's); the rule-8 note kept 3.00
    _attempt(billing, "2027-04-03", "e7", "r1", 5, "2026-11-02T09:20:00Z", 0)
    _attempt(billing, "2027-04-04", "e8", "r2", 3, "2026-12-02T09:20:00Z", 0)
    apr = _statement(billing, out, "2027-04", date(2027, 5, 1))
    assert (apr.net_amount, apr.tax_amount, apr.credits_restored) == (D("-1.50"), D("-0.29"), D("0.00"))
    history = History(statements=[nov, dec, jan, feb, mar, apr], notes=[first, second.document])
    assert (history.money, history.credit_used) == (D("0.00"), D("1.50"))
    assert history.kept == D("3.00") - given_back  # rule 9: even; rule 8: 3.00 kept of 1.50 used
    last = billing.one("SELECT max(run_id) FROM runs WHERE status = 'succeeded'")
    assert replay.verify_run(billing.settings, last).status == "MATCH"  # the note's run included


def _until_the_first_note(billing: Billing, tmp_path: Path, rule: int) -> tuple[Path, Any, Any, Any, Any]:
    """Grant 3.00 from 1 January; November r1 400,000 (3.00 in money); December r2 200,000
    (1.50 in money); January, no usage of its own: r1 up to 800,000 (+3.00 of November, line 1,
    all prepaid) and r2 up to 400,000 (+1.50 of December, line 2, money); a note on November's
    line 1 (3.00 + 0.57, nothing kept; by ``rule``): the output folder, the three statements and
    the note."""
    out = _german_account_with(billing, tmp_path, "g,acct_de,3.00,USD,2027-01-01T00:00:00Z,,purchased,INV-g,\n")
    _attempt(billing, "2026-11-03", "e1", "r1", 1, "2026-11-02T09:00:00Z", 400_000)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    _attempt(billing, "2026-12-03", "e2", "r2", 1, "2026-12-02T09:00:00Z", 200_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    _attempt(billing, "2027-01-03", "e3", "r1", 2, "2026-11-02T09:05:00Z", 800_000)
    _attempt(billing, "2027-01-04", "e4", "r2", 2, "2026-12-02T09:05:00Z", 400_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    first = _note(billing, str(nov.statement_number), out, rule=rule, lines=(1,), issue_date=date(2027, 2, 5))
    return out, nov, dec, jan, first.document


def _printed(billing: Billing, number: str) -> list[tuple[int, Decimal, Decimal, Decimal]]:
    """Per credited line: its held-back, printed-as-refunded and printed-as-given-back parts."""
    return billing.query(
        "SELECT line_no, refunded_usd, printed_refunded_usd, printed_given_back_usd FROM credit_note_lines "
        "WHERE credit_note_number = ? ORDER BY line_no",
        [number],
    )


def _attribution(billing: Billing, number: str) -> list[tuple[int, Decimal]]:
    return billing.query(
        "SELECT line_no, money_usd FROM credit_note_money WHERE credit_note_number = ? ORDER BY line_no", [number]
    )


@pytest.mark.parametrize("rule", [9, superseded(8)])
def test_an_ask_after_its_periods_restoration_keeps_its_credit(billing: Billing, tmp_path: Path, rule: int) -> None:
    # a restoration of Q before the noted statement is not the ask's credit: R (all restored for
    # Q) is 3.00 and C (Q's credit staying once the ask leaves) 0.00, so a bare min(x, R - C)
    # would print the ask's 1.50 of credit as given back and keep 1.50 of 3.00 used; the pool
    # counts it right. Grant 3.00 from 1 November. November: r1 400,000 = 3.00, all prepaid
    out = _german_account_with(billing, tmp_path, "g,acct_de,3.00,USD,2026-11-01T00:00:00Z,,purchased,INV-g,\n")
    _attempt(billing, "2026-11-03", "e1", "r1", 1, "2026-11-02T09:00:00Z", 400_000)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    assert (nov.net_amount, nov.credits_applied) == (D("0.00"), D("3.00"))
    # December, no usage of its own: r1 down to 0, -3.00 of November; November's money is 0.00,
    # so it restores November's 3.00 of credit: net 0.00. November's pool: 3.00 - 3.00 = 0.00
    _attempt(billing, "2026-12-03", "e2", "r1", 2, "2026-11-02T09:05:00Z", 0)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    assert (dec.net_amount, dec.credits_applied, dec.credits_restored) == (D("0.00"), D("0.00"), D("3.00"))
    # January: its own r2 200,000 = 1.50 (line 1) and r1 back up to 400,000, +3.00 of November
    # (line 2). The 3.00 of credit pays the lines in printed order: line 1 all 1.50, line 2 1.50
    # of 3.00: net 1.50 + 0.29. November's pool: 0.00 + 1.50 = 1.50
    _attempt(billing, "2027-01-03", "e3", "r1", 3, "2026-11-02T09:10:00Z", 400_000)
    _attempt(billing, "2027-01-04", "e4", "r2", 1, "2027-01-02T09:10:00Z", 200_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert (jan.net_amount, jan.tax_amount, jan.credits_applied) == (D("1.50"), D("0.29"), D("3.00"))
    # a note on January's lines 1 and 2: November's credit left, 1.50, holds all the ask's 1.50
    # of credit once the note credits it (1.50 - min(1.50, 1.50) = 0.00 lacking): nothing printed
    # as given back; it gives back the money, 1.50 + 0.29 (line 2's: credit_note_money), and keeps
    # the 3.00 of credit as prepaid; rules 8 and 9 alike
    note = _note(billing, str(jan.statement_number), out, rule=rule, lines=(1, 2), issue_date=date(2027, 2, 5))
    assert (note.document.net_amount, note.document.tax_amount) == (D("1.50"), D("0.29"))
    assert (note.document.prepaid_retained, note.document.refunded) == (D("3.00"), D("0.00"))
    assert _printed(billing, note.number) == [
        (1, D("0.00"), D("0.00"), D("0.00")),
        (2, D("0.00"), D("0.00"), D("0.00")),
    ]
    assert _attribution(billing, note.number) == [(2, D("1.50"))]
    stored = billing.query(
        "SELECT printed_ask_restored_usd FROM credit_note_lines WHERE credit_note_number = ? ORDER BY line_no",
        [note.number],
    )
    assert stored == ([(D("0.00"),), (D("0.00"),)] if rule >= 9 else [(None,), (None,)])
    # February, every request to 0: -3.00 of November and -1.50 of January, both keys credited
    # by the note (November: issued 3.00 - 3.00 + 3.00, credited 3.00): nothing refunded or
    # restored. Money 1.50 - 1.50 = 0.00; credit applied 3.00 + 3.00, restored 3.00: used 3.00,
    # what the note kept
    _attempt(billing, "2027-02-03", "e5", "r1", 4, "2026-11-02T09:15:00Z", 0)
    _attempt(billing, "2027-02-04", "e6", "r2", 2, "2027-01-02T09:15:00Z", 0)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    assert (feb.net_amount, feb.credits_applied, feb.credits_restored) == (D("0.00"), D("0.00"), D("0.00"))
    history = History(statements=[nov, dec, jan, feb], notes=[note.document])
    assert (history.money, history.credit_used, history.kept) == (D("0.00"), D("3.00"), D("3.00"))
    last = billing.one("SELECT max(run_id) FROM runs WHERE status = 'succeeded'")
    assert replay.verify_run(billing.settings, last).status == "MATCH"
