"""Review of rule 9 v3 (branch rule9v3): the pool add-back (statement_lines_due.sql's
paid.credit_left + printed_ask_restored_usd) is gated by the note's money_rule, not by the
statement's layout. A statement issued BEFORE the rule-9 note (February, which restored
November's credit) must still re-execute as issued with ``replay --period`` and ``replay
--verify`` of its own run, although the live database now holds a rule-9 note whose 3.00
adds back to November's pool. Seed 339's shrunk history (tests/test_credit_note_rule9.py)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from core.money import D
from pipeline import replay
from tests.conftest import Billing
from tests.test_credit_histories import History
from tests.test_credit_note_after_refund import _note
from tests.test_credit_note_rule9 import _until_the_first_note
from tests.test_credit_restore import _attempt, _statement


def test_statements_issued_before_a_rule9_note_replay_as_issued(billing: Billing, tmp_path: Path) -> None:
    out, nov, dec, jan, first = _until_the_first_note(billing, tmp_path, 9)
    _attempt(billing, "2027-02-03", "e5", "r1", 3, "2026-11-02T09:10:00Z", 400_000)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    assert (feb.net_amount, feb.credits_restored) == (D("0.00"), D("3.00"))
    second = _note(billing, str(jan.statement_number), out, rule=9, lines=(1, 2), issue_date=date(2027, 3, 5))
    assert billing.query(
        "SELECT line_no, printed_ask_restored_usd FROM credit_note_lines WHERE credit_note_number = ? "
        "ORDER BY line_no", [second.number]
    ) == [(1, D("3.00")), (2, D("0.00"))]  # fmt: skip
    _attempt(billing, "2027-03-03", "e6", "r1", 4, "2026-11-02T09:15:00Z", 0)
    _attempt(billing, "2027-03-04", "e7", "r2", 3, "2026-12-02T09:15:00Z", 0)
    mar = _statement(billing, out, "2027-03", date(2027, 4, 1))
    assert (mar.net_amount, mar.credits_restored) == (D("-1.50"), D("0.00"))
    history = History(statements=[nov, dec, jan, feb, mar], notes=[first, second.document])
    assert (history.money, history.credit_used, history.kept) == (D("0.00"), D("0.00"), D("0.00"))
    # every period re-executes byte for byte, February (issued before the note) included
    for period in ("2026-11", "2026-12", "2027-01", "2027-02", "2027-03"):
        report = replay.replay_period(billing.settings, period, tmp_path / f"replay-{period}")
        assert report.checks and report.matches, (period, report.checks)
    # the whole history re-executed in order and compared run by run: February's run before
    # the note existed, as it was issued (verifying February's run alone would repeat that part)
    last = billing.one("SELECT max(run_id) FROM runs WHERE status = 'succeeded'")
    verified = replay.verify_run(billing.settings, last)
    assert verified.status == "MATCH", verified.steps


def test_two_rule9_notes_on_asks_of_one_period_on_different_statements(billing: Billing, tmp_path: Path) -> None:
    # grant 6.00 from 1 January (before November's and December's usage: they pay money).
    # November r1 400,000 = 3.00 money; December r2 200,000 = 1.50 money. January: r1 up to
    # 800,000, +3.00 of November, all prepaid (grant 6.00 -> 3.00). February: r1 up to
    # 1,200,000, +3.00 of November, all prepaid (grant -> 0.00). March: r1 back to 400,000,
    # -6.00 of November: November's own 3.00 back in money, then 3.00 restored (November's
    # credit left 6.00 -> 3.00)
    from tests.test_credit_restore import _german_account_with

    out = _german_account_with(
        billing,
        tmp_path,
        "g,acct_de,3.00,USD,2027-01-01T00:00:00Z,,purchased,INV-g,\n"
        "h,acct_de,3.00,USD,2027-02-01T00:00:00Z,,purchased,INV-h,\n",
    )
    _attempt(billing, "2026-11-03", "e1", "r1", 1, "2026-11-02T09:00:00Z", 400_000)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    _attempt(billing, "2026-12-03", "e2", "r2", 1, "2026-12-02T09:00:00Z", 200_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    _attempt(billing, "2027-01-03", "e3", "r1", 2, "2026-11-02T09:05:00Z", 800_000)
    _attempt(billing, "2027-01-04", "e3b", "r2", 2, "2026-12-02T09:05:00Z", 400_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    _attempt(billing, "2027-02-03", "e4", "r1", 3, "2026-11-02T09:10:00Z", 1_200_000)
    _attempt(billing, "2027-02-04", "e4b", "r2", 3, "2026-12-02T09:10:00Z", 600_000)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    _attempt(billing, "2027-03-03", "e5", "r1", 4, "2026-11-02T09:15:00Z", 400_000)
    mar = _statement(billing, out, "2027-03", date(2027, 4, 1))
    assert (jan.net_amount, jan.credits_applied) == (D("1.50"), D("3.00"))
    assert (feb.net_amount, feb.credits_applied) == (D("1.50"), D("3.00"))
    assert (mar.net_amount, mar.credits_restored) == (D("-3.00"), D("3.00"))
    # note A on January's ask: November's pool 3.00 still holds it: nothing printed, 3.00 kept
    a = _note(billing, str(jan.statement_number), out, rule=9, lines=(1, 2), issue_date=date(2027, 4, 5))
    assert (a.document.net_amount, a.document.prepaid_retained, a.document.refunded) == (
        D("1.50"), D("3.00"), D("0.00"))  # fmt: skip
    # note B on February's ask: the pool is 0.00 now: its 3.00 was restored already, printed
    b = _note(billing, str(feb.statement_number), out, rule=9, lines=(1, 2), issue_date=date(2027, 4, 6))
    assert (b.document.net_amount, b.document.prepaid_retained, b.document.refunded) == (
        D("1.50"), D("0.00"), D("3.00"))  # fmt: skip
    history = History(statements=[nov, dec, jan, feb, mar], notes=[a.document, b.document])
    assert history.money == D("1.50")  # December's usage, never refunded
    assert (history.credit_used, history.kept) == (D("3.00"), D("3.00"))
    last = billing.one("SELECT max(run_id) FROM runs WHERE status = 'succeeded'")
    assert replay.verify_run(billing.settings, last).status == "MATCH"
