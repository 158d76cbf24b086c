"""Credit note rule 2: a credit note against period P's statement, issued after a later
statement already refunded P's money through a negative prior-period adjustment, does not
refund that money again (docs/invoicing.md "Credit notes", "Money left to credit").

acct_de (domestic, VAT 19%), grant g of 5.00. November: request r1 bills 1,000,000 input
tokens of openai/gpt-5.5 at 7.50/1M = 7.50 (line 1); 5.00 paid with prepaid credit, 2.50 asked
in money + VAT 0.475 -> 0.48 = 2.98. In December a late retry of r1 (attempt 2) supersedes
attempt 1 with fewer tokens, so December's statement (layout 7) carries a negative adjustment
of November: money first (the 2.50 November asked), the rest restored to prepaid credit.
Every figure is worked out by hand.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from facturx import get_xml_from_pdf, xml_check_xsd

from core.db import connect
from core.money import D
from pipeline import credit_notes, replay
from pipeline.cli.report import print_credit_note
from tests.conftest import Billing
from tests.test_credit_restore import _attempt, _german_account_with, _statement
from tests.test_invoicing import _pdf_text

RAM = "{urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100}"
GRANT = "g,acct_de,5.00,USD,2026-11-01T00:00:00Z,,purchased,INV-1,\n"


def _november_then_december(  # type: ignore[no-untyped-def]
    billing: Billing, tmp_path: Path, retry_tokens: int, e_invoice: bool = False
):
    """November issued (7.50, 5.00 prepaid, 2.50 + 0.48 in money), then December issued with
    r1's late retry of ``retry_tokens`` (``e_invoice``: acct_de receives EN 16931 e-invoices)."""
    out = _german_account_with(billing, tmp_path, GRANT)
    if e_invoice:
        accounts = billing.settings.accounts_file
        accounts.write_text(
            accounts.read_text(encoding="utf-8").replace(
                'id = "acct_de"\n',
                'id = "acct_de"\ne_invoice = "factur-x"\ncountry = "DE"\n'
                'address = ["Friedrichstrasse 68", "10117 Berlin", "Germany"]\n',
                1,
            ),
            encoding="utf-8",
        )
    _attempt(billing, "2026-11-07", "a1", "r1", 1, "2026-11-07T09:00:00Z", 1_000_000)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    assert (nov.usage_total, nov.credits_applied, nov.net_amount, nov.tax_amount, nov.total_due) == (
        D("7.50"), D("5.00"), D("2.50"), D("0.48"), D("2.98"))  # fmt: skip
    _attempt(billing, "2026-12-10", "a2", "r1", 2, "2026-11-07T09:05:00Z", retry_tokens)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    return str(nov.statement_number), dec, out


def _note(billing: Billing, number: str, out: Path, rule: int = credit_notes.MONEY_RULE):  # type: ignore[no-untyped-def]
    return credit_notes.issue_credit_note(
        billing.settings, number, "Outage on 7 November", out, line_nos=[1], issue_date=date(2027, 1, 10),
        money_rule=rule,
    )  # fmt: skip


def _note_csv(out: Path, number: str) -> list[tuple[str, str, str]]:
    path = out / "credit_notes" / "2026-11" / f"{number}-lines.csv"
    rows = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))
    return [(r["kind"], r["model_name"], r["amount_usd"]) for r in rows]


def _replays_match(billing: Billing, tmp_path: Path, verify: bool = False) -> None:
    """``replay --period`` of both months MATCHes (statements and credit notes, byte for byte);
    ``verify``: ``replay --verify`` of the last run too (every run re-executed: slow)."""
    for period in ("2026-11", "2026-12"):
        report = replay.replay_period(billing.settings, period, tmp_path / f"replay-{period}")
        assert report.checks and report.matches, report.checks
    if not verify:
        return
    # the credit-note run re-executes with the rule recorded in its arguments
    last = billing.one("SELECT max(run_id) FROM runs WHERE status = 'succeeded'")
    verified = replay.verify_run(billing.settings, last)
    assert verified.status == "MATCH", verified.steps


