"""EN 16931 e-invoices (issue 16 item 5): accounts marked ``e_invoice = "factur-x"`` get a
PDF/A-3 statement with an embedded Factur-X XML (profile EN 16931) whose amounts are the
printed ones. Every amount is worked out by hand in the comment next to it."""

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

from core.errors import UsageProblem
from core.money import D
from pipeline import jobs, replay, statements
from pipeline.accounts import AccountsError, parse_accounts
from pipeline.issuer import IssuerError, check_accounts, parse_issuer
from reports import einvoice
from reports.render import render_html, statement_pdf
from tests.conftest import Billing, record, usage

ISSUER_TOML = textwrap.dedent(
    """
    legal_name = "InferGate Europe GmbH"
    address = ["Torstrasse 49", "10119 Berlin", "Germany"]
    email = "billing@useinfergate.com"
    tax_id = "Steuernummer 37/123/45678"
    vat_id = "DE 123 456 788"
    registration = "Amtsgericht Charlottenburg, HRB 123456 B"
    remittance = ["IBAN DE89 3704 0044 0532 0130 00", "BIC COBADEFFXXX"]
    statement_number_prefix = "IGE"
    country = "DE"
    domestic_tax_rate_pct = "19"
    default_payment_terms_days = 30
    """
)

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
    po_reference = "PO-2026-0457"

    [[accounts]]
    id = "acct_nl"
    legal_name = "Amsterdam Buyer B.V."
    address = ["Herengracht 420", "1017 BZ Amsterdam", "Netherlands"]
    country = "NL"
    e_invoice = "factur-x"
    tax_treatment = "eu_reverse_charge"
    vat_id = "NL004495445B01"

    [[accounts]]
    id = "acct_exempt"
    legal_name = "International Organisation"
    address = ["Route de Ferney 1", "1211 Geneva", "Switzerland"]
    country = "CH"
    e_invoice = "factur-x"
    tax_treatment = "exempt"
    tax_note = "Exempt from VAT: supply to an international organisation (section 4 no. 7 UStG)"

    [[accounts]]
    id = "acct_plain"
    legal_name = "Plain GmbH"
    tax_treatment = "domestic"
    """
)

CREDITS_CSV = (
    "grant_id,account_id,amount,currency,granted_at,expires_at,kind,external_ref,reverses\n"
    "promo-1,acct_de,5.00,USD,2026-11-01T00:00:00Z,,promotional,CAMPAIGN-1,\n"
)

RAM = "{urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100}"


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> tuple[Billing, Path]:
    """November issued by a German issuer to a domestic account with $5.00 of prepaid credit,
    a reverse-charge and an exempt account (all three e-invoice), and an unmarked account."""
    root = tmp_path_factory.mktemp("einvoice")
    billing = Billing(root)
    (root / "issuer.toml").write_text(ISSUER_TOML, encoding="utf-8")
    (root / "credits.csv").write_text(CREDITS_CSV, encoding="utf-8")
    billing.settings.accounts_file.write_text(ACCOUNTS_TOML, encoding="utf-8")
    billing.settings = dataclasses.replace(
        billing.settings, issuer_file=root / "issuer.toml", credits_file=root / "credits.csv"
    )
    billing.log("requests-2026-11-20.jsonl", [
        # 1,000,000 x 7.50/1M = 7.50; 56,667 x 45/1M = 2.550015 -> 2.55; charges 10.05 each
        record(account_id=account, usage=usage(1_000_000, 56_667))
        for account in ("acct_de", "acct_nl", "acct_exempt", "acct_plain")
    ])  # fmt: skip
    billing.nightly("2026-11-20")
    jobs.run_statements(billing.settings, "2026-11", root / "out", finalize=True, issue_date=date(2026, 12, 1))
    return billing, root / "out" / "statements" / "2026-11"


def _number(billing: Billing, account: str) -> str:
    return billing.one("SELECT statement_number FROM statements WHERE account_id = ?", [account])


def _nl_statement(billing: Billing, number: str):
    """The reverse-charge account's November statement as issued under ``number``."""
    con = jobs.connect(billing.settings.db_path, read_only=True)
    try:
        lines = statements.due_lines(con, "2026-11", "acct_nl")["acct_nl"]
        return statements.build_document(con, "acct_nl", "2026-11", lines, number, date(2026, 12, 1))
    finally:
        con.close()


