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
from core.money import D, Decimal
from pipeline import credit_notes, jobs, replay
from pipeline.cli.report import print_credit_note
from tests.conftest import Billing, BuiltOn, BuiltOnce, record, usage
from tests.test_credit_restore import _attempt, _german_account_with, _statement
from tests.test_invoicing import _pdf_text

RAM = "{urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100}"
GRANT = "g,acct_de,5.00,USD,2026-11-01T00:00:00Z,,purchased,INV-1,\n"


def _november(billing: Billing, e_invoice: bool = False) -> str:
    """November issued (7.50, 5.00 prepaid, 2.50 + 0.48 in money), statements into
    ``<root>/out`` (``e_invoice``: acct_de receives EN 16931 e-invoices): its statement number."""
    out = _german_account_with(billing, billing.root, GRANT)
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
    return str(nov.statement_number)


def _december(billing: Billing, retry_tokens: int):  # type: ignore[no-untyped-def]
    """December issued with r1's late retry of ``retry_tokens``: its statement."""
    _attempt(billing, "2026-12-10", "a2", "r1", 2, "2026-11-07T09:05:00Z", retry_tokens)
    return _statement(billing, billing.root / "out", "2026-12", date(2027, 1, 1))


def _november_then_december(billing: Billing, retry_tokens: int, e_invoice: bool = False):  # type: ignore[no-untyped-def]
    """:func:`_november` then :func:`_december`: November's number, December's statement, the output folder."""
    nov = _november(billing, e_invoice)
    return nov, _december(billing, retry_tokens), billing.root / "out"


@pytest.fixture(scope="module")
def _november_once(tmp_path_factory: pytest.TempPathFactory) -> BuiltOnce:
    return BuiltOnce(tmp_path_factory, "november", _november)


@pytest.fixture
def november(_november_once: BuiltOnce) -> tuple[Billing, str, Path]:
    """:func:`_november` built once per module, a fresh copy for each test: the billing, November's
    statement number, the output folder."""
    billing = _november_once.restore()
    return billing, _november_once.value, billing.root / "out"


def _retry(billing: Billing) -> None:
    """After :func:`_november`, r1's late retry of 500,000 tokens rated (December's nightly):
    :func:`_december` of 500,000 tokens before its statement run."""
    _attempt(billing, "2026-12-10", "a2", "r1", 2, "2026-11-07T09:05:00Z", 500_000)


@pytest.fixture(scope="module")
def _retried_once(tmp_path_factory: pytest.TempPathFactory, _november_once: BuiltOnce) -> BuiltOnce:
    return BuiltOn(tmp_path_factory, "retried", _november_once, _retry)


@pytest.fixture
def retried(_november_once: BuiltOnce, _retried_once: BuiltOnce) -> tuple[Billing, str, Path]:
    """``november`` then r1's retry of 500,000 tokens rated (:func:`_retry`), December not issued;
    built once per module: the billing, November's statement number, the output folder."""
    billing = _retried_once.restore()
    return billing, _november_once.value, billing.root / "out"


@pytest.fixture(scope="module")
def _refunded_once(tmp_path_factory: pytest.TempPathFactory, _retried_once: BuiltOnce) -> BuiltOnce:
    # :func:`_november_then_december` of 500,000 tokens: December's statement on the retry built once
    return BuiltOn(
        tmp_path_factory,
        "refunded",
        _retried_once,
        lambda billing: _statement(billing, billing.root / "out", "2026-12", date(2027, 1, 1)),
    )


@pytest.fixture
def refunded(_november_once: BuiltOnce, _refunded_once: BuiltOnce):  # type: ignore[no-untyped-def]
    """November, then December with a retry of 500,000 tokens (-3.75 of November: 2.50 refunded
    in money, 1.25 restored), built once per module: billing, November's number, December's
    statement, the output folder."""
    billing = _refunded_once.restore()
    return billing, _november_once.value, _refunded_once.value, billing.root / "out"


