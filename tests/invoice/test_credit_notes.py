"""Credit notes (issue 16 item 4): whole lines of an issued statement credited with a reason,
numbered in their own gap-free sequence, immutable, taxed like the statement, rendered as PDF +
CSV, in the finance summary and replayed byte for byte. Amounts worked out by hand in comments."""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from pypdf import PdfReader

from core.money import D
from pipeline import credit_notes, jobs, replay
from pipeline.cli import cli
from pipeline.credit_notes import CreditNoteError, issue_credit_note
from reports.finance import FINANCE_COLUMNS, finance_summary
from tests.conftest import Billing, BuiltOnce, record, usage
from tests.test_invoicing import ACCOUNTS_TOML, ISSUER_TOML

ISSUED = date(2026, 12, 1)
CREDITED = date(2026, 12, 10)


def _build_issued(billing: Billing) -> None:
    root = billing.root
    (root / "issuer.toml").write_text(ISSUER_TOML, encoding="utf-8")
    billing.settings.accounts_file.write_text(ACCOUNTS_TOML, encoding="utf-8")
    billing.settings = dataclasses.replace(billing.settings, issuer_file=root / "issuer.toml")
    billing.log("requests-2026-11-20.jsonl", [
        # acct_de, GPT-5.5 (cached input at the input price 7.50):
        #   input   1,000,000 x 7.50/1M = 7.50
        #   cached    200,000 x 7.50/1M = 1.50
        #   output     56,667 x 45/1M   = 2.550015 -> 2.55
        # charges 11.55; VAT 19% = 2.1945 -> 2.19; total due 13.74
        record(account_id="acct_de", usage=usage(1_200_000, 56_667, cached=200_000)),
        # acct_nl (reverse charge): 7.50 + 2.55 = 10.05, no VAT
        record(account_id="acct_nl", usage=usage(1_000_000, 56_667)),
    ])  # fmt: skip
    billing.nightly("2026-11-20")
    out = root / "out"
    jobs.run_statements(billing.settings, "2026-11", out, finalize=True, issue_date=ISSUED)


@pytest.fixture(scope="module")
def _issued_once(tmp_path_factory: pytest.TempPathFactory) -> BuiltOnce:
    return BuiltOnce(tmp_path_factory, "issued", _build_issued)


@pytest.fixture
def issued(_issued_once: BuiltOnce) -> tuple[Billing, Path]:
    """November issued by a German issuer (19% VAT) to a domestic and a reverse-charge account;
    built once per module, a fresh copy for each test."""
    billing = _issued_once.restore()
    return billing, billing.root / "out"


def _statement(billing: Billing, account: str) -> str:
    return billing.one("SELECT statement_number FROM statements WHERE account_id = ?", [account])


def _line_no(billing: Billing, number: str, token_class: str) -> int:
    return billing.one(
        "SELECT line_no FROM statement_issued_lines WHERE statement_number = ? AND token_class = ?",
        [number, token_class],
    )


def _csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def _text(path: Path) -> str:
    return " ".join(" ".join(page.extract_text() for page in PdfReader(path).pages).split())