def _pdf(folder: Path, number: str) -> bytes:
    return (folder / f"{number}.pdf").read_bytes()


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
    return totals


def _breakdown(root: ET.Element) -> dict[str, str]:
    settlement = root.find(f".//{RAM}ApplicableHeaderTradeSettlement/{RAM}ApplicableTradeTax")
    assert settlement is not None
    return {child.tag.removeprefix(RAM): child.text or "" for child in settlement}


def _claims_pdfa3(pdf: bytes) -> bool:
    catalog = PdfReader(io.BytesIO(pdf)).trailer["/Root"]
    xmp = catalog["/Metadata"].get_object().get_data().decode("utf-8")
    return bool(re.search(r"<pdfaid:part>3</pdfaid:part>", xmp)) and "/OutputIntents" in catalog


def test_a_domestic_e_invoice_carries_the_printed_amounts_with_credit_as_an_allowance(issued) -> None:
    billing, folder = issued
    pdf = _pdf(folder, _number(billing, "acct_de"))
    root = _xml(pdf)
    # charges 10.05; prepaid credit applied 5.00 (the whole grant); net 10.05 - 5.00 = 5.05;
    # VAT 5.05 x 19% = 0.9595 -> 0.96 (half-up, once); total due 5.05 + 0.96 = 6.01
    assert _totals(root) == {
        "sum_of_lines": D("10.05"),
        "LineTotalAmount": D("10.05"),
        "AllowanceTotalAmount": D("5.00"),
        "TaxBasisTotalAmount": D("5.05"),
        "TaxTotalAmount": D("0.96"),
        "GrandTotalAmount": D("6.01"),
        "DuePayableAmount": D("6.01"),
    }
    assert _breakdown(root) == {
        "CalculatedAmount": "0.96", "TypeCode": "VAT", "BasisAmount": "5.05", "CategoryCode": "S",
        "RateApplicablePercent": "19",
    }  # fmt: skip
    text = _text(pdf)
    for printed in ("Prepaid credit applied", "\u2212$5.00", "Net amount $5.05", "VAT 19% on $5.05 $0.96",
                    "Total due (USD) $6.01", "$7.50", "$2.55", "PO-2026-0457"):  # fmt: skip
        assert printed in text, (printed, text)
    raw = ET.tostring(root, encoding="unicode")
    for term in ("DE123456788", "DE812345673", "PO-2026-0457", ">20261215<", ">Net 14 days<", ">20261201<"):
        assert term in raw, term  # seller and buyer VAT IDs, BT-13, due date, terms, issue date
    assert _claims_pdfa3(pdf)


def test_a_reverse_charge_e_invoice_is_category_ae_with_no_tax(issued) -> None:
    billing, folder = issued
    pdf = _pdf(folder, _number(billing, "acct_nl"))
    root = _xml(pdf)
    # charges 10.05, no credit, no tax: net = grand total = due = 10.05
    assert _totals(root) == {
        "sum_of_lines": D("10.05"),
        "LineTotalAmount": D("10.05"),
        "TaxBasisTotalAmount": D("10.05"),
        "TaxTotalAmount": D("0.00"),
        "GrandTotalAmount": D("10.05"),
        "DuePayableAmount": D("10.05"),
    }
    assert _breakdown(root) == {
        "CalculatedAmount": "0.00", "TypeCode": "VAT", "ExemptionReason": "Reverse charge", "BasisAmount": "10.05",
        "CategoryCode": "AE", "ExemptionReasonCode": "VATEX-EU-AE", "RateApplicablePercent": "0",
    }  # fmt: skip
    text = _text(pdf)
    assert "VAT: reverse charge $0.00" in text and "Total due (USD) $10.05" in text
    raw = ET.tostring(root, encoding="unicode")
    assert "NL004495445B01" in raw and "DE123456788" in raw and ">20261231<" in raw  # issuer default net 30
    assert _claims_pdfa3(pdf)


