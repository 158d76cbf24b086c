"""A statement as an EN 16931 e-invoice: Factur-X / ZUGFeRD XML, profile EN 16931, CII syntax.

Pure: a :class:`StatementDocument` in, XML bytes out (no clock, no randomness, no I/O), so the
same statement always gives the same XML. Every amount is one the statement prints, to the
cent (the mapping to the EN 16931 business terms is the table in ``docs/invoicing.md``):

* one invoice line per statement line (usage lines, then prior-period adjustments), line net
  amount = the printed amount; the sum is the printed charges (BT-106);
* prepaid credit applied is a document-level allowance (BT-92), so the tax basis (BT-109,
  BT-116) is the printed net amount, and the tax (BT-110, BT-117) the printed tax;
* grand total (BT-112) and amount due for payment (BT-115) are the printed total due.

The invoice type code is a parameter: 380 (commercial invoice) for statements, 381 (credit
note) for credit notes. A :class:`~reports.credit_note_model.CreditNoteDocument` is an EN 16931
credit note (381) the same way, amounts positive (the credit note convention: the type code,
not the sign, says money goes back): the credited lines, the part paid with prepaid credit as
a document-level allowance (so the tax basis is the printed net credited), the printed tax,
the total credited as grand total and amount due, and the statement as the preceding invoice
(BT-25, BT-26). Both documents are first read into one neutral :class:`_Invoice`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from core.money import ZERO, Decimal
from core.period import Period

from .credit_note_model import CreditNoteDocument
from .invoice_model import PaymentTerms, TaxSummary
from .statement_model import (
    SELLER_LEGAL_ID_FROM,
    AdjustmentLine,
    Party,
    StatementDocument,
    StatementLine,
    versions_text,
)

__all__ = [
    "CATEGORY",
    "CREDIT_NOTE_TERMS",
    "EN16931_GUIDELINE",
    "build_xml",
    "carries_vat_ids",
    "identifies_seller",
    "vat_category",
]

_NS = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "qdt": "urn:un:unece:uncefact:data:standard:QualifiedDataType:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100",
}
for _prefix, _uri in _NS.items():
    ET.register_namespace(_prefix, _uri)

#: BT-24, the specification identifier of Factur-X profile EN 16931 (COMFORT).
EN16931_GUIDELINE = "urn:cen.eu:en16931:2017"

#: Our tax treatments -> the EN 16931 VAT category code (UNTDID 5305 subset).
CATEGORY = {"domestic": "S", "eu_reverse_charge": "AE", "exempt": "E", "out_of_scope": "O"}

_TYPE_CODES = ("380", "381", "384")  # invoice, credit note, corrected invoice
_PER_MILLION = "1000000"  # prices are per 1M tokens: BT-149 item price base quantity
_UNIT = "C62"  # UN/ECE Recommendation 20 "one": a token, or an adjustment

#: BT-20 of a credit note (it has no due date). BR-CO-25 ("amount due positive: a due date or
#: payment terms") was meant for invoices only (CEN eInvoicing-EN16931 issues #84, #232, #477)
#: but older CII Schematrons still apply it to credit notes; a sentence satisfies both.
CREDIT_NOTE_TERMS = (
    "Credit note: nothing to pay; where the statement was paid, the amount is refunded or set against the next one"
)


@dataclass(frozen=True)
class _Invoice:
    """What the builder writes, read from a statement or a credit note (amounts as printed)."""

    number: str
    type_code: str
    issue_date: date
    issuer: Party
    account: Party
    tax: TaxSummary
    currency: str
    notes: tuple[str, ...]
    lines: tuple[tuple[int, StatementLine | AdjustmentLine], ...]  # (BT-126 line id, line)
    terms: PaymentTerms | None
    terms_text: str | None  # BT-20 without a due date (a credit note)
    period_start: date
    period_end: date  # exclusive
    line_total: Decimal  # BT-106
    allowance: Decimal  # BT-92 / BT-107, 0: none
    allowance_reason: str
    #: BT-99 / BT-108, 0: none. A statement of layout 7 on: the part of its negative adjustments
    #: restored to prepaid credit, a document-level charge so that the basis is the printed net
    #: (BR-CO-13: lines - allowances + charges)
    charge: Decimal
    seller_legal_id: bool  # the issuer's registration as BT-30 too (statement layout 4 on; BR-CO-26)
    basis: Decimal  # BT-109, BT-116
    tax_amount: Decimal  # BT-110, BT-117
    grand_total: Decimal  # BT-112, BT-115
    preceding: tuple[str, date] | None  # BT-25, BT-26


def _from_statement(doc: StatementDocument, type_code: str) -> _Invoice:
    if doc.statement_number is None:
        raise ValueError("a draft statement has no number: only issued statements are e-invoices")
    vat_category(doc.tax)
    assert doc.tax is not None
    lines: Sequence[StatementLine | AdjustmentLine] = (*doc.lines, *doc.adjustments)
    return _Invoice(
        number=doc.statement_number, type_code=type_code, issue_date=doc.issue_date, issuer=doc.issuer,
        account=doc.account, tax=doc.tax, currency=doc.currency, notes=(doc.tax.note,) if doc.tax.note else (),
        lines=tuple(enumerate(lines, start=1)), terms=doc.terms, terms_text=None, period_start=doc.period_start,
        period_end=doc.period_end, line_total=doc.usage_total + doc.adjustments_total,
        allowance=doc.credits_applied, allowance_reason="Prepaid credit applied", basis=doc.net_amount,
        charge=doc.credits_restored, tax_amount=doc.tax_amount, grand_total=doc.total_due, preceding=None,
        seller_legal_id=doc.layout_version >= SELLER_LEGAL_ID_FROM,
    )  # fmt: skip


def _from_credit_note(doc: CreditNoteDocument, type_code: str) -> _Invoice:
    vat_category(doc.tax)
    assert doc.tax is not None
    notes = (f"Reason: {doc.reason}",) + ((doc.tax.note,) if doc.tax.note else ())
    period = Period.parse(doc.period)  # the statement's invoicing period (BG-14)
    return _Invoice(
        number=doc.credit_note_number, type_code=type_code, issue_date=doc.issue_date, issuer=doc.issuer,
        account=doc.account, tax=doc.tax, currency=doc.currency, notes=notes,
        lines=tuple((c.line_no, c.line) for c in doc.lines), terms=None, terms_text=CREDIT_NOTE_TERMS,
        period_start=period.first_day, period_end=period.end_day, line_total=doc.lines_total,
        allowance=doc.prepaid_retained + doc.refunded, allowance_reason=_not_credited(doc), basis=doc.net_amount,
        charge=ZERO, tax_amount=doc.tax_amount, grand_total=doc.total_credited,
        preceding=(doc.statement_number, doc.statement_issue_date),
        seller_legal_id=doc.statement_layout_version >= SELLER_LEGAL_ID_FROM,
    )  # fmt: skip


def _not_credited(doc: CreditNoteDocument) -> str:
    """The allowance's reason: the part of the lines a credit note does not credit (one
    allowance; a rule-2 note's already refunded part is added to the prepaid part, if any)."""
    if not doc.refunded:
        return "Paid with prepaid credit, not credited"
    if not doc.prepaid_retained:
        return f"{doc.refunded_label}, not credited"
    return f"Paid with prepaid credit or {doc.refunded_label[0].lower()}{doc.refunded_label[1:]}, not credited"


