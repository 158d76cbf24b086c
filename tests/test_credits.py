"""Prepaid credits (issue 17): grants file, drawdown, statements, balances, replay.

Prices: openai/gpt-5.5 input is $7.50 per 1M tokens, so 100k input tokens cost exactly $0.75
(acct_plain: no discount, default group). Every amount below is worked out by hand.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from core.errors import BillingError
from core.money import D
from core.period import Period
from pipeline import jobs, replay
from pipeline.cli import cli
from pipeline.credits import CreditsError, parse_credits
from reports.credit_model import CreditSummary
from tests.conftest import Billing, record, usage

HEADER = "grant_id,account_id,amount,currency,granted_at,expires_at,kind,external_ref,reverses\n"


def with_credits(billing: Billing, lines: str) -> Path:
    path = billing.root / "credits.csv"
    path.write_text(HEADER + textwrap.dedent(lines).lstrip(), encoding="utf-8")
    billing.settings = dataclasses.replace(billing.settings, credits_file=path)
    return path


def input_tokens(event_id: str, ts: str, hundred_k: int) -> dict:
    """An attempt of ``hundred_k`` x 100k input tokens: hundred_k x $0.75."""
    return record(event_id=event_id, ts=ts, usage=usage(hundred_k * 100_000, 0))


def statement(billing: Billing, period: str, out: Path, finalize: bool = False):
    result = jobs.run_statements(
        billing.settings, period, out, finalize=finalize, issue_date=Period.parse(period).end_day
    )  # the first day after the period: a period is issued once it has ended
    return {st.account_id: st.document for st in result.statements}


def credit_rows(billing: Billing) -> list[tuple]:
    return billing.query(
        "SELECT grant_id, entry_kind, strftime(effective_at, '%m-%d %H:%M'), amount FROM credit_ledger "
        "ORDER BY account_id, period, entry_no"
    )


def test_two_grants_cross_mid_day_one_expires_inside_the_period_and_usage_beyond_stays_due(
    billing: Billing, tmp_path: Path
) -> None:
    with_credits(
        billing,
        """
        promo,acct_plain,2.00,USD,2026-11-01T00:00:00Z,2026-11-20T12:00:00Z,promotional,CAMPAIGN-7,
        good,acct_plain,1.50,USD,2026-11-01T00:00:00Z,2026-11-25T00:00:00Z,goodwill,TICKET-9,
        paid,acct_plain,3.00,USD,2026-11-01T00:00:00Z,,purchased,INV-1,
        """,
    )
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            input_tokens("a", "2026-11-20T08:00:00Z", 2),  # 1.50
            input_tokens("b", "2026-11-20T10:00:00Z", 2),  # 1.50: the morning draws 3.00
            input_tokens("c", "2026-11-26T10:00:00Z", 4),  # 3.00
            input_tokens("d", "2026-11-27T10:00:00Z", 1),  # 0.75: nothing left
        ],
    )
    billing.nightly("2026-11-20")
    doc = statement(billing, "2026-11", tmp_path / "out", finalize=True)["acct_plain"]
    # the morning of the 20th (3.00) empties promo (2.00, expiring soonest) and crosses to
    # good (1.00 of 1.50); good expires on the 25th with 0.50 left; the 26th takes paid's
    # 3.00; the 27th's 0.75 finds no credit and stays due.
    assert (doc.usage_total, doc.credits_applied, doc.total_due) == (D("6.75"), D("6.00"), D("0.75"))
    block = doc.credits
    assert block is not None
    assert (block.opening, block.granted, block.applied, block.expired, block.closing) == (
        D("0"), D("6.50"), D("6.00"), D("0.50"), D("0.00"))  # fmt: skip
    assert credit_rows(billing) == [
        ("promo", "granted", "11-01 00:00", D("2.00")),
        ("good", "granted", "11-01 00:00", D("1.50")),
        ("paid", "granted", "11-01 00:00", D("3.00")),
        ("promo", "applied", "11-20 12:00", D("2.00")),
        ("good", "applied", "11-20 12:00", D("1.00")),
        ("good", "expired", "11-25 00:00", D("0.50")),
        ("paid", "applied", "11-27 00:00", D("3.00")),
    ]
    assert billing.one("SELECT closing_usd FROM statement_credits") == D("0.00")


def test_an_expiring_grant_covers_the_morning_not_the_afternoon(billing: Billing, tmp_path: Path) -> None:
    with_credits(
        billing,
        """
        promo,acct_plain,5.00,USD,2026-11-01T00:00:00Z,2026-11-20T12:00:00Z,promotional,X,
        """,
    )
    billing.log(
        "requests-2026-11-20.jsonl",
        [input_tokens("am", "2026-11-20T11:59:59Z", 2), input_tokens("pm", "2026-11-20T12:00:00Z", 2)],
    )
    billing.nightly("2026-11-20")
    doc = statement(billing, "2026-11", tmp_path / "out")["acct_plain"]
    # 1.50 before noon drawn, 3.50 expires at noon, 1.50 after noon is due
    assert doc.credits is not None
    assert (doc.credits.applied, doc.credits.expired, doc.total_due) == (D("1.50"), D("3.50"), D("1.50"))


def test_a_reversal_takes_back_what_is_left_and_used_credit_stays_used(billing: Billing, tmp_path: Path) -> None:
    with_credits(
        billing,
        """
        bought,acct_plain,10.00,USD,2026-11-01T00:00:00Z,,purchased,INV-2,
        undo,acct_plain,10.00,USD,2026-11-15T00:00:00Z,,purchased,REFUND-2,bought
        """,
    )
    billing.log(
        "requests-2026-11-20.jsonl",
        [input_tokens("before", "2026-11-10T09:00:00Z", 1), input_tokens("after", "2026-11-20T09:00:00Z", 1)],
    )
    billing.nightly("2026-11-20")
    doc = statement(billing, "2026-11", tmp_path / "out")["acct_plain"]
    # 0.75 drawn on the 10th; the reversal on the 15th takes back the 9.25 left; the 20th is due
    assert doc.credits is not None
    assert (doc.credits.granted, doc.credits.applied, doc.credits.closing) == (D("0.75"), D("0.75"), D("0.00"))
    assert doc.total_due == D("0.75")


def test_an_issued_balance_is_never_rewritten_and_late_usage_draws_in_the_next_period(
    billing: Billing, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with_credits(billing, "g,acct_plain,5.00,USD,2026-11-01T00:00:00Z,,purchased,INV-3,\n")
    billing.log("requests-2026-11-20.jsonl", [input_tokens("n1", "2026-11-20T09:00:00Z", 2)])  # 1.50
    billing.nightly("2026-11-20")
    statement(billing, "2026-11", out, finalize=True)
    issued = billing.query("SELECT * FROM statement_credits")
    # (the last column, restored_usd: statement layout 7's credit restored for negative adjustments)
    assert issued == [("IG-2026-11-000001", D("0.00"), D("5.00"), D("1.50"), D("0.00"), D("3.50"), D("0.00"))]
    billing.log(
        "requests-2026-12-02.jsonl",
        [input_tokens("late", "2026-11-30T09:00:00Z", 1), input_tokens("d1", "2026-12-02T09:00:00Z", 1)],
    )
    billing.nightly("2026-12-02")
    dec = statement(billing, "2026-12", out, finalize=True)["acct_plain"]
    # December: opening 3.50 = November's closing; draws the late 0.75 (an adjustment) and 0.75
    assert (dec.adjustments_total, dec.usage_total, dec.credits_applied, dec.total_due) == (
        D("0.75"), D("0.75"), D("1.50"), D("0.00"))  # fmt: skip
    assert dec.credits is not None and (dec.credits.opening, dec.credits.closing) == (D("3.50"), D("2.00"))
    assert billing.query("SELECT * FROM statement_credits WHERE statement_number LIKE 'IG-2026-11%'") == issued
    # the finance summary: November as issued, five credit columns appended
    res = CliRunner().invoke(
        cli, ["--db", str(billing.settings.db_path), "export", "--period", "2026-12", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO((out / "finance-summary-2026-12.csv").read_text())))
    credit_columns = ("total_usd", "credit_opening_usd", "credits_applied_usd", "credit_closing_usd")
    assert [tuple(r[c] for c in credit_columns) for r in rows] == [("1.50", "3.50", "1.50", "2.00")]
    # replay reproduces both issued periods byte for byte
    for period in ("2026-11", "2026-12"):
        report = replay.replay_period(billing.settings, period, tmp_path / "replay")
        assert report.checks and report.matches, report.checks


def test_balances_command_exact_balance_and_alerts(billing: Billing, tmp_path: Path) -> None:
    with_credits(
        billing,
        """
        g,acct_plain,10.00,USD,2026-11-01T00:00:00Z,,purchased,INV-4,
        small,acct_discount,1.00,USD,2026-11-01T00:00:00Z,,promotional,P,
        """,
    )
    # acct_plain: 1.50 a day from the 14th to the 20th, each day drawn at its end: 8.50 left
    # on the 15th, ... 1.00 on the 20th; the 20th draws that 1.00 and 0.50 stays due
    billing.log(
        "requests-2026-11-20.jsonl",
        [input_tokens(f"u{d}", f"2026-11-{d}T09:00:00Z", 2) for d in (14, 15, 16, 17, 18, 19, 20)],
    )
    billing.nightly("2026-11-20")
    from core.db import connect
    from reports.balances import balances

    con = connect(billing.settings.db_path, read_only=True)
    try:
        rows = balances(con, datetime(2026, 11, 21, tzinfo=UTC), threshold=D("2"), days=5, window_days=7)
        later = balances(con, datetime(2026, 11, 17, tzinfo=UTC), threshold=D("0"), days=5, window_days=7)
        # mid-day: the 14th..18th drew 7.50 and the 19th's 09:00 usage (1.50) is before 10:00
        mid_day = balances(con, datetime(2026, 11, 19, 10, tzinfo=UTC))
    finally:
        con.close()
    # as of the 21st: 0.00 (below 2.00), and 10.50 of usage in the 7-day window: runs out
    assert [(b.account_id, b.balance, b.alert) for b in rows] == [
        ("acct_discount", D("1.00"), "below_threshold"),
        ("acct_plain", D("0.00"), "below_threshold;runs_out_soon"),
    ]
    # as of the 17th 00:00: 14th, 15th, 16th drawn (4.50) -> 5.50, 3 days of usage in the
    # window (4.50): 5.50 x 7 = 38.50 >= 4.50 x 5 = 22.50, no alert
    assert [(b.account_id, b.balance, b.alert) for b in later] == [
        ("acct_discount", D("1.00"), ""),
        ("acct_plain", D("5.50"), ""),
    ]
    assert [b.balance for b in mid_day] == [D("1.00"), D("1.00")]
    out = tmp_path / "balances.csv"
    res = CliRunner().invoke(
        cli,
        ["--db", str(billing.settings.db_path), "balances", "--as-of", "2026-11-17", "--format", "csv", "--out",
         str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert out.read_text().splitlines()[1:] == [
        "acct_discount,2026-11-17T00:00:00Z,1.00,0.00,7,",
        "acct_plain,2026-11-17T00:00:00Z,5.50,4.50,7,",
    ]
    parquet = tmp_path / "balances.parquet"
    res = CliRunner().invoke(
        cli, ["--db", str(billing.settings.db_path), "balances", "--format", "parquet", "--out", str(parquet)]
    )
    assert res.exit_code == 0, res.output
    import duckdb

    types = duckdb.connect().execute(f"SELECT typeof(balance_usd) FROM '{parquet}' LIMIT 1").fetchall()
    assert types == [("DECIMAL(18,2)",)]
    help_text = CliRunner().invoke(cli, ["balances", "--help"]).output
    assert "Example" in help_text


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("g,acct_plain,1.005,USD,2026-11-01T00:00:00Z,,purchased,X,", "credits.csv:2: field amount"),
        ("g,acct_plain,-1,USD,2026-11-01T00:00:00Z,,purchased,X,", "credits.csv:2: field amount"),
        ("g,acct_plain,1,EUR,2026-11-01T00:00:00Z,,purchased,X,", "credits.csv:2: field currency"),
        ("g,acct_plain,1,USD,2026-11-01T00:00:00,,purchased,X,", "credits.csv:2: field granted_at"),
        ("g,acct_plain,1,USD,2026-11-01T00:00:00Z,2026-10-01T00:00:00Z,purchased,X,", "field expires_at"),
        ("g,acct_plain,1,USD,2026-11-01T00:00:00Z,,gift,X,", "credits.csv:2: field kind"),
        ("g,,1,USD,2026-11-01T00:00:00Z,,purchased,X,", "credits.csv:2: field account_id"),
        ("r,acct_plain,1,USD,2026-11-01T00:00:00Z,,purchased,X,nope", "credits.csv:2: field reverses"),
    ],
)
def test_bad_grant_lines_name_file_line_and_field(line: str, message: str) -> None:
    with pytest.raises(CreditsError, match=message):
        parse_credits((HEADER + line + "\n").encode(), Path("credits.csv"))


def test_grants_are_append_only_across_runs(billing: Billing) -> None:
    path = with_credits(billing, "g,acct_plain,5.00,USD,2026-11-01T00:00:00Z,,purchased,INV-5,\n")
    billing.log("requests-2026-11-20.jsonl", [input_tokens("x", "2026-11-20T09:00:00Z", 1)])
    billing.nightly("2026-11-20")
    path.write_text(HEADER + "g,acct_plain,50.00,USD,2026-11-01T00:00:00Z,,purchased,INV-5,\n")
    with pytest.raises(CreditsError, match="credit entry g was edited"):
        billing.nightly("2026-11-20")
    path.write_text(
        HEADER + "g,acct_plain,5.00,USD,2026-11-01T00:00:00Z,,purchased,INV-5,\n"
        "g2,acct_plain,1.00,USD,2026-11-02T00:00:00Z,,goodwill,T,\n"
    )
    billing.nightly("2026-11-20")  # appending is fine
    assert billing.one("SELECT count(*) FROM credit_grants") == 2


def credit_doc(applied: str, block: CreditSummary | None, total: str):
    from tests.reports import fixtures

    return dataclasses.replace(fixtures.statement(), credits_applied=D(applied), credits=block, total_due=D(total))


def test_the_statement_model_refuses_credit_that_does_not_add_up() -> None:
    # charges 1,783.19; 500.00 of credit applied leaves 1,283.19 due
    block = CreditSummary(D("100.00"), D("450.00"), D("500.00"), D("25.00"), D("25.00"))
    doc = credit_doc("500.00", block, "1283.19")
    assert doc.net_amount == D("1283.19")
    with pytest.raises(ValueError, match="total_due"):
        credit_doc("500.00", block, "1783.19")
    with pytest.raises(ValueError, match="credit block applied"):
        credit_doc("400.00", block, "1383.19")
    with pytest.raises(ValueError, match="within"):
        credit_doc("1783.20", None, "-0.01")
    with pytest.raises(ValueError, match="!= closing"):
        CreditSummary(D("100.00"), D("450.00"), D("500.00"), D("25.00"), D("26.00"))


def test_the_credit_block_is_printed_only_for_accounts_with_credit() -> None:
    from reports.render import render_html
    from tests.reports import fixtures

    block = CreditSummary(D("100.00"), D("450.00"), D("500.00"), D("25.00"), D("25.00"))
    html = render_html(credit_doc("500.00", block, "1283.19"))
    assert "Prepaid credit" in html and "Closing balance" in html and "&minus;$500.00" in html
    assert "$1,283.19" in html
    assert "Prepaid credit" not in render_html(fixtures.statement())


def test_verify_re_executes_runs_with_the_recorded_grants(billing: Billing, tmp_path: Path) -> None:
    path = with_credits(billing, "g,acct_plain,1.00,USD,2026-11-01T00:00:00Z,,purchased,INV-6,\n")
    billing.log("requests-2026-11-20.jsonl", [input_tokens("v1", "2026-11-20T09:00:00Z", 2)])  # 1.50
    billing.nightly("2026-11-20")
    statement(billing, "2026-11", tmp_path / "out", finalize=True)
    path.unlink()  # the recorded bytes are what counts, not the file
    last = billing.one("SELECT max(run_id) FROM runs WHERE status = 'succeeded'")
    report = replay.verify_run(billing.settings, last)
    assert report.status == "MATCH", report.steps
    assert billing.one("SELECT total_usd FROM statements") == D("1.50")
    assert billing.one("SELECT applied_usd FROM statement_credits") == D("1.00")


def test_credit_for_an_unknown_account_and_a_missing_file_are_clear_cli_errors(billing: Billing) -> None:
    path = with_credits(billing, "g,acct_typo,5.00,USD,2026-11-01T00:00:00Z,,purchased,INV-7,\n")
    billing.log("requests-2026-11-20.jsonl", [input_tokens("e1", "2026-11-20T09:00:00Z", 1)])
    base = ["--db", str(billing.settings.db_path), "--accounts", str(billing.settings.accounts_file)]
    nightly = ["nightly", "--date", "2026-11-20", "--logs", str(billing.logs)]
    res = CliRunner().invoke(cli, [*base, "--credits", str(path), *nightly])
    assert res.exit_code == 1
    assert "credits.csv:2: field account_id: 'acct_typo' is not in the accounts file" in res.output
    res = CliRunner().invoke(cli, [*base, "--credits", str(path.with_name("nope.csv")), *nightly])
    assert res.exit_code == 2 and "no such credit grants file" in res.output


def test_a_later_period_is_not_issued_before_an_earlier_one_that_draws_on_the_same_credit(
    billing: Billing, tmp_path: Path
) -> None:
    with_credits(billing, "g,acct_plain,5.00,USD,2026-11-01T00:00:00Z,,purchased,INV-8,\n")
    billing.log(
        "requests-2026-12-02.jsonl",
        [input_tokens("o1", "2026-11-30T09:00:00Z", 1), input_tokens("o2", "2026-12-02T09:00:00Z", 1)],
    )
    billing.nightly("2026-12-02")
    with pytest.raises(BillingError, match="cannot finalize 2026-12: 2026-11 is not finalized"):
        statement(billing, "2026-12", tmp_path / "out", finalize=True)
    statement(billing, "2026-11", tmp_path / "out", finalize=True)
    dec = statement(billing, "2026-12", tmp_path / "out", finalize=True)["acct_plain"]
    assert dec.credits is not None and (dec.credits.opening, dec.credits.closing) == (D("4.25"), D("3.50"))


def test_a_statement_with_nothing_to_pay_says_so_instead_of_a_due_date(billing: Billing, tmp_path: Path) -> None:
    """The walkthrough's case: prepaid credit covering the whole 1.50 (2 x 100k x 0.75) left
    0.00 due, and the statement said "Payable by 31 December 2026". Layout 4 says there is
    nothing to pay; layout 3 (replayed statements) keeps its words."""
    from reports.render import render_html

    accounts = billing.settings.accounts_file
    text = accounts.read_text().replace(
        'email = "ap@plain.example"', 'email = "ap@plain.example"\npayment_terms_days = 30'
    )
    accounts.write_text(text, encoding="utf-8")
    with_credits(billing, "g,acct_plain,5.00,USD,2026-11-01T00:00:00Z,,purchased,INV-8,\n")
    billing.log("requests-2026-11-20.jsonl", [input_tokens("n1", "2026-11-20T09:00:00Z", 2)])
    billing.nightly("2026-11-20")
    doc = statement(billing, "2026-11", tmp_path / "out")["acct_plain"]
    assert (doc.total_due, doc.credits_applied) == (D("0.00"), D("1.50"))
    html = render_html(doc)
    assert '<p class="due-note">Nothing to pay: the charges are covered by prepaid credit.</p>' in html
    assert "Payable by" not in html
    assert "Payable by 31 December 2026" in render_html(dataclasses.replace(doc, layout_version=3))


def test_a_statement_of_an_earlier_layout_draws_credit_for_its_own_adjustments(
    billing: Billing, tmp_path: Path
) -> None:
    """The review's case: layout 3 prints a late 100k x 6.5625/1M as 0.65 (the period's
    1.3125 -> 1.31 less the 0.66 issued), layout 4 as 0.66; the credit drawn must be the
    statement's own figure, or the statement is refused (credits above its charges) and its
    replay fails."""
    from datetime import date

    with_credits(billing, "g,acct_discount,5.00,USD,2026-11-01T00:00:00Z,,purchased,INV-9,\n")
    hundred_k = usage(100_000, 0)
    billing.log("requests-2026-11-20.jsonl", [record(event_id="n1", account_id="acct_discount", usage=hundred_k)])
    billing.nightly("2026-11-20")
    out = tmp_path / "out"
    jobs.run_statements(billing.settings, "2026-11", out, finalize=True, issue_date=date(2026, 12, 1), layout_version=3)
    late = record(event_id="late", account_id="acct_discount", ts="2026-11-30T10:00:00Z", usage=hundred_k)
    billing.log("requests-2026-12-01.jsonl", [late])
    billing.nightly("2026-12-01")
    result = jobs.run_statements(
        billing.settings, "2026-12", out, finalize=True, issue_date=date(2027, 1, 1), layout_version=3
    )
    [doc] = [st.document for st in result.statements]
    assert (doc.adjustments_total, doc.credits_applied, doc.total_due) == (D("0.65"), D("0.65"), D("0.00"))
    last = billing.one("SELECT max(run_id) FROM runs WHERE status = 'succeeded'")
    assert replay.verify_run(billing.settings, last).status == "MATCH"


def test_a_reprice_says_which_version_content_it_applied(billing: Billing, tmp_path: Path) -> None:
    """The audit's case: `replay --prices 2026-11-01` with an edited copy of that version gave
    a diff with no word that the version's content was not the one issued."""
    import dataclasses as dc

    billing.log("requests-2026-11-20.jsonl", [input_tokens("r1", "2026-11-20T09:00:00Z", 2)])  # 200k x 7.5 = 1.50
    billing.nightly("2026-11-20")
    statement(billing, "2026-11", tmp_path / "out", finalize=True)
    shipped = billing.settings.prices_dir / "2026-11-01.toml"
    same = replay.replay_period(billing.settings, "2026-11", tmp_path / "r1", prices="2026-11-01")
    issued_sha = same.priced_with[3] if same.priced_with else None
    assert same.priced_with is not None and same.priced_with[2] == issued_sha
    edited = tmp_path / "prices"
    edited.mkdir()
    text = shipped.read_text().replace('list_input_per_1m = "7.5"', 'list_input_per_1m = "9"', 1)
    (edited / "2026-11-01.toml").write_text(
        text.replace('upstream_input_per_1m = "5"', 'upstream_input_per_1m = "6"', 1)
    )
    report = replay.replay_period(
        dc.replace(billing.settings, prices_dir=edited), "2026-11", tmp_path / "r2", prices="2026-11-01"
    )
    assert report.priced_with is not None
    version, source, sha, then = report.priced_with
    assert (version, source, then) == ("2026-11-01", str(edited / "2026-11-01.toml"), issued_sha) and sha != then
    # 200k x 9/1M = 1.80 against the 1.50 issued
    assert [(d.old_amount, d.new_amount) for d in report.diffs] == [(D("1.50"), D("1.80"))]