def test_an_exempt_e_invoice_is_category_e_with_the_reason(issued) -> None:
    billing, folder = issued
    pdf = _pdf(folder, _number(billing, "acct_exempt"))
    root = _xml(pdf)
    assert _totals(root)["TaxBasisTotalAmount"] == D("10.05") == _totals(root)["DuePayableAmount"]
    breakdown = _breakdown(root)
    assert (breakdown["CategoryCode"], breakdown["CalculatedAmount"], breakdown["RateApplicablePercent"]) == (
        "E",
        "0.00",
        "0",
    )
    assert "supply to an international organisation" in breakdown["ExemptionReason"]
    text = _text(pdf)
    assert "VAT: exempt $0.00" in text and "Total due (USD) $10.05" in text
    assert _claims_pdfa3(pdf)


def test_an_unmarked_account_gets_the_plain_pdf(issued) -> None:
    billing, folder = issued
    number = _number(billing, "acct_plain")
    pdf = _pdf(folder, number)
    reader = PdfReader(io.BytesIO(pdf))
    assert "/AF" not in reader.trailer["/Root"] and "/Metadata" not in reader.trailer["/Root"]
    # the same bytes the renderer gave before e-invoices existed: pdf_bytes of the stored HTML
    html = billing.one("SELECT content FROM statement_files WHERE statement_number = ? AND kind = 'html'", [number])
    from reports.render import pdf_bytes

    assert pdf == pdf_bytes(bytes(html).decode("utf-8"))


def test_an_e_invoice_is_rendered_byte_for_byte_again_from_the_database(issued) -> None:
    billing, folder = issued
    number = _number(billing, "acct_de")
    stored = billing.one("SELECT sha256 FROM statement_files WHERE statement_number = ? AND kind = 'pdf'", [number])
    con = jobs.connect(billing.settings.db_path, read_only=True)
    try:
        lines = statements.due_lines(con, "2026-11", "acct_de")["acct_de"]
        doc = statements.build_document(con, "acct_de", "2026-11", lines, number, date(2026, 12, 1))
    finally:
        con.close()
    again = statement_pdf(doc, render_html(doc))  # later, so another clock: same bytes
    assert hashlib.sha256(again).hexdigest() == stored == hashlib.sha256(_pdf(folder, number)).hexdigest()


def test_replay_and_verify_reproduce_an_e_invoice_period(issued, tmp_path: Path) -> None:
    billing, _ = issued
    report = replay.replay_period(billing.settings, "2026-11", tmp_path / "replay")
    assert report.checks and report.matches, report.checks
    run_id = billing.one("SELECT max(run_id) FROM runs WHERE status = 'succeeded'")
    verified = replay.verify_run(billing.settings, run_id)
    assert verified.status == "MATCH", verified.differences


def test_the_builder_takes_the_invoice_type_code(issued) -> None:
    billing, _ = issued
    doc = _nl_statement(billing, "IGE-CN-1")
    xml = einvoice.build_xml(doc, "381")
    xml_check_xsd(xml, flavor="factur-x", level="en16931")
    assert b"<ram:TypeCode>381</ram:TypeCode>" in xml
    assert einvoice.build_xml(doc) == einvoice.build_xml(doc)  # pure: same document, same bytes
    with pytest.raises(ValueError, match="type code"):
        einvoice.build_xml(doc, "999")
    with pytest.raises(ValueError, match="draft"):
        einvoice.build_xml(dataclasses.replace(doc, statement_number=None))