def vat_category(tax: TaxSummary | None) -> str:
    """The EN 16931 VAT category code of a statement's tax treatment."""
    if tax is None:
        raise ValueError("an e-invoice needs a tax treatment: EN 16931 gives every invoice a VAT category")
    return CATEGORY[tax.treatment]


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    prefix, name = tag.split(":")
    element = ET.SubElement(parent, f"{{{_NS[prefix]}}}{name}", attrs)
    if text is not None:
        element.text = text
    return element


def _amount(value: Decimal) -> str:
    return f"{value:.2f}"


def _number(value: Decimal) -> str:
    text = f"{value.normalize():f}"
    return text


def _date(parent: ET.Element, tag: str, day: date) -> None:
    _el(_el(parent, tag), "udt:DateTimeString", day.strftime("%Y%m%d"), format="102")


def _vat_id(value: str) -> str:
    return "".join(ch for ch in value if ch.isalnum()).upper()


def _party(parent: ET.Element, tag: str, party: Party, vat_ids: bool, *, description: str | None = None,
           vat_id: str | None = None, tax_id: str | None = None, legal_id: str | None = None) -> None:  # fmt: skip
    if party.country is None:
        raise ValueError(f"an e-invoice needs the country of {party.name!r} (EN 16931 BT-40 / BT-55)")
    element = _el(parent, tag)
    _el(element, "ram:Name", party.name)
    if description:
        _el(element, "ram:Description", description)
    if legal_id:  # BT-30: what identifies a seller without a VAT ID to the buyer (BR-CO-26)
        _el(_el(element, "ram:SpecifiedLegalOrganization"), "ram:ID", legal_id)
    address = _el(element, "ram:PostalTradeAddress")
    lines = [line for line in party.address_lines if line.strip()]
    lines = lines[:2] + ([", ".join(lines[2:])] if len(lines) > 2 else [])
    for name, line in zip(("ram:LineOne", "ram:LineTwo", "ram:LineThree"), lines, strict=False):
        _el(address, name, line)
    _el(address, "ram:CountryID", party.country)
    if party.email:
        _el(_el(element, "ram:URIUniversalCommunication"), "ram:URIID", party.email, schemeID="EM")
    if vat_ids and vat_id:
        _el(_el(element, "ram:SpecifiedTaxRegistration"), "ram:ID", _vat_id(vat_id), schemeID="VA")
    if tax_id:
        _el(_el(element, "ram:SpecifiedTaxRegistration"), "ram:ID", tax_id, schemeID="FC")