def _note(  # type: ignore[no-untyped-def]
    billing: Billing, number: str, out: Path, rule: int = credit_notes.MONEY_RULE, lines: tuple[int, ...] = (1,),
    issue_date: date = date(2027, 1, 10),
):  # fmt: skip
    return credit_notes.issue_credit_note(
        billing.settings, number, "Outage on 7 November", out, line_nos=list(lines), issue_date=issue_date,
        money_rule=rule,
    )  # fmt: skip


def _two_lines(billing: Billing, day: str, event: str, attempt: int, ts: str, prompt: int, completion: int) -> None:
    """Request r1's attempt ``attempt`` for acct_de: ``prompt`` input tokens (line 1, 7.50/1M)
    and ``completion`` output tokens (line 2, 45/1M), then the day's nightly."""
    one = record(event_id=event, request_id="r1", attempt=attempt, account_id="acct_de", ts=ts,
                 usage=usage(prompt, completion))  # fmt: skip
    billing.log(f"requests-{day}-{event}.jsonl", [one])
    billing.nightly(day)


def _figures(st) -> tuple[Decimal, ...]:  # type: ignore[no-untyped-def]
    return (st.adjustments_total, st.credits_restored, st.net_amount, st.tax_amount, st.total_due)


def _draft_figures(billing: Billing, tmp_path: Path, period: str, layout: int) -> tuple[Decimal, ...]:
    """:func:`_figures` of the account's draft statement of ``period`` under an earlier
    ``layout`` (nothing issued): what that layout's rules would have billed."""
    drafts = jobs.run_statements(billing.settings, period, tmp_path / f"draft-{period}-{layout}", layout_version=layout)
    return _figures(next(st.document for st in drafts.statements))


def _money(doc) -> tuple:  # type: ignore[no-untyped-def]
    """A note's figures: lines, prepaid kept, already refunded, net, tax rule, tax, total."""
    return (doc.lines_total, doc.prepaid_retained, doc.refunded, doc.net_amount, doc.tax_rule, doc.tax_amount,
            doc.total_credited)  # fmt: skip


def _note_csv(out: Path, number: str) -> list[tuple[str, str, str]]:
    path = out / "credit_notes" / "2026-11" / f"{number}-lines.csv"
    rows = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))
    return [(r["kind"], r["model_name"], r["amount_usd"]) for r in rows]


def _replays_match(
    billing: Billing, tmp_path: Path, verify: bool = False, periods: tuple[str, ...] = ("2026-11", "2026-12")
) -> None:
    """``replay --period`` of each month MATCHes (statements and credit notes, byte for byte);
    ``verify``: ``replay --verify`` of the last run too (every run re-executed: slow)."""
    for period in periods:
        report = replay.replay_period(billing.settings, period, tmp_path / f"replay-{period}")
        assert report.checks and report.matches, report.checks
    if not verify:
        return
    # the credit-note run re-executes with the rule recorded in its arguments
    last = billing.one("SELECT max(run_id) FROM runs WHERE status = 'succeeded'")
    verified = replay.verify_run(billing.settings, last)
    assert verified.status == "MATCH", verified.steps


def test_a_credit_note_after_december_refunded_novembers_money_credits_nothing_again(refunded, tmp_path: Path) -> None:
    # December: -500,000 x 7.50/1M = -3.75 of November: the 2.50 asked in money refunded with
    # its VAT (-0.48), the other 1.25 restored to prepaid credit: total due -2.98
    billing, nov, dec, out = refunded
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