def test_the_seller_is_identified_by_its_registration_from_layout_4(issued) -> None:
    """EN 16931 BR-CO-26 (the CEN Schematron's one failure on the demo's e-invoices, found by an
    audit): a seller without a VAT ID in the XML (out of scope: BR-O-02) had no identifier.
    From layout 4 the issuer's registration is BT-30 as well; layout 3 keeps its bytes."""
    billing, _ = issued
    doc = _nl_statement(billing, "IGE-X-1")
    ns = {"ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"}
    seller = ".//ram:SellerTradeParty/ram:SpecifiedLegalOrganization/ram:ID"
    legal = ET.fromstring(einvoice.build_xml(doc)).find(seller, ns)
    assert legal is not None and legal.text == "Amtsgericht Charlottenburg, HRB 123456 B"
    xml_check_xsd(einvoice.build_xml(doc), flavor="factur-x", level="en16931")
    assert ET.fromstring(einvoice.build_xml(dataclasses.replace(doc, layout_version=3))).find(seller, ns) is None


# --- refused when loaded ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "field"),
    [
        ('address = ["1 Street"]\ntax_treatment = "exempt"\ntax_note = "n"', "country"),  # BT-55
        ('country = "DE"\ntax_treatment = "exempt"\ntax_note = "n"', "address"),  # BG-8
        ('country = "DE"\naddress = ["1 Street"]', "tax_treatment"),  # a VAT category
        ('country = "DE"\naddress = ["1 Street"]\ntax_treatment = "exempt"', "tax_note"),  # BT-120
        ('country = "Germany"\naddress = ["1 Street"]\ntax_treatment = "domestic"', "country"),  # ISO code
    ],
)
def test_an_e_invoice_account_without_what_en16931_requires_is_refused(account: str, field: str) -> None:
    data = f'[[accounts]]\nid = "acct_x"\nlegal_name = "X"\ne_invoice = "factur-x"\n{account}\n'.encode()
    with pytest.raises(AccountsError, match=rf"a\.toml: field accounts\.\[acct_x\]\.{field}"):
        parse_accounts(data, Path("a.toml"))


@pytest.mark.parametrize(
    ("issuer", "message"),
    [
        (ISSUER_TOML.replace('country = "DE"\n', ""), "issuer's country"),  # BT-40
        (ISSUER_TOML.replace("default_payment_terms_days = 30\n", ""), "due date"),  # BR-CO-25
    ],
)
def test_an_e_invoice_the_issuer_cannot_issue_is_refused(issuer: str, message: str) -> None:
    account = '[[accounts]]\nid = "acct_x"\nlegal_name = "X"\naddress = ["1 Street"]\ncountry = "DE"\n'
    accounts = parse_accounts(f'{account}e_invoice = "factur-x"\ntax_treatment = "domestic"\n'.encode(), Path("a.toml"))
    with pytest.raises(IssuerError, match=rf"a\.toml: field accounts\.\[acct_x\]\.e_invoice: .*{message}"):
        check_accounts(parse_issuer(issuer.encode(), Path("i.toml")), accounts, Path("a.toml"))


