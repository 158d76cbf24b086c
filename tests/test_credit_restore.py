"""Statement layout 7: a negative prior-period adjustment of usage that prepaid credit paid is
restored to prepaid credit, not given back in money and tax (docs/credits.md "Restoring credit").

acct_de (domestic, VAT 19%) uses openai/gpt-5.5, input $7.50 per 1M tokens. In November request
r1's attempt 1 bills 1,000,000 input tokens = 7.50. In December a late retry of r1 (attempt 2,
500,000 input tokens = 3.75) supersedes it (R2): November's line now holds 500,000 tokens, so
December's statement carries an adjustment of -500,000 tokens x 7.50/1M = -3.75. The rule: of
what November's statement asked, the money part is given back in money first, the prepaid part
is restored to the grants that paid it; the restored part is neither netted from the money due
nor taxed. Every figure below is worked out by hand.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from core.db import connect
from core.money import D
from pipeline import jobs, replay
from reports.balances import balances
from reports.finance import FINANCE_COLUMNS, finance_summary
from tests.conftest import Billing, BuiltOnce, record, usage
from tests.test_credits import with_credits
from tests.test_invoicing import ACCOUNTS_TOML, ISSUER_TOML, _pdf_text


def _german_account_with(billing: Billing, tmp_path: Path, grants: str) -> Path:
    """acct_de (19% VAT; the invoicing tests' accounts and issuer) with the prepaid ``grants``;
    the folder statements are written to."""
    (tmp_path / "issuer.toml").write_text(ISSUER_TOML, encoding="utf-8")
    billing.settings.accounts_file.write_text(ACCOUNTS_TOML, encoding="utf-8")
    billing.settings = dataclasses.replace(billing.settings, issuer_file=tmp_path / "issuer.toml")
    with_credits(billing, grants)
    return tmp_path / "out"


def _attempt(billing: Billing, day: str, event: str, request: str, n: int, ts: str, tokens: int) -> None:
    """A nightly of ``day`` whose one log file holds attempt ``n`` of ``request`` for acct_de."""
    one = record(event_id=event, request_id=request, attempt=n, account_id="acct_de", ts=ts, usage=usage(tokens, 0))
    billing.log(f"requests-{day}-{event}.jsonl", [one])
    billing.nightly(day)


def _statement(billing: Billing, out: Path, period: str, on: date | None = None):  # type: ignore[no-untyped-def]
    """acct_de's statement of ``period``: issued on ``on``, or a draft."""
    run = jobs.run_statements(billing.settings, period, out, finalize=on is not None, issue_date=on)
    return next(st.document for st in run.statements if st.account_id == "acct_de")


def _november_and_a_late_retry_rated(billing: Billing, tmp_path: Path, grants: str, layout: int | None = None):  # type: ignore[no-untyped-def]
    """November rated and issued, then the nightly rating r1's late retry (December not issued):
    November's statement run and the output folder."""
    out = _german_account_with(billing, tmp_path, grants)
    billing.log(
        "requests-2026-11-07.jsonl",
        [record(event_id="a1", request_id="r1", account_id="acct_de", ts="2026-11-07T09:00:00Z",
                usage=usage(1_000_000, 0))],
    )  # fmt: skip
    billing.nightly("2026-11-07")
    nov = jobs.run_statements(
        billing.settings, "2026-11", out, finalize=True, issue_date=date(2026, 12, 1), layout_version=layout
    )
    # the late retry: attempt 2 of r1, 500,000 tokens, supersedes attempt 1
    billing.log(
        "requests-2026-12-10.jsonl",
        [record(event_id="a2", request_id="r1", attempt=2, account_id="acct_de", ts="2026-11-07T09:05:00Z",
                usage=usage(500_000, 0))],
    )  # fmt: skip
    billing.nightly("2026-12-10")
    return nov, out


def _december_issued(billing: Billing, nov, out: Path, layout: int | None = None):  # type: ignore[no-untyped-def]
    """After :func:`_november_and_a_late_retry_rated`, December issued: acct_de's November and
    December statements, the output folder."""
    dec = jobs.run_statements(
        billing.settings, "2026-12", out, finalize=True, issue_date=date(2027, 1, 1), layout_version=layout
    )
    docs = [next(st.document for st in r.statements if st.account_id == "acct_de") for r in (nov, dec)]
    return docs[0], docs[1], out


def _november_then_a_late_retry(billing: Billing, tmp_path: Path, grants: str, layout: int | None = None):  # type: ignore[no-untyped-def]
    nov, out = _november_and_a_late_retry_rated(billing, tmp_path, grants, layout)
    return _december_issued(billing, nov, out, layout)


GRANT_5 = "g,acct_de,5.00,USD,2026-11-01T00:00:00Z,,purchased,INV-1,\n"


@pytest.fixture(scope="module")
def _retried_once(tmp_path_factory: pytest.TempPathFactory) -> BuiltOnce:
    return BuiltOnce(
        tmp_path_factory, "retried", lambda billing: _november_and_a_late_retry_rated(billing, billing.root, GRANT_5)[0]
    )


@pytest.fixture
def retried(_retried_once: BuiltOnce):  # type: ignore[no-untyped-def]
    """:func:`_november_and_a_late_retry_rated` with a grant of 5.00, built once per module, a
    fresh copy for each test: the billing, November's statement run, the output folder."""
    billing = _retried_once.restore()
    return billing, _retried_once.value, billing.root / "out"


def _lines_csv(out: Path, number: str) -> list[tuple[str, str]]:
    path = out / "statements" / "2026-12" / f"{number}-lines.csv"
    return [(r["kind"], r["amount_usd"]) for r in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))]


