"""Accounts and groups reference data (``data/accounts.toml``), validated on load.

Scales are bounded so that every unit price the rating SQL derives stays exact in
DECIMAL(24,14): prices have at most 6 decimals, multipliers at most 4, and discounts at most
2 (so the factor 1 - discount/100 has at most 4).
"""

from __future__ import annotations

import hashlib
import tomllib
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from core.defaults import DEFAULT_ACCOUNTS_FILE
from core.errors import BillingError, MissingInput, read_reference_file
from core.money import D, Decimal, max_scale
from pipeline.taxids import check_vat_id
from pricing.model import Price


class AccountsError(BillingError, ValueError):
    """Reference data that must not be used, naming the file and the field."""

    default_hint = "fix the accounts file (--accounts, default data/accounts.toml) and re-run; nothing was rated"


class AccountsFileMissing(AccountsError, MissingInput):
    """The accounts file named by --accounts (or its default) does not exist: a usage error."""


def _bounded(scale: int, low: Decimal, high: Decimal | None) -> Any:
    def check(value: Any) -> Decimal:
        number = D(value)
        if max_scale(number) > scale:
            raise ValueError(f"{value!r} has more than {scale} decimals")
        if number < low or (high is not None and number > high):
            raise ValueError(f"{value!r} is outside [{low}, {high if high is not None else 'inf'}]")
        return number

    return BeforeValidator(check)


Percent = Annotated[Decimal, _bounded(2, D(0), D(100))]
# at most 1000x the list price: a larger multiplier is a typo, and rate.sql's price factor is a
# DECIMAL(12,8) (a factor of 10,000 failed the whole nightly instead of this file)
MAX_MULTIPLIER = D(1000)
Multiplier = Annotated[Decimal, _bounded(4, D("0.0001"), MAX_MULTIPLIER)]
Money = Annotated[Decimal, _bounded(2, D(0), None)]


class PriceOverride(BaseModel):
    """A negotiated final price for one model, in force on ``[effective_from, effective_until)``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(min_length=1)
    effective_from: datetime
    effective_until: datetime | None = None
    input_per_1m: Price
    output_per_1m: Price
    cached_input_per_1m: Price | None = None

    @field_validator("effective_from", "effective_until")
    @classmethod
    def _instant(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must be an instant with an offset, e.g. 2026-11-15T00:00:00Z")
        return value


#: How an account's statements are taxed: at the issuer's domestic rate, EU reverse charge
#: (no tax, the customer accounts for it; both VAT IDs printed), exempt, or out of scope.
TaxTreatment = Literal["domestic", "eu_reverse_charge", "exempt", "out_of_scope"]

#: E-invoice formats a statement can carry: Factur-X / ZUGFeRD, profile EN 16931 (CII syntax).
EInvoice = Literal["factur-x"]


class Account(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    legal_name: str = Field(min_length=1)
    address: tuple[str, ...] = ()
    email: str | None = None
    group: str = "default"
    discount_pct: Percent = D(0)
    spend_limit_usd: Money | None = None
    overrides: tuple[PriceOverride, ...] = ()
    # invoicing (issue 16): how the account is taxed, its VAT ID, payment terms, PO reference
    tax_treatment: TaxTreatment | None = None  # None: no tax shown (as before)
    vat_id: str | None = None
    tax_note: str | None = Field(default=None, min_length=1, max_length=300)  # why exempt / out of scope
    payment_terms_days: int | None = Field(default=None, ge=0, le=365)  # None: the issuer's default
    po_reference: str | None = Field(default=None, min_length=1, max_length=100)
    # e-invoice (issue 16 item 5): a PDF/A-3 with an embedded EN 16931 XML, and what it needs
    e_invoice: EInvoice | None = None
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")  # ISO 3166-1 alpha-2 (EN 16931 BT-55)

    @field_validator("vat_id")
    @classmethod
    def _vat(cls, value: str | None) -> str | None:
        return None if value is None else check_vat_id(value)


class Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    multiplier: Multiplier = D(1)


class AccountsFile(BaseModel):
    """The whole reference file: groups by name and the accounts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    groups: dict[str, Group] = {}
    accounts: tuple[Account, ...] = ()
    sha256: str = ""
    source_bytes: bytes = b""