def test_a_credit_note_after_december_refunded_novembers_money_credits_nothing_again(
    billing: Billing, tmp_path: Path
) -> None:
    # December: -500,000 x 7.50/1M = -3.75 of November: the 2.50 asked in money refunded with
    # its VAT (-0.48), the other 1.25 restored to prepaid credit: total due -2.98
    nov, dec, out = _november_then_december(billing, tmp_path, 500_000)
    assert (dec.adjustments_total, dec.credits_restored, dec.net_amount, dec.tax_amount, dec.total_due) == (
        D("-3.75"), D("1.25"), D("-2.50"), D("-0.48"), D("-2.98"))  # fmt: skip
    # a credit note on November's line 1 would credit 2.50 + 0.48 a second time (rule 1): all
    # the money November asked is given back, so it credits 0.00 and says why: refused
    with pytest.raises(credit_notes.CreditNoteError) as refused:
        _note(billing, nov, out)
    message = refused.value.message
    assert f"refunded on statement {dec.statement_number}" in message, message
    assert "(2.50) is already given back: 2.50 of it" in message, message
    assert billing.one("SELECT count(*) FROM credit_notes") == 0
    # the old rule (what notes issued before rule 2 were computed with) credited it again
    con = connect(billing.settings.db_path, read_only=True)
    try:
        old = credit_notes.plan(con, nov, [1], money_rule=1)
    finally:
        con.close()
    assert (old.net, old.tax, old.prepaid_retained) == (D("2.50"), D("0.48"), D("5.00"))
    _replays_match(billing, tmp_path)


