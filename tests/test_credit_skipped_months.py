"""Statement layout 11: months without statements before a finalized period (docs/credits.md
"Months without statements").

acct_de (domestic, VAT 19%) uses openai/gpt-5.5, input $7.50 per 1M tokens: 100,000 input
tokens bill 0.75. A month in which no account with prepaid credit was billed gets no
statement; before layout 11, finalizing the next month stored only that month's credit
movements, so a grant dated in an earlier month without statements (the month before the first
statement, or a quiet month) was drawn but never stored, and the statement after next failed on
a negative opening balance; and a negative adjustment issued past such a month was drawn and
restored in the skipped month, i.e. refunded in money. Every figure below is worked out by hand.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from core.money import D
from pipeline import jobs
from reports.credit_model import CreditSummary
from tests.conftest import Billing, record, usage
from tests.test_credit_note_after_refund import _replays_match
from tests.test_credit_restore import (
    _adds_up,
    _attempt,
    _balance,
    _finance_rows,
    _german_account_with,
    _ledger,
    _november_and_a_late_retry_rated,
)
from tests.test_invoicing import _pdf_text


def _issue(billing: Billing, out: Path, period: str, on: date, layout: int | None = None):  # type: ignore[no-untyped-def]
    """acct_de's statement of ``period``, issued on ``on`` (with ``layout``, default the current)."""
    run = jobs.run_statements(billing.settings, period, out, finalize=True, issue_date=on, layout_version=layout)
    return next(st.document for st in run.statements if st.account_id == "acct_de")


def _block(
    opening: str,
    granted: str,
    applied: str,
    closing: str,
    restored: str = "0",
    expired: str = "0",
    since: date | None = None,
) -> CreditSummary:
    return CreditSummary(D(opening), D(granted), D(applied), D(expired), D(closing), D(restored), since)


@pytest.mark.weasyprint
def test_a_grant_bought_the_month_before_the_first_statement_is_stored_with_it(billing: Billing, tmp_path: Path):
    # 5.00 bought on 15 October; October bills nothing, so November is the first statement
    out = _german_account_with(billing, tmp_path, "g,acct_de,5.00,USD,2026-10-15T00:00:00Z,,purchased,INV-1,\n")
    _attempt(billing, "2026-11-07", "a1", "r1", 1, "2026-11-07T09:00:00Z", 100_000)
    nov = _issue(billing, out, "2026-11", date(2026, 12, 1))
    # the first statement's block covers October: "Opening balance, 1 October 2026 $0.00",
    # "Credit granted since 1 October 2026 $5.00", 0.75 applied, closing 4.25
    assert nov.credits == _block("0", "5.00", "0.75", "4.25", since=date(2026, 10, 1))
    text = _pdf_text(out / "statements" / "2026-11", str(nov.statement_number))
    assert "Opening balance, 1 October 2026" in text and "Credit granted since 1 October 2026" in text
    assert (nov.credits_applied, nov.total_due) == (D("0.75"), D("0.00"))
    # stored with November, at its own instant
    assert _ledger(billing, "2026-11") == [
        ("g", "granted", "10-15 00:00", D("5.00"), None),
        ("g", "applied", "11-08 00:00", D("0.75"), None),
    ]
    _attempt(billing, "2026-12-07", "a2", "r2", 1, "2026-12-07T09:00:00Z", 100_000)
    # layout 10 failed here: "CreditSummary: opening -0.75 is negative" (the draw without the grant)
    dec = _issue(billing, out, "2026-12", date(2027, 1, 1))
    assert dec.credits == _block("4.25", "0", "0.75", "3.50")  # November's closing, less 0.75
    assert dec.total_due == D("0.00")
    _replays_match(billing, tmp_path)