def _check_consistency(path: Path, ref: AccountsFile) -> None:
    # a Counter, not ids.count(i) per id: that was quadratic (7 minutes for 100K accounts)
    dupes = sorted(i for i, n in Counter(a.id for a in ref.accounts).items() if n > 1)
    if dupes:
        raise AccountsError(f"{path}: account id listed twice: {', '.join(dupes)}")
    for account in ref.accounts:
        if account.group != "default" and account.group not in ref.groups:
            raise AccountsError(f"{path}: account {account.id}: group {account.group!r} is not defined")
        _check_e_invoice(path, account)
        by_model: dict[str, list[PriceOverride]] = {}
        for override in account.overrides:
            if override.effective_until is not None and override.effective_until <= override.effective_from:
                raise AccountsError(
                    f"{path}: account {account.id}: override {override.model}: effective_until "
                    "must be after effective_from"
                )
            by_model.setdefault(override.model, []).append(override)
        for model, overrides in by_model.items():
            overrides.sort(key=lambda o: o.effective_from)
            for earlier, later in zip(overrides, overrides[1:], strict=False):
                if earlier.effective_until is None or earlier.effective_until > later.effective_from:
                    raise AccountsError(
                        f"{path}: account {account.id}: overrides for {model} overlap at "
                        f"{later.effective_from.isoformat()}"
                    )


def _check_e_invoice(path: Path, account: Account) -> None:
    """An account marked for e-invoices has what EN 16931 requires of a buyer and a tax category."""
    if account.e_invoice is None:
        return
    where = f"{path}: field accounts.[{account.id}]"
    if account.country is None:
        raise AccountsError(f"{where}.country: e_invoice needs the buyer's ISO 3166 country code (EN 16931 BT-55)")
    if not any(line.strip() for line in account.address):
        raise AccountsError(f"{where}.address: e_invoice needs the buyer's postal address (EN 16931 BG-8)")
    if account.tax_treatment is None:
        raise AccountsError(
            f"{where}.tax_treatment: e_invoice needs a tax treatment (EN 16931 gives every invoice a VAT category)"
        )
    if account.tax_treatment in ("exempt", "out_of_scope") and account.tax_note is None:
        raise AccountsError(
            f"{where}.tax_note: e_invoice needs the exemption reason for {account.tax_treatment} (EN 16931 BT-120)"
        )


def load_accounts(path: Path = DEFAULT_ACCOUNTS_FILE) -> AccountsFile:
    """Load and validate the accounts file; a bad file stops the run with file and field."""
    hint = "give the accounts reference file with --accounts (or INFERGATE_ACCOUNTS); default data/accounts.toml"
    data = read_reference_file(path, "accounts file", missing=AccountsFileMissing, unreadable=AccountsError, hint=hint)
    return parse_accounts(data, path)


def parse_accounts(data: bytes, path: Path) -> AccountsFile:
    """Validate accounts file bytes (``path`` only names them in errors)."""
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise AccountsError(f"{path}: cannot read accounts file: {exc}") from None
    raw["sha256"] = hashlib.sha256(data).hexdigest()
    raw["source_bytes"] = data
    try:
        ref = AccountsFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = list(first["loc"])
        if len(loc) >= 2 and loc[0] == "accounts" and isinstance(loc[1], int):
            accounts = raw.get("accounts") or []
            if loc[1] < len(accounts) and isinstance(accounts[loc[1]], dict):
                loc[1] = f"[{accounts[loc[1]].get('id', loc[1])}]"
        field = ".".join(str(p) for p in loc)
        raise AccountsError(f"{path}: field {field}: {first['msg']}") from None
    _check_consistency(path, ref)
    return ref