def test_a_credit_note_after_a_partial_refund_credits_exactly_the_rest_with_the_remaining_tax(
    billing: Billing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # December: -100,000 x 7.50/1M = -0.75 of November, all of it within the 2.50 asked in
    # money: refunded in money, nothing restored; VAT 19% of -0.75 = -0.1425 -> -0.14
    nov, dec, out = _november_then_december(billing, tmp_path, 900_000)
    assert (dec.adjustments_total, dec.credits_restored, dec.net_amount, dec.tax_amount, dec.total_due) == (
        D("-0.75"), D("0.00"), D("-0.75"), D("-0.14"), D("-0.89"))  # fmt: skip
    # the note of line 1 (7.50): 5.00 was prepaid (kept), 0.75 already refunded by December,
    # so it credits 2.50 - 0.75 = 1.75. Tax: it completes what is left, so it takes the rest
    # of November's VAT, 0.48 - 0.14 (the VAT on December's 0.75) = 0.34 (0.3325 -> 0.33 on
    # its own): total 2.09; with December's 0.89, 2.98 = exactly what November asked
    issued = _note(billing, nov, out)
    doc = issued.document
    assert (doc.lines_total, doc.prepaid_retained, doc.refunded, doc.net_amount) == (
        D("7.50"), D("5.00"), D("0.75"), D("1.75"))  # fmt: skip
    assert (doc.tax_rule, doc.tax_amount, doc.total_credited) == ("remainder", D("0.34"), D("2.09"))
    assert doc.refunded_on == dec.statement_number
    assert billing.query("SELECT money_rule, refunded_usd, refunded_on, net_usd, tax_usd FROM credit_notes") == [
        (2, D("0.75"), dec.statement_number, D("1.75"), D("0.34"))
    ]
    capsys.readouterr()
    print_credit_note(issued)  # what the credit-note command prints
    assert (
        f"1 line(s) 7.50, net 1.75 (0.75 already refunded on statement {dec.statement_number}, not credited), "
        "VAT 19% 0.34, total credited 2.09" in capsys.readouterr().out
    )
    number = doc.credit_note_number
    assert _note_csv(out, number) == [
        ("usage", "OpenAI GPT-5.5", "7.50"),
        ("prepaid_retained", "Paid with prepaid credit, not credited", "-5.00"),
        ("refunded", f"Already refunded on statement {dec.statement_number}, not credited", "-0.75"),
        ("tax", "VAT 19%", "0.34"),
    ]
    text = " ".join(_pdf_text(out / "credit_notes" / "2026-11", number).split())
    for printed in (f"Already refunded on statement {dec.statement_number}, not credited", "$2.09"):
        assert printed in text, printed
    # nothing is left: a further note (of the same line: refused as credited; the rule's own
    # refusal is the first test's)
    with pytest.raises(credit_notes.CreditNoteError):
        _note(billing, nov, out)
    _replays_match(billing, tmp_path, verify=True)


def test_the_old_order_a_credit_note_then_the_adjustment_still_holds_back(billing: Billing, tmp_path: Path) -> None:
    out = _german_account_with(billing, tmp_path, GRANT)
    _attempt(billing, "2026-11-07", "a1", "r1", 1, "2026-11-07T09:00:00Z", 1_000_000)
    nov = str(_statement(billing, out, "2026-11", date(2026, 12, 1)).statement_number)
    # the note first: 7.50, 5.00 prepaid kept, 2.50 + 0.48 credited; nothing refunded yet
    doc = credit_notes.issue_credit_note(
        billing.settings, nov, "Outage on 7 November", out, line_nos=[1], issue_date=date(2026, 12, 5)
    ).document
    assert (doc.prepaid_retained, doc.refunded, doc.net_amount, doc.tax_amount, doc.total_credited) == (
        D("5.00"), D("0.00"), D("2.50"), D("0.48"), D("2.98"))  # fmt: skip
    assert billing.query("SELECT money_rule, refunded_usd, refunded_on FROM credit_notes") == [(2, D("0.00"), None)]
    # then the retry: -3.75 of a line credited in full holds back (layout 5): 0.00, nothing
    # refunded, nothing restored (the note kept the prepaid part)
    _attempt(billing, "2026-12-10", "a2", "r1", 2, "2026-11-07T09:05:00Z", 500_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    assert (dec.adjustments_total, dec.credits_restored, dec.net_amount, dec.total_due) == (
        D("0.00"), D("0.00"), D("0.00"), D("0.00"))  # fmt: skip
    _replays_match(billing, tmp_path)


def test_a_note_of_the_old_rule_keeps_its_figures_and_replays(billing: Billing, tmp_path: Path) -> None:
    """A credit-note run recorded before rule 2 (re-executed by replay --verify with rule 1)
    credits as it did, and its stored row (NULL rule) rebuilds the same bytes."""
    nov, dec, out = _november_then_december(billing, tmp_path, 500_000)
    doc = _note(billing, nov, out, rule=1).document
    assert (doc.refunded, doc.net_amount, doc.tax_amount, doc.total_credited) == (
        D("0.00"), D("2.50"), D("0.48"), D("2.98"))  # fmt: skip
    assert billing.query("SELECT money_rule, refunded_usd, refunded_on FROM credit_notes") == [(None, None, None)]
    assert [kind for kind, _, _ in _note_csv(out, doc.credit_note_number)] == ["usage", "prepaid_retained", "tax"]
    _replays_match(billing, tmp_path, verify=True)


def test_an_e_invoice_note_adds_the_refunded_part_to_its_allowance(billing: Billing, tmp_path: Path) -> None:
    """The same partial refund for an e-invoice account: the XML's one document allowance is
    what the note does not credit, 5.00 prepaid + 0.75 already refunded = 5.75, so its tax basis
    is the printed net 1.75 (BR-CO-13: 7.50 - 5.75) and its totals the printed ones."""
    nov, dec, out = _november_then_december(billing, tmp_path, 900_000, e_invoice=True)
    doc = _note(billing, nov, out).document
    assert doc.e_invoice == "factur-x"
    name, xml = get_xml_from_pdf((out / "credit_notes" / "2026-11" / f"{doc.credit_note_number}.pdf").read_bytes())
    assert name == "factur-x.xml"
    xml_check_xsd(xml, flavor="factur-x", level="en16931")
    root = ET.fromstring(xml)
    summation = root.find(f".//{RAM}SpecifiedTradeSettlementHeaderMonetarySummation")
    assert summation is not None
    assert {child.tag.removeprefix(RAM): D(child.text or "") for child in summation} == {
        "LineTotalAmount": D("7.50"),
        "AllowanceTotalAmount": D("5.75"),
        "TaxBasisTotalAmount": D("1.75"),
        "TaxTotalAmount": D("0.34"),
        "GrandTotalAmount": D("2.09"),
        "DuePayableAmount": D("2.09"),
    }
    allowance = root.find(f".//{RAM}ApplicableHeaderTradeSettlement/{RAM}SpecifiedTradeAllowanceCharge")
    assert allowance is not None
    assert allowance.findtext(f"{RAM}Reason") == (
        f"Paid with prepaid credit or already refunded on statement {dec.statement_number}, not credited"
    )
    _replays_match(billing, tmp_path)
