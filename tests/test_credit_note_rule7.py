"""Credit note rule 7 and statement layout 14: a note stores how it attributed its money to
its statement's lines when it was issued (``credit_note_money``), and statements read that
attribution instead of making their own later (docs/credits.md, "Closed (credit note rule 7)").
Found by the random billing histories (seed 53 of tests/test_credit_histories.py), made small.

acct_de (19% VAT), openai/gpt-5.5 input at 7.50/1M, prepaid credit from a grant; every figure
worked out by hand. "Even": money asked less money given back is 0.00, and the prepaid credit
used (applied less restored) is what the credit notes kept as prepaid.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from core.money import D
from pipeline import replay
from tests.conftest import Billing, record, usage
from tests.test_credit_histories import History
from tests.test_credit_note_after_refund import _note
from tests.test_credit_restore import _attempt, _german_account_with, _statement


def _noted_after_asks(  # type: ignore[no-untyped-def]
    billing: Billing, tmp_path: Path, rule: int, first_rule: int | None = None
):
    """Grant 9.00 from 1 January. November: r1 1,000,000 = 7.50 in money. December: r2
    1,000,000 = 7.50, and r1 800,000, -1.50 of November refunded: net 6.00. January: r3
    1,200,000 = 9.00 all prepaid (line 1), r1 back to 1,000,000 (+1.50 of November, line 2) and
    r2 1,200,000 (+1.50 of December, line 3), both in money: net 3.00. Then two notes of
    ``rule`` (the first of ``first_rule``, when given): on November's line, giving November's
    money back (7.50 + 1.43), and on January's usage line, which gives back 1.50 + 0.29 and
    keeps 7.50 as prepaid: that 1.50 is an ask's money, and November's is all given back, so it
    is December's ask that the credit now pays.
    February: every request to 0 tokens. The history, and the two notes' reports."""
    out = _german_account_with(billing, tmp_path, "g,acct_de,9.00,USD,2027-01-01T00:00:00Z,,purchased,INV-g,\n")
    _attempt(billing, "2026-11-03", "e1", "r1", 1, "2026-11-02T09:00:00Z", 1_000_000)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    _attempt(billing, "2026-12-03", "e2", "r2", 1, "2026-12-02T09:00:00Z", 1_000_000)
    _attempt(billing, "2026-12-04", "e3", "r1", 2, "2026-11-02T09:05:00Z", 800_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    _attempt(billing, "2027-01-03", "e4", "r3", 1, "2027-01-02T09:00:00Z", 1_200_000)
    _attempt(billing, "2027-01-04", "e5", "r1", 3, "2026-11-02T09:10:00Z", 1_000_000)
    _attempt(billing, "2027-01-05", "e6", "r2", 2, "2026-12-02T09:05:00Z", 1_200_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    first = _note(
        billing, str(nov.statement_number), out, rule=first_rule or rule, lines=(1,), issue_date=date(2027, 2, 5)
    )
    second = _note(billing, str(jan.statement_number), out, rule=rule, lines=(1,), issue_date=date(2027, 2, 6))
    _attempt(billing, "2027-02-03", "e7", "r1", 4, "2026-11-02T09:15:00Z", 0)
    _attempt(billing, "2027-02-04", "e8", "r2", 3, "2026-12-02T09:10:00Z", 0)
    _attempt(billing, "2027-02-05", "e9", "r3", 2, "2027-01-02T09:05:00Z", 0)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    return History(statements=[nov, dec, jan, feb], notes=[first.document, second.document]), first, second


def _attribution(billing: Billing, number: str) -> list[tuple[int, Decimal]]:
    return billing.query(
        "SELECT line_no, money_usd FROM credit_note_money WHERE credit_note_number = ? ORDER BY line_no", [number]
    )


def test_a_notes_money_beyond_its_line_goes_to_the_ask_whose_period_has_money_left(
    billing: Billing, tmp_path: Path
) -> None:
    history, first, second = _noted_after_asks(billing, tmp_path, rule=7)
    nov, dec, jan, feb = history.statements
    assert (nov.net_amount, dec.net_amount, jan.net_amount) == (D("7.50"), D("6.00"), D("3.00"))
    assert (jan.credits_applied, [ln.amount for ln in jan.lines]) == (D("9.00"), [D("9.00")])
    assert [ln.amount for ln in jan.adjustments] == [D("1.50"), D("1.50")]
    # the first note gives November's money back: its line's 7.50 (6.00 asked by November, less
    # December's refund, and the 1.50 January asked again); the second 1.50 of January's money,
    # which its usage line (all prepaid) did not ask: December's ask (line 3), as November's
    # money is all given back
    assert (first.document.net_amount, first.document.tax_amount) == (D("7.50"), D("1.43"))
    assert (second.document.net_amount, second.document.tax_amount) == (D("1.50"), D("0.29"))
    assert second.document.prepaid_retained == D("7.50")
    assert _attribution(billing, first.number) == [(1, D("7.50"))]
    assert _attribution(billing, second.number) == [(3, D("1.50"))]
    # February: November's -9.00 has no money left (credits 0.00, its notes gave it all back),
    # December's -9.00 refunds 7.50 of money and restores the 1.50 of credit that now pays its
    # ask; January's -9.00 line was credited (kept as prepaid: stays used)
    assert feb.credits_restored == D("1.50")
    assert (history.money, history.credit_used) == (D("0.00"), history.kept)
    last = billing.one("SELECT max(run_id) FROM runs WHERE status = 'succeeded'")
    assert replay.verify_run(billing.settings, last).status == "MATCH"


def test_notes_of_rule_6_keep_the_attribution_statements_made_before_layout_14(
    billing: Billing, tmp_path: Path
) -> None:
    # the same notes under rule 6 credit the same, store no attribution, and layout 14 still
    # attributes them in printed order: the second note's 1.50 to November's ask (line 2),
    # whose money is given back, so February restores nothing and refunds 9.00 + 1.71 in money
    history, first, second = _noted_after_asks(billing, tmp_path, rule=6)
    assert (first.document.net_amount, second.document.net_amount) == (D("7.50"), D("1.50"))
    assert _attribution(billing, first.number) == _attribution(billing, second.number) == []
    feb = history.statements[-1]
    assert feb.credits_restored == D("0.00")
    assert history.money == D("-1.50") and history.credit_used - history.kept == D("1.50")
    last = billing.one("SELECT max(run_id) FROM runs WHERE status = 'succeeded'")
    assert replay.verify_run(billing.settings, last).status == "MATCH"


def test_a_rule_7_note_after_a_rule_6_note_counts_the_earlier_one_as_layout_13_did(
    billing: Billing, tmp_path: Path
) -> None:
    # November's note issued under rule 6 (before the upgrade), January's under rule 7: layout 14
    # attributes the first as layout 13 did (all on its own line: November's money), and the
    # second, reading that, stores December's ask; February restores 1.50 as with two rule-7 notes
    history, first, second = _noted_after_asks(billing, tmp_path, rule=7, first_rule=6)
    assert (first.document.net_amount, second.document.net_amount) == (D("7.50"), D("1.50"))
    assert _attribution(billing, first.number) == []
    assert _attribution(billing, second.number) == [(3, D("1.50"))]
    assert history.statements[-1].credits_restored == D("1.50")
    assert (history.money, history.credit_used) == (D("0.00"), history.kept)


def _tokens(
    billing: Billing, day: str, event: str, request: str, attempt: int, ts: str, prompt: int, output: int
) -> None:
    """One attempt of acct_de's ``request``: input at 7.50/1M, output at 45/1M; the day's nightly."""
    one = record(event_id=event, request_id=request, attempt=attempt, account_id="acct_de", ts=ts,
                 usage=usage(prompt, output))  # fmt: skip
    billing.log(f"requests-{day}-{event}.jsonl", [one])
    billing.nightly(day)


@pytest.mark.parametrize("rule", [7, 6])
def test_a_noted_periods_money_asked_again_later_stays_that_periods(
    billing: Billing, tmp_path: Path, rule: int
) -> None:
    # a review's history: grant 7.50 from 1 December. November: r0 400,000 = 3.00 in money.
    # December: r1 input 1,000,000 = 7.50 (line 1, prepaid), output 200,000 = 9.00 (line 2),
    # late r7 of November 400,000 = +3.00 (line 3): net 12.00. January: r9 0.75; r1's output
    # down to 150,000, -2.25 of December; r0 and r7 to 0, -6.00 of November: all of November's
    # money refunded. February: r8 0.75; late r2 of December 300,000, +2.25 of December's input
    out = _german_account_with(billing, tmp_path, "g,acct_de,7.50,USD,2026-12-01T00:00:00Z,,purchased,INV-g,\n")
    _tokens(billing, "2026-11-03", "e0", "r0", 1, "2026-11-02T09:00:00Z", 400_000, 0)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    _tokens(billing, "2026-12-03", "e1", "r1", 1, "2026-12-02T09:00:00Z", 1_000_000, 200_000)
    _tokens(billing, "2026-12-04", "e2", "r7", 1, "2026-11-02T10:00:00Z", 400_000, 0)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    _tokens(billing, "2027-01-03", "e3", "r9", 1, "2027-01-02T09:00:00Z", 100_000, 0)
    _tokens(billing, "2027-01-04", "e4", "r1", 2, "2026-12-02T09:05:00Z", 1_000_000, 150_000)
    _tokens(billing, "2027-01-05", "e5", "r0", 2, "2026-11-02T09:05:00Z", 0, 0)
    _tokens(billing, "2027-01-06", "e6", "r7", 2, "2026-11-02T10:05:00Z", 0, 0)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    _tokens(billing, "2027-02-03", "e7", "r8", 1, "2027-02-02T09:00:00Z", 100_000, 0)
    _tokens(billing, "2027-02-04", "e8", "r2", 1, "2026-12-02T10:00:00Z", 300_000, 0)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    assert (dec.net_amount, jan.net_amount, feb.net_amount) == (D("12.00"), D("-7.50"), D("3.00"))
    # a note on December's usage lines (16.50): December's money left is 9.00 (its usage money,
    # less January's 2.25, plus February's 2.25), so it credits 9.00 + 1.71, keeps 5.25 as
    # prepaid and prints 2.25 as already refunded. Of the 9.00: line 2's 6.75 (its money less
    # the refund), and 2.25 of December's money that February asked again: December's too, not
    # November's ask (line 3), whose money January refunded in full. Rule 7 once refused it
    # (2.25 was no line's money) or gave it to line 3
    note = _note(billing, str(dec.statement_number), out, rule=rule, lines=(1, 2), issue_date=date(2027, 3, 5))
    assert (note.document.net_amount, note.document.tax_amount) == (D("9.00"), D("1.71"))
    assert (note.document.prepaid_retained, note.document.refunded) == (D("5.25"), D("2.25"))
    assert _attribution(billing, note.number) == ([(2, D("9.00"))] if rule >= 7 else [])
    # March, every request to 0 tokens: December's -2.25 (r2) is prepaid credit the note did not
    # keep, restored (rule 6: refunded in money, 1.50 net with January's and February's -0.75)
    _tokens(billing, "2027-03-03", "e9", "r1", 3, "2026-12-02T09:10:00Z", 0, 0)
    _tokens(billing, "2027-03-04", "e10", "r9", 2, "2027-01-02T09:05:00Z", 0, 0)
    _tokens(billing, "2027-03-05", "e11", "r8", 2, "2027-02-02T09:05:00Z", 0, 0)
    _tokens(billing, "2027-03-06", "e12", "r2", 2, "2026-12-02T10:05:00Z", 0, 0)
    mar = _statement(billing, out, "2027-03", date(2027, 4, 1))
    history = History(statements=[nov, dec, jan, feb, mar], notes=[note.document])
    if rule >= 7:
        assert (mar.net_amount, mar.credits_restored) == (D("-1.50"), D("2.25"))
        assert (history.money, history.credit_used) == (D("0.00"), history.kept)
    else:
        assert (mar.net_amount, mar.credits_restored) == (D("-3.75"), D("0.00"))
        assert (history.money, history.credit_used - history.kept) == (D("-2.25"), D("2.25"))