def _balance(billing: Billing, at: datetime) -> object:
    con = connect(billing.settings.db_path, read_only=True)
    try:
        return next(b.balance for b in balances(con, at) if b.account_id == "acct_de")
    finally:
        con.close()


def _ledger(billing: Billing, period: str) -> list[tuple[object, ...]]:
    return billing.query(
        "SELECT grant_id, entry_kind, strftime(effective_at, '%m-%d %H:%M'), amount, restored_for "
        "FROM credit_ledger WHERE period = ? ORDER BY entry_no",
        [period],
    )


@pytest.mark.weasyprint
def test_usage_paid_with_credit_and_found_smaller_is_restored_to_credit_not_refunded_in_money(
    billing: Billing, tmp_path: Path
) -> None:
    nov, dec, out = _november_then_a_late_retry(
        billing, tmp_path, "g,acct_de,10.00,USD,2026-11-01T00:00:00Z,,purchased,INV-1,\n"
    )
    # November: 7.50 charged, 7.50 drawn from the 10.00 grant, nothing paid in money, no tax
    assert (nov.usage_total, nov.credits_applied, nov.net_amount, nov.tax_amount, nov.total_due) == (
        D("7.50"), D("7.50"), D("0.00"), D("0.00"), D("0.00"))  # fmt: skip
    # December: -3.75 (-500,000 x 7.50/1M), all of it paid with credit in November: restored,
    # so net = -3.75 + 3.75 restored - 0 applied = 0.00, VAT 0.00, total due 0.00
    # (layout 6 gave back 3.75 in money and 0.71 of VAT never charged: total due -4.46)
    assert (dec.adjustments_total, dec.credits_restored, dec.credits_applied) == (D("-3.75"), D("3.75"), D("0"))
    assert (dec.net_amount, dec.tax_amount, dec.total_due) == (D("0.00"), D("0.00"), D("0.00"))
    assert dec.adjustments[0].description.endswith("; $3.75 of it restored to prepaid credit")
    # the credit block: opening 2.50 (10.00 - 7.50) + restored 3.75 = closing 6.25
    assert dec.credits is not None
    assert (dec.credits.opening, dec.credits.restored, dec.credits.applied, dec.credits.closing) == (
        D("2.50"), D("3.75"), D("0.00"), D("6.25"))  # fmt: skip
    assert _ledger(billing, "2026-12") == [("g", "restored", "12-01 00:00", D("3.75"), "2026-11")]
    assert billing.query(
        "SELECT restored_usd, closing_usd, net_usd FROM statement_credit_totals WHERE period = '2026-12'"
    ) == [(D("3.75"), D("6.25"), D("0.00"))]
    # the lines CSV adds up to the 0.00 due: -3.75 + 3.75 + 0.00
    number = str(dec.statement_number)
    assert _lines_csv(out, number) == [("adjustment", "-3.75"), ("prepaid_credit_restored", "3.75"), ("tax", "0.00")]
    text = _pdf_text(out / "statements" / "2026-12", number)
    for printed in ("$3.75 of it restored to prepaid credit", "Credit restored", "$6.25"):
        assert printed in text, printed
    # what the account has left, for the gateway: 6.25 during December (2.50 without the fix)
    assert _balance(billing, datetime(2026, 12, 15, tzinfo=UTC)) == D("6.25")
    report = replay.replay_period(billing.settings, "2026-12", tmp_path / "replay")
    assert report.checks and report.matches, report.checks
    # re-executing every run from its recorded inputs gives the same ledger and statements
    last = billing.one("SELECT max(run_id) FROM runs WHERE status = 'succeeded'")
    verified = replay.verify_run(billing.settings, last)
    assert verified.status == "MATCH", verified.steps