def _category(parent: ET.Element, tag: str, tax: TaxSummary) -> ET.Element:
    element = _el(parent, tag)
    _el(element, "ram:TypeCode", "VAT")
    _el(element, "ram:CategoryCode", CATEGORY[tax.treatment])
    if tax.treatment != "out_of_scope":  # BR-O-05/-10: no rate for 'not subject to VAT'
        _el(element, "ram:RateApplicablePercent", _number(tax.rate_pct))
    return element


def _exemption_reason(tax: TaxSummary) -> tuple[str | None, str | None]:
    """BT-120 (text) and BT-121 (VATEX code) of the tax breakdown."""
    if tax.treatment == "eu_reverse_charge":
        return "Reverse charge", "VATEX-EU-AE"
    if tax.treatment in ("exempt", "out_of_scope"):
        return tax.note or tax.heading, None
    return None, None


def _line(parent: ET.Element, number: int, tax: TaxSummary, *, name: str, description: str | None,
          seller_id: str | None, price: Decimal, base: str | None, quantity: str, amount: Decimal) -> None:  # fmt: skip
    item = _el(parent, "ram:IncludedSupplyChainTradeLineItem")
    _el(_el(item, "ram:AssociatedDocumentLineDocument"), "ram:LineID", str(number))
    product = _el(item, "ram:SpecifiedTradeProduct")
    if seller_id:
        _el(product, "ram:SellerAssignedID", seller_id)
    _el(product, "ram:Name", name)
    if description:
        _el(product, "ram:Description", description)
    net = _el(_el(item, "ram:SpecifiedLineTradeAgreement"), "ram:NetPriceProductTradePrice")
    _el(net, "ram:ChargeAmount", _number(price) if price else "0")
    if base is not None:
        _el(net, "ram:BasisQuantity", base, unitCode=_UNIT)
    _el(_el(item, "ram:SpecifiedLineTradeDelivery"), "ram:BilledQuantity", quantity, unitCode=_UNIT)
    settlement = _el(item, "ram:SpecifiedLineTradeSettlement")
    _category(settlement, "ram:ApplicableTradeTax", tax)
    summation = _el(settlement, "ram:SpecifiedTradeSettlementLineMonetarySummation")
    _el(summation, "ram:LineTotalAmount", _amount(amount))


