"""Statements finance can send as invoices (issue 16): issuer and terms as reference data, tax,
readable lines. Every amount below is worked out by hand in the comment next to it."""

from __future__ import annotations

import csv
import dataclasses
import io
import textwrap
from datetime import date
from pathlib import Path

import pytest
from pypdf import PdfReader

from core.money import D, MoneyError, tax_on
from pipeline import jobs, replay
from pipeline.accounts import AccountsError, parse_accounts
from pipeline.issuer import BUILT_IN, IssuerError, check_accounts, load_issuer, parse_issuer
from reports.finance import FINANCE_COLUMNS, finance_summary
from reports.invoice_model import REVERSE_CHARGE_NOTE, TaxSummary
from reports.pdf import near_empty_last_page
from reports.render import pdf_bytes, render_html
from tests.conftest import Billing, BuiltOnce, record, usage
from tests.reports import fixtures

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
    tax_treatment = "domestic"
    vat_id = "DE812345673"
    payment_terms_days = 14
    po_reference = "PO-2026-0457"

    [[accounts]]
    id = "acct_nl"
    legal_name = "Amsterdam Buyer B.V."
    tax_treatment = "eu_reverse_charge"
    vat_id = "NL004495445B01"

    [[accounts]]
    id = "acct_exempt"
    legal_name = "International Organisation"
    tax_treatment = "exempt"
    tax_note = "Exempt from VAT: supply to an international organisation (section 4 no. 7 UStG)"

    [[accounts]]
    id = "acct_discount"
    legal_name = "Discount GmbH"
    discount_pct = "12.5"
    """
)


# --- the tax rule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("net", "rate", "tax"),
    [
        ("10.05", "19", "1.91"),  # 10.05 x 0.19 = 1.9095: past the half cent, up
        ("2.50", "19", "0.48"),  # 0.475: exactly half a cent, half-up
        ("10.04", "19", "1.91"),  # 1.9076
        ("0.02", "19", "0.00"),  # 0.0038
        ("1234.56", "7.7", "95.06"),  # 95.06112
        ("-2.50", "19", "-0.48"),  # a credit: half away from zero, the mirror of the charge
        ("99.99", "0", "0.00"),
    ],
)
def test_tax_is_net_times_rate_rounded_half_up_to_the_cent(net: str, rate: str, tax: str) -> None:
    assert tax_on(D(net), D(rate)) == D(tax)


def test_a_tax_rate_outside_0_100_is_refused() -> None:
    with pytest.raises(MoneyError, match="outside"):
        tax_on(D("1"), D("101"))


def test_a_document_refuses_tax_that_is_not_the_tax_on_its_net() -> None:
    base = fixtures.statement()  # net 1783.19
    vat = TaxSummary("domestic", "VAT", D("19"), "DE123456788", None)
    # 1783.19 x 0.19 = 338.8061 -> 338.81; total due 1783.19 + 338.81 = 2122.00
    doc = dataclasses.replace(base, tax=vat, tax_amount=D("338.81"), total_due=D("2122.00"))
    assert doc.net_amount == D("1783.19") and doc.total_due == D("2122.00")
    with pytest.raises(ValueError, match="is not the tax on net 1783.19"):
        dataclasses.replace(base, tax=vat, tax_amount=D("338.80"), total_due=D("2121.99"))
    with pytest.raises(ValueError, match="total_due"):
        dataclasses.replace(base, tax=vat, tax_amount=D("338.81"), total_due=D("1783.19"))


def test_reverse_charge_needs_both_vat_ids_and_the_legal_note() -> None:
    TaxSummary("eu_reverse_charge", "VAT", D("0"), "DE123456788", "NL004495445B01", REVERSE_CHARGE_NOTE)
    with pytest.raises(ValueError, match="both VAT IDs"):
        TaxSummary("eu_reverse_charge", "VAT", D("0"), "DE123456788", None, REVERSE_CHARGE_NOTE)
    with pytest.raises(ValueError, match="no tax rate"):
        TaxSummary("exempt", "VAT", D("19"))


# --- reference data: VAT IDs and treatments refused with file and field ---------------------


def test_a_bad_customer_vat_id_names_the_file_account_and_field() -> None:
    bad = b'[[accounts]]\nid = "acct_x"\nlegal_name = "X"\nvat_id = "DE136695977"\n'  # check digit 6, not 7
    with pytest.raises(AccountsError) as error:
        parse_accounts(bad, Path("data/accounts.toml"))
    assert "data/accounts.toml: field accounts.[acct_x].vat_id" in error.value.message
    assert "not a valid DE VAT number" in error.value.message


def test_a_vat_id_of_an_unknown_country_is_refused() -> None:
    bad = b'[[accounts]]\nid = "acct_x"\nlegal_name = "X"\nvat_id = "XX1234567"\n'
    with pytest.raises(AccountsError, match=r"accounts\.\[acct_x\]\.vat_id: .*country prefix XX"):
        parse_accounts(bad, Path("a.toml"))


def test_a_bad_issuer_vat_id_names_the_issuer_file_and_field() -> None:
    with pytest.raises(IssuerError) as error:
        parse_issuer(b'legal_name = "I"\nvat_id = "DE123456789"\n', Path("data/issuer.toml"))
    assert error.value.message.startswith("data/issuer.toml: field vat_id:")


def test_a_vat_id_is_stored_compact() -> None:
    assert parse_issuer(ISSUER_TOML.encode(), Path("i.toml")).vat_id == "DE123456788"


@pytest.mark.parametrize(
    ("issuer", "account", "field"),
    [
        ('legal_name = "I"\n', 'tax_treatment = "domestic"', "tax_treatment"),  # no domestic rate
        ('legal_name = "I"\n', 'tax_treatment = "eu_reverse_charge"\nvat_id = "NL004495445B01"', "tax_treatment"),
        (ISSUER_TOML, 'tax_treatment = "eu_reverse_charge"', "vat_id"),  # no customer VAT ID
        (ISSUER_TOML, 'tax_treatment = "eu_reverse_charge"\nvat_id = "GB980780684"', "vat_id"),  # not EU
    ],
)
def test_a_treatment_the_issuer_cannot_invoice_under_is_refused(issuer: str, account: str, field: str) -> None:
    accounts = parse_accounts(f'[[accounts]]\nid = "acct_x"\nlegal_name = "X"\n{account}\n'.encode(), Path("a.toml"))
    with pytest.raises(IssuerError, match=rf"a\.toml: field accounts\.\[acct_x\]\.{field}:"):
        check_accounts(parse_issuer(issuer.encode(), Path("i.toml")), accounts, Path("a.toml"))


def test_the_committed_issuer_file_is_the_built_in_issuer_with_a_registration() -> None:
    """What statements always printed, plus the registration e-invoices need (BR-CO-26)."""
    committed = load_issuer(Path(__file__).resolve().parent.parent / "data" / "issuer.toml")
    assert committed.registration == "Delaware corporation, file no. 0000000"
    assert committed.model_copy(update={"registration": None}) == BUILT_IN


# --- end to end ------------------------------------------------------------------------------


def _build_invoiced(billing: Billing) -> None:
    root = billing.root
    (root / "issuer.toml").write_text(ISSUER_TOML, encoding="utf-8")
    billing.settings.accounts_file.write_text(ACCOUNTS_TOML, encoding="utf-8")
    billing.settings = dataclasses.replace(billing.settings, issuer_file=root / "issuer.toml")
    billing.log("requests-2026-11-20.jsonl", [
        # 1,000,000 x 7.50/1M = 7.50; 56,667 x 45/1M = 2.550015 -> 2.55; net 10.05
        record(account_id="acct_de", usage=usage(1_000_000, 56_667)),
        record(account_id="acct_nl", usage=usage(1_000_000, 56_667)),
        record(account_id="acct_exempt", usage=usage(1_000_000, 56_667)),
        # 1,000,000 x (7.50 x 0.875 = 6.5625)/1M = 6.5625 -> 6.56
        record(account_id="acct_discount", usage=usage(1_000_000, 0)),
        # deepseek-v4-pro: cached input costs the input price (0.6525); 10,000 x 0.6525/1M = 0.006525 -> 0.01
        # each; 1,000 output x 1.305/1M = 0.001305 -> 0.00
        record(account_id="acct_discount", model="deepseek-v4-pro", provider="deepseek",
               usage=usage(20_000, 1_000, cached=10_000)),
    ])  # fmt: skip
    billing.nightly("2026-11-20")
    jobs.run_statements(billing.settings, "2026-11", root / "out", finalize=True, issue_date=date(2026, 12, 1))


@pytest.fixture(scope="module")
def _invoiced_once(tmp_path_factory: pytest.TempPathFactory) -> BuiltOnce:
    return BuiltOnce(tmp_path_factory, "invoiced", _build_invoiced)


@pytest.fixture
def invoiced(_invoiced_once: BuiltOnce) -> tuple[Billing, Path]:
    """November issued by a German issuer to a domestic, a reverse-charge, an exempt and a
    discounted (no tax configured) account: built once per module, a fresh copy for each test;
    the billing and the folder of November's statements (``<root>/out/statements/2026-11``)."""
    billing = _invoiced_once.restore()
    return billing, billing.root / "out" / "statements" / "2026-11"


