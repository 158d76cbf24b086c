"""Credit notes as EN 16931 e-invoices (issue 16 items 4-5): a credit note against a statement
of an account marked ``e_invoice = "factur-x"`` is PDF/A-3 with an embedded Factur-X credit
note (type code 381, profile EN 16931) referencing the statement, amounts positive and equal to
the printed ones; unmarked accounts' credit notes stay plain PDFs. Amounts by hand in comments."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import textwrap
from datetime import date
from decimal import Decimal
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from facturx import get_xml_from_pdf, xml_check_xsd
from pypdf import PdfReader

from core.money import D, tax_on
from pipeline import credit_notes, jobs, replay
from pipeline.credit_notes import issue_credit_note
from reports import einvoice
from tests.conftest import Billing, record, usage

ISSUER = Path(__file__).parent / "issuer-de.toml"  # InferGate Europe GmbH, Berlin, 19% VAT
ISSUED = date(2026, 12, 1)
CREDITED = date(2026, 12, 10)

ACCOUNTS_TOML = textwrap.dedent(
    """
    [[accounts]]
    id = "acct_de"
    legal_name = "Berlin Buyer GmbH"
    address = ["Friedrichstrasse 68", "10117 Berlin", "Germany"]
    country = "DE"
    e_invoice = "factur-x"
    tax_treatment = "domestic"
    vat_id = "DE812345673"
    payment_terms_days = 14

    [[accounts]]
    id = "acct_pre"
    legal_name = "Prepaid Buyer GmbH"
    address = ["Karl-Marx-Allee 1", "10178 Berlin", "Germany"]
    country = "DE"
    e_invoice = "factur-x"
    tax_treatment = "domestic"
    vat_id = "DE812345673"

    [[accounts]]
    id = "acct_plain"
    legal_name = "Plain GmbH"
    tax_treatment = "domestic"
    """
)

CREDITS_CSV = (
    "grant_id,account_id,amount,currency,granted_at,expires_at,kind,external_ref,reverses\n"
    "paid-1,acct_pre,5.00,USD,2026-11-01T00:00:00Z,,purchased,INV-7,\n"
)

RAM = "{urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100}"
QDT = "{urn:un:unece:uncefact:data:standard:QualifiedDataType:100}"


@dataclasses.dataclass
class Issued:
    billing: Billing
    folder: Path  # OUT/credit_notes/2026-11
    statements: dict[str, str]  # account -> statement number


def _line_no(billing: Billing, number: str, token_class: str) -> int:
    return billing.one(
        "SELECT line_no FROM statement_issued_lines WHERE statement_number = ? AND token_class = ?",
        [number, token_class],
    )


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Issued:
    """November issued by the German issuer; then four credit notes:
    CN-2026-000001 part of acct_de's statement, CN-2026-000002 the rest of it (remainder tax),
    CN-2026-000003 a line of acct_pre's statement, partly paid with prepaid credit,
    CN-2026-000004 a line of the unmarked acct_plain's statement."""
    root = tmp_path_factory.mktemp("cn_einvoice")
    billing = Billing(root)
    (root / "credits.csv").write_text(CREDITS_CSV, encoding="utf-8")
    billing.settings.accounts_file.write_text(ACCOUNTS_TOML, encoding="utf-8")
    billing.settings = dataclasses.replace(billing.settings, issuer_file=ISSUER, credits_file=root / "credits.csv")
    billing.log("requests-2026-11-20.jsonl", [
        # acct_de, GPT-5.5: input 1,000,000 x 7.50/1M = 7.50; cached 200,000 x 7.50/1M = 1.50;
        # output 56,667 x 45/1M = 2.550015 -> 2.55; charges 11.55, VAT 2.1945 -> 2.19, due 13.74
        record(account_id="acct_de", usage=usage(1_200_000, 56_667, cached=200_000)),
        # acct_pre: 7.50 + 2.55 = 10.05, prepaid 5.00 applied, net 5.05, VAT 0.9595 -> 0.96, due 6.01
        record(account_id="acct_pre", usage=usage(1_000_000, 56_667)),
        # acct_plain: 7.50 + 2.55 = 10.05, VAT 1.9095 -> 1.91
        record(account_id="acct_plain", usage=usage(1_000_000, 56_667)),
    ])  # fmt: skip
    billing.nightly("2026-11-20")
    out = root / "out"
    jobs.run_statements(billing.settings, "2026-11", out, finalize=True, issue_date=ISSUED)
    numbers = {
        a: billing.one("SELECT statement_number FROM statements WHERE account_id = ?", [a])
        for a in ("acct_de", "acct_pre", "acct_plain")
    }
    de = numbers["acct_de"]
    part = [_line_no(billing, de, "output"), _line_no(billing, de, "input_cached")]
    issue_credit_note(billing.settings, de, "Outage on 20 November", out, line_nos=part, issue_date=CREDITED)
    issue_credit_note(billing.settings, de, "Rest of November", out, issue_date=CREDITED)
    pre = numbers["acct_pre"]
    line = _line_no(billing, pre, "input_uncached")
    issue_credit_note(billing.settings, pre, "Wrong model", out, line_nos=[line], issue_date=CREDITED)
    plain = numbers["acct_plain"]
    line = _line_no(billing, plain, "output")
    issue_credit_note(billing.settings, plain, "Output billed twice", out, line_nos=[line], issue_date=CREDITED)
    return Issued(billing, out / "credit_notes" / "2026-11", numbers)