def test_a_grant_dated_in_a_month_without_usage_opens_the_next_statement(billing: Billing, tmp_path: Path):
    # November billed in money (no credit yet); 5.00 granted on 10 December, a month without
    # usage; January is issued next, December never is
    out = _german_account_with(billing, tmp_path, "g,acct_de,5.00,USD,2026-12-10T00:00:00Z,,purchased,INV-1,\n")
    _attempt(billing, "2026-11-07", "a1", "r1", 1, "2026-11-07T09:00:00Z", 100_000)
    nov = _issue(billing, out, "2026-11", date(2026, 12, 1))
    assert (nov.credits, nov.net_amount, nov.tax_amount, nov.total_due) == (None, D("0.75"), D("0.14"), D("0.89"))
    _attempt(billing, "2027-01-07", "j1", "rj", 1, "2027-01-07T09:00:00Z", 100_000)
    jan = _issue(billing, out, "2027-01", date(2027, 2, 1))
    # January's block covers December: November had none (no credit then), so it opens at 0
    # on 1 December
    assert jan.credits == _block("0", "5.00", "0.75", "4.25", since=date(2026, 12, 1))
    assert jan.total_due == D("0.00")
    assert _ledger(billing, "2027-01") == [
        ("g", "granted", "12-10 00:00", D("5.00"), None),
        ("g", "applied", "01-08 00:00", D("0.75"), None),
    ]
    _attempt(billing, "2027-02-07", "f1", "rf", 1, "2027-02-07T09:00:00Z", 100_000)
    feb = _issue(billing, out, "2027-02", date(2027, 3, 1))  # layout 10: opening -0.75, failed
    assert feb.credits == _block("4.25", "0", "0.75", "3.50")
    _replays_match(billing, tmp_path, periods=("2026-11", "2027-01", "2027-02"))


@pytest.mark.parametrize("layout", [10, 11])
def test_a_refund_issued_past_a_month_without_statements_restores_the_credit_that_paid(
    billing: Billing, tmp_path: Path, layout: int
):
    # grant 10.00 on 1 November; November 1,000,000 tokens = 7.50, all prepaid; the late retry
    # (rated 10 December) makes it 500,000 = 3.75: an adjustment of -3.75. December bills no
    # usage and is never issued; January (0.75 of its own) carries the adjustment
    grant = "g,acct_de,10.00,USD,2026-11-01T00:00:00Z,,purchased,INV-1,\n"
    _, out = _november_and_a_late_retry_rated(billing, tmp_path, grant, layout)
    _attempt(billing, "2027-01-07", "j1", "rj", 1, "2027-01-07T09:00:00Z", 100_000)
    jan = _issue(billing, out, "2027-01", date(2027, 2, 1), layout)
    figures = (jan.usage_total, jan.adjustments_total, jan.credits_applied, jan.credits_restored)
    money = (jan.net_amount, jan.tax_amount, jan.total_due)
    _attempt(billing, "2027-02-07", "f1", "rf", 1, "2027-02-07T09:00:00Z", 100_000)
    feb = _issue(billing, out, "2027-02", date(2027, 3, 1), layout)
    if layout == 10:
        # the defect, as issued and replayed: the restoration was drawn in December, so January
        # refunded 3.75 + 19% VAT 0.71 in money the customer never paid, printed an opening of
        # 6.25 (2.50 + the 3.75 drawn back in December, never stored), and February's opening
        # (1.75 = 10.00 - 7.50 - 0.75) is not January's closing (5.50)
        assert figures == (D("0.75"), D("-3.75"), D("0.75"), D("0.00"))
        assert money == (D("-3.75"), D("-0.71"), D("-4.46"))
        assert jan.credits == _block("6.25", "0", "0.75", "5.50")
        assert feb.credits == _block("1.75", "0", "0.75", "1.00")
    else:
        # 3.75 restored to the grant (November's draw), nothing refunded in money, no tax;
        # January's 0.75 drawn from the grant: 10.00 - 7.50 + 3.75 - 0.75 = 5.50
        assert figures == (D("0.75"), D("-3.75"), D("0.75"), D("3.75"))
        assert money == (D("0.00"), D("0.00"), D("0.00"))
        assert jan.credits == _block("2.50", "0", "0.75", "5.50", restored="3.75")
        assert _ledger(billing, "2027-01") == [
            ("g", "restored", "01-01 00:00", D("3.75"), "2026-11"),
            ("g", "applied", "01-08 00:00", D("0.75"), None),
        ]
        assert feb.credits == _block("5.50", "0", "0.75", "4.75")  # January's closing
    _replays_match(billing, tmp_path, periods=("2026-11", "2027-01", "2027-02"))