def _number(billing: Billing, account: str, period: str = "2026-11") -> str:
    return billing.one("SELECT statement_number FROM statements WHERE account_id = ? AND period = ?", [account, period])


def _pdf_text(folder: Path, number: str) -> str:
    return " ".join(page.extract_text() for page in PdfReader(folder / f"{number}.pdf").pages)


def _lines(folder: Path, number: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((folder / f"{number}-lines.csv").read_text(encoding="utf-8"))))


def test_a_domestic_statement_charges_vat_on_the_net_with_a_due_date(invoiced) -> None:
    billing, folder = invoiced
    number = _number(billing, "acct_de")
    assert number.startswith("IGE-2026-11-")  # the issuer's prefix
    assert billing.one(
        "SELECT tax_treatment, tax_rate_pct, net_usd, tax_usd, total_due_usd, due_date, po_reference "
        "FROM statement_invoicing WHERE statement_number = ?",
        [number],
    ) == ("domestic", D("19.00"), D("10.05"), D("1.91"), D("11.96"), date(2026, 12, 15), "PO-2026-0457")
    assert billing.one("SELECT total_usd FROM statements WHERE statement_number = ?", [number]) == D("10.05")
    text = _pdf_text(folder, number)
    for printed in ("VAT 19% on $10.05", "$1.91", "$11.96", "Due date", "15 December 2026", "Net 14 days",
                    "PO-2026-0457", "VAT ID DE123456788", "VAT ID DE812345673", "HRB 123456 B",
                    "IBAN DE89 3704 0044 0532 0130 00", "InferGate Europe GmbH"):  # fmt: skip
        assert printed in text, printed
    tax_row = _lines(folder, number)[-1]
    assert (tax_row["kind"], tax_row["model_name"], tax_row["amount_usd"]) == ("tax", "VAT 19%", "1.91")