def _pdf(issued: Issued, number: str) -> bytes:
    return (issued.folder / f"{number}.pdf").read_bytes()


def _text(pdf: bytes) -> str:
    return " ".join(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages).split())


def _xml(pdf: bytes) -> ET.Element:
    name, xml = get_xml_from_pdf(pdf, check_xsd=True)
    assert name == "factur-x.xml"
    xml_check_xsd(xml, flavor="factur-x", level="en16931")  # the official schema, by the library
    return ET.fromstring(xml)


def _totals(root: ET.Element) -> dict[str, Decimal]:
    summation = root.find(f".//{RAM}SpecifiedTradeSettlementHeaderMonetarySummation")
    assert summation is not None
    totals = {child.tag.removeprefix(RAM): D(child.text or "") for child in summation}
    line_totals = root.iterfind(f".//{RAM}SpecifiedTradeSettlementLineMonetarySummation/{RAM}LineTotalAmount")
    totals["sum_of_lines"] = sum((D(e.text or "") for e in line_totals), D(0))
    breakdown = root.find(f".//{RAM}ApplicableHeaderTradeSettlement/{RAM}ApplicableTradeTax")
    assert breakdown is not None
    totals["BasisAmount"] = D(breakdown.findtext(f"{RAM}BasisAmount") or "")
    totals["CalculatedAmount"] = D(breakdown.findtext(f"{RAM}CalculatedAmount") or "")
    return totals


def _header(root: ET.Element) -> tuple[str, str, str, str, str, str]:
    """BT-1, BT-3, BT-2, BT-25, BT-26, BT-118: number, type code, issue date, preceding invoice
    and its issue date, VAT category."""
    ref = root.find(f".//{RAM}ApplicableHeaderTradeSettlement/{RAM}InvoiceReferencedDocument")
    assert ref is not None
    return (
        root.findtext(f".//{{*}}ExchangedDocument/{RAM}ID") or "",
        root.findtext(f".//{{*}}ExchangedDocument/{RAM}TypeCode") or "",
        root.findtext(f".//{{*}}ExchangedDocument/{RAM}IssueDateTime/{{*}}DateTimeString") or "",
        ref.findtext(f"{RAM}IssuerAssignedID") or "",
        ref.findtext(f"{RAM}FormattedIssueDateTime/{QDT}DateTimeString") or "",
        root.findtext(f".//{RAM}ApplicableHeaderTradeSettlement/{RAM}ApplicableTradeTax/{RAM}CategoryCode") or "",
    )