def test_the_part_paid_in_money_is_refunded_in_money_first_and_the_prepaid_part_restored(
    retried, tmp_path: Path
) -> None:
    billing, nov_run, out = retried
    nov, dec, _ = _december_issued(billing, nov_run, out)  # :func:`_november_then_a_late_retry`, grant 5.00
    # November: 7.50 charged, 5.00 prepaid, 2.50 paid in money + VAT 19% of 2.50 = 0.475 -> 0.48
    assert (nov.credits_applied, nov.net_amount, nov.tax_amount, nov.total_due) == (
        D("5.00"), D("2.50"), D("0.48"), D("2.98"))  # fmt: skip
    # December: of the -3.75, the 2.50 paid in money is refunded (money first), the other 1.25
    # restored: net -3.75 + 1.25 = -2.50, VAT -0.475 -> -0.48, total -2.98, exactly the money
    # November asked (layout 6: net -3.75, VAT -0.71, total -4.46)
    assert (dec.adjustments_total, dec.credits_restored, dec.credits_applied) == (D("-3.75"), D("1.25"), D("0"))
    assert (dec.net_amount, dec.tax_amount, dec.total_due) == (D("-2.50"), D("-0.48"), D("-2.98"))
    assert dec.adjustments[0].description.endswith("; $1.25 of it restored to prepaid credit")
    assert dec.credits is not None and (dec.credits.opening, dec.credits.restored, dec.credits.closing) == (
        D("0.00"), D("1.25"), D("1.25"))  # fmt: skip
    assert _lines_csv(out, str(dec.statement_number)) == [
        ("adjustment", "-3.75"), ("prepaid_credit_restored", "1.25"), ("tax", "-0.48")]  # fmt: skip
    assert _balance(billing, datetime(2026, 12, 15, tzinfo=UTC)) == D("1.25")
    # January: attempt 3 of r1 bills 250,000 tokens: -250,000 x 7.50/1M = -1.875 -> -1.88; the
    # money November asked is all given back (2.50), so all of it is restored (5.00 - 1.25
    # restored before = 3.75 still to restore at most): net 0.00
    billing.log(
        "requests-2027-01-05.jsonl",
        [record(event_id="a3", request_id="r1", attempt=3, account_id="acct_de", ts="2026-11-07T09:10:00Z",
                usage=usage(250_000, 0))],
    )  # fmt: skip
    billing.nightly("2027-01-05")
    jan = jobs.run_statements(billing.settings, "2027-01", out, finalize=True, issue_date=date(2027, 2, 1))
    doc = next(st.document for st in jan.statements if st.account_id == "acct_de")
    assert (doc.adjustments_total, doc.credits_restored, doc.net_amount, doc.total_due) == (
        D("-1.88"), D("1.88"), D("0.00"), D("0.00"))  # fmt: skip
    assert doc.credits is not None and doc.credits.closing == D("3.13")  # 1.25 + 1.88
    report = replay.replay_period(billing.settings, "2027-01", tmp_path / "replay")
    assert report.checks and report.matches, report.checks