def test_a_reverse_charge_statement_prints_both_vat_ids_the_note_and_no_tax(invoiced) -> None:
    billing, folder = invoiced
    number = _number(billing, "acct_nl")
    assert billing.one(
        "SELECT net_usd, tax_usd, total_due_usd, due_date FROM statement_invoicing WHERE statement_number = ?",
        [number],
    ) == (D("10.05"), D("0.00"), D("10.05"), date(2026, 12, 31))  # the issuer's default: net 30 days
    text = " ".join(_pdf_text(folder, number).split())
    assert "Reverse charge: VAT to be accounted for by the recipient, Article 196 Council Directive 2006/112/EC" in text
    assert "VAT ID DE123456788" in text and "VAT ID NL004495445B01" in text
    assert "VAT: reverse charge" in text


def test_an_exempt_statement_says_why(invoiced) -> None:
    billing, folder = invoiced
    number = _number(billing, "acct_exempt")
    text = " ".join(_pdf_text(folder, number).split())
    assert "VAT: exempt $0.00" in text and "supply to an international organisation" in text
    assert "Total due (USD) $10.05" in text


def test_a_discount_line_shows_list_price_discount_and_net_price(invoiced) -> None:
    billing, folder = invoiced
    number = _number(billing, "acct_discount")
    rows = {(r["model"], r["token_class"]): r for r in _lines(folder, number)}
    gpt_input = rows[("openai/gpt-5.5", "input_uncached")]
    assert (gpt_input["list_price_per_1m"], gpt_input["price_basis"], gpt_input["unit_price_per_1m"]) == (
        "7.5",
        "\u221212.5%",
        "6.5625",
    )
    assert gpt_input["amount_usd"] == "6.56"
    assert all(r["kind"] != "tax" for r in rows.values())  # no tax treatment: no tax row
    text = _pdf_text(folder, number)
    assert "$7.50 \u221212.5% $6.5625 $6.56" in " ".join(text.split())
    # cached input at the input price says so; the 0.00 output line is summarised
    assert "same price as input" in text
    assert "1 line under half a cent" in text
    assert "Net amount" not in text and "VAT 19%" not in text  # no tax treatment: no tax printed
    # usage 6.56 + 0.01 + 0.01 + 0.00 = 6.58
    assert billing.one("SELECT total_usd FROM statements WHERE statement_number = ?", [number]) == D("6.58")


