"""Credit note rule 8: a note prints as already given back the part of its line that a later
statement's refund restored to prepaid credit, not only the part refunded in money
(docs/credits.md, "Closed (credit note rule 8)"). Found by the random billing histories (seed
185 of tests/test_credit_histories.py, with rules 6 and 7), made small by a helper's diagnosis
(it was the strict xfail of tests/test_credit_open_defects.py); rule 8 closes seed 231 too (a
note on a line a refund gave back in full, whose money went to an ask and moved credit the
refund had restored), made small here as well.

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
from pipeline.credit_notes import CreditNoteError
from reports.credit_note_model import CreditNoteDocument
from tests.conftest import Billing, superseded
from tests.test_credit_histories import History
from tests.test_credit_note_after_refund import _note
from tests.test_credit_restore import _attempt, _german_account_with, _statement


@pytest.mark.parametrize("rule", [8, 7])
def test_a_note_on_a_usage_line_a_refund_restored_in_part_restores_nothing_twice(
    billing: Billing, tmp_path: Path, rule: int
) -> None:
    # grant 3.00 from 1 December. November: r1 200,000 = 1.50 in money. December: r2 800,000 =
    # 6.00 (line 1: 3.00 prepaid, 3.00 money) and r1 up to 400,000, +1.50 of November (line 2,
    # money: credit pays usage first): net 4.50. January: r2 down to 200,000, -4.50 of
    # December: 3.00 refunded in money, 1.50 restored: line 1 now holds 1.50, paid with credit
    out, nov, dec, jan = _until_january(billing, tmp_path, 200_000)
    assert (nov.net_amount, dec.net_amount, jan.net_amount) == (D("1.50"), D("4.50"), D("-3.00"))
    assert (dec.credits_applied, jan.credits_restored) == (D("3.00"), D("1.50"))
    # a note on December's line 1 (6.00): 3.00 printed as refunded (January's money part), and
    # rule 8 also prints as given back the 1.50 January restored to credit; 1.50 is left, which
    # the note gives back in money (December's money left is the ask's, line 2, where its credit
    # moves too): net 1.50 + 0.29, nothing kept. Rule 7 printed only the 3.00, so 3.00 was still
    # to credit: it gave back the same 1.50 and kept 1.50 as prepaid, the credit January restored
    note = _note(billing, str(dec.statement_number), out, rule=rule, lines=(1,), issue_date=date(2027, 2, 5))
    given_back = D("1.50") if rule >= 8 else D("0.00")
    assert (note.document.net_amount, note.document.tax_amount) == (D("1.50"), D("0.29"))
    assert note.document.prepaid_retained == D("1.50") - given_back
    assert note.document.refunded == D("3.00") + given_back
    assert _printed(billing, note.number) == [(1, D("3.00"), D("3.00"), given_back)]
    assert _attribution(billing, note.number) == [(2, D("1.50"))]
    # February, every request to 0: November's -3.00 (r1) refunds 1.50 in money and restores
    # the 1.50 of credit that moved to the ask with the note's money; December's line was
    # credited: its -1.50 gives back nothing more (net -1.50, 1.50 restored, either rule). Credit
    # used is 3.00 - 1.50 - 1.50 = 0.00: what a rule-8 note keeps; a rule-7 note kept 1.50
    _attempt(billing, "2027-02-03", "e5", "r1", 3, "2026-11-02T09:10:00Z", 0)
    _attempt(billing, "2027-02-04", "e6", "r2", 3, "2026-12-02T09:10:00Z", 0)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    assert (feb.net_amount, feb.credits_restored) == (D("-1.50"), D("1.50"))
    history = History(statements=[nov, dec, jan, feb], notes=[note.document])
    assert (history.money, history.credit_used) == (D("0.00"), D("0.00"))
    assert history.kept == D("1.50") - given_back  # rule 8: even; rule 7: 1.50 kept of no credit used
    # every run re-executed in order and compared, the note's with its rule (verify_run of the
    # last run does the note's run too: verifying that one alone would repeat it)
    last = billing.one("SELECT max(run_id) FROM runs WHERE status = 'succeeded'")
    assert replay.verify_run(billing.settings, last).status == "MATCH"


def test_credit_a_refund_restored_and_a_later_ask_drew_again_is_kept_as_prepaid(
    billing: Billing, tmp_path: Path
) -> None:
    # the same November, December and January; February: r2 back up to 400,000, +1.50 of
    # December, paid with the 1.50 of credit January restored (no usage: credit pays the ask).
    # Rule 8 nets what January restored against that ask: the line's credit is used again, so
    # a note on December's line 1 prints 3.00 as refunded and nothing as given back, gives back
    # 1.50 (the ask of November's money) and keeps 1.50 as prepaid, as rule 7 does
    out, nov, dec, jan = _until_january(billing, tmp_path, 200_000)
    _attempt(billing, "2027-02-03", "e5", "r2", 3, "2026-12-02T09:10:00Z", 400_000)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    assert (feb.net_amount, feb.credits_applied) == (D("0.00"), D("1.50"))
    note = _note(billing, str(dec.statement_number), out, rule=8, lines=(1,), issue_date=date(2027, 3, 5))
    assert (note.document.net_amount, note.document.prepaid_retained) == (D("1.50"), D("1.50"))
    assert _printed(billing, note.number) == [(1, D("3.00"), D("3.00"), D("0.00"))]
    # March, every request to 0: November's -3.00 refunds 1.50 and restores the 1.50 that moved
    # to the ask; December's line is credited: nothing more. Credit used 3.00 - 1.50 + 1.50 -
    # 1.50 = 1.50, what the note kept
    _attempt(billing, "2027-03-03", "e6", "r1", 3, "2026-11-02T09:15:00Z", 0)
    _attempt(billing, "2027-03-04", "e7", "r2", 4, "2026-12-02T09:15:00Z", 0)
    mar = _statement(billing, out, "2027-03", date(2027, 4, 1))
    assert (mar.net_amount, mar.credits_restored) == (D("-1.50"), D("1.50"))
    history = History(statements=[nov, dec, jan, feb, mar], notes=[note.document])
    assert (history.money, history.credit_used, history.kept) == (D("0.00"), D("1.50"), D("1.50"))
    last = billing.one("SELECT max(run_id) FROM runs WHERE status = 'succeeded'")
    assert replay.verify_run(billing.settings, last).status == "MATCH"


@pytest.mark.parametrize("rule", [8, superseded(7)])
def test_a_note_on_a_usage_line_a_refund_gave_back_in_full_credits_nothing(
    billing: Billing, tmp_path: Path, rule: int
) -> None:
    # the random histories' seed 231, its plan shrunk by a helper. Grant 3.00 from 1 December.
    # November: r1 200,000 = 1.50 in money. December: r2 800,000 = 6.00 (line 1: 3.00 prepaid,
    # 3.00 money) and r1 up to 400,000, +1.50 of November (line 2, money: credit pays usage
    # first): net 4.50, credit applied 3.00
    # January: r2 down to 0, -6.00 of December: 3.00 refunded in money (December's usage
    # money), 3.00 restored (all the credit December drew): line 1 is given back in full
    out, nov, dec, jan = _until_january(billing, tmp_path, 0)
    assert (dec.net_amount, dec.credits_applied) == (D("4.50"), D("3.00"))
    assert (jan.net_amount, jan.credits_restored) == (D("-3.00"), D("3.00"))
    notes: list[CreditNoteDocument] = []
    if rule >= 8:
        # rule 8 prints January's 3.00 refunded and its 3.00 restored: nothing is left of line 1
        with pytest.raises(CreditNoteError, match="already given back"):
            _note(billing, str(dec.statement_number), out, rule=rule, lines=(1,), issue_date=date(2027, 2, 5))
    else:
        # rule 7 printed 3.00 refunded and 1.50 beyond the statement's money left (the ask's
        # 1.50), not the 3.00 of credit January restored: 1.50 was left to credit, given back
        # in money of line 2 (the ask of November, which no note credited), nothing kept; layout
        # 12's moved_credit then moved 1.50 of credit from December, which had none left, to
        # November
        note = _note(billing, str(dec.statement_number), out, rule=rule, lines=(1,), issue_date=date(2027, 2, 5))
        assert (note.document.net_amount, note.document.prepaid_retained) == (D("1.50"), D("0.00"))
        assert _attribution(billing, note.number) == [(2, D("1.50"))]
        notes.append(note.document)
    # February, r1 to 0: -3.00 of November. Without the note November's money is 3.00 (1.50 of
    # its own and December's ask of 1.50): refunded in money, nothing restored. After rule 7's
    # note 1.50 of it was given back and 1.50 of credit had moved there: 1.50 refunded and 1.50
    # restored, the credit January had already restored for December (credit used -1.50)
    _attempt(billing, "2027-02-03", "e5", "r1", 3, "2026-11-02T09:10:00Z", 0)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    restored_twice = D("0.00") if rule >= 8 else D("1.50")
    assert (feb.net_amount, feb.credits_restored) == (D("-3.00") + restored_twice, restored_twice)
    history = History(statements=[nov, dec, jan, feb], notes=notes)
    assert (history.money, history.credit_used, history.kept) == (D("0.00"), -restored_twice, D("0.00"))
    if rule >= 8:  # every run re-executes to the same bytes (rule 7's notes: the first test)
        last = billing.one("SELECT max(run_id) FROM runs WHERE status = 'succeeded'")
        assert replay.verify_run(billing.settings, last).status == "MATCH"


def test_a_refund_an_ask_that_drew_its_credit_again_and_a_second_refund_leave_the_line_its_rest(
    billing: Billing, tmp_path: Path
) -> None:
    # a reviewer's case: the same November, December and January (January -4.50 of December:
    # 3.00 in money, 1.50 restored). February: r2 back up to 400,000, +1.50 of December, paid
    # with the 1.50 January restored (net 0.00). March: r2 down to 100,000, -2.25 of December:
    # December's own money is refunded already, so all 2.25 is restored (net 0.00)
    out, nov, dec, jan = _until_january(billing, tmp_path, 200_000)
    _attempt(billing, "2027-02-03", "e5", "r2", 3, "2026-12-02T09:10:00Z", 400_000)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    _attempt(billing, "2027-03-03", "e6", "r2", 4, "2026-12-02T09:15:00Z", 100_000)
    mar = _statement(billing, out, "2027-03", date(2027, 4, 1))
    assert (feb.net_amount, feb.credits_applied) == (D("0.00"), D("1.50"))
    assert (mar.net_amount, mar.credits_restored) == (D("0.00"), D("2.25"))
    # a note on December's line 1 (6.00): 3.00 refunded in money (January); of the credit,
    # January restored 1.50, February drew it again (the later ask takes back that refund) and
    # March restored 2.25: 2.25 printed as given back. 0.75 is left, within December's money
    # left (the ask's 1.50): given back in money, nothing kept. Rule 7 printed 3.00 and 1.50 (the
    # statement's money short), gave back 1.50 and ended with credit used -0.75
    note = _note(billing, str(dec.statement_number), out, lines=(1,), issue_date=date(2027, 4, 5))
    assert (note.document.net_amount, note.document.prepaid_retained) == (D("0.75"), D("0.00"))
    assert note.document.refunded == D("5.25")
    assert _printed(billing, note.number) == [(1, D("3.00"), D("3.00"), D("2.25"))]
    # April, every request to 0: November's -3.00 finds 2.25 of money (its 1.50 and the ask's
    # 1.50 less the note's 0.75) and the 0.75 of credit that moved to the ask with the note's
    # money; December's -0.75 gives back nothing more (its line is credited): net -2.25,
    # restored 0.75. Money 1.50 + 4.50 - 3.00 + 0.00 + 0.00 - 2.25 - 0.75 = 0.00; credit applied
    # 3.00 + 1.50, restored 1.50 + 2.25 + 0.75: used 0.00, what the note kept
    _attempt(billing, "2027-04-03", "e7", "r1", 3, "2026-11-02T09:20:00Z", 0)
    _attempt(billing, "2027-04-04", "e8", "r2", 5, "2026-12-02T09:20:00Z", 0)
    apr = _statement(billing, out, "2027-04", date(2027, 5, 1))
    assert (apr.net_amount, apr.credits_restored) == (D("-2.25"), D("0.75"))
    history = History(statements=[nov, dec, jan, feb, mar, apr], notes=[note.document])
    assert (history.money, history.credit_used, history.kept) == (D("0.00"), D("0.00"), D("0.00"))


def _until_january(billing: Billing, tmp_path: Path, january_r2: int) -> tuple[Path, Any, Any, Any]:
    """Grant 3.00 from 1 December; November r1 200,000 (1.50); December r2 800,000 (6.00, 3.00
    of it prepaid) and r1 up to 400,000 (+1.50 of November); January r2 down to ``january_r2``
    tokens: the output folder and the three issued statements."""
    out = _german_account_with(billing, tmp_path, "g,acct_de,3.00,USD,2026-12-01T00:00:00Z,,purchased,INV-g,\n")
    _attempt(billing, "2026-11-03", "e1", "r1", 1, "2026-11-02T09:00:00Z", 200_000)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    _attempt(billing, "2026-12-03", "e2", "r2", 1, "2026-12-02T09:00:00Z", 800_000)
    _attempt(billing, "2026-12-04", "e3", "r1", 2, "2026-11-02T09:05:00Z", 400_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    _attempt(billing, "2027-01-03", "e4", "r2", 2, "2026-12-02T09:05:00Z", january_r2)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    return out, nov, dec, jan


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
