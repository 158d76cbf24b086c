"""Defects of the credit rules the random billing histories found, made small, while they are
open (a strict xfail each: it states what an even history needs and fails until the fix, whose
module then takes it), and histories a fix must keep even. Seed 339 (a note kept as prepaid an
ask's credit a refund restored) is closed by credit note rule 9: tests/test_credit_note_rule9.py.

acct_de (19% VAT), openai/gpt-5.5 input at 7.50/1M, prepaid credit from a grant; every figure
worked out by hand. "Even": money asked less money given back is 0.00, and the prepaid credit
used (applied less restored) is what the credit notes kept as prepaid.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from core.money import D
from tests.conftest import Billing, superseded
from tests.test_credit_histories import History
from tests.test_credit_note_after_refund import _note
from tests.test_credit_restore import _attempt, _german_account_with, _statement


@pytest.mark.parametrize("rule", [9, superseded(8)])
def test_a_note_on_an_ask_whose_period_paid_with_credit_too_keeps_its_credit_and_ends_even(
    billing: Billing, tmp_path: Path, rule: int
) -> None:
    """What a fix of seed 339 must keep even, and rule 9 does (a review of a first fix, 2026-12-07, which
    printed February's restored credit as given back on January's ask: March then found 1.50
    less of November's credit left and paid it out in money, money -1.50). November's own usage
    is paid with credit here, so a refund of November restores November's credit first, as
    statement_lines_due.sql pools it, and the ask's credit is still the note's to keep: rule 9
    prints as given back only what November's pool lacks once the note credits the ask (its
    credit_left 3.00 + 3.00 - 1.50 = 4.50 holds the ask's 3.00: nothing)."""
    # grants g 3.00 from 1 November and h 3.00 from 1 January. November: r1 400,000 = 3.00, all
    # prepaid (g): net 0.00. December: r2 200,000 = 1.50 in money
    grants = (
        "g,acct_de,3.00,USD,2026-11-01T00:00:00Z,,purchased,INV-g,\n"
        "h,acct_de,3.00,USD,2027-01-01T00:00:00Z,,purchased,INV-h,\n"
    )
    out = _german_account_with(billing, tmp_path, grants)
    _attempt(billing, "2026-11-03", "e1", "r1", 1, "2026-11-02T09:00:00Z", 400_000)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    _attempt(billing, "2026-12-03", "e2", "r2", 1, "2026-12-02T09:00:00Z", 200_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    # January, no usage: +3.00 of November (line 1, all prepaid: h) and +1.50 of December (line 2,
    # money): net 1.50, credit applied 3.00
    _attempt(billing, "2027-01-03", "e3", "r1", 2, "2026-11-02T09:05:00Z", 800_000)
    _attempt(billing, "2027-01-04", "e4", "r2", 2, "2026-12-02T09:05:00Z", 400_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert (nov.net_amount, dec.net_amount, jan.net_amount) == (D("0.00"), D("1.50"), D("1.50"))
    assert (nov.credits_applied, jan.credits_applied) == (D("3.00"), D("3.00"))
    # February: r1 down to 600,000, -1.50 of November: no money of November, 1.50 restored
    _attempt(billing, "2027-02-03", "e5", "r1", 3, "2026-11-02T09:10:00Z", 600_000)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    assert (feb.net_amount, feb.credits_restored) == (D("0.00"), D("1.50"))
    # a note on January's lines 1 and 2: line 2's money back, 1.50 + 0.29; line 1's 3.00 of
    # credit kept as prepaid (November's credit left, 3.00 + 3.00 - 1.50, still covers it)
    note = _note(billing, str(jan.statement_number), out, rule=rule, lines=(1, 2), issue_date=date(2027, 3, 5)).document
    assert (note.net_amount, note.tax_amount, note.prepaid_retained) == (D("1.50"), D("0.29"), D("3.00"))
    # March, every request to 0: -1.50 of November all restored to credit, -1.50 of December in
    # money. Money 0.00 + 1.50 + 1.50 + 0.00 - 1.50 - 1.50 = 0.00; credit used 3.00 + 3.00 - 1.50
    # - 1.50 = 3.00, what the note kept
    _attempt(billing, "2027-03-03", "e6", "r1", 4, "2026-11-02T09:15:00Z", 0)
    _attempt(billing, "2027-03-04", "e7", "r2", 3, "2026-12-02T09:15:00Z", 0)
    mar = _statement(billing, out, "2027-03", date(2027, 4, 1))
    history = History(statements=[nov, dec, jan, feb, mar], notes=[note])
    assert (history.money, history.credit_used, history.kept) == (D("0.00"), D("3.00"), D("3.00"))