def test_a_ledger_written_before_layout_11_is_completed_by_the_next_statement(billing: Billing, tmp_path: Path):
    # November issued with layout 10: the October grant it drew from was not stored
    out = _german_account_with(billing, tmp_path, "g,acct_de,5.00,USD,2026-10-15T00:00:00Z,,purchased,INV-1,\n")
    _attempt(billing, "2026-11-07", "a1", "r1", 1, "2026-11-07T09:00:00Z", 100_000)
    nov = _issue(billing, out, "2026-11", date(2026, 12, 1), layout=10)
    assert nov.credits == _block("5.00", "0", "0.75", "4.25")
    assert _ledger(billing, "2026-10") == []
    _attempt(billing, "2026-12-07", "a2", "r2", 1, "2026-12-07T09:00:00Z", 100_000)
    with pytest.raises(ValueError, match="opening -0.75 is negative"):  # layout 10, as it was
        _issue(billing, out, "2026-12", date(2027, 1, 1), layout=10)
    # layout 11: the grant November drew counts from 15 October (before November: in the
    # opening), every time the ledger is read; no issued row is added or changed
    dec = _issue(billing, out, "2026-12", date(2027, 1, 1))
    assert dec.credits == _block("4.25", "0", "0.75", "3.50")
    assert _ledger(billing, "2026-10") == []
    assert _ledger(billing, "2026-12") == [("g", "applied", "12-08 00:00", D("0.75"), None)]
    _replays_match(billing, tmp_path)


def test_credit_restored_to_a_grant_that_expired_in_a_month_without_statements_expires_with_it(
    billing: Billing, tmp_path: Path
):
    # grant 10.00 from 1 November, expiring 15 December; November 7.50 prepaid; the late retry
    # makes it 3.75 (-3.75); December no usage, never issued: the 2.50 left expires on 15
    # December; January 0.75 of its own (found by a review: the 3.75 restored on 1 January
    # stayed on the expired grant, a balance no usage could ever draw)
    grant = "g,acct_de,10.00,USD,2026-11-01T00:00:00Z,2026-12-15T00:00:00Z,purchased,INV-1,\n"
    _, out = _november_and_a_late_retry_rated(billing, tmp_path, grant)
    _attempt(billing, "2027-01-07", "j1", "rj", 1, "2027-01-07T09:00:00Z", 100_000)
    jan = _issue(billing, out, "2027-01", date(2027, 2, 1))
    # January's block covers December's expiry (2.50); the 3.75 restored to g expires at once
    # (as for a grant whose expiry an issued period recorded): 2.50 + 3.75 - 6.25 = 0.00, and
    # January's 0.75 is paid in money, + 19% VAT 0.14
    assert jan.credits == _block("2.50", "0", "0", "0.00", restored="3.75", expired="6.25", since=date(2026, 12, 1))
    assert (jan.credits_restored, jan.net_amount, jan.tax_amount, jan.total_due) == (
        D("3.75"), D("0.75"), D("0.14"), D("0.89"))  # fmt: skip
    assert _ledger(billing, "2027-01") == [
        ("g", "expired", "12-15 00:00", D("2.50"), None),
        ("g", "restored", "01-01 00:00", D("3.75"), "2026-11"),
        ("g", "expired", "01-01 00:00", D("3.75"), None),
    ]
    assert _balance(billing, datetime(2027, 3, 1, tzinfo=UTC)) == D("0.00")
    _replays_match(billing, tmp_path, periods=("2026-11", "2027-01"))


def test_a_layout_10_ledger_with_a_reversal_of_a_grant_it_never_stored(billing: Billing, tmp_path: Path):
    # October: k 1.00 (expiring 31 December: drawn first) and g 5.00; r takes 4.00 back from g on
    # 3 November. November issued with layout 10 stored r's reversal and k's draw, but neither
    # granting (dated in October) (found by a review: g, only reversed, was granted again on 1
    # December, and December failed on an opening of -3.75)
    grants = (
        "k,acct_de,1.00,USD,2026-10-01T00:00:00Z,2026-12-31T00:00:00Z,promotional,P-1,\n"
        "g,acct_de,5.00,USD,2026-10-15T00:00:00Z,,purchased,INV-1,\n"
        "r,acct_de,4.00,USD,2026-11-03T00:00:00Z,,purchased,INV-1R,g\n"
    )
    out = _german_account_with(billing, tmp_path, grants)
    _attempt(billing, "2026-11-07", "a1", "r1", 1, "2026-11-07T09:00:00Z", 100_000)
    nov = _issue(billing, out, "2026-11", date(2026, 12, 1), layout=10)
    assert nov.credits == _block("6.00", "-4.00", "0.75", "1.25")  # 1.00 + 5.00 - 4.00 - 0.75
    _attempt(billing, "2026-12-07", "a2", "r2", 1, "2026-12-07T09:00:00Z", 100_000)
    dec = _issue(billing, out, "2026-12", date(2027, 1, 1))
    # k's 0.25, then g's 0.50: 1.25 - 0.75
    assert dec.credits == _block("1.25", "0", "0.75", "0.50")
    _replays_match(billing, tmp_path)