def test_credit_restored_to_an_expired_grant_expires_again_at_once(billing: Billing, tmp_path: Path) -> None:
    nov, dec, _ = _november_then_a_late_retry(
        billing, tmp_path, "p,acct_de,10.00,USD,2026-11-01T00:00:00Z,2026-11-20T00:00:00Z,promotional,P-1,\n"
    )
    # November draws 7.50, the other 2.50 expire on the 20th; December restores 3.75 to the
    # promotional grant, which had expired: it expires again at the same instant (had the usage
    # never been billed, that credit would have expired unused). No money, no tax.
    assert (dec.credits_restored, dec.net_amount, dec.total_due) == (D("3.75"), D("0.00"), D("0.00"))
    assert dec.credits is not None and (dec.credits.restored, dec.credits.expired, dec.credits.closing) == (
        D("3.75"), D("3.75"), D("0.00"))  # fmt: skip
    assert _ledger(billing, "2026-12") == [
        ("p", "restored", "12-01 00:00", D("3.75"), "2026-11"),
        ("p", "expired", "12-01 00:00", D("3.75"), None),
    ]


def test_restored_credit_goes_to_the_grant_expiring_latest_and_pays_the_month_usage(
    billing: Billing, tmp_path: Path
) -> None:
    """Two grants paid November: the promotional one expiring in January first (5.00), then the
    purchased one (2.50 of 10.00). The 3.75 go back to the purchased one (never expires: latest
    expiring first, at most the 2.50 it paid), then 1.25 to the promotional one."""
    nov, dec, _ = _november_then_a_late_retry(
        billing,
        tmp_path,
        "p,acct_de,5.00,USD,2026-11-01T00:00:00Z,2027-01-15T00:00:00Z,promotional,P-1,\n"
        "g,acct_de,10.00,USD,2026-11-01T00:00:00Z,,purchased,INV-1,\n",
    )
    assert nov.credits_applied == D("7.50")
    assert _ledger(billing, "2026-12") == [
        ("g", "restored", "12-01 00:00", D("2.50"), "2026-11"),
        ("p", "restored", "12-01 00:00", D("1.25"), "2026-11"),
    ]
    # opening 7.50 (0.00 + 7.50 left of g) + 3.75 = 11.25
    assert dec.credits is not None and dec.credits.closing == D("11.25")


def test_layout_6_keeps_giving_the_adjustment_back_in_money(billing: Billing, tmp_path: Path) -> None:
    """Statements issued with layout 6 re-issue exactly (replay): their rule is unchanged."""
    _, dec, _ = _november_then_a_late_retry(
        billing, tmp_path, "g,acct_de,10.00,USD,2026-11-01T00:00:00Z,,purchased,INV-1,\n", layout=6
    )
    assert (dec.credits_restored, dec.net_amount, dec.tax_amount, dec.total_due) == (
        D("0"), D("-3.75"), D("-0.71"), D("-4.46"))  # fmt: skip
    assert "restored" not in dec.adjustments[0].description
    assert dec.credits is not None and dec.credits.closing == D("2.50")
    assert _ledger(billing, "2026-12") == []
    report = replay.replay_period(billing.settings, "2026-12", tmp_path / "replay")
    assert report.checks and report.matches, report.checks