def test_adjustment_lines_are_invoice_lines_and_a_negative_one_has_quantity_minus_one() -> None:
    from core.money import tax_on
    from reports.invoice_model import IssuerParty, PaymentTerms, TaxSummary
    from reports.statement_model import AdjustmentLine
    from tests.reports import fixtures

    base = fixtures.statement()  # ten usage lines 1764.77, one adjustment 18.42
    issuer = IssuerParty(name="InferGate Europe GmbH", address_lines=("Torstrasse 49", "10119 Berlin"),
                         country="DE", vat_id="DE123456788")  # fmt: skip
    adjustments = (*base.adjustments, AdjustmentLine("2026-09", "Usage billed twice in September", D("-3.10")))
    # charges 1764.77 + 18.42 - 3.10 = 1780.09; VAT 1780.09 x 19% = 338.2171 -> 338.22; due 2118.31
    assert tax_on(D("1780.09"), D("19")) == D("338.22")
    doc = dataclasses.replace(
        base, issuer=issuer, account=dataclasses.replace(base.account, country="DE"), adjustments=adjustments,
        adjustments_total=D("15.32"), tax=TaxSummary("domestic", "VAT", D("19"), "DE123456788", "DE812345673"),
        tax_amount=D("338.22"), total_due=D("2118.31"), terms=PaymentTerms.from_issue(base.issue_date, 14, None),
        e_invoice="factur-x",
    )  # fmt: skip
    xml = einvoice.build_xml(doc)
    xml_check_xsd(xml, flavor="factur-x", level="en16931")
    root = ET.fromstring(xml)
    assert len(root.findall(f".//{RAM}IncludedSupplyChainTradeLineItem")) == 12  # 10 usage + 2 adjustments
    assert _totals(root) == {
        "sum_of_lines": D("1780.09"),
        "LineTotalAmount": D("1780.09"),
        "TaxBasisTotalAmount": D("1780.09"),
        "TaxTotalAmount": D("338.22"),
        "GrandTotalAmount": D("2118.31"),
        "DuePayableAmount": D("2118.31"),
    }
    assert b'<ram:BilledQuantity unitCode="C62">-1</ram:BilledQuantity>' in xml  # price 3.10, never negative (BR-27)
    assert b"<ram:ChargeAmount>3.1</ram:ChargeAmount>" in xml and b"<ram:LineTotalAmount>-3.10<" in xml
    assert b"BuyerOrderReferencedDocument" not in xml  # no PO reference: no BT-13


def test_an_e_invoice_that_would_not_identify_the_seller_is_not_issued(tmp_path: Path) -> None:
    """BR-CO-26: a US issuer without registration invoicing a German buyer 'out of scope' has
    no seller identifier the XML may carry (BR-O-02 forbids its VAT ID there). The finalize is
    refused before anything is numbered or written; with a registration, rated again, it issues."""
    billing = Billing(tmp_path)
    issuer = ISSUER_TOML.replace('vat_id = "DE 123 456 788"\n', "").replace('country = "DE"\n', 'country = "US"\n')
    (tmp_path / "issuer.toml").write_text(
        issuer.replace('registration = "Amtsgericht Charlottenburg, HRB 123456 B"\n', "")
    )
    billing.settings.accounts_file.write_text(
        '[[accounts]]\nid = "acct_de"\nlegal_name = "Berlin Buyer GmbH"\naddress = ["Friedrichstrasse 68"]\n'
        'country = "DE"\ne_invoice = "factur-x"\ntax_treatment = "out_of_scope"\ntax_note = "Not subject to VAT"\n',
        encoding="utf-8",
    )
    billing.settings = dataclasses.replace(billing.settings, issuer_file=tmp_path / "issuer.toml")
    billing.log("requests-2026-11-20.jsonl", [record(account_id="acct_de", usage=usage(1_000_000, 0))])
    billing.nightly("2026-11-20")
    out = tmp_path / "out"
    with pytest.raises(UsageProblem, match=r"acct_de receives an EN 16931 e-invoice, .*BR-CO-26.* no registration$"):
        jobs.run_statements(billing.settings, "2026-11", out, finalize=True, issue_date=date(2026, 12, 1))
    assert billing.one("SELECT count(*) FROM statements") == 0
    assert not list((out / "statements" / "2026-11").glob("*.pdf"))

    (tmp_path / "issuer.toml").write_text(issuer)  # with the registration
    jobs.run_rate(billing.settings, None, None)
    jobs.run_statements(billing.settings, "2026-11", out, finalize=True, issue_date=date(2026, 12, 1))
    number = _number(billing, "acct_de")
    seller = _xml(_pdf(out / "statements" / "2026-11", number)).find(f".//{RAM}SellerTradeParty")
    assert seller is not None and seller.findtext(f"{RAM}SpecifiedLegalOrganization/{RAM}ID") == (
        "Amtsgericht Charlottenburg, HRB 123456 B"
    )