def test_the_finance_summary_of_an_open_month_restores_as_its_draft_does(billing: Billing, tmp_path: Path):
    # December holds only the -3.75 of November (nothing issued after November), January has
    # usage: the finance summary of December is its draft's (found by a review: it drew the
    # restoration in January and showed a money refund of 3.75 + 0.71 VAT)
    grant = "g,acct_de,10.00,USD,2026-11-01T00:00:00Z,,purchased,INV-1,\n"
    _, out = _november_and_a_late_retry_rated(billing, tmp_path, grant)
    _attempt(billing, "2027-01-07", "j1", "rj", 1, "2027-01-07T09:00:00Z", 100_000)
    run = jobs.run_statements(billing.settings, "2026-12", out, finalize=False, issue_date=date(2027, 1, 1))
    dec = next(st.document for st in run.statements if st.account_id == "acct_de")
    assert dec.credits == _block("2.50", "0", "0", "6.25", restored="3.75")  # 2.50 + 3.75
    row = next(r for r in _finance_rows(billing, "2026-12") if r["account_id"] == "acct_de")
    assert (row["credits_restored_usd"], row["credit_closing_usd"], row["net_usd"]) == (
        D("3.75"), D("6.25"), D("0.00"))  # fmt: skip
    assert _adds_up(row), row


def test_a_month_issued_after_a_later_one_leaves_the_adjustments_of_accounts_with_credit_to_the_next(
    billing: Billing, tmp_path: Path
):
    # acct_nl (no grants) is billed in December only, so January (acct_de) may be issued first;
    # a late retry of November is rated on 3 February, then December is issued (found by a
    # review: acct_de's -3.75 went on December's statement and was restored on 1 December,
    # before January's draws: January's balance changed after it was issued)
    grant = "g,acct_de,10.00,USD,2026-11-01T00:00:00Z,,purchased,INV-1,\n"
    out = _german_account_with(billing, tmp_path, grant)
    _attempt(billing, "2026-11-07", "a1", "r1", 1, "2026-11-07T09:00:00Z", 1_000_000)
    _issue(billing, out, "2026-11", date(2026, 12, 1))
    nl = record(
        event_id="n1", request_id="n1", account_id="acct_nl", ts="2026-12-05T09:00:00Z", usage=usage(100_000, 0)
    )
    billing.log("requests-2026-12-05.jsonl", [nl])
    billing.nightly("2026-12-05")
    _attempt(billing, "2027-01-07", "j1", "rj", 1, "2027-01-07T09:00:00Z", 100_000)
    jan = _issue(billing, out, "2027-01", date(2027, 2, 1))
    assert jan.credits == _block("2.50", "0", "0.75", "1.75")
    late = record(event_id="a2", request_id="r1", attempt=2, account_id="acct_de", ts="2026-11-07T09:05:00Z",
                  usage=usage(500_000, 0))  # fmt: skip
    billing.log("requests-2027-02-03.jsonl", [late])
    billing.nightly("2027-02-03")
    run = jobs.run_statements(billing.settings, "2026-12", out, finalize=True, issue_date=date(2027, 2, 4))
    assert [st.account_id for st in run.statements] == ["acct_nl"]
    assert _balance(billing, datetime(2027, 1, 20, tzinfo=UTC)) == D("1.75")
    _attempt(billing, "2027-02-07", "f1", "rf", 1, "2027-02-07T09:00:00Z", 100_000)
    feb = _issue(billing, out, "2027-02", date(2027, 3, 1))
    # February carries the -3.75: restored to g; 1.75 + 3.75 - 0.75 = 4.75, nothing to pay
    assert (feb.adjustments_total, feb.credits_restored, feb.total_due) == (D("-3.75"), D("3.75"), D("0.00"))
    assert feb.credits == _block("1.75", "0", "0.75", "4.75", restored="3.75")