def test_a_late_record_in_a_month_without_usage_is_paid_by_credit_granted_during_that_month(
    billing: Billing, tmp_path: Path
) -> None:
    """Found by an audit: December had no usage of its own, so its one adjustment was drawn at
    December's start, before the grant of 15 December, and asked 2.25 in money while 10.00 of
    prepaid credit stood unused. From layout 5 such a period draws at its end."""
    out = tmp_path / "out"
    with_credits(billing, "g,acct_plain,10.00,USD,2026-12-15T00:00:00Z,,purchased,INV-9,\n")
    billing.log("requests-2026-11-07.jsonl", [input_tokens("n1", "2026-11-07T09:00:00Z", 10)])  # 7.50
    billing.nightly("2026-11-07")
    statement(billing, "2026-11", out, finalize=True)  # no credit yet: 7.50 due
    billing.log("requests-2026-12-20.jsonl", [input_tokens("late", "2026-11-07T10:00:00Z", 3)])  # 2.25
    billing.nightly("2026-12-20")
    dec = statement(billing, "2026-12", out, finalize=True)["acct_plain"]
    # adjustment +300,000 tokens x 7.50/1M = 2.25, paid by the grant: 10.00 - 2.25 = 7.75 left
    assert (dec.usage_total, dec.adjustments_total, dec.credits_applied, dec.total_due) == (
        D("0.00"), D("2.25"), D("2.25"), D("0.00"))  # fmt: skip
    assert dec.credits is not None and (dec.credits.granted, dec.credits.closing) == (D("10.00"), D("7.75"))
    assert credit_rows(billing) == [
        ("g", "granted", "12-15 00:00", D("10.00")), ("g", "applied", "01-01 00:00", D("2.25"))]  # fmt: skip
    # the lines CSV (layout 5) has the credit as a row, so its rows add up to the 0.00 due
    lines = list(
        csv.DictReader(io.StringIO((out / "statements" / "2026-12" / "IG-2026-12-000002-lines.csv").read_text()))
    )
    assert [(r["kind"], r["amount_usd"]) for r in lines] == [("adjustment", "2.25"), ("prepaid_credit", "-2.25")]
    report = replay.replay_period(billing.settings, "2026-12", tmp_path / "replay")
    assert report.checks and report.matches, report.checks