def test_the_finance_summary_appends_net_tax_and_total_due(invoiced) -> None:
    billing, _ = invoiced
    # credit notes (issue 16 item 4) append their columns after these: positions, not the end
    assert FINANCE_COLUMNS[16:20] == ("credit_closing_usd", "net_usd", "tax_usd", "total_due_usd")
    assert FINANCE_COLUMNS.index("price_versions") == 11  # the columns finance had are kept in place
    con = jobs.connect(billing.settings.db_path, read_only=True)
    try:
        rows = {r[0]: (r[10], *r[17:20]) for r in finance_summary(con, "2026-11")}  # total_usd, net, tax, due
    finally:
        con.close()
    assert rows["acct_de"] == (D("10.05"), D("10.05"), D("1.91"), D("11.96"))
    assert rows["acct_nl"] == (D("10.05"), D("10.05"), D("0.00"), D("10.05"))


def test_an_open_period_summary_computes_the_tax_by_the_same_rule(billing: Billing, tmp_path: Path) -> None:
    (tmp_path / "issuer.toml").write_text(ISSUER_TOML, encoding="utf-8")
    billing.settings.accounts_file.write_text(ACCOUNTS_TOML, encoding="utf-8")
    billing.settings = dataclasses.replace(billing.settings, issuer_file=tmp_path / "issuer.toml")
    billing.log("requests-2026-11-20.jsonl", [record(account_id="acct_de", usage=usage(1_000_000, 56_667))])
    billing.nightly("2026-11-20")
    con = jobs.connect(billing.settings.db_path, read_only=True)
    try:
        (row,) = finance_summary(con, "2026-11")
    finally:
        con.close()
    assert row[3] is None and row[17:20] == (D("10.05"), D("1.91"), D("11.96"))


def test_replay_prints_the_issuer_in_force_when_the_statement_was_issued(invoiced, tmp_path: Path) -> None:
    billing, folder = invoiced
    first = billing.one("SELECT DISTINCT issuer_sha256 FROM runs WHERE issuer_sha256 IS NOT NULL")
    # the issuer moves; December is rated and issued with the new address
    moved = ISSUER_TOML.replace("Torstrasse 49", "Invalidenstrasse 1")
    billing.settings.issuer_file.write_text(moved, encoding="utf-8")
    billing.log("requests-2026-12-02.jsonl", [
        record(account_id="acct_de", ts="2026-12-02T08:00:00Z", usage=usage(1_000_000, 0)),
    ])  # fmt: skip
    billing.nightly("2026-12-02")
    jobs.run_statements(billing.settings, "2026-12", billing.root / "out", finalize=True, issue_date=date(2027, 1, 1))
    december = billing.root / "out" / "statements" / "2026-12"
    shas = billing.query("SELECT DISTINCT issuer_sha256 FROM runs WHERE issuer_sha256 IS NOT NULL ORDER BY 1")
    assert len(shas) == 2 and (first,) in shas
    assert billing.one("SELECT count(*) FROM reference_files WHERE kind = 'issuer'") == 2
    for period in ("2026-11", "2026-12"):
        report = replay.replay_period(billing.settings, period, tmp_path / f"replay-{period}")
        assert report.checks and report.matches, report.checks
    november = billing.one("SELECT content FROM statement_files WHERE kind = 'html' AND statement_number = ?",
                           [_number(billing, "acct_de")])  # fmt: skip
    assert b"Torstrasse 49" in bytes(november) and b"Invalidenstrasse" not in bytes(november)
    dec_number = billing.one("SELECT statement_number FROM statements WHERE period = '2026-12'")
    assert "Invalidenstrasse 1" in _pdf_text(december, dec_number)