def test_a_note_after_a_partial_refund_credits_the_rest_and_the_tokens_coming_back_are_not_billed_again(
    november, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # December: -100,000 x 7.50/1M = -0.75 of November, all of it within the 2.50 asked in
    # money: refunded in money, nothing restored; VAT 19% of -0.75 = -0.1425 -> -0.14
    billing, nov, out = november
    dec = _december(billing, 900_000)
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
        (credit_notes.MONEY_RULE, D("0.75"), dec.statement_number, D("1.75"), D("0.34"))
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
    # January: a third attempt of r1 brings the 1,000,000 tokens back: +100,000 x 7.50/1M = +0.75
    # of November's line 1. The line is credited in full (note: 1.75 + 5.00 prepaid kept + 0.75
    # refunded by December), so January takes the 0.75 back like a hold-back and bills 0.00, as
    # in the old order (note, December holds back, January releases). Before: +0.75 + VAT 0.14 =
    # 0.89, so the customer paid 2.98 - 0.89 - 2.09 + 0.89 = 0.89 for a line credited in full
    _attempt(billing, "2027-01-12", "a3", "r1", 3, "2026-11-07T09:10:00Z", 1_000_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert _figures(jan) == (D("0.00"), D("0.00"), D("0.00"), D("0.00"), D("0.00"))
    assert D("2.98") + dec.total_due - doc.total_credited + jan.total_due == 0
    # line 1 was stored with the 0.75 it was not credited as already refunded
    assert billing.query("SELECT line_no, amount_usd, refunded_usd FROM credit_note_lines") == [
        (1, D("7.50"), D("0.75"))
    ]
    _replays_match(billing, tmp_path, periods=("2027-01",))


def test_the_old_order_a_credit_note_then_the_adjustment_still_holds_back(november, tmp_path: Path) -> None:
    billing, nov, out = november
    # the note first: 7.50, 5.00 prepaid kept, 2.50 + 0.48 credited; nothing refunded yet
    doc = credit_notes.issue_credit_note(
        billing.settings, nov, "Outage on 7 November", out, line_nos=[1], issue_date=date(2026, 12, 5)
    ).document
    assert (doc.prepaid_retained, doc.refunded, doc.net_amount, doc.tax_amount, doc.total_credited) == (
        D("5.00"), D("0.00"), D("2.50"), D("0.48"), D("2.98"))  # fmt: skip
    rule = credit_notes.MONEY_RULE
    assert billing.query("SELECT money_rule, refunded_usd, refunded_on FROM credit_notes") == [(rule, D("0.00"), None)]
    # then the retry: -3.75 of a line credited in full holds back (layout 5): 0.00, nothing
    # refunded, nothing restored (the note kept the prepaid part)
    _attempt(billing, "2026-12-10", "a2", "r1", 2, "2026-11-07T09:05:00Z", 500_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    assert (dec.adjustments_total, dec.credits_restored, dec.net_amount, dec.total_due) == (
        D("0.00"), D("0.00"), D("0.00"), D("0.00"))  # fmt: skip
    _replays_match(billing, tmp_path)


def test_a_note_of_the_old_rule_keeps_its_figures_and_replays(refunded, tmp_path: Path) -> None:
    """A credit-note run recorded before rule 2 (re-executed by replay --verify with rule 1)
    credits as it did, and its stored row (NULL rule) rebuilds the same bytes."""
    billing, nov, _, out = refunded
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
    nov, dec, out = _november_then_december(billing, 900_000, e_invoice=True)
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


def test_a_note_on_a_line_gets_back_at_most_that_line_less_its_own_refund(billing: Billing, tmp_path: Path) -> None:
    """Rule 2 is per line (keyed as statement_lines_due.sql keys lines), bounded by the
    statement's money left: a refund of line 1 is not taken from line 2, nor line 1's from the
    statement's net only (which let line 1 get back more than it was billed)."""
    out = _german_account_with(billing, tmp_path, "")  # no grants: all money
    # November: 800,000 input x 7.50/1M = 6.00 (line 1) + 100,000 output x 45/1M = 4.50 (line 2)
    # = 10.50, VAT 19% 1.995 -> 2.00, total 12.50
    _two_lines(billing, "2026-11-07", "a1", 1, "2026-11-07T09:00:00Z", 800_000, 100_000)
    st = _statement(billing, out, "2026-11", date(2026, 12, 1))
    nov = str(st.statement_number)
    assert (st.net_amount, st.tax_amount, st.total_due) == (D("10.50"), D("2.00"), D("12.50"))
    # December: a retry with 600,000 input: -200,000 x 7.50/1M = -1.50 of line 1, refunded in
    # money, VAT -0.285 -> -0.29, total -1.79
    _two_lines(billing, "2026-12-10", "a2", 2, "2026-11-07T09:05:00Z", 600_000, 100_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    assert _figures(dec) == (D("-1.50"), D("0.00"), D("-1.50"), D("-0.29"), D("-1.79"))
    # a note on line 1: 6.00 billed, 1.50 of it refunded by December: 4.50, VAT on its own
    # 0.855 -> 0.86 (9.00 of the money is left, so it completes nothing), total 5.36. Before:
    # 6.00 + 1.14, 0.00 refunded: line 1 got 7.50 + VAT back
    first = _note(billing, nov, out, lines=(1,)).document
    assert _money(first) == (D("6.00"), D("0.00"), D("1.50"), D("4.50"), "on_net", D("0.86"), D("5.36"))
    assert first.refunded_on == dec.statement_number
    # a note on line 2: nothing of it refunded: 4.50, which completes the money left (10.50 -
    # 4.50 - 1.50), so the rest of the VAT: 2.00 - 0.86 - 0.29 (December's) = 0.85, total 5.35
    second = _note(billing, nov, out, lines=(2,)).document
    assert _money(second) == (D("4.50"), D("0.00"), D("0.00"), D("4.50"), "remainder", D("0.85"), D("5.35"))
    # given back in all 5.36 + 5.35 + 1.79 = 12.50, what November asked
    assert first.total_credited + second.total_credited - dec.total_due == st.total_due == D("12.50")
    _replays_match(billing, tmp_path)


def test_a_note_on_a_line_december_did_not_refund_says_the_rest_was_prepaid(billing: Billing, tmp_path: Path) -> None:
    out = _german_account_with(billing, tmp_path, GRANT)
    # November: 1,000,000 input = 7.50 (line 1) + 100,000 output = 4.50 (line 2) = 12.00, 5.00
    # prepaid, net 7.00, VAT 1.33, total 8.33
    _two_lines(billing, "2026-11-07", "a1", 1, "2026-11-07T09:00:00Z", 1_000_000, 100_000)
    st = _statement(billing, out, "2026-11", date(2026, 12, 1))
    nov = str(st.statement_number)
    assert (st.net_amount, st.tax_amount, st.total_due) == (D("7.00"), D("1.33"), D("8.33"))
    # December: 200,000 input: -800,000 x 7.50/1M = -6.00 of line 1, within the 7.00 asked in
    # money: all refunded in money, VAT -1.14, total -7.14
    _two_lines(billing, "2026-12-10", "a2", 2, "2026-11-07T09:05:00Z", 200_000, 100_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    assert _figures(dec) == (D("-6.00"), D("0.00"), D("-6.00"), D("-1.14"), D("-7.14"))
    # a note on line 2 (4.50): December refunded none of it; 7.00 - 6.00 = 1.00 of the money is
    # left: it credits 1.00 + VAT 0.19 (= 1.33 - 1.14), and the other 3.50 was paid with
    # prepaid credit, not "already refunded" (before: 3.50 "Already refunded on ...")
    doc = _note(billing, nov, out, lines=(2,)).document
    assert _money(doc) == (D("4.50"), D("3.50"), D("0.00"), D("1.00"), "on_net", D("0.19"), D("1.19"))
    assert [kind for kind, _, _ in _note_csv(out, doc.credit_note_number)] == ["usage", "prepaid_retained", "tax"]
    assert doc.total_credited - dec.total_due == st.total_due  # 1.19 + 7.14 = 8.33
    # line 1 then: all the money is given back, refused
    with pytest.raises(credit_notes.CreditNoteError) as refused:
        _note(billing, nov, out, lines=(1,))
    assert refused.value.message == (
        f"the money {nov} asked for 2026-11 (7.00) is already given back: 6.00 of it refunded on statement "
        f"{dec.statement_number} (negative prior-period adjustments of 2026-11); the rest by earlier credit "
        "notes (1.00)"
    )
    _replays_match(billing, tmp_path)


def test_a_refund_over_two_statements_deducts_the_tax_each_of_them_refunded(november, tmp_path: Path) -> None:
    # December: 996,000 tokens: -4,000 x 7.50/1M = -0.03, VAT 0.0057 -> -0.01, total -0.04;
    # January: 992,000: another -0.03, VAT -0.01, total -0.04
    billing, nov, out = november
    dec = _december(billing, 996_000)
    assert _figures(dec) == (D("-0.03"), D("0.00"), D("-0.03"), D("-0.01"), D("-0.04"))
    _attempt(billing, "2027-01-12", "a3", "r1", 3, "2026-11-07T09:10:00Z", 992_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert _figures(jan) == (D("-0.03"), D("0.00"), D("-0.03"), D("-0.01"), D("-0.04"))
    # the note: 2.50 - 0.06 = 2.44; the VAT left is 0.48 - 0.01 - 0.01 = 0.46 (each statement's
    # VAT on its refund; before: tax_on(0.06) = 0.01 once, so 0.47 and 2.99 given back in all)
    doc = _note(billing, nov, out, issue_date=date(2027, 2, 10)).document
    assert _money(doc) == (D("7.50"), D("5.00"), D("0.06"), D("2.44"), "on_net", D("0.46"), D("2.90"))
    assert doc.refunded_on == f"{dec.statement_number}, {jan.statement_number}"
    assert doc.total_credited - dec.total_due - jan.total_due == D("2.98")  # what November asked
    _replays_match(billing, tmp_path, periods=("2026-11", "2026-12", "2027-01"))


def test_the_refunds_named_are_those_no_later_positive_adjustment_reversed() -> None:
    """The statements' nets of a period in issue order (> 0 refunded, < 0 asked in money)."""
    standing = credit_notes._standing
    # December refunds 0.75, January asks it again, February refunds 0.75: February's stands
    assert standing([("DEC", D("0.75")), ("JAN", D("-0.75")), ("FEB", D("0.75"))]) == (D("0.75"), ("FEB",))
    # December asks 0.50 more, January refunds 0.75: 0.25 of January's stands
    assert standing([("DEC", D("-0.50")), ("JAN", D("0.75"))]) == (D("0.25"), ("JAN",))
    # refunds 0.03 and 0.03, then an ask of 0.04: 0.02 of the first stands
    assert standing([("DEC", D("0.03")), ("JAN", D("0.03")), ("FEB", D("-0.04"))]) == (D("0.02"), ("DEC",))


def test_a_refusal_after_a_layout_6_refund_says_what_was_refunded_beyond_the_money(retried) -> None:
    # December of layout 6 refunds all of -500,000 x 7.50/1M = -3.75 in money (no restoration),
    # though November asked 2.50 in money: the refusal says both figures
    billing, nov, out = retried  # the attempt of 500,000 tokens rated: :func:`_retry`
    run = jobs.run_statements(billing.settings, "2026-12", out, finalize=True, issue_date=date(2027, 1, 1),
                              layout_version=6)  # fmt: skip
    dec = next(st.document for st in run.statements if st.account_id == "acct_de")
    assert _figures(dec) == (D("-3.75"), D("0.00"), D("-3.75"), D("-0.71"), D("-4.46"))
    with pytest.raises(credit_notes.CreditNoteError) as refused:
        _note(billing, nov, out)
    assert refused.value.message == (
        f"the money {nov} asked for 2026-11 (2.50) is already given back: 2.50 of it refunded on statement "
        f"{dec.statement_number} (negative prior-period adjustments of 2026-11), which refunded 3.75 in money "
        "in all: the other 1.25 beyond the money asked"
    )
