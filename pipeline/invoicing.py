"""Issuer, tax, payment terms and list prices of a period's statements, read from the database.

The reference tables ``issuer`` and ``account_invoicing`` (loaded by every rating run from
``data/issuer.toml`` and the accounts file) say who a statement is from and how it is taxed;
``model_prices`` and ``account_groups`` say which list price and which group multiplier and
discount turned into each line's unit price, so the statement can show all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb

from core.money import EXACT, ZERO, D, Decimal, tax_on
from pipeline.issuer import BUILT_IN
from reports.invoice_model import REVERSE_CHARGE_NOTE, IssuerParty, PaymentTerms, TaxSummary
from reports.statement_model import price_versions_of

__all__ = ["AccountInvoicing", "InvoicingContext", "number_prefix", "read_invoicing"]

_CLASS_COLUMN = {"input_uncached": 0, "input_cached": 1, "output": 2}
_HUNDRED = D(100)


@dataclass(frozen=True)
class AccountInvoicing:
    tax_treatment: str | None = None
    vat_id: str | None = None
    tax_note: str | None = None
    payment_terms_days: int | None = None
    po_reference: str | None = None
    e_invoice: str | None = None  # "factur-x": PDF/A-3 with an EN 16931 XML (issue 16 item 5)
    country: str | None = None  # the customer's ISO 3166 code (EN 16931 BT-55)


@dataclass(frozen=True)
class InvoicingContext:
    """What a period's statements need beyond their lines to be invoices."""

    issuer: IssuerParty
    issuer_sha256: str
    number_prefix: str
    tax_label: str
    domestic_rate_pct: Decimal | None
    default_terms_days: int | None
    accounts: dict[str, AccountInvoicing]
    list_prices: dict[tuple[str, str], tuple[Decimal, Decimal, Decimal]]  # (version, model) -> in, cached, out
    pricing: dict[str, tuple[str, Decimal, Decimal]]  # account -> (group, multiplier, discount_pct)

    def of(self, account_id: str) -> AccountInvoicing:
        return self.accounts.get(account_id) or AccountInvoicing()

    def list_price(self, version: str, model: str, token_class: str) -> Decimal | None:
        prices = self.list_prices.get((version, model))
        return None if prices is None else prices[_CLASS_COLUMN[token_class]]

    def line_pricing(
        self, account_id: str, versions: str, model: str, token_class: str, unit_price: Decimal
    ) -> tuple[Decimal | None, str]:
        """A line's list price and price basis. From layout 6 a line at one unit price may name
        several price versions (';'): its list price is printed when they agree on it, its
        basis when it reads the same against each ("negotiated price" for an override that
        two list prices both differ from)."""
        found = [self.list_price(v, model, token_class) for v in price_versions_of(versions)]
        bases = {self.price_basis(account_id, unit_price, p) for p in found}
        return (found[0] if len(set(found)) == 1 else None), (bases.pop() if len(bases) == 1 else "")

    def price_basis(self, account_id: str, unit_price: Decimal, list_price: Decimal | None) -> str:
        """How the unit price follows from the list price, in words finance can check."""
        if list_price is None or account_id not in self.pricing:
            return ""
        group, multiplier, discount = self.pricing[account_id]
        factor = EXACT.multiply(multiplier, EXACT.subtract(1, EXACT.divide(discount, _HUNDRED)))
        if EXACT.multiply(list_price, factor) != unit_price:
            return "negotiated price"
        parts = []
        if multiplier != 1:
            parts.append(f"{group} \u00d7{multiplier.normalize():f}")
        if discount != 0:
            parts.append(f"\u2212{discount.normalize():f}%")
        return ", ".join(parts) or "list price"

    def tax_of(self, account_id: str, net_amount: Decimal) -> tuple[TaxSummary | None, Decimal]:
        """The statement's tax summary and tax amount (per statement, on the net, half-up)."""
        account = self.of(account_id)
        treatment = account.tax_treatment
        if treatment is None:
            return None, ZERO
        rate = self.domestic_rate_pct if treatment == "domestic" else ZERO
        assert rate is not None  # the loader refuses domestic accounts without an issuer rate
        note = REVERSE_CHARGE_NOTE if treatment == "eu_reverse_charge" else account.tax_note
        summary = TaxSummary(treatment, self.tax_label, rate, self.issuer.vat_id, account.vat_id, note)
        return summary, tax_on(net_amount, rate)

    def terms_of(self, account_id: str, issue_date: date) -> PaymentTerms | None:
        account = self.of(account_id)
        days = account.payment_terms_days if account.payment_terms_days is not None else self.default_terms_days
        if days is None and account.po_reference is None:
            return None
        return PaymentTerms.from_issue(issue_date, days, account.po_reference)


def _issuer(con: duckdb.DuckDBPyConnection) -> tuple[IssuerParty, str, str, str, Decimal | None, int | None]:
    row = con.execute(
        "SELECT legal_name, address, email, tax_id, vat_id, registration, remittance, logo_png_base64, "
        "sha256, statement_number_prefix, tax_label, domestic_tax_rate_pct, default_payment_terms_days, country "
        "FROM issuer"
    ).fetchone()
    if row is None:  # nothing rated since the issuer became reference data
        i = BUILT_IN
        row = (i.legal_name, i.address, i.email, None, None, None, [], None, i.sha256,
               i.statement_number_prefix, i.tax_label, None, None, i.country)  # fmt: skip
    name, address, email, tax_id, vat_id, registration, remittance, logo, sha, prefix, label, rate, days, country = row
    party = IssuerParty(
        name=name,
        address_lines=tuple(address),
        email=email,
        tax_id=tax_id,
        vat_id=vat_id,
        registration=registration,
        remittance_lines=tuple(remittance),
        logo_png_base64=logo,
        country=country,
    )
    return party, sha, prefix, label, rate, days


def number_prefix(con: duckdb.DuckDBPyConnection) -> str:
    """The issuer's statement-number prefix (the built-in issuer's before anything was rated)."""
    row = con.execute("SELECT max(statement_number_prefix) FROM issuer").fetchone()
    return str(row[0]) if row and row[0] else BUILT_IN.statement_number_prefix


def read_invoicing(con: duckdb.DuckDBPyConnection, account_id: str | None = None) -> InvoicingContext:
    """Read the issuer and every account's (or only ``account_id``'s) invoicing data."""
    party, sha, prefix, label, rate, days = _issuer(con)
    accounts = {
        row[0]: AccountInvoicing(*row[1:])
        for row in con.execute(
            "SELECT account_id, tax_treatment, vat_id, tax_note, payment_terms_days, po_reference, e_invoice, country "
            "FROM account_invoicing WHERE $a IS NULL OR account_id = $a",
            {"a": account_id},
        ).fetchall()
    }
    list_prices = {
        (version, model): (D(i), D(c), D(o))
        for version, model, i, c, o in con.execute(
            "SELECT version_id, model, list_input_per_1m, list_cached_input_per_1m, list_output_per_1m "
            "FROM model_prices"
        ).fetchall()
    }
    pricing = {
        account: (group, D(multiplier), D(discount))
        for account, group, multiplier, discount in con.execute(
            "SELECT a.account_id, a.group_name, coalesce(g.multiplier, 1), a.discount_pct FROM accounts a "
            "LEFT JOIN account_groups g USING (group_name) WHERE $a IS NULL OR a.account_id = $a",
            {"a": account_id},
        ).fetchall()
    }
    return InvoicingContext(party, sha, prefix, label, rate, days, accounts, list_prices, pricing)