def test_part_of_a_domestic_statement_then_the_rest(issued) -> None:
    billing, out = issued
    number = _statement(billing, "acct_de")
    assert billing.one("SELECT net_usd, tax_usd, total_due_usd FROM statement_invoicing WHERE statement_number = ?",
                       [number]) == (D("11.55"), D("2.19"), D("13.74"))  # fmt: skip
    output, cached = _line_no(billing, number, "output"), _line_no(billing, number, "input_cached")
    first = issue_credit_note(billing.settings, number, "Outage on 20 November", out,
                              line_nos=[output, cached], issue_date=CREDITED)  # fmt: skip
    doc = first.document
    # 2 of 3 lines: 2.55 + 1.50 = 4.05; VAT 19% x 4.05 = 0.7695 -> 0.77 (half-up crosses the half cent)
    assert first.number == "CN-2026-000001"
    assert (doc.lines_total, doc.net_amount, doc.tax_amount, doc.total_credited, doc.tax_rule) == (
        D("4.05"), D("4.05"), D("0.77"), D("4.82"), "on_net")  # fmt: skip
    folder = out / "credit_notes" / "2026-11"
    assert sorted(p.name for p in folder.iterdir()) == ["CN-2026-000001-lines.csv", "CN-2026-000001.pdf"]
    rows = _csv(folder / "CN-2026-000001-lines.csv")
    assert [(r["line_no"], r["kind"], r["amount_usd"]) for r in rows] == [
        *sorted([(str(cached), "usage", "1.50"), (str(output), "usage", "2.55")]),
        ("", "tax", "0.77"),
    ]
    assert all(r["statement_number"] == number for r in rows)
    text = _text(folder / "CN-2026-000001.pdf")
    for printed in (f"Credit note CN-2026-000001 for statement {number}", "Reason: Outage on 20 November",
                    "VAT 19% on $4.05 $0.77", "Total credited (USD) $4.82", "InferGate Europe GmbH",
                    "VAT ID DE812345673", "10 December 2026"):  # fmt: skip
        assert printed in text, printed

    # the rest: 7.50 left of a net of 11.55 - 4.05; tax_on(7.50) = 1.425 -> 1.43, but the
    # statement charged 2.19 and 0.77 is credited: the note completing it credits 1.42
    second = issue_credit_note(billing.settings, number, "Rest of November", out, issue_date=CREDITED)
    doc = second.document
    assert second.number == "CN-2026-000002"  # gap-free, one sequence
    assert (doc.lines_total, doc.tax_amount, doc.total_credited, doc.tax_rule) == (
        D("7.50"), D("1.42"), D("8.92"), "remainder")  # fmt: skip
    # both notes credit exactly what the statement charged: 4.82 + 8.92 = 13.74
    assert billing.one("SELECT sum(total_credited_usd), sum(tax_usd) FROM credit_notes") == (D("13.74"), D("2.19"))

    # the finance summary appends the credit notes; the columns before are unchanged
    assert FINANCE_COLUMNS[17:20] == ("net_usd", "tax_usd", "total_due_usd")
    assert FINANCE_COLUMNS[20:24] == ("credit_notes_net_usd", "credit_notes_tax_usd", "credit_notes_usd",
                                      "total_due_after_credit_notes_usd")  # fmt: skip
    assert FINANCE_COLUMNS[24:] == ("credits_restored_usd",)  # layout 7, appended after them
    con = jobs.connect(billing.settings.db_path, read_only=True)
    try:
        rows_by_account = {r[0]: r[17:] for r in finance_summary(con, "2026-11")}
    finally:
        con.close()
    # net 11.55, tax 2.19, due 13.74; credited 4.05 + 7.50 = 11.55 net, 0.77 + 1.42 = 2.19 tax
    assert rows_by_account["acct_de"] == (D("11.55"), D("2.19"), D("13.74"), D("11.55"), D("2.19"), D("13.74"),
                                          D("0.00"), D("0.00"))  # fmt: skip
    assert rows_by_account["acct_nl"][-5:-1] == (D("0.00"), D("0.00"), D("0.00"), D("10.05"))


