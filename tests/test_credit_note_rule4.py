"""Credit note rule 4: a note crediting a statement's own usage lines gives back at most what is
left of the money that statement asked for its usage, counted as statements count it (statement
layout 10's `paid`: its usage less the prepaid credit it applied, at most its net, less what
credit notes gave back of it, plus later asks less later refunds), not its net, which also
carries the money it asked for earlier periods (docs/invoicing.md, "Credit note rule 4").

acct_de (19% VAT), openai/gpt-5.5 input at 7.50/1M; every figure worked out by hand. The
scenario is the random driver's seed 9 made small (docs/credits.md, open points).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from core.db import connect
from core.money import D
from pipeline import credit_notes
from pipeline.credit_notes import CreditNoteError
from tests.conftest import Billing, BuiltOnce
from tests.test_credit_note_after_refund import _draft_figures, _figures, _money, _note, _replays_match
from tests.test_credit_note_rule5 import _december_noted
from tests.test_credit_restore import _attempt, _german_account_with, _statement


def _november_and_december(billing: Billing, out: Path, november_tokens: int, retry_tokens: int):  # type: ignore[no-untyped-def]
    """November: r0 ``november_tokens``, issued. December: r2 600,000 = 4.50 (line 1) and r0's
    retry of ``retry_tokens`` (a positive adjustment of November, line 2), issued."""
    _attempt(billing, "2026-11-03", "e1", "r0", 1, "2026-11-02T09:00:00Z", november_tokens)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    _attempt(billing, "2026-12-03", "e2", "r2", 1, "2026-12-02T09:00:00Z", 600_000)
    _attempt(billing, "2026-12-04", "e3", "r0", 2, "2026-11-02T10:00:00Z", retry_tokens)
    return nov, _statement(billing, out, "2026-12", date(2027, 1, 1))


def _through_january(billing: Billing):  # type: ignore[no-untyped-def]
    """Grant 3.00. November: r0 200,000 = 1.50, prepaid. December: r2 600,000 = 4.50 and r0's
    retry 400,000 (+1.50 of November): 1.50 of credit left pays usage first, so the usage asked
    3.00 in money and the ask 1.50; net 4.50. January: r0's third attempt 200,000 (-1.50 of
    November, whose money is December's ask: a money refund) and r2's retry 1,200,000 (+4.50 of
    December): net 3.00. Statements into ``<root>/out``; returns the three."""
    out = _german_account_with(billing, billing.root, "g,acct_de,3.00,USD,2026-11-01T00:00:00Z,,purchased,INV-1,\n")
    nov, dec = _november_and_december(billing, out, 200_000, 400_000)
    assert (dec.usage_total, dec.adjustments_total, dec.credits_applied, dec.net_amount) == (
        D("4.50"), D("1.50"), D("1.50"), D("4.50"))  # fmt: skip
    _attempt(billing, "2027-01-03", "e4", "r0", 3, "2026-11-02T11:00:00Z", 200_000)
    _attempt(billing, "2027-01-04", "e5", "r2", 2, "2026-12-02T10:00:00Z", 1_200_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert _figures(jan) == (D("3.00"), D("0.00"), D("3.00"), D("0.57"), D("3.57"))
    return nov, dec, jan


@pytest.fixture(scope="module")
def _january_once(tmp_path_factory: pytest.TempPathFactory) -> BuiltOnce:
    return BuiltOnce(tmp_path_factory, "through-january", _through_january)


def _december_refunded(built: BuiltOnce, february_tokens: int = 200_000):  # type: ignore[no-untyped-def]
    """:func:`_through_january` (built once per module, a fresh copy), then February: r2's third
    attempt (200,000: -7.50 of December, refunded in money: December's usage money 3.00 and
    January's ask 4.50). Returns the billing, the four statements and the output folder."""
    billing = built.restore()
    nov, dec, jan = built.value
    out = billing.root / "out"
    _attempt(billing, "2027-02-03", "e6", "r2", 3, "2026-12-02T11:00:00Z", february_tokens)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    return billing, nov, dec, jan, feb, out


@pytest.mark.parametrize("rule", [3, 4, 5])
def test_a_note_on_usage_lines_after_their_money_was_refunded_credits_nothing_more(
    _january_once: BuiltOnce, tmp_path: Path, rule: int
) -> None:
    billing, nov, dec, jan, feb, out = _december_refunded(_january_once)
    assert _figures(feb) == (D("-7.50"), D("0.00"), D("-7.50"), D("-1.43"), D("-8.93"))
    # December's usage line (4.50: 1.50 prepaid, 3.00 money): its money came back in February;
    # the 1.50 left of December's usage now (r2's 200,000) was paid with credit
    if rule == 3:
        # rule 3 counts December's money as its net (4.50, November's ask included): 1.50 + 0.29
        # more, though that ask's money came back in January (the defect rule 4 closes)
        note = _note(billing, str(dec.statement_number), out, rule=3, issue_date=date(2027, 3, 5)).document
        assert (note.net_amount, note.refunded, note.total_credited) == (D("1.50"), D("3.00"), D("1.79"))
        money = nov.total_due + dec.total_due + jan.total_due + feb.total_due - note.total_credited
        assert money == D("-1.79")
    else:
        # rule 4 names the periods whose money is given back; rule 5 counts December's money as
        # statements do (nothing left: its usage money and the asks of it came back in February)
        # and names the refund of the line's own key
        given = (
            "already given back: the money asked for 2026-12, 2026-11 is"
            if rule == 4
            else rf"line 1 of {dec.statement_number} \(4.50\) is already given back: refunded on statement "
            rf"{feb.statement_number} \(negative prior-period adjustments of 2026-12\)"
        )
        with pytest.raises(CreditNoteError, match=given):
            _note(billing, str(dec.statement_number), out, rule=rule, issue_date=date(2027, 3, 5))
        # money over the four months: 0.00 + 5.36 + 3.57 - 8.93 = 0.00; credit used 3.00 pays
        # what is billed now (November 1.50, December 1.50)
        assert nov.total_due + dec.total_due + jan.total_due + feb.total_due == D("0.00")
    _replays_match(billing, tmp_path, periods=("2026-12",))


def test_a_note_after_a_partial_refund_credits_what_is_left_of_the_statements_money(
    _january_once: BuiltOnce, tmp_path: Path
) -> None:
    # February's retry 400,000 (-6.00 of December, all money: December's 3.00 + January's ask
    # 4.50 = 7.50 of money): 1.50 of December's money is left, none of November's (its ask's
    # 1.50 came back in January). Rule 3 credited 3.00 (the net 4.50 less 6.00 refunded, plus
    # January's 4.50 asked); rule 4 credits 1.50 + 0.29 VAT: lines 4.50, 1.50 refunded on the
    # line's key and 1.50 given back for November, not credited
    billing, nov, dec, jan, feb, out = _december_refunded(_january_once, february_tokens=400_000)
    assert _figures(feb) == (D("-6.00"), D("0.00"), D("-6.00"), D("-1.14"), D("-7.14"))
    con = connect(billing.settings.db_path, read_only=True)
    try:
        four = credit_notes.plan(con, str(dec.statement_number), [1], money_rule=4)
    finally:
        con.close()
    assert (four.lines_total, four.prepaid_retained, four.refunded, four.net) == (
        D("4.50"), D("0.00"), D("3.00"), D("1.50"))  # fmt: skip
    # rule 5 credits the same money, and says that the 1.50 of prepaid credit December applied
    # to the line stays used (kept as prepaid), where rule 4 printed it as given back
    note = _note(billing, str(dec.statement_number), out, issue_date=date(2027, 3, 5)).document
    assert _money(note) == (D("4.50"), D("1.50"), D("1.50"), D("1.50"), "on_net", D("0.29"), D("1.79"))
    assert note.refunded_on is not None and str(feb.statement_number) in note.refunded_on
    # in money: 0.00 + 5.36 + 3.57 - 7.14 - 1.79 = 0.00 (what is billed now, 4.50, is the
    # grant's 3.00 and the 1.50 the note credited)
    assert nov.total_due + dec.total_due + jan.total_due + feb.total_due - note.total_credited == D("0.00")
    _replays_match(billing, tmp_path, periods=("2026-12",))


def test_a_note_on_a_usage_line_still_gives_back_the_statements_money_first(billing: Billing, tmp_path: Path) -> None:
    # December alone (nothing refunded yet): its usage line asked 3.00 in money (1.50 prepaid),
    # its +1.50 of November 1.50. A note on the usage line gives back the statement's money
    # first, whichever lines asked it, as rules 2-3 did: 4.50 + 0.86 (November's money is still
    # all there); a note on the ask then finds nothing left of the statement's net
    out = _german_account_with(billing, tmp_path, "g,acct_de,3.00,USD,2026-11-01T00:00:00Z,,purchased,INV-1,\n")
    _, dec = _november_and_december(billing, out, 200_000, 400_000)
    usage_note = _note(billing, str(dec.statement_number), out, issue_date=date(2027, 1, 5)).document
    # lines 4.50, prepaid 0.00, refunded 0, net 4.50, VAT 0.855 -> 0.86 (the statement's): 5.36
    assert _money(usage_note) == (D("4.50"), D("0.00"), D("0.00"), D("4.50"), "on_net", D("0.86"), D("5.36"))
    assert usage_note.total_credited == dec.total_due
    with pytest.raises(CreditNoteError, match="already credited in full"):
        _note(billing, str(dec.statement_number), out, lines=(2,), issue_date=date(2027, 1, 6))
    _replays_match(billing, tmp_path, periods=("2026-12",))


def _asked_then_refunded(billing: Billing, tmp_path: Path):  # type: ignore[no-untyped-def]
    """No grants (all money). November: r0 100,000 = 0.75. December: r2 600,000 = 4.50 (line 1)
    and r0's retry 300,000, +1.50 of November (line 2): net 6.00, VAT 1.14, 7.14. January: r0's
    third attempt 100,000, -1.50 of November refunded in money (VAT -0.285 -> -0.29): it gives
    back December's ask; December's usage money (4.50) is untouched."""
    out = _german_account_with(billing, tmp_path, "")
    nov, dec = _november_and_december(billing, out, 100_000, 300_000)
    assert (dec.usage_total, dec.adjustments_total, dec.net_amount, dec.total_due) == (
        D("4.50"), D("1.50"), D("6.00"), D("7.14"))  # fmt: skip
    _attempt(billing, "2027-01-03", "e4", "r0", 3, "2026-11-02T11:00:00Z", 100_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert _figures(jan) == (D("-1.50"), D("0.00"), D("-1.50"), D("-0.29"), D("-1.79"))
    return nov, dec, jan, out


def test_a_refund_of_the_other_periods_ask_leaves_the_usage_lines_money_whole(billing: Billing, tmp_path: Path):
    # found by a review of the first rule 4, which cut the statement's whole shortfall (0.75,
    # November's ask refunded) from a note naming only the usage line: 3.75 + 0.71
    nov, dec, jan, out = _asked_then_refunded(billing, tmp_path)
    number = str(dec.statement_number)
    first = _note(billing, number, out, lines=(1,), issue_date=date(2027, 2, 5)).document
    assert _money(first) == (D("4.50"), D("0.00"), D("0.00"), D("4.50"), "on_net", D("0.86"), D("5.36"))
    # then the ask: 1.50 asked, 1.50 refunded by January; 0.75 of November's money is left
    # (0.75 asked by November + 1.50 by December - 1.50 refunded)
    second = _note(billing, number, out, lines=(2,), issue_date=date(2027, 2, 6)).document
    assert _money(second) == (D("1.50"), D("0.00"), D("0.75"), D("0.75"), "on_net", D("0.14"), D("0.89"))
    # net of VAT over the history: 0.75 + 6.00 - 1.50 - 4.50 - 0.75 = 0.00: every line of
    # December credited, November's 100,000 tokens (0.75) given back by the second note
    assert nov.net_amount + dec.net_amount + jan.net_amount - first.net_amount - second.net_amount == D("0.00")
    _replays_match(billing, tmp_path, periods=("2026-12", "2027-01"))


def test_a_note_on_a_partly_prepaid_usage_line_moves_the_credit_with_the_money_it_gives_back(
    billing: Billing, tmp_path: Path
) -> None:
    # grant 1.50 from 1 December. November: r1 1,000,000 = 7.50 in money. December: r2 7.50
    # (line 1) and r1's retry 1,200,000, +1.50 of November (line 2); the 1.50 of credit pays
    # usage first: net 7.50. A note on line 1 gives back the statement's money first: 7.50 +
    # 1.43, nothing kept as prepaid (1.50 of it is November's ask's money). January retries both
    # requests to 0: -9.00 of November (December's line is credited: 0.00). November's money is
    # 7.50 + 1.50 asked - 1.50 given back by the note = 7.50, so 1.50 goes back to the grant:
    # net -7.50, VAT -1.43, due -8.93 (layouts 7-11: all 9.00 in money, VAT -1.71)
    out, _, dec, note = _december_noted(billing, tmp_path)
    assert (dec.adjustments_total, dec.credits_applied, dec.net_amount) == (D("1.50"), D("1.50"), D("7.50"))
    _attempt(billing, "2027-01-03", "e4", "r1", 3, "2026-11-02T11:00:00Z", 0)
    _attempt(billing, "2027-01-04", "e5", "r2", 2, "2026-12-02T10:00:00Z", 0)
    # layout 11, a draft: the 1.50 of credit stays December's, whose credited line is never
    # refunded again, so November's refund gives all 9.00 back in money (9.00 x 19% = 1.71)
    assert _draft_figures(billing, tmp_path, "2027-01", 11) == (
        D("-9.00"), D("0.00"), D("-9.00"), D("-1.71"), D("-10.71"))  # fmt: skip
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert jan.layout_version >= 12  # the layout that moves the credit, or a later one
    assert _figures(jan) == (D("-9.00"), D("1.50"), D("-7.50"), D("-1.43"), D("-8.93"))
    # the grant gets its 1.50 back: December drew it (closing 0.00), January restores it
    assert jan.credits is not None
    assert (jan.credits.opening, jan.credits.restored, jan.credits.applied, jan.credits.closing) == (
        D("0.00"), D("1.50"), D("0.00"), D("1.50"))  # fmt: skip
    # even over the history: money asked 7.50 + 7.50, given back 7.50 (the note) + 7.50; credit
    # drawn 1.50, restored 1.50
    assert D("7.50") + dec.net_amount - note.net_amount + jan.net_amount == D("0.00")
    _replays_match(billing, tmp_path, periods=("2026-12", "2027-01"))