def test_verify_re_executes_runs_with_their_recorded_issuer(invoiced) -> None:
    billing, _ = invoiced
    run_id = billing.one("SELECT max(run_id) FROM runs WHERE status = 'succeeded' AND command = 'nightly'")
    report = replay.verify_run(billing.settings, run_id)
    assert report.status == "MATCH", report.differences


# --- layout ---------------------------------------------------------------------------------


def test_a_nearly_empty_last_page_is_pulled_back_by_a_tighter_layout() -> None:
    """Layouts 1 and 2 (statements issued before layout 3, whose PDFs a replay of their run
    renders again): a second layout with the tighter spacing when the last page is nearly empty."""
    from weasyprint import HTML

    base = fixtures.statement()
    notes = base.billing_notes + tuple(f"Additional note {i}: terms of service apply." for i in range(12))
    html = render_html(dataclasses.replace(base, billing_notes=notes, layout_version=2))
    first_layout = HTML(string=html).render()
    assert len(first_layout.pages) == 3 and near_empty_last_page(first_layout)
    assert len(PdfReader(io.BytesIO(pdf_bytes(html))).pages) == 2


def test_layout_3_has_the_tighter_spacing_from_the_start_and_is_laid_out_once(monkeypatch) -> None:
    """The same statement in layout 3 is two pages from its first layout; the PDF is made from
    one layout (the near-empty check, which a draft's watermark defeated, is not asked)."""
    from weasyprint import HTML

    from reports import pdf

    base = fixtures.statement()
    notes = base.billing_notes + tuple(f"Additional note {i}: terms of service apply." for i in range(12))
    asked: list[object] = []
    monkeypatch.setattr(pdf, "near_empty_last_page", lambda document: asked.append(document) or False)
    for draft in (False, True):
        doc = dataclasses.replace(base, billing_notes=notes, layout_version=3)
        if draft:
            doc = dataclasses.replace(doc, statement_number=None)
        html = render_html(doc)
        assert ('class="watermark"' in html) is draft and html.count(pdf.TIGHT_CSS_RULES) == 1
        assert len(HTML(string=html).render().pages) == 2
        assert len(PdfReader(io.BytesIO(pdf_bytes(html))).pages) == 2 and asked == []


def _png_1x1() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # 1x1, 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b"")
    )


def test_a_logo_is_read_when_loaded_and_embedded_so_the_renderer_fetches_nothing(tmp_path: Path) -> None:
    (tmp_path / "logo.png").write_bytes(_png_1x1())
    (tmp_path / "issuer.toml").write_text('legal_name = "I"\nlogo = "logo.png"\n', encoding="utf-8")
    issuer = load_issuer(tmp_path / "issuer.toml")
    assert issuer.logo_png_base64 and issuer.sha256 != load_issuer(None).sha256
    from reports.invoice_model import IssuerParty

    party = IssuerParty(name="I", address_lines=(), logo_png_base64=issuer.logo_png_base64)
    html = render_html(dataclasses.replace(fixtures.statement(), issuer=party))
    assert 'src="data:image/png;base64,' in html
    assert PdfReader(io.BytesIO(pdf_bytes(html))).pages  # rendered with the refusing fetcher
    (tmp_path / "logo.png").write_bytes(b"GIF89a not a png")
    with pytest.raises(IssuerError, match="field logo: .* is not a PNG"):
        load_issuer(tmp_path / "issuer.toml")
