"""What turns a statement into an invoice finance can send (issue 16): issuer, tax, terms.

Plain, immutable data checked at construction, like :mod:`reports.statement_model`. The
issuer party carries its legal identifiers and remittance details; :class:`TaxSummary` says
how the statement is taxed and why; :class:`PaymentTerms` gives the due date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from core.money import Decimal
from reports.statement_model import Party

__all__ = [
    "REVERSE_CHARGE_NOTE",
    "TAX_TREATMENTS",
    "IssuerParty",
    "PaymentTerms",
    "TaxSummary",
]

#: The legal mention an EU reverse-charge invoice must carry (Directive 2006/112/EC, art. 226(11a)).
REVERSE_CHARGE_NOTE = (
    "Reverse charge: VAT to be accounted for by the recipient, Article 196 Council Directive 2006/112/EC"
)

#: Tax treatments an account can have, and the heading printed for each.
TAX_TREATMENTS: dict[str, str] = {
    "domestic": "",  # printed as "<label> <rate>%"
    "eu_reverse_charge": "Reverse charge",
    "exempt": "Exempt",
    "out_of_scope": "Out of scope",
}


@dataclass(frozen=True)
class IssuerParty(Party):
    """The issuer of a statement: a party plus its legal identifiers and how to pay it."""

    tax_id: str | None = None
    vat_id: str | None = None
    registration: str | None = None
    remittance_lines: tuple[str, ...] = ()
    logo_png_base64: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.remittance_lines, tuple):
            raise TypeError("IssuerParty.remittance_lines must be a tuple of str")


@dataclass(frozen=True)
class TaxSummary:
    """How a statement is taxed: the treatment, the rate, both VAT IDs and the legal note."""

    treatment: str
    label: str  # "VAT", "Sales tax"...
    rate_pct: Decimal  # 0 unless domestic
    issuer_vat_id: str | None = None
    customer_vat_id: str | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        if self.treatment not in TAX_TREATMENTS:
            raise ValueError(f"TaxSummary: treatment {self.treatment!r} is not one of {sorted(TAX_TREATMENTS)}")
        if not isinstance(self.rate_pct, Decimal) or not Decimal(0) <= self.rate_pct <= Decimal(100):
            raise ValueError(f"TaxSummary: rate {self.rate_pct!r} is not a percentage")
        if self.treatment != "domestic" and self.rate_pct != 0:
            raise ValueError(f"TaxSummary: a {self.treatment} statement has no tax rate")
        if self.treatment == "eu_reverse_charge":
            if not (self.issuer_vat_id and self.customer_vat_id):
                raise ValueError("TaxSummary: a reverse-charge statement needs both VAT IDs")
            if self.note != REVERSE_CHARGE_NOTE:
                raise ValueError("TaxSummary: a reverse-charge statement carries the Article 196 note")

    @property
    def heading(self) -> str:
        """The tax row's label: 'VAT 19%', 'VAT: reverse charge', 'VAT: exempt'."""
        if self.treatment == "domestic":
            return f"{self.label} {self.rate_pct.normalize():f}%"
        return f"{self.label}: {TAX_TREATMENTS[self.treatment].lower()}"


@dataclass(frozen=True)
class PaymentTerms:
    """Net days and the due date they give from the issue date; the customer's PO reference."""

    net_days: int | None
    due_date: date | None
    po_reference: str | None = None

    def __post_init__(self) -> None:
        if (self.net_days is None) != (self.due_date is None):
            raise ValueError("PaymentTerms: net_days and due_date go together")

    @classmethod
    def from_issue(cls, issue_date: date, net_days: int | None, po_reference: str | None) -> PaymentTerms:
        due = issue_date + timedelta(days=net_days) if net_days is not None else None
        return cls(net_days, due, po_reference)

    @property
    def label(self) -> str:
        if self.net_days is None:
            return ""
        return "Due on receipt" if self.net_days == 0 else f"Net {self.net_days} days"