def test_a_stored_e_invoice_is_rebuilt_whatever_the_issuer_lacks(issued) -> None:
    """Only a new finalize refuses an e-invoice without a seller identifier: a statement or a
    credit note issued before that check (the sample issuer had no registration until
    2026-12-05) is rebuilt by replay and by credit notes as it was (found by the change's review)."""
    billing, _ = issued
    doc = _nl_statement(billing, "IGE-X-1")
    bare = dataclasses.replace(doc, issuer=dataclasses.replace(doc.issuer, registration=None, vat_id=None))
    root = ET.fromstring(einvoice.build_xml(bare))
    assert root.find(f".//{RAM}SellerTradeParty/{RAM}SpecifiedLegalOrganization") is None


def test_credit_restored_by_a_layout_7_statement_is_a_document_charge_so_the_basis_is_the_net() -> None:
    """A negative adjustment of usage prepaid credit paid (layout 7): the restored part is not
    money given back, so the e-invoice adds it back as a document-level charge (BT-99) and the
    tax basis is the printed net (BR-CO-13: lines - allowances + charges)."""
    from core.money import tax_on
    from reports.credit_model import CreditSummary
    from reports.invoice_model import IssuerParty, PaymentTerms, TaxSummary
    from reports.statement_model import AdjustmentLine
    from tests.reports import fixtures

    base = fixtures.statement()  # ten usage lines 1764.77, one adjustment 18.42
    issuer = IssuerParty(name="InferGate Europe GmbH", address_lines=("Torstrasse 49", "10119 Berlin"),
                         country="DE", vat_id="DE123456788")  # fmt: skip
    restored = AdjustmentLine("2026-09", "Late usage for 2026-09; $3.10 of it restored to prepaid credit", D("-3.10"))
    # lines 1764.77 + 18.42 - 3.10 = 1780.09; + 3.10 restored = net 1783.19; VAT 338.8061 -> 338.81
    assert tax_on(D("1783.19"), D("19")) == D("338.81")
    doc = dataclasses.replace(
        base, issuer=issuer, account=dataclasses.replace(base.account, country="DE"),
        adjustments=(*base.adjustments, restored), adjustments_total=D("15.32"), credits_restored=D("3.10"),
        credits=CreditSummary(D("0"), D("0"), D("0"), D("0"), D("3.10"), D("3.10")),
        tax=TaxSummary("domestic", "VAT", D("19"), "DE123456788", "DE812345673"), tax_amount=D("338.81"),
        total_due=D("2122.00"), terms=PaymentTerms.from_issue(base.issue_date, 14, None), e_invoice="factur-x",
    )  # fmt: skip
    assert doc.net_amount == D("1783.19")
    xml = einvoice.build_xml(doc)
    xml_check_xsd(xml, flavor="factur-x", level="en16931")
    root = ET.fromstring(xml)
    assert {k: v for k, v in _totals(root).items() if k != "sum_of_lines"} == {
        "LineTotalAmount": D("1780.09"),
        "ChargeTotalAmount": D("3.10"),
        "TaxBasisTotalAmount": D("1783.19"),
        "TaxTotalAmount": D("338.81"),
        "GrandTotalAmount": D("2122.00"),
        "DuePayableAmount": D("2122.00"),
    }
    assert _breakdown(root)["BasisAmount"] == "1783.19"
    assert b"<ram:Reason>Restored to prepaid credit, not refunded</ram:Reason>" in xml
    # an earlier layout cannot carry restored credit
    with pytest.raises(ValueError, match="layout 6 restores no prepaid credit"):
        dataclasses.replace(doc, layout_version=6)