def build_xml(doc: StatementDocument | CreditNoteDocument, type_code: str | None = None) -> bytes:
    """The Factur-X EN 16931 (CII) XML of an issued statement or a credit note, UTF-8, amounts
    as printed.

    ``type_code`` is BT-3, by default the document's: 380 for a statement, 381 for a credit
    note. Refuses a draft (no number), a document without a tax treatment, and parties without
    a country code."""
    if type_code is None:
        type_code = CreditNoteDocument.type_code if isinstance(doc, CreditNoteDocument) else "380"
    if type_code not in _TYPE_CODES:
        raise ValueError(f"invoice type code {type_code!r} is not one of {_TYPE_CODES}")
    if isinstance(doc, CreditNoteDocument):
        return _build(_from_credit_note(doc, type_code))
    return _build(_from_statement(doc, type_code))


def carries_vat_ids(treatment: str) -> bool:
    """BR-O-02: an invoice 'not subject to VAT' carries neither the seller's nor the buyer's VAT ID."""
    return treatment != "out_of_scope"


def identifies_seller(registration: str | None, vat_id: str | None, treatment: str, layout_version: int) -> bool:
    """Whether the e-invoice of a statement of ``layout_version`` names the seller as BR-CO-26
    wants: its registration as BT-30 (layout 4 on), or its VAT ID as BT-31 where VAT IDs are
    carried. What :func:`build_xml` writes; the statements job refuses to issue one that does not."""
    legal_id = registration is not None and layout_version >= SELLER_LEGAL_ID_FROM
    return legal_id or (vat_id is not None and carries_vat_ids(treatment))