def test_replay_of_a_statement_adjusting_a_period_whose_statement_restored_credit(
    billing: Billing, tmp_path: Path
) -> None:
    """November: 7.50, 5.00 prepaid, 2.50 money. December: r1 found smaller (-3.75: 2.50 money,
    1.25 restored) and 7.50 of December usage, which draws the 1.25 again: December asks
    7.50 - 3.75 + 1.25 - 1.25 = 3.75 in money (its charges less credit applied would be 2.50).
    January: r2 found smaller, -3.75 of December: all of it money (3.75 asked), nothing restored.
    Replay copies no statement_invoicing; it must read December's net the same way."""
    out = _german_account_with(billing, tmp_path, "g,acct_de,5.00,USD,2026-11-01T00:00:00Z,,purchased,INV-1,\n")

    _attempt(billing, "2026-11-07", "a1", "r1", 1, "2026-11-07T09:00:00Z", 1_000_000)
    _statement(billing, out, "2026-11", date(2026, 12, 1))
    _attempt(billing, "2026-12-05", "a2", "r1", 2, "2026-11-07T09:05:00Z", 500_000)
    _attempt(billing, "2026-12-06", "b1", "r2", 1, "2026-12-06T09:00:00Z", 1_000_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    assert (dec.credits_restored, dec.credits_applied, dec.net_amount) == (D("1.25"), D("1.25"), D("3.75"))
    _attempt(billing, "2027-01-05", "b2", "r2", 2, "2026-12-06T09:05:00Z", 500_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert (jan.adjustments_total, jan.credits_restored, jan.net_amount) == (D("-3.75"), D("0.00"), D("-3.75"))
    report = replay.replay_period(billing.settings, "2027-01", tmp_path / "replay")
    assert report.checks and report.matches, report.checks


def test_credit_a_later_statement_applied_to_an_ask_of_the_period_is_restored_not_refunded(
    billing: Billing, tmp_path: Path
) -> None:
    """Statement layout 10 (a review's scenario). Grant g 10.00. November: 200,000 tokens =
    1.50, paid by g. December: a retry of 1,000,000 asks +800,000 x 7.50/1M = +6.00 of
    November, paid by g too (nothing in money). January: a retry of 0 tokens gives -7.50 of
    November back: the customer paid none of it in money, so all 7.50 goes back to g (1.50 of
    November's own draw, 6.00 of December's): net 0.00. Layouts 7-9 restored only November's
    own 1.50 and refunded the other 6.00 + 1.14 VAT in money."""
    out = _german_account_with(billing, tmp_path, "g,acct_de,10.00,USD,2026-11-01T00:00:00Z,,purchased,INV-1,\n")
    _attempt(billing, "2026-11-07", "a1", "r1", 1, "2026-11-07T09:00:00Z", 200_000)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    assert (nov.credits_applied, nov.net_amount) == (D("1.50"), D("0.00"))
    _attempt(billing, "2026-12-10", "a2", "r1", 2, "2026-11-07T09:05:00Z", 1_000_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    assert (dec.adjustments_total, dec.credits_applied, dec.net_amount) == (D("6.00"), D("6.00"), D("0.00"))
    _attempt(billing, "2027-01-12", "a3", "r1", 3, "2026-11-07T09:10:00Z", 0)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert (jan.adjustments_total, jan.credits_restored, jan.net_amount, jan.total_due) == (
        D("-7.50"), D("7.50"), D("0.00"), D("0.00"))  # fmt: skip
    assert jan.credits is not None
    assert (jan.credits.opening, jan.credits.restored, jan.credits.closing) == (D("2.50"), D("7.50"), D("10.00"))
    assert _ledger(billing, "2027-01") == [("g", "restored", "01-01 00:00", D("7.50"), "2026-11")]
    assert _balance(billing, datetime(2027, 1, 15, tzinfo=UTC)) == D("10.00")
    report = replay.replay_period(billing.settings, "2027-01", tmp_path / "replay")
    assert report.checks and report.matches, report.checks


def test_two_periods_asked_on_one_later_statement_give_each_grant_back_at_most_what_it_paid(
    billing: Billing, tmp_path: Path
) -> None:
    """A review's scenario. Grants h1 9.00 (expiring 2027-02-10) and h2 10.00 (never). November
    and December: 200,000 tokens = 1.50 each, paid by h1 (expiring first). January: retries of
    1,000,000 ask +6.00 of each; h1 pays its last 6.00, h2 the other 6.00. February: both back
    to 0 tokens, -7.50 of each, all restored (15.00): each period's own 1.50 to h1, then the
    later credit: November's 6.00 to h2 (never expiring, first back), December's 6.00 to h1, as
    h2 paid only 6.00 in all. h1 gets back 9.00, which expires on the 10th; h2 ends at 10.00. The
    first version gave each period all of January's credit to take from: h2 got 12.00 back (16.00
    left of a 10.00 grant) and h1 3.00."""
    grants = (
        "h1,acct_de,9.00,USD,2026-11-01T00:00:00Z,2027-02-10T00:00:00Z,purchased,INV-1,\n"
        "h2,acct_de,10.00,USD,2026-11-01T00:00:00Z,,purchased,INV-2,\n"
    )
    out = _german_account_with(billing, tmp_path, grants)
    _attempt(billing, "2026-11-07", "a1", "r1", 1, "2026-11-07T09:00:00Z", 200_000)
    _statement(billing, out, "2026-11", date(2026, 12, 1))
    _attempt(billing, "2026-12-07", "b1", "r2", 1, "2026-12-07T09:00:00Z", 200_000)
    _statement(billing, out, "2026-12", date(2027, 1, 1))
    _attempt(billing, "2027-01-10", "a2", "r1", 2, "2026-11-07T09:05:00Z", 1_000_000)
    _attempt(billing, "2027-01-11", "b2", "r2", 2, "2026-12-07T09:05:00Z", 1_000_000)
    _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert [(g, a) for g, kind, _, a, _ in _ledger(billing, "2027-01") if kind == "applied"] == [
        ("h1", D("6.00")), ("h2", D("6.00"))]  # fmt: skip
    _attempt(billing, "2027-02-02", "a3", "r1", 3, "2026-11-07T09:10:00Z", 0)
    _attempt(billing, "2027-02-03", "b3", "r2", 3, "2026-12-07T09:10:00Z", 0)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    assert (feb.adjustments_total, feb.credits_restored, feb.net_amount) == (D("-15.00"), D("15.00"), D("0.00"))
    assert [(g, kind, a, origin) for g, kind, _, a, origin in _ledger(billing, "2027-02")] == [
        ("h1", "restored", D("1.50"), "2026-11"),
        ("h1", "restored", D("7.50"), "2026-12"),  # its own 1.50 and 6.00 of January's (one movement)
        ("h2", "restored", D("6.00"), "2026-11"),
        ("h1", "expired", D("9.00"), None),
    ]
    assert _balance(billing, datetime(2027, 2, 15, tzinfo=UTC)) == D("10.00")


def test_a_draft_of_a_month_after_an_open_one_restores_nothing_the_open_month_restores(
    billing: Billing, tmp_path: Path
) -> None:
    """Grant 10.00. November: r1 7.50, all prepaid (2.50 left). December (left open): 100,000
    tokens = 0.75. In January r1 is found smaller: -3.75 of November, which asked 0.00 in money
    and drew 7.50, so 3.75 goes back to credit - on December's statement, the first open one,
    which carries the adjustment first and is where the drawdown draws it.
    December draft: 0.75 - 3.75 + 3.75 restored - 0.75 applied = 0.00; block 2.50 + 3.75 - 0.75
    = 5.50. January draft (December open): the same adjustment, no credit drawn for it (as for
    any adjustment on a later draft) and none restored: -3.75 in money, VAT -0.71, due -4.46;
    block 5.50 -> 5.50, restored 0; the line says what December restores. (It crashed:
    credits_restored 3.75 != credit block restored 0.)"""
    out = _german_account_with(billing, tmp_path, "g,acct_de,10.00,USD,2026-11-01T00:00:00Z,,purchased,INV-1,\n")

    _attempt(billing, "2026-11-07", "a1", "r1", 1, "2026-11-07T09:00:00Z", 1_000_000)
    jobs.run_statements(billing.settings, "2026-11", out, finalize=True, issue_date=date(2026, 12, 1))
    _attempt(billing, "2026-12-05", "b1", "r2", 1, "2026-12-06T09:00:00Z", 100_000)
    _attempt(billing, "2027-01-05", "a2", "r1", 2, "2026-11-07T09:05:00Z", 500_000)
    dec = _statement(billing, out, "2026-12")
    assert (dec.usage_total, dec.adjustments_total, dec.credits_restored, dec.credits_applied) == (
        D("0.75"), D("-3.75"), D("3.75"), D("0.75"))  # fmt: skip
    assert (dec.net_amount, dec.tax_amount, dec.total_due) == (D("0.00"), D("0.00"), D("0.00"))
    assert dec.credits is not None and (dec.credits.opening, dec.credits.restored, dec.credits.closing) == (
        D("2.50"), D("3.75"), D("5.50"))  # fmt: skip
    jan = _statement(billing, out, "2027-01")
    assert (jan.usage_total, jan.adjustments_total, jan.credits_restored, jan.credits_applied) == (
        D("0"), D("-3.75"), D("0"), D("0"))  # fmt: skip
    assert (jan.net_amount, jan.tax_amount, jan.total_due) == (D("-3.75"), D("-0.71"), D("-4.46"))
    assert jan.credits is not None and (jan.credits.opening, jan.credits.restored, jan.credits.closing) == (
        D("5.50"), D("0.00"), D("5.50"))  # fmt: skip
    (line,) = jan.adjustments
    assert "$3.75 of it to be restored to prepaid credit by the earlier open month's statement" in line.description
    assert "$3.75 of it restored to prepaid credit" in dec.adjustments[0].description


def _finance_rows(billing: Billing, period: str) -> list[dict[str, object]]:
    con = connect(billing.settings.db_path, read_only=True)
    try:
        return [dict(zip(FINANCE_COLUMNS, row, strict=True)) for row in finance_summary(con, period)]
    finally:
        con.close()


def _adds_up(row: dict[str, object]) -> bool:
    """The identities of every finance-summary row (layout 7 on, restored credit included)."""
    r = {k: D(str(v)) for k, v in row.items() if k.endswith("_usd")}
    return (
        r["credit_opening_usd"] + r["credits_granted_usd"] + r["credits_restored_usd"]
        - r["credits_applied_usd"] - r["credits_expired_usd"] == r["credit_closing_usd"]
        and r["total_usd"] == r["usage_usd"] + r["adjustments_usd"]
        and r["total_usd"] + r["credits_restored_usd"] - r["credits_applied_usd"] == r["net_usd"]
        and r["net_usd"] + r["tax_usd"] == r["total_due_usd"]
        and r["total_due_usd"] - r["credit_notes_usd"] == r["total_due_after_credit_notes_usd"]
    )  # fmt: skip


def test_every_finance_summary_row_adds_up_with_the_credit_restored(retried) -> None:
    """Grant 5.00. November: 7.50, 5.00 applied, net 2.50, VAT 0.48, due 2.98. December: r1 found
    smaller, -3.75: November asked 2.50 in money, refunded first; 1.25 restored. December's row,
    drafted and issued alike: total -3.75, opening 0.00 + granted 0.00 + restored 1.25 - applied
    0.00 - expired 0.00 = closing 1.25; net = total -3.75 + restored 1.25 - applied 0.00 = -2.50,
    VAT -0.48, due -2.98. Without the column the row read 0.00 + 0.00 - 0.00 - 0.00 != 1.25 and
    -3.75 - 0.00 != -2.50."""
    billing, _, out = retried  # November issued, December's late retry rated (grant 5.00)
    keys = ("total_usd", "credit_opening_usd", "credits_granted_usd", "credits_restored_usd", "credits_applied_usd",
            "credits_expired_usd", "credit_closing_usd", "net_usd", "tax_usd", "total_due_usd")  # fmt: skip
    november = (D("7.50"), D("0.00"), D("5.00"), D("0.00"), D("5.00"), D("0.00"), D("0.00"), D("2.50"), D("0.48"),
                D("2.98"))  # fmt: skip
    december = (D("-3.75"), D("0.00"), D("0.00"), D("1.25"), D("0.00"), D("0.00"), D("1.25"), D("-2.50"),
                D("-0.48"), D("-2.98"))  # fmt: skip
    for issued in (False, True):
        if issued:
            jobs.run_statements(billing.settings, "2026-12", out, finalize=True, issue_date=date(2027, 1, 1))
        rows = {p: _finance_rows(billing, p) for p in ("2026-11", "2026-12")}
        de = {p: next(r for r in rows[p] if r["account_id"] == "acct_de") for p in rows}
        assert tuple(D(str(de["2026-11"][k])) for k in keys) == november
        assert tuple(D(str(de["2026-12"][k])) for k in keys) == december, issued
        assert all(_adds_up(r) for p in rows for r in rows[p])
        assert FINANCE_COLUMNS[-1] == "credits_restored_usd"


def _adjusted_twice(billing: Billing, tmp_path: Path, grants: str):  # type: ignore[no-untyped-def]
    """November: r1 7.50. December: a late November record r5, 500,000 tokens = +3.75 of
    November. January: r5's attempt 2 holds 100,000 tokens: -400,000 tokens = -3.00 of November."""
    out = _german_account_with(billing, tmp_path, grants)

    _attempt(billing, "2026-11-07", "a1", "r1", 1, "2026-11-07T09:00:00Z", 1_000_000)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    _attempt(billing, "2026-12-05", "l1", "r5", 1, "2026-11-20T09:00:00Z", 500_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    _attempt(billing, "2027-01-05", "l2", "r5", 2, "2026-11-20T09:05:00Z", 100_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    report = replay.replay_period(billing.settings, "2027-01", tmp_path / "replay")
    assert report.checks and report.matches, report.checks
    return nov, dec, jan


def test_money_asked_for_a_period_by_a_later_positive_adjustment_is_refunded_in_money_first(
    billing: Billing, tmp_path: Path
) -> None:
    """Grant 7.50, all of it used by November (net 0.00). December: +3.75 of November, no credit
    left: 3.75 in money, VAT 0.71, due 4.46. January: -3.00 of November. What was asked for
    November in money is its statement's 0.00 plus December's 3.75 for its adjustment line, so
    the 3.00 is refunded in money with its VAT: net -3.00, VAT -0.57, due -3.57, nothing restored
    (before: 3.00 restored to credit, due 0.00, though the customer paid the 3.75 in money)."""
    nov, dec, jan = _adjusted_twice(billing, tmp_path, "g,acct_de,7.50,USD,2026-11-01T00:00:00Z,,purchased,INV-1,\n")
    assert (nov.credits_applied, nov.net_amount) == (D("7.50"), D("0.00"))
    assert (dec.adjustments_total, dec.credits_applied, dec.net_amount, dec.tax_amount, dec.total_due) == (
        D("3.75"), D("0"), D("3.75"), D("0.71"), D("4.46"))  # fmt: skip
    assert (jan.adjustments_total, jan.credits_restored, jan.net_amount, jan.tax_amount, jan.total_due) == (
        D("-3.00"), D("0.00"), D("-3.00"), D("-0.57"), D("-3.57"))  # fmt: skip
    assert _ledger(billing, "2027-01") == []


def test_credit_a_later_statement_applied_to_a_positive_adjustment_is_not_money_asked(
    billing: Billing, tmp_path: Path
) -> None:
    """As above, with a second grant h of 1.00 on 2026-12-01: December's +3.75 of November (no
    December usage) draws h's 1.00, so December asked 2.75 in money for it (net 2.75, VAT 0.52).
    January's -3.00 of November: 2.75 money first (VAT -0.52, due -3.27), the 0.25 beyond it is
    restored to g, the grant that paid November (its statement drew 7.50)."""
    nov, dec, jan = _adjusted_twice(
        billing,
        tmp_path,
        "g,acct_de,7.50,USD,2026-11-01T00:00:00Z,,purchased,INV-1,\n"
        "h,acct_de,1.00,USD,2026-12-01T00:00:00Z,,purchased,INV-2,\n",
    )
    assert (dec.credits_applied, dec.net_amount, dec.tax_amount) == (D("1.00"), D("2.75"), D("0.52"))
    assert (jan.adjustments_total, jan.credits_restored, jan.net_amount, jan.tax_amount, jan.total_due) == (
        D("-3.00"), D("0.25"), D("-2.75"), D("-0.52"), D("-3.27"))  # fmt: skip
    assert jan.credits is not None and (jan.credits.opening, jan.credits.closing) == (D("0.00"), D("0.25"))
    assert _ledger(billing, "2027-01") == [("g", "restored", "01-01 00:00", D("0.25"), "2026-11")]
