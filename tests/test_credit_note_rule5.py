"""Credit note rule 5 and statement layout 12's netted refunds: credit notes count a period's
money exactly as statements count it (statement_lines_due.sql's `paid`, through
``statements.period_money_left``), a note may credit a statement's lines beyond its net when a
refund of an earlier period was netted on it, and what prepaid credit paid of the chosen lines
stays used when their money is short (docs/invoicing.md, "Credit note rule 5").

acct_de (19% VAT), openai/gpt-5.5 input at 7.50/1M; every figure worked out by hand. The
first scenarios are the review's random driver's seeds 13 and 4 made small.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest

from core.db import connect
from core.money import D
from pipeline import credit_notes, replay
from pipeline.credit_notes import CreditNoteError
from tests.conftest import Billing, record, usage
from tests.test_credit_note_after_refund import _draft_figures, _figures, _money, _note, _replays_match
from tests.test_credit_restore import _attempt, _german_account_with, _statement


def _planned(billing: Billing, number: str, lines: list[int] | None, rule: int) -> credit_notes.Plan:
    """What a note on ``lines`` (None: every line not yet credited) would be under ``rule``,
    without issuing it."""
    con = connect(billing.settings.db_path, read_only=True)
    try:
        return credit_notes.plan(con, number, lines, money_rule=rule)
    finally:
        con.close()


def test_a_note_on_a_statement_that_netted_a_refund_credits_its_usage_lines_money(
    billing: Billing, tmp_path: Path
) -> None:
    # no grants. November: r1 600,000 = 4.50 (VAT 0.855 -> 0.86, due 5.36). December: r2
    # 1,000,000 = 7.50 (line 1) and r1's retry 400,000, -1.50 of November refunded in money
    # (line 2): net 6.00, VAT 1.14, due 7.14
    out = _german_account_with(billing, tmp_path, "")
    _attempt(billing, "2026-11-03", "e1", "r1", 1, "2026-11-02T09:00:00Z", 600_000)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    _attempt(billing, "2026-12-03", "e2", "r2", 1, "2026-12-02T09:00:00Z", 1_000_000)
    _attempt(billing, "2026-12-04", "e3", "r1", 2, "2026-11-02T10:00:00Z", 400_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    assert _figures(dec) == (D("-1.50"), D("0.00"), D("6.00"), D("1.14"), D("7.14"))
    number = str(dec.statement_number)
    # rule 4 stopped at December's net: 6.00 + 1.14, and printed the other 1.50 of the line as
    # kept, on an account without prepaid credit; nothing ever gave it back
    four = _planned(billing, number, [1], rule=4)
    assert (four.net, four.tax, four.prepaid_retained, four.refunded) == (D("6.00"), D("1.14"), D("1.50"), D("0"))
    # a credit note credits charges: the refund line stands (crediting it took the refund back
    # while November's tokens stayed removed), and --all leaves it out
    with pytest.raises(CreditNoteError, match=r"line 2 of .* is a refund of 2026-11 \(-1.50\), not a charge"):
        _planned(billing, number, [1, 2], rule=5)
    everything = _planned(billing, number, None, rule=5)
    assert (everything.line_nos, everything.net, everything.tax) == ((1,), D("7.50"), D("1.43"))
    # rule 5: the usage line asked 7.50 in money (the -1.50 was a genuine refund of November,
    # paid out with December's statement): 7.50 + 1.425 -> 1.43, nothing kept
    note = _note(billing, number, out, issue_date=date(2027, 1, 5)).document
    assert _money(note) == (D("7.50"), D("0.00"), D("0.00"), D("7.50"), "on_net", D("1.43"), D("8.93"))
    with pytest.raises(CreditNoteError, match="not yet credited are refunds of earlier periods, not charges"):
        _planned(billing, number, None, rule=5)
    # January: both requests retried to 0 tokens: -3.00 of November (4.50 less the 1.50
    # December refunded), December's credited line 0.00: net -3.00, VAT -0.57, due -3.57
    _attempt(billing, "2027-01-03", "e4", "r1", 3, "2026-11-02T11:00:00Z", 0)
    _attempt(billing, "2027-01-04", "e5", "r2", 2, "2026-12-02T10:00:00Z", 0)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert _figures(jan) == (D("-3.00"), D("0.00"), D("-3.00"), D("-0.57"), D("-3.57"))
    # even: money 4.50 + 6.00 - 7.50 - 3.00 = 0.00, VAT 0.86 + 1.14 - 1.43 - 0.57 = 0.00 (rule
    # 4 kept 1.50 + 0.29 of the customer's money)
    assert nov.net_amount + dec.net_amount - note.net_amount + jan.net_amount == D("0.00")
    assert nov.total_due + dec.total_due - note.total_credited + jan.total_due == D("0.00")
    _replays_match(billing, tmp_path, periods=("2026-12", "2027-01"))


def test_a_note_whose_lines_money_is_short_keeps_the_prepaid_part_it_did_not_give_back(
    billing: Billing, tmp_path: Path
) -> None:
    # grant 2.50. November: r1 200,000 = 1.50, prepaid. December: r2 400,000 = 3.00 (line 1)
    # and r1's retry 1,200,000, +7.50 of November (line 2); the 1.00 of credit left pays usage
    # first: net 9.50, VAT 1.805 -> 1.81
    out = _german_account_with(billing, tmp_path, "g,acct_de,2.50,USD,2026-11-01T00:00:00Z,,purchased,INV-1,\n")
    _attempt(billing, "2026-11-03", "e1", "r1", 1, "2026-11-02T09:00:00Z", 200_000)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    assert (nov.credits_applied, nov.net_amount) == (D("1.50"), D("0.00"))
    _attempt(billing, "2026-12-03", "e2", "r2", 1, "2026-12-02T09:00:00Z", 400_000)
    _attempt(billing, "2026-12-04", "e3", "r1", 2, "2026-11-02T10:00:00Z", 1_200_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    assert (dec.credits_applied, dec.net_amount, dec.tax_amount) == (D("1.00"), D("9.50"), D("1.81"))
    # January: r1 retried to 0: -9.00 of November: 7.50 in money (December's ask), 1.50 restored
    _attempt(billing, "2027-01-03", "e4", "r1", 3, "2026-11-02T11:00:00Z", 0)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert _figures(jan) == (D("-9.00"), D("1.50"), D("-7.50"), D("-1.43"), D("-8.93"))
    number = str(dec.statement_number)
    # a note on December's usage line (3.00: 1.00 prepaid, 2.00 money): 2.00 + 0.38 either way;
    # rule 4 printed the 1.00 of credit as already given back (January gave back November's
    # money, not this line's), so the credit December used was accounted for nowhere
    four = _planned(billing, number, [1], rule=4)
    assert (four.net, four.refunded, four.prepaid_retained) == (D("2.00"), D("1.00"), D("0.00"))
    note = _note(billing, number, out, issue_date=date(2027, 2, 5)).document
    assert _money(note) == (D("3.00"), D("1.00"), D("0.00"), D("2.00"), "on_net", D("0.38"), D("2.38"))
    # even: credit drawn 1.50 + 1.00, restored 1.50, kept by the note 1.00; money 0.00 + 9.50
    # - 7.50 - 2.00 = 0.00 (December's 3.00 credited, November's tokens all refunded)
    assert nov.credits_applied + dec.credits_applied - jan.credits_restored == note.prepaid_retained
    assert nov.net_amount + dec.net_amount + jan.net_amount - note.net_amount == D("0.00")
    _replays_match(billing, tmp_path, periods=("2026-12", "2027-01"))


def _december_noted(billing: Billing, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Layout 12's scenario (tests/test_credit_note_rule4.py): grant 1.50 from 1 December;
    November r1 1,000,000 = 7.50 in money; December r2 7.50 (line 1) and r1's retry 1,200,000,
    +1.50 of November (line 2), the 1.50 of credit on usage: net 7.50; a note on line 1 gives
    back 7.50 + 1.43: December's usage money 6.00 and, first, the 1.50 November's ask asked."""
    out = _german_account_with(billing, tmp_path, "g,acct_de,1.50,USD,2026-12-01T00:00:00Z,,purchased,INV-1,\n")
    _attempt(billing, "2026-11-03", "e1", "r1", 1, "2026-11-02T09:00:00Z", 1_000_000)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    _attempt(billing, "2026-12-03", "e2", "r2", 1, "2026-12-02T09:00:00Z", 1_000_000)
    _attempt(billing, "2026-12-04", "e3", "r1", 2, "2026-11-02T10:00:00Z", 1_200_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    note = _note(billing, str(dec.statement_number), out, issue_date=date(2027, 1, 5)).document
    assert (note.net_amount, note.prepaid_retained, note.total_credited) == (D("7.50"), D("0.00"), D("8.93"))
    return out, nov, dec, note


def test_a_later_ask_of_a_noted_period_is_creditable_as_statements_count_its_money(
    billing: Billing, tmp_path: Path
) -> None:
    # January: r2's retry 1,200,000: +1.50 of December (the credited line held 1,000,000),
    # asked in money (the grant is spent): net 1.50, VAT 0.285 -> 0.29
    out, nov, dec, dec_note = _december_noted(billing, tmp_path)
    _attempt(billing, "2027-01-04", "e5", "r2", 2, "2026-12-02T10:00:00Z", 1_200_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert _figures(jan) == (D("1.50"), D("0.00"), D("1.50"), D("0.29"), D("1.79"))
    number = str(jan.statement_number)
    # rule 4 counted the December note's whole 7.50 against December's usage money (6.00), so
    # January's ask of December looked given back: refused
    with pytest.raises(CreditNoteError, match="already given back"):
        _planned(billing, number, [1], rule=4)
    # rule 5: the note gave back December's 6.00 and November's ask's 1.50; December's money
    # left is January's ask, 1.50: credited with its VAT
    note = _note(billing, number, out, issue_date=date(2027, 2, 5)).document
    assert _money(note) == (D("1.50"), D("0.00"), D("0.00"), D("1.50"), "on_net", D("0.29"), D("1.79"))
    _replays_match(billing, tmp_path, periods=("2027-01",))


def test_a_noted_statements_ask_counts_as_given_back_for_its_period(billing: Billing, tmp_path: Path) -> None:
    # January: r1 retried to 200,000: -7.50 of November. November's money left is 7.50 (7.50
    # asked + 1.50 by December - 1.50 the note gave back): all refunded in money (VAT -1.43);
    # the 1.50 of November still billed is paid with December's credit (layout 12)
    out, nov, dec, dec_note = _december_noted(billing, tmp_path)
    _attempt(billing, "2027-01-03", "e4", "r1", 3, "2026-11-02T11:00:00Z", 200_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert _figures(jan) == (D("-7.50"), D("0.00"), D("-7.50"), D("-1.43"), D("-8.93"))
    number = str(nov.statement_number)
    # rule 4 counted November's money as 7.50 + December's ask 1.50 in full: a note on
    # November's line credited 1.50 + 0.29 more than the customer paid
    four = _planned(billing, number, [1], rule=4)
    assert (four.net, four.tax) == (D("1.50"), D("0.29"))
    # rule 5: nothing of November's money is left (money 7.50 + 7.50 - 7.50 - 7.50 = 0.00)
    with pytest.raises(CreditNoteError, match="already given back"):
        _note(billing, number, out, issue_date=date(2027, 2, 5))
    assert nov.net_amount + dec.net_amount - dec_note.net_amount + jan.net_amount == D("0.00")


def test_a_note_on_an_ask_credits_its_money_beyond_a_net_a_refund_lowered(billing: Billing, tmp_path: Path) -> None:
    # grant 7.50 from 1 December. November: r0 1,000,000 = 7.50 in money. December: r1
    # 1,000,000 = 7.50, prepaid. January (no usage): r0's retry 900,000, -0.75 of November in
    # money; r1's retry 1,200,000, +1.50 of December in money: net 0.75, VAT 0.14, due 0.89
    out = _german_account_with(billing, tmp_path, "g,acct_de,7.50,USD,2026-12-01T00:00:00Z,,purchased,INV-1,\n")
    _attempt(billing, "2026-11-07", "a1", "r0", 1, "2026-11-07T09:00:00Z", 1_000_000)
    _statement(billing, out, "2026-11", date(2026, 12, 1))
    _attempt(billing, "2026-12-07", "b1", "r1", 1, "2026-12-07T09:00:00Z", 1_000_000)
    _statement(billing, out, "2026-12", date(2027, 1, 1))
    _attempt(billing, "2027-01-12", "a2", "r0", 2, "2026-11-07T09:05:00Z", 900_000)
    _attempt(billing, "2027-01-13", "b2", "r1", 2, "2026-12-07T09:05:00Z", 1_200_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert _figures(jan) == (D("0.75"), D("0.00"), D("0.75"), D("0.14"), D("0.89"))
    line = next(n for n, a in enumerate(jan.adjustments, 1) if a.amount == D("1.50"))
    # rule 3 stopped at January's net (0.75 + 0.14, 0.75 kept); rule 5 credits the line's
    # money, 1.50 + 0.285 -> 0.29: the -0.75 was November's genuine refund, paid out in January
    assert (_planned(billing, str(jan.statement_number), [line], rule=3).net) == D("0.75")
    note = _note(billing, str(jan.statement_number), out, lines=(line,), issue_date=date(2027, 2, 10)).document
    assert _money(note) == (D("1.50"), D("0.00"), D("0.00"), D("1.50"), "on_net", D("0.29"), D("1.79"))
    # money: 7.50 + 0.00 + 0.75 - 1.50 = 6.75, November's 900,000 tokens; December's 1,000,000
    # stay prepaid (the credited 200,000 are the line's)
    _replays_match(billing, tmp_path, periods=("2027-01",))


def test_a_refund_of_a_period_whose_statement_netted_a_refund_gives_back_its_usage_money_first(
    billing: Billing, tmp_path: Path
) -> None:
    # grant 5.00. November: r1 1,000,000 = 7.50: 5.00 prepaid, 2.50 money. December: r1's
    # retry 500,000, -3.75 of November (2.50 money, 1.25 restored), and r2 1,000,000 = 7.50
    # with the 1.25 applied again: net 7.50 - 2.50 - 1.25 = 3.75. December's usage asked 6.25
    # in money: 3.75 on its net and the 2.50 of November's refund it netted
    out = _german_account_with(billing, tmp_path, "g,acct_de,5.00,USD,2026-11-01T00:00:00Z,,purchased,INV-1,\n")
    _attempt(billing, "2026-11-03", "e1", "r1", 1, "2026-11-02T09:00:00Z", 1_000_000)
    _statement(billing, out, "2026-11", date(2026, 12, 1))
    _attempt(billing, "2026-12-03", "e2", "r2", 1, "2026-12-02T09:00:00Z", 1_000_000)
    _attempt(billing, "2026-12-04", "e3", "r1", 2, "2026-11-02T10:00:00Z", 500_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    assert (dec.adjustments_total, dec.credits_restored, dec.credits_applied, dec.net_amount) == (
        D("-3.75"), D("1.25"), D("1.25"), D("3.75"))  # fmt: skip
    # January: r2 retried to 200,000: -6.00 of December. Money first: 6.00 of the 6.25, VAT
    # -1.14 (layout 11 counted December's money as its net, 3.75, and restored 1.25 of credit
    # while 0.25 of money stayed paid for the 1.50 still billed)
    _attempt(billing, "2027-01-04", "e5", "r2", 2, "2026-12-02T10:00:00Z", 200_000)
    assert _draft_figures(billing, tmp_path, "2027-01", 11) == (
        D("-6.00"), D("1.25"), D("-4.75"), D("-0.90"), D("-5.65"))  # fmt: skip
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert _figures(jan) == (D("-6.00"), D("0.00"), D("-6.00"), D("-1.14"), D("-7.14"))
    # February: r2 retried to 0: -1.50 of December: 0.25 of money left, 1.25 restored
    _attempt(billing, "2027-02-04", "e6", "r2", 3, "2026-12-02T11:00:00Z", 0)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    assert _figures(feb) == (D("-1.50"), D("1.25"), D("-0.25"), D("-0.05"), D("-0.30"))
    _replays_match(billing, tmp_path, periods=("2027-01", "2027-02"))


def test_a_note_gives_back_beyond_the_net_the_money_of_the_refund_netted(billing: Billing, tmp_path: Path) -> None:
    # grant 7.50 from 1 January. November: r0 800,000 = 6.00 in money; December: r9 200,000 =
    # 1.50 in money. January: r1 1,000,000 = 7.50, prepaid (line 1); r0 retried to 0, -6.00
    # of November refunded in money (line 2); r9's retry 1,000,000, +6.00 of December in money
    # (line 3): net 0.00, nothing taxed
    out = _german_account_with(billing, tmp_path, "g,acct_de,7.50,USD,2027-01-01T00:00:00Z,,purchased,INV-1,\n")
    _attempt(billing, "2026-11-03", "e1", "r0", 1, "2026-11-02T09:00:00Z", 800_000)
    _statement(billing, out, "2026-11", date(2026, 12, 1))
    _attempt(billing, "2026-12-03", "e2", "r9", 1, "2026-12-02T09:00:00Z", 200_000)
    _statement(billing, out, "2026-12", date(2027, 1, 1))
    _attempt(billing, "2027-01-03", "e3", "r1", 1, "2027-01-02T09:00:00Z", 1_000_000)
    _attempt(billing, "2027-01-04", "e4", "r0", 2, "2026-11-02T10:00:00Z", 0)
    _attempt(billing, "2027-01-05", "e5", "r9", 2, "2026-12-02T10:00:00Z", 1_000_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert [a.amount for a in jan.adjustments] == [D("-6.00"), D("6.00")]
    assert (jan.credits_applied, jan.net_amount, jan.tax_amount) == (D("7.50"), D("0.00"), D("0.00"))
    number = str(jan.statement_number)
    # lines 1 and 2 (1.50): rule 4 refused at the net (the usage was prepaid); rule 5 refuses
    # the refund line (crediting it would take November's refund back)
    with pytest.raises(CreditNoteError, match="paid with prepaid credit"):
        _planned(billing, number, [1, 2], rule=4)
    with pytest.raises(CreditNoteError, match="line 2 of .* is a refund of 2026-11"):
        _planned(billing, number, [1, 2], rule=5)
    # line 1 alone: November's refund stays paid out, so the statement's money, first, is the
    # 6.00 its ask of December asked (rule 4: refused at the net, 0.00): 6.00 + 1.14, 1.50
    # kept as prepaid; the ask is then paid with January's credit (layout 12 moves it)
    note = _note(billing, number, out, issue_date=date(2027, 2, 5)).document
    assert _money(note) == (D("7.50"), D("1.50"), D("0.00"), D("6.00"), "on_net", D("1.14"), D("7.14"))
    _replays_match(billing, tmp_path, periods=("2027-01",))


def _prompt_and_completion(
    billing: Billing, day: str, event: str, request: str, ts: str, prompt: int, out: int
) -> None:
    """Attempt 1 of ``request`` for acct_de: ``prompt`` input tokens (7.50/1M) and ``out``
    output tokens (45/1M), then the day's nightly."""
    billing.log(f"requests-{day}-{event}.jsonl", [record(event_id=event, request_id=request, account_id="acct_de",
                                                          ts=ts, usage=usage(prompt, out))])  # fmt: skip
    billing.nightly(day)


def test_notes_on_a_netted_statement_take_the_rest_of_its_tax_only_when_they_complete_its_money(
    billing: Billing, tmp_path: Path
) -> None:
    # found by a review of the first rule 5, which gave the first note the statement's whole tax
    # (1.02 + 0.39 here; 6.00 + 1.48 in its other case) as it reached the net. No grants.
    # November: r1 600,000 = 4.50. December: r2 136,000 input = 1.02 (line 1) and 22,700 output
    # x 45/1M = 1.0215 -> 1.02 (line 2); r1 retried to 400,000, -1.50 of November (line 3): net
    # 0.54, VAT 0.1026 -> 0.10. Its usage asked 2.04 in money, whose VAT is 0.3876 -> 0.39
    out = _german_account_with(billing, tmp_path, "")
    _attempt(billing, "2026-11-03", "e1", "r1", 1, "2026-11-02T09:00:00Z", 600_000)
    _statement(billing, out, "2026-11", date(2026, 12, 1))
    _prompt_and_completion(billing, "2026-12-03", "e2", "r2", "2026-12-02T09:00:00Z", 136_000, 22_700)
    _attempt(billing, "2026-12-04", "e3", "r1", 2, "2026-11-02T10:00:00Z", 400_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    assert _figures(dec) == (D("-1.50"), D("0.00"), D("0.54"), D("0.10"), D("0.64"))
    number = str(dec.statement_number)
    # line 1: 1.02 x 19% = 0.1938 -> 0.19, on its net (it leaves line 2's money)
    first = _note(billing, number, out, lines=(1,), issue_date=date(2027, 1, 5)).document
    assert _money(first) == (D("1.02"), D("0.00"), D("0.00"), D("1.02"), "on_net", D("0.19"), D("1.21"))
    # line 2 completes the 2.04: the rest of the tax, 0.39 - 0.19 = 0.20 (on its net: 0.19)
    second = _note(billing, number, out, lines=(2,), issue_date=date(2027, 1, 6)).document
    assert _money(second) == (D("1.02"), D("0.00"), D("0.00"), D("1.02"), "remainder", D("0.20"), D("1.22"))
    _replays_match(billing, tmp_path, periods=("2026-12",))


def test_tokens_billed_again_after_a_note_are_refunded_in_full_when_they_go(billing: Billing, tmp_path: Path) -> None:
    # the committed history driver's seeds 7, 9, 19 and 25 made small. No grants. November: r1
    # 1,000,000 = 7.50. December: r1's retry 900,000, -0.75 of November refunded (VAT -0.1425
    # -> -0.14). A note on November's line: 7.50, of which 0.75 already refunded, credits 6.75
    # and completes November's money: the rest of its tax, 1.43 - 0.14 = 1.29
    out = _german_account_with(billing, tmp_path, "")
    _attempt(billing, "2026-11-03", "e1", "r1", 1, "2026-11-02T09:00:00Z", 1_000_000)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    _attempt(billing, "2026-12-03", "e2", "r1", 2, "2026-11-02T10:00:00Z", 900_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    assert _figures(dec) == (D("-0.75"), D("0.00"), D("-0.75"), D("-0.14"), D("-0.89"))
    note = _note(billing, str(nov.statement_number), out, issue_date=date(2027, 1, 5)).document
    assert _money(note) == (D("7.50"), D("0.00"), D("0.75"), D("6.75"), "remainder", D("1.29"), D("8.04"))
    # January: r1's third attempt 1,200,000: +300,000 tokens = 2.25, of which the 0.75 the note
    # left as refunded is taken back (those tokens were given back twice): +1.50
    _attempt(billing, "2027-01-03", "e3", "r1", 3, "2026-11-02T11:00:00Z", 1_200_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert _figures(jan) == (D("1.50"), D("0.00"), D("1.50"), D("0.29"), D("1.79"))
    # February: r1 retried to 0. Issued for the key 7.50 - 0.75 + 1.50 = 8.25, credited 7.50
    # of which 0.75 December had refunded: 1.50 was paid since the note, all refunded (layout
    # 11 counted the 0.75 twice and gave back 0.75: the customer kept paying 0.75 for nothing)
    _attempt(billing, "2027-02-03", "e4", "r1", 4, "2026-11-02T12:00:00Z", 0)
    assert _draft_figures(billing, tmp_path, "2027-02", 11) == (
        D("-0.75"), D("0.00"), D("-0.75"), D("-0.14"), D("-0.89"))  # fmt: skip
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    assert _figures(feb) == (D("-1.50"), D("0.00"), D("-1.50"), D("-0.29"), D("-1.79"))
    money = nov.net_amount + dec.net_amount - note.net_amount + jan.net_amount + feb.net_amount
    assert money == D("0.00")  # 7.50 - 0.75 - 6.75 + 1.50 - 1.50
    assert nov.total_due + dec.total_due - note.total_credited + jan.total_due + feb.total_due == D("0.00")
    _replays_match(billing, tmp_path, periods=("2027-01", "2027-02"))


def test_tokens_back_and_gone_after_a_credited_ask_and_a_note_are_refunded_in_full(
    billing: Billing, tmp_path: Path
) -> None:
    # docs/credits.md "A credited ask, then a note, then tokens back and gone". No grants.
    # November: r1 1,000,000 = 7.50 (VAT 1.425 -> 1.43, due 8.93)
    out = _german_account_with(billing, tmp_path, "")
    _attempt(billing, "2026-11-07", "a1", "r1", 1, "2026-11-07T09:00:00Z", 1_000_000)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    # December: r1's retry 1,200,000 asks +1.50 of November (0.285 -> 0.29); a note credits it
    _attempt(billing, "2026-12-10", "a2", "r1", 2, "2026-11-07T09:05:00Z", 1_200_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    assert _figures(dec) == (D("1.50"), D("0.00"), D("1.50"), D("0.29"), D("1.79"))
    ask_note = _note(billing, str(dec.statement_number), out, lines=(1,), issue_date=date(2027, 1, 10)).document
    assert _money(ask_note) == (D("1.50"), D("0.00"), D("0.00"), D("1.50"), "on_net", D("0.29"), D("1.79"))
    # January: back to 1,000,000: -1.50 of November refunded in money
    _attempt(billing, "2027-01-12", "a3", "r1", 3, "2026-11-07T09:10:00Z", 1_000_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert _figures(jan) == (D("-1.50"), D("0.00"), D("-1.50"), D("-0.29"), D("-1.79"))
    # a note on November's line: 7.50, of which 1.50 printed as refunded on January's, credits
    # 6.00 (+ VAT 1.14). The ask's note brought those
    # tokens back, so the note holds back nothing (refunded_usd 0.00), but it printed 1.50
    nov_note = _note(billing, str(nov.statement_number), out, lines=(1,), issue_date=date(2027, 2, 10)).document
    assert _money(nov_note) == (D("7.50"), D("0.00"), D("1.50"), D("6.00"), "on_net", D("1.14"), D("7.14"))
    assert billing.query(
        "SELECT refunded_usd, printed_refunded_usd FROM credit_note_lines WHERE credit_note_number = ?",
        [nov_note.credit_note_number],
    ) == [(D("0.00"), D("1.50"))]
    # February: 1,200,000 again, +1.50 billed (nothing held back: r1 at 1,000,000 was paid 0.00
    # net: 7.50 + 1.50 - 1.50 - 1.50 - 6.00)
    _attempt(billing, "2027-02-12", "a4", "r1", 4, "2026-11-07T09:15:00Z", 1_200_000)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    assert _figures(feb) == (D("1.50"), D("0.00"), D("1.50"), D("0.29"), D("1.79"))
    # March: back to 1,000,000. Issued for the key 7.50 + 1.50 - 1.50 + 1.50 = 9.00; credited
    # 9.00, of which the 1.50 the note printed as refunded is January's refund (counted in
    # issued): 1.50 was paid since, all refunded. Layout 12 subtracted only the hold-back (0.00)
    # and refunded nothing: 1.50 + 0.29 stayed with us
    _attempt(billing, "2027-03-12", "a5", "r1", 5, "2026-11-07T09:20:00Z", 1_000_000)
    assert _draft_figures(billing, tmp_path, "2027-03", 12) == (
        D("0.00"), D("0.00"), D("0.00"), D("0.00"), D("0.00"))  # fmt: skip
    mar = _statement(billing, out, "2027-03", date(2027, 4, 1))
    assert _figures(mar) == (D("-1.50"), D("0.00"), D("-1.50"), D("-0.29"), D("-1.79"))
    statements, notes = (nov, dec, jan, feb, mar), (ask_note, nov_note)
    assert sum(s.net_amount for s in statements) - sum(n.net_amount for n in notes) == D("0.00")
    assert sum(s.total_due for s in statements) - sum(n.total_credited for n in notes) == D("0.00")
    _replays_match(billing, tmp_path, periods=("2027-02", "2027-03"))


def test_notes_issued_before_migration_048_verify_and_keep_their_hold_back_as_the_part_printed(
    billing: Billing, tmp_path: Path
) -> None:
    # the scenario above to the note on November's line: it printed 1.50 as refunded and holds
    # none of it back (refunded_usd 0.00, printed_refunded_usd 1.50). Notes of rule 5, as
    # issued before migrations 048 and 049
    out = _german_account_with(billing, tmp_path, "")
    _attempt(billing, "2026-11-07", "a1", "r1", 1, "2026-11-07T09:00:00Z", 1_000_000)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    _attempt(billing, "2026-12-10", "a2", "r1", 2, "2026-11-07T09:05:00Z", 1_200_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    _note(billing, str(dec.statement_number), out, rule=5, lines=(1,), issue_date=date(2027, 1, 10))
    _attempt(billing, "2027-01-12", "a3", "r1", 3, "2026-11-07T09:10:00Z", 1_000_000)
    _statement(billing, out, "2027-01", date(2027, 2, 1))
    number = _note(billing, str(nov.statement_number), out, rule=5, lines=(1,), issue_date=date(2027, 2, 10)).number
    printed = "SELECT refunded_usd, printed_refunded_usd FROM credit_note_lines WHERE credit_note_number = ?"
    assert billing.query(printed, [number]) == [(D("0.00"), D("1.50"))]
    last = billing.one("SELECT max(run_id) FROM runs WHERE status = 'succeeded'")
    assert replay.verify_run(billing.settings, last).status == "MATCH"
    # as main wrote it before migration 048: no part printed per line. Verify reads it as it
    # is (read only, not migrated); migrating keeps a rule-5 note's NULL (the part printed was
    # not stored: its cap counts the hold-back, as layout 12 did), and re-executing its run,
    # which now stores 1.50, still verifies
    with duckdb.connect(str(billing.settings.db_path)) as con:
        con.execute("ALTER TABLE credit_note_lines DROP COLUMN printed_refunded_usd")
        con.execute("ALTER TABLE credit_note_lines DROP COLUMN printed_given_back_usd")  # 049's
        con.execute("DROP TABLE credit_note_money")  # 050's
        con.execute("ALTER TABLE credit_note_lines DROP COLUMN printed_ask_restored_usd")  # 052's
        con.execute("DELETE FROM schema_migrations WHERE name >= '048'")
    assert replay.verify_run(billing.settings, last).status == "MATCH"
    connect(billing.settings.db_path).close()  # the upgrade: migrations 048 to 052
    assert billing.query(printed, [number]) == [(D("0.00"), None)]
    assert replay.verify_run(billing.settings, last).status == "MATCH"
    # a rule-2 note stored the part printed as its refunded_usd: the migration copies it
    with duckdb.connect(str(billing.settings.db_path)) as con:
        con.execute("UPDATE credit_note_lines SET refunded_usd = 1.50, printed_refunded_usd = NULL")
        con.execute("UPDATE credit_notes SET money_rule = 2 WHERE credit_note_number = ?", [number])
        con.execute("DELETE FROM schema_migrations WHERE name >= '048'")
    connect(billing.settings.db_path).close()
    assert billing.query(printed, [number]) == [(D("1.50"), D("1.50"))]


def test_a_note_on_a_usage_line_a_refund_lowered_moves_the_credit_with_its_money(
    billing: Billing, tmp_path: Path
) -> None:
    # the random histories' seeds 68 and 114 made small (docs/credits.md, layout 13).
    # November: r1 1,000,000 = 7.50 in money. Grant 3.00 from 1 December. December: r2
    # 1,000,000 = 7.50 (line 1) and r1 1,200,000, +1.50 of November; the 3.00 of credit pays
    # usage first: net 6.00 (usage money 4.50, the ask's 1.50)
    out = _german_account_with(billing, tmp_path, "g,acct_de,3.00,USD,2026-12-01T00:00:00Z,,purchased,INV-1,\n")
    _attempt(billing, "2026-11-03", "e1", "r1", 1, "2026-11-02T09:00:00Z", 1_000_000)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    _attempt(billing, "2026-12-03", "e2", "r2", 1, "2026-12-02T09:00:00Z", 1_000_000)
    _attempt(billing, "2026-12-04", "e3", "r1", 2, "2026-11-02T09:05:00Z", 1_200_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    # January: r2 800,000, -1.50 of December refunded in money (December's usage money 4.50)
    _attempt(billing, "2027-01-03", "e4", "r2", 2, "2026-12-02T09:05:00Z", 800_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    # a note on December's usage line: 7.50, 1.50 already refunded, 1.50 kept as prepaid,
    # credits 4.50 + 0.85 (the rest of its tax): more than the 3.00 left of the line's money, so 1.50 of it is the
    # ask's money, which the statement's credit now pays (layout 12's moved credit)
    note = _note(billing, str(dec.statement_number), out, lines=(1,), issue_date=date(2027, 2, 5)).document
    assert _money(note) == (D("7.50"), D("1.50"), D("1.50"), D("4.50"), "remainder", D("0.85"), D("5.35"))
    # February: both requests to 0 tokens. November's -9.00: 7.50 of money is left to refund,
    # and the ask's 1.50 is restored to the grant; December's -6.00 gives back nothing (its
    # line was credited). Net -7.50, VAT -1.425 -> -1.43 (-9.00 in money and nothing
    # restored with layout 12: line_money gave the note's whole net to the usage line,
    # ignoring January's refund, so the credit never moved to the ask)
    _attempt(billing, "2027-02-03", "e5", "r1", 3, "2026-11-02T09:10:00Z", 0)
    _attempt(billing, "2027-02-04", "e6", "r2", 3, "2026-12-02T09:10:00Z", 0)
    assert _draft_figures(billing, tmp_path, "2027-02", 12)[1:] == (
        D("0.00"), D("-9.00"), D("-1.71"), D("-10.71"))  # fmt: skip
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    assert _figures(feb)[1:] == (D("1.50"), D("-7.50"), D("-1.43"), D("-8.93"))
    money = nov.net_amount + dec.net_amount + jan.net_amount + feb.net_amount - note.net_amount
    assert money == D("0.00")  # 7.50 + 6.00 - 1.50 - 7.50 - 4.50
    # credit used: 3.00 applied, 1.50 restored: the 1.50 the note kept as prepaid
    assert dec.credits_applied - feb.credits_restored == note.prepaid_retained == D("1.50")
    _replays_match(billing, tmp_path, periods=("2027-02",))