def test_a_late_record_in_a_month_without_usage_draws_first_from_credit_expiring_that_month(
    billing: Billing, tmp_path: Path
) -> None:
    """The other side of drawing such a month's adjustments at its end (found by the change's
    review): a grant expiring on 15 December pays them at December's start, as before layout 5,
    and only what no grant then could pay waits for the month's end."""
    out = tmp_path / "out"
    with_credits(billing, "g,acct_plain,10.00,USD,2026-11-01T00:00:00Z,2026-12-15T00:00:00Z,promotional,P-1,\n")
    billing.log("requests-2026-11-07.jsonl", [input_tokens("n1", "2026-11-07T09:00:00Z", 10)])  # 7.50
    billing.nightly("2026-11-07")
    statement(billing, "2026-11", out, finalize=True)  # 7.50 drawn, 2.50 left
    billing.log("requests-2026-12-20.jsonl", [input_tokens("late", "2026-11-07T10:00:00Z", 3)])  # 2.25
    billing.nightly("2026-12-20")
    dec = statement(billing, "2026-12", out, finalize=True)["acct_plain"]
    # 2.25 drawn on 1 December from the 2.50 left; the other 0.25 expires on the 15th
    assert (dec.adjustments_total, dec.credits_applied, dec.total_due) == (D("2.25"), D("2.25"), D("0.00"))
    assert dec.credits is not None and (dec.credits.expired, dec.credits.closing) == (D("0.25"), D("0.00"))
    assert credit_rows(billing)[-2:] == [
        ("g", "applied", "12-01 00:00", D("2.25")),
        ("g", "expired", "12-15 00:00", D("0.25")),
    ]