def _build(inv: _Invoice) -> bytes:
    tax = inv.tax
    if not inv.lines:
        raise ValueError("an e-invoice has at least one line (EN 16931 BG-25)")
    issuer = inv.issuer
    vat_ids = carries_vat_ids(tax.treatment)

    root = ET.Element(f"{{{_NS['rsm']}}}CrossIndustryInvoice")
    context = _el(root, "rsm:ExchangedDocumentContext")
    _el(_el(context, "ram:GuidelineSpecifiedDocumentContextParameter"), "ram:ID", EN16931_GUIDELINE)
    header = _el(root, "rsm:ExchangedDocument")
    _el(header, "ram:ID", inv.number)
    _el(header, "ram:TypeCode", inv.type_code)
    _date(header, "ram:IssueDateTime", inv.issue_date)
    for note in inv.notes:
        _el(_el(header, "ram:IncludedNote"), "ram:Content", note)

    transaction = _el(root, "rsm:SupplyChainTradeTransaction")
    for number, line in inv.lines:
        if isinstance(line, StatementLine):
            basis = f", {line.price_basis}" if line.price_basis else ""
            _line(transaction, number, tax, name=f"{line.model_name} {line.token_class_label.lower()} tokens",
                  description=f"prices {versions_text(line.price_version)}{basis}",
                  seller_id=line.model, price=line.unit_price_per_1m, base=_PER_MILLION, quantity=str(line.quantity),
                  amount=line.amount)  # fmt: skip
        else:
            _line(transaction, number, tax, name=f"Adjustment for {line.original_period}",
                  description=line.description, seller_id=None, price=abs(line.amount), base=None,
                  quantity="-1" if line.amount < 0 else "1", amount=line.amount)  # fmt: skip

    agreement = _el(transaction, "ram:ApplicableHeaderTradeAgreement")
    issuer_vat = getattr(issuer, "vat_id", None)
    registration = getattr(issuer, "registration", None)
    _party(agreement, "ram:SellerTradeParty", issuer, vat_ids, description=registration,
           vat_id=issuer_vat, tax_id=getattr(issuer, "tax_id", None),
           legal_id=registration if inv.seller_legal_id else None)  # fmt: skip
    _party(agreement, "ram:BuyerTradeParty", inv.account, vat_ids, vat_id=tax.customer_vat_id)
    if inv.terms is not None and inv.terms.po_reference:
        _el(_el(agreement, "ram:BuyerOrderReferencedDocument"), "ram:IssuerAssignedID", inv.terms.po_reference)
    _el(transaction, "ram:ApplicableHeaderTradeDelivery")

    settlement = _el(transaction, "ram:ApplicableHeaderTradeSettlement")
    _el(settlement, "ram:InvoiceCurrencyCode", inv.currency)
    breakdown = _el(settlement, "ram:ApplicableTradeTax")
    reason, reason_code = _exemption_reason(tax)
    _el(breakdown, "ram:CalculatedAmount", _amount(inv.tax_amount))
    _el(breakdown, "ram:TypeCode", "VAT")
    if reason:
        _el(breakdown, "ram:ExemptionReason", reason)
    _el(breakdown, "ram:BasisAmount", _amount(inv.basis))
    _el(breakdown, "ram:CategoryCode", CATEGORY[tax.treatment])
    if reason_code:
        _el(breakdown, "ram:ExemptionReasonCode", reason_code)
    if tax.treatment != "out_of_scope":
        _el(breakdown, "ram:RateApplicablePercent", _number(tax.rate_pct))
    period = _el(settlement, "ram:BillingSpecifiedPeriod")
    _date(period, "ram:StartDateTime", inv.period_start)
    _date(period, "ram:EndDateTime", inv.period_end - timedelta(days=1))
    if inv.allowance:
        allowance = _el(settlement, "ram:SpecifiedTradeAllowanceCharge")
        _el(_el(allowance, "ram:ChargeIndicator"), "udt:Indicator", "false")
        _el(allowance, "ram:ActualAmount", _amount(inv.allowance))
        _el(allowance, "ram:Reason", inv.allowance_reason)
        _category(allowance, "ram:CategoryTradeTax", tax)
    if inv.charge:
        charge = _el(settlement, "ram:SpecifiedTradeAllowanceCharge")
        _el(_el(charge, "ram:ChargeIndicator"), "udt:Indicator", "true")
        _el(charge, "ram:ActualAmount", _amount(inv.charge))
        _el(charge, "ram:Reason", "Restored to prepaid credit, not refunded")
        _category(charge, "ram:CategoryTradeTax", tax)
    if inv.terms is not None and inv.terms.due_date is not None:
        terms = _el(settlement, "ram:SpecifiedTradePaymentTerms")
        _el(terms, "ram:Description", inv.terms.label)
        _date(terms, "ram:DueDateDateTime", inv.terms.due_date)
    elif inv.terms_text:
        _el(_el(settlement, "ram:SpecifiedTradePaymentTerms"), "ram:Description", inv.terms_text)
    totals = _el(settlement, "ram:SpecifiedTradeSettlementHeaderMonetarySummation")
    _el(totals, "ram:LineTotalAmount", _amount(inv.line_total))
    if inv.charge:
        _el(totals, "ram:ChargeTotalAmount", _amount(inv.charge))
    if inv.allowance:
        _el(totals, "ram:AllowanceTotalAmount", _amount(inv.allowance))
    _el(totals, "ram:TaxBasisTotalAmount", _amount(inv.basis))
    _el(totals, "ram:TaxTotalAmount", _amount(inv.tax_amount), currencyID=inv.currency)
    _el(totals, "ram:GrandTotalAmount", _amount(inv.grand_total))
    _el(totals, "ram:DuePayableAmount", _amount(inv.grand_total))
    if inv.preceding is not None:
        referenced = _el(settlement, "ram:InvoiceReferencedDocument")
        _el(referenced, "ram:IssuerAssignedID", inv.preceding[0])
        _el(_el(referenced, "ram:FormattedIssueDateTime"), "qdt:DateTimeString", inv.preceding[1].strftime("%Y%m%d"),
            format="102")  # fmt: skip
    ET.indent(root)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)