def test_a_whole_statement_credit_note(issued) -> None:
    billing, out = issued
    number = _statement(billing, "acct_nl")
    result = CliRunner().invoke(cli, [
        "--db", str(billing.settings.db_path), "--accounts", str(billing.settings.accounts_file),
        "--issuer", str(billing.settings.issuer_file), "--no-snapshot",
        "credit-note", "--statement", number, "--all", "--reason", "Billed in error",
        "--issue-date", "2026-12-10", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    # 7.50 + 2.55 = 10.05, reverse charge: no VAT; total credited 10.05
    assert billing.one("SELECT credit_note_number, lines_usd, net_usd, tax_usd, total_credited_usd, tax_treatment "
                       "FROM credit_notes") == ("CN-2026-000001", D("10.05"), D("10.05"), D("0.00"), D("10.05"),
                                                "eu_reverse_charge")  # fmt: skip
    text = _text(out / "credit_notes" / "2026-11" / "CN-2026-000001.pdf")
    assert "Reverse charge: VAT to be accounted for by the recipient" in text
    assert "Total credited (USD) $10.05" in text


def test_over_crediting_and_drafts_are_refused(issued) -> None:
    billing, out = issued
    number = _statement(billing, "acct_de")
    output = _line_no(billing, number, "output")
    issue_credit_note(billing.settings, number, "Outage", out, line_nos=[output], issue_date=CREDITED)
    with pytest.raises(CreditNoteError, match=f"line {output} of {number} .* already credited by CN-2026-000001"):
        issue_credit_note(billing.settings, number, "Again", out, line_nos=[output], issue_date=CREDITED)
    issue_credit_note(billing.settings, number, "The rest", out, issue_date=CREDITED)
    with pytest.raises(CreditNoteError, match="every line .* is already credited"):
        issue_credit_note(billing.settings, number, "Once more", out, issue_date=CREDITED)
    # a statement of an open period has no number: nothing issued can be credited
    with pytest.raises(CreditNoteError, match="IGE-2026-12-000009 is not an issued statement"):
        issue_credit_note(billing.settings, "IGE-2026-12-000009", "Draft", out, issue_date=CREDITED)
    # refused runs use no number: the sequence stays gap-free
    assert billing.query("SELECT sequence_no FROM credit_notes ORDER BY 1") == [(1,), (2,)]
    result = CliRunner().invoke(cli, ["--db", str(billing.settings.db_path), "--no-snapshot", "credit-note",
                                      "--statement", number, "--line", str(output), "--reason", "x"])  # fmt: skip
    assert result.exit_code == 1 and "already credited" in result.output


def test_replay_reproduces_credit_notes_byte_for_byte(issued, tmp_path: Path) -> None:
    billing, out = issued
    number = _statement(billing, "acct_de")
    issue_credit_note(billing.settings, number, "Outage", out, line_nos=[1, 2], issue_date=CREDITED)
    run_id = billing.one("SELECT max(run_id) FROM runs WHERE command = 'credit-note' AND status = 'succeeded'")
    verified = replay.verify_run(billing.settings, run_id)
    assert verified.status == "MATCH", verified.differences
    report = replay.replay_period(billing.settings, "2026-11", tmp_path / "replay")
    notes = [c for c in report.checks if c.statement_number == "CN-2026-000001"]
    assert sorted(c.kind for c in notes) == ["html", "lines_csv", "pdf"]
    assert report.matches, report.checks


def test_credit_notes_rendered_before_the_preparsed_stylesheets_replay_byte_for_byte(
    issued, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14: WeasyPrint gets the inline stylesheets parsed once per process. A credit note
    issued before (WeasyPrint parsing its <style> itself) still replays to the same PDF bytes."""
    from reports import pdf

    billing, out = issued
    with monkeypatch.context() as before:
        before.setattr(pdf, "_stylesheets", lambda document, fetcher: [])  # the inline path
        issue_credit_note(billing.settings, _statement(billing, "acct_de"), "Outage", out, line_nos=[1, 2],
                          issue_date=CREDITED)  # fmt: skip
        issue_credit_note(billing.settings, _statement(billing, "acct_nl"), "Outage", out, line_nos=[1],
                          issue_date=CREDITED)  # fmt: skip
    report = replay.replay_period(billing.settings, "2026-11", tmp_path / "replay")
    notes = [c for c in report.checks if c.statement_number.startswith("CN-")]
    assert sorted(c.kind for c in notes) == ["html", "html", "lines_csv", "lines_csv", "pdf", "pdf"]
    assert report.matches, report.checks


def test_prepaid_credit_applied_on_the_statement_is_not_credited_in_money(billing: Billing, tmp_path: Path) -> None:
    from tests.test_credits import with_credits

    (tmp_path / "issuer.toml").write_text(ISSUER_TOML, encoding="utf-8")
    billing.settings.accounts_file.write_text(ACCOUNTS_TOML, encoding="utf-8")
    billing.settings = dataclasses.replace(billing.settings, issuer_file=tmp_path / "issuer.toml")
    with_credits(billing, "paid,acct_de,5.00,USD,2026-11-01T00:00:00Z,,purchased,INV-7,\n")
    # 7.50 input + 2.55 output = 10.05; 5.00 prepaid applied; net 5.05; VAT 0.9595 -> 0.96; due 6.01
    billing.log("requests-2026-11-20.jsonl", [record(account_id="acct_de", usage=usage(1_000_000, 56_667))])
    billing.nightly("2026-11-20")
    out = tmp_path / "out"
    jobs.run_statements(billing.settings, "2026-11", out, finalize=True, issue_date=ISSUED)
    number = _statement(billing, "acct_de")
    line = _line_no(billing, number, "input_uncached")
    doc = issue_credit_note(billing.settings, number, "Wrong model", out, line_nos=[line], issue_date=CREDITED).document
    # the 7.50 line credits at most the statement's net 5.05; 7.50 - 5.05 = 2.45 was prepaid credit
    # (stays used); VAT on 5.05 = 0.96, the statement's whole VAT; credited 6.01 = what it asked to pay
    assert (doc.lines_total, doc.prepaid_retained, doc.net_amount, doc.tax_amount, doc.total_credited) == (
        D("7.50"), D("2.45"), D("5.05"), D("0.96"), D("6.01"))  # fmt: skip
    text = _text(out / "credit_notes" / "2026-11" / "CN-2026-000001.pdf")
    assert "Paid with prepaid credit, not credited −$2.45" in text and "Total credited (USD) $6.01" in text
    rows = _csv(out / "credit_notes" / "2026-11" / "CN-2026-000001-lines.csv")
    assert [(r["kind"], r["amount_usd"]) for r in rows] == [("usage", "7.50"), ("prepaid_retained", "-2.45"),
                                                             ("tax", "0.96")]  # fmt: skip
    with pytest.raises(CreditNoteError, match="net amount of .* is already credited in full"):
        issue_credit_note(billing.settings, number, "Output too", out, issue_date=CREDITED)


def test_a_line_credited_in_full_is_not_refunded_again_when_a_late_retry_makes_it_smaller(
    billing: Billing, tmp_path: Path
) -> None:
    """Found by an audit: November's input line (1,200,000 tokens, 9.00) was credited in full
    by a credit note; a late attempt 2 of one request then billed 500,000 tokens instead of
    1,000,000, and December gave back -3.75 more: 9.00 + 3.75 back for usage now worth 5.25.
    From layout 5 a negative adjustment stops at what was paid for the line (issued less
    credited): here 9.00 - 9.00 = 0.00, and the line says why."""
    out = tmp_path / "out"
    first = record(request_id="r-1", attempt=1, ts="2026-11-10T12:00:00Z", usage=usage(1_000_000, 0))  # 7.50
    other = record(request_id="r-2", ts="2026-11-11T12:00:00Z", usage=usage(200_000, 0))  # 1.50
    billing.log("requests-2026-11-10.jsonl", [first, other])
    billing.nightly("2026-11-10")
    jobs.run_statements(billing.settings, "2026-11", out, finalize=True, issue_date=ISSUED)
    number = _statement(billing, "acct_plain")
    assert billing.one("SELECT total_usd FROM statements WHERE statement_number = ?", [number]) == D("9.00")
    line = _line_no(billing, number, "input_uncached")
    note = issue_credit_note(billing.settings, number, "Disputed", out, line_nos=[line], issue_date=CREDITED)
    assert note.document.total_credited == D("9.00")  # the line's one row holds both requests: 1.2M tokens
    retry = record(request_id="r-1", attempt=2, ts="2026-11-10T12:00:05Z", usage=usage(500_000, 0))
    billing.log("requests-2026-12-02.jsonl", [retry, record(ts="2026-12-02T09:00:00Z", usage=usage(100_000, 0))])
    billing.nightly("2026-12-02")
    dec = jobs.run_statements(billing.settings, "2026-12", out, finalize=True, issue_date=date(2027, 1, 1))
    doc = dec.statements[0].document
    # -500,000 tokens x 7.50/1M = -3.75, but the whole 9.00 of the line was credited: paid 0.00,
    # so nothing is given back again. December: its own 100,000 tokens = 0.75, due 0.75
    assert [(a.amount, a.description.endswith("$3.75 of it already credited by credit note, not refunded again"))
            for a in doc.adjustments] == [(D("0.00"), True)]  # fmt: skip
    assert (doc.usage_total, doc.adjustments_total, doc.total_due) == (D("0.75"), D("0.00"), D("0.75"))
    report = replay.replay_period(billing.settings, "2026-12", tmp_path / "replay")
    assert report.checks and report.matches, report.checks
    # January: attempt 3 brings r-1 back to 1,000,000 tokens: +500,000 tokens = +3.75, all of it
    # the 3.75 held back in December, so 0.00 again: the line credited in full holds what it held
    # when it was credited, and the customer pays nothing for it (found by the change's review)
    third = record(request_id="r-1", attempt=3, ts="2026-11-10T12:00:09Z", usage=usage(1_000_000, 0))
    billing.log("requests-2027-01-02.jsonl", [third])
    billing.nightly("2027-01-02")
    jan = jobs.run_statements(billing.settings, "2027-01", out, finalize=True, issue_date=date(2027, 2, 1))
    [adjustment] = jan.statements[0].document.adjustments
    assert adjustment.amount == D("0.00")
    assert adjustment.description.endswith("$3.75 of it held back before, as already credited, not billed again")
    report = replay.replay_period(billing.settings, "2027-01", tmp_path / "replay")
    assert report.checks and report.matches, report.checks


def test_a_negative_adjustment_of_a_line_not_credited_is_given_back_in_full(billing: Billing, tmp_path: Path) -> None:
    """The rule only holds back what credit notes already gave back: without a credit note the
    late retry's -3.75 is an adjustment of -3.75 (7.50 issued, 3.75 now)."""
    out = tmp_path / "out"
    first = record(request_id="r-1", attempt=1, ts="2026-11-10T12:00:00Z", usage=usage(1_000_000, 0))
    billing.log("requests-2026-11-10.jsonl", [first])
    billing.nightly("2026-11-10")
    jobs.run_statements(billing.settings, "2026-11", out, finalize=True, issue_date=ISSUED)
    retry = record(request_id="r-1", attempt=2, ts="2026-11-10T12:00:05Z", usage=usage(500_000, 0))
    billing.log("requests-2026-12-02.jsonl", [retry])
    billing.nightly("2026-12-02")
    dec = jobs.run_statements(billing.settings, "2026-12", out, finalize=True, issue_date=date(2027, 1, 1))
    assert [a.amount for a in dec.statements[0].document.adjustments] == [D("-3.75")]


def test_a_note_says_a_negative_line_not_prepaid_credit_left_part_of_a_line_uncredited(
    billing: Billing, tmp_path: Path
) -> None:
    """Found by an audit: on an account without prepaid credit the note printed "Paid with
    prepaid credit, not credited" for the part of a line that the statement's negative
    adjustment had offset. From layout 5 it names the cause."""
    out = tmp_path / "out"
    first = record(request_id="r-1", attempt=1, ts="2026-11-10T12:00:00Z", usage=usage(400_000, 0))  # 3.00
    billing.log("requests-2026-11-10.jsonl", [first])
    billing.nightly("2026-11-10")
    jobs.run_statements(billing.settings, "2026-11", out, finalize=True, issue_date=ISSUED)
    retry = record(request_id="r-1", attempt=2, ts="2026-11-10T12:00:05Z", usage=usage(100_000, 0))  # 0.75
    december = record(ts="2026-12-02T09:00:00Z", usage=usage(1_000_000, 0))  # 7.50
    billing.log("requests-2026-12-02.jsonl", [retry, december])
    billing.nightly("2026-12-02")
    jobs.run_statements(billing.settings, "2026-12", out, finalize=True, issue_date=date(2027, 1, 1))
    number = billing.one("SELECT statement_number FROM statements WHERE period = '2026-12'")
    # 7.50 usage - 2.25 adjustment (-300,000 tokens x 7.50/1M) = 5.25 asked; rule 5 gives back
    # the line's 7.50 (the -2.25 was November's genuine refund, paid out with December:
    # tests/test_credit_note_rule5.py); up to rule 4 a note stopped at the net, 5.25, and 2.25
    # was never asked for: offset, not prepaid credit (the label checked here)
    con = jobs.connect(billing.settings.db_path, read_only=True)
    try:
        assert credit_notes.plan(con, number, [1]).net == D("7.50")
    finally:
        con.close()
    doc = issue_credit_note(
        billing.settings, number, "Wrong model", out, line_nos=[1], issue_date=date(2027, 1, 2), money_rule=4
    )
    assert (doc.document.lines_total, doc.document.prepaid_retained, doc.document.total_credited) == (
        D("7.50"), D("2.25"), D("5.25"))  # fmt: skip
    text = _text(out / "credit_notes" / "2026-12" / "CN-2027-000001.pdf")
    assert "Offset by the statement's negative lines, not credited −$2.25" in text
    assert "prepaid" not in text.lower()
    rows = _csv(out / "credit_notes" / "2026-12" / "CN-2027-000001-lines.csv")
    assert [(r["kind"], r["model_name"], r["amount_usd"]) for r in rows][1:] == [
        ("prepaid_retained", "Offset by the statement's negative lines, not credited", "-2.25")]  # fmt: skip
    con = jobs.connect(billing.settings.db_path, read_only=True)
    try:  # rebuilt from its stored rows, the note gives its stored bytes
        assert all(same for _, _, same in credit_notes.reproduce(con, "2026-12", db=""))
    finally:
        con.close()