def _claims_pdfa3(pdf: bytes) -> bool:
    catalog = PdfReader(io.BytesIO(pdf)).trailer["/Root"]
    xmp = catalog["/Metadata"].get_object().get_data().decode("utf-8")
    return bool(re.search(r"<pdfaid:part>3</pdfaid:part>", xmp)) and "/OutputIntents" in catalog


def test_part_of_a_domestic_statement_is_an_en16931_credit_note(issued: Issued) -> None:
    pdf = _pdf(issued, "CN-2026-000001")
    root = _xml(pdf)
    statement = issued.statements["acct_de"]
    assert _header(root) == ("CN-2026-000001", "381", "20261210", statement, "20261201", "S")
    # the output and cached lines: 2.55 + 1.50 = 4.05; VAT 19% x 4.05 = 0.7695 -> 0.77 (half-up);
    # total credited 4.05 + 0.77 = 4.82; all positive (a credit note's amounts are what it credits)
    assert _totals(root) == {
        "sum_of_lines": D("4.05"),
        "LineTotalAmount": D("4.05"),
        "TaxBasisTotalAmount": D("4.05"),
        "BasisAmount": D("4.05"),
        "TaxTotalAmount": D("0.77"),
        "CalculatedAmount": D("0.77"),
        "GrandTotalAmount": D("4.82"),
        "DuePayableAmount": D("4.82"),
    }
    # the invoice lines are the statement's line numbers, as the note prints them
    line_ids = [e.text for e in root.iterfind(f".//{RAM}AssociatedDocumentLineDocument/{RAM}LineID")]
    credited = sorted(_line_no(issued.billing, statement, c) for c in ("output", "input_cached"))
    assert line_ids == [str(n) for n in credited]
    text = _text(pdf)
    for printed in (f"Credit note CN-2026-000001 for statement {statement}", "Lines credited $4.05",
                    "VAT 19% on $4.05 $0.77", "Total credited (USD) $4.82", "$2.55", "$1.50"):  # fmt: skip
        assert printed in text, (printed, text)
    raw = ET.tostring(root, encoding="unicode")
    for term in ("DE123456788", "DE812345673", "Reason: Outage on 20 November", einvoice.CREDIT_NOTE_TERMS):
        assert term in raw, term  # seller and buyer VAT IDs, the reason as a note, BT-20 (no due date)
    assert "DueDateDateTime" not in raw and "AllowanceTotalAmount" not in raw
    assert _claims_pdfa3(pdf)


def test_the_note_completing_a_statement_carries_the_printed_remainder_tax(issued: Issued) -> None:
    pdf = _pdf(issued, "CN-2026-000002")
    root = _xml(pdf)  # XSD-valid although BR-CO-17 (tax = basis x rate, rounded) is a cent off
    assert _header(root)[:4] == ("CN-2026-000002", "381", "20261210", issued.statements["acct_de"])
    # the rest: the 7.50 input line; tax_on(7.50) = 1.425 -> 1.43, but the statement charged 2.19
    # and CN-2026-000001 credited 0.77: this note credits the remainder 2.19 - 0.77 = 1.42 (as
    # printed), total 7.50 + 1.42 = 8.92; both notes: 4.82 + 8.92 = 13.74 = the statement's due
    assert tax_on(D("7.50"), D("19")) == D("1.43")
    totals = _totals(root)
    assert (totals["LineTotalAmount"], totals["TaxBasisTotalAmount"], totals["CalculatedAmount"],
            totals["TaxTotalAmount"], totals["GrandTotalAmount"], totals["DuePayableAmount"]) == (
        D("7.50"), D("7.50"), D("1.42"), D("1.42"), D("8.92"), D("8.92"))  # fmt: skip
    text = _text(pdf)
    assert "VAT 19%, remainder of the statement\u2019s $1.42" in text and "Total credited (USD) $8.92" in text


def test_prepaid_credit_kept_by_the_statement_is_a_document_allowance(issued: Issued) -> None:
    pdf = _pdf(issued, "CN-2026-000003")
    root = _xml(pdf)
    assert _header(root)[1:5] == ("381", "20261210", issued.statements["acct_pre"], "20261201")
    # the 7.50 line credits at most the statement's net 5.05: 7.50 - 5.05 = 2.45 was prepaid credit
    # (BG-20 allowance, BT-107), tax basis 7.50 - 2.45 = 5.05, VAT 5.05 x 19% = 0.9595 -> 0.96,
    # total 5.05 + 0.96 = 6.01 = what the statement asked to be paid
    assert _totals(root) == {
        "sum_of_lines": D("7.50"),
        "LineTotalAmount": D("7.50"),
        "AllowanceTotalAmount": D("2.45"),
        "TaxBasisTotalAmount": D("5.05"),
        "BasisAmount": D("5.05"),
        "TaxTotalAmount": D("0.96"),
        "CalculatedAmount": D("0.96"),
        "GrandTotalAmount": D("6.01"),
        "DuePayableAmount": D("6.01"),
    }
    allowance = root.find(f".//{RAM}ApplicableHeaderTradeSettlement/{RAM}SpecifiedTradeAllowanceCharge")
    assert allowance is not None and allowance.findtext(f"{RAM}Reason") == "Paid with prepaid credit, not credited"
    text = _text(pdf)
    for printed in ("Paid with prepaid credit, not credited \u2212$2.45", "VAT 19% on $5.05 $0.96",
                    "Total credited (USD) $6.01"):  # fmt: skip
        assert printed in text, (printed, text)
    assert _claims_pdfa3(pdf)


def test_an_unmarked_accounts_credit_note_is_the_plain_pdf(issued: Issued) -> None:
    pdf = _pdf(issued, "CN-2026-000004")
    reader = PdfReader(io.BytesIO(pdf))
    assert "/AF" not in reader.trailer["/Root"] and "/Metadata" not in reader.trailer["/Root"]
    assert issued.billing.one(
        "SELECT e_invoice IS NULL AND account_country IS NULL FROM credit_notes WHERE credit_note_number = ?",
        ["CN-2026-000004"],
    )
    html = issued.billing.one(
        "SELECT content FROM credit_note_files WHERE credit_note_number = 'CN-2026-000004' AND kind = 'html'"
    )
    from reports.render import pdf_bytes

    assert pdf == pdf_bytes(bytes(html).decode("utf-8"))  # what every credit note was before
    # 10.05 of which the 2.55 output line: VAT 2.55 x 19% = 0.4845 -> 0.48; total 3.03
    assert "Total credited (USD) $3.03" in _text(pdf)


def test_an_e_invoice_credit_note_renders_to_the_same_bytes_again(issued: Issued) -> None:
    con = jobs.connect(issued.billing.settings.db_path, read_only=True)
    try:
        doc = credit_notes.document_from_stored(con, "CN-2026-000003")
    finally:
        con.close()
    assert doc.e_invoice == "factur-x" and doc.account.country == "DE" and doc.issuer.country == "DE"
    first, second = credit_notes.render_files(doc)["pdf"][1], credit_notes.render_files(doc)["pdf"][1]
    stored = issued.billing.one(
        "SELECT sha256 FROM credit_note_files WHERE credit_note_number = 'CN-2026-000003' AND kind = 'pdf'"
    )
    assert first == second == _pdf(issued, "CN-2026-000003")
    assert hashlib.sha256(first).hexdigest() == stored
    assert einvoice.build_xml(doc) == einvoice.build_xml(doc)  # pure: same document, same bytes


def test_replay_and_verify_reproduce_e_invoice_credit_notes(issued: Issued, tmp_path: Path) -> None:
    report = replay.replay_period(issued.billing.settings, "2026-11", tmp_path / "replay")
    notes = {c.statement_number for c in report.checks if c.statement_number.startswith("CN-")}
    assert notes == {f"CN-2026-00000{n}" for n in range(1, 5)}
    assert report.matches, report.checks
    run_id = issued.billing.one(
        "SELECT run_id FROM credit_notes WHERE credit_note_number = 'CN-2026-000003'"
    )  # the prepaid e-invoice note: re-executed from its recorded arguments
    verified = replay.verify_run(issued.billing.settings, run_id)
    assert verified.status == "MATCH", verified.differences
