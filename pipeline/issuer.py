"""The issuer reference data (``data/issuer.toml``): who statements are from, and on what terms.

Legal name, address, tax identifiers, registration, remittance details, an optional logo, the
statement-number prefix, the domestic tax rate and the default payment terms. Like a price
version it is identified by a sha256 over its canonical JSON (the logo's bytes included), kept
in ``reference_files`` and recorded per run, so a replay prints the issuer that was in force
when a statement was issued, not today's.

Without a file, :data:`BUILT_IN` is used: exactly the issuer statements printed before this
became reference data (so statements issued then replay byte for byte).
"""

from __future__ import annotations

import base64
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.defaults import DEFAULT_ISSUER_FILE
from core.errors import BillingError, MissingInput, read_reference_file
from pipeline.accounts import Account, AccountsFile, Percent
from pipeline.taxids import check_vat_id, is_eu_vat_id

__all__ = [
    "BUILT_IN",
    "DEFAULT_CREDIT_NOTE_PREFIX",
    "DEFAULT_ISSUER_FILE",
    "Issuer",
    "IssuerError",
    "check_accounts",
    "load_issuer",
    "parse_issuer",
    "parse_stored",
]

MAX_LOGO_BYTES = 256 * 1024
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

Line = Annotated[str, Field(min_length=1, max_length=200)]


class IssuerError(BillingError, ValueError):
    """Issuer reference data that must not be used, naming the file and the field."""

    default_hint = "fix the issuer file (--issuer, default data/issuer.toml) and re-run; nothing was rated"


class IssuerFileMissing(IssuerError, MissingInput):
    """The issuer file named by --issuer does not exist: a usage error."""


DEFAULT_CREDIT_NOTE_PREFIX = "CN"


class Issuer(BaseModel):
    """The issuer as printed on statements, plus the rules it bills under."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    legal_name: Line
    address: tuple[Line, ...] = ()
    email: Line | None = None
    tax_id: Line | None = None  # e.g. a US EIN, printed as given
    vat_id: str | None = None  # checked for format; required to issue reverse-charge statements
    registration: Line | None = None  # company register and number, printed as given
    remittance: tuple[Line, ...] = ()  # how to pay: bank, IBAN, BIC, reference to quote
    logo_png_base64: str | None = None  # filled from the file's ``logo`` path (a PNG) when loaded
    statement_number_prefix: str = Field(default="IG", pattern=r"^[A-Z][A-Z0-9]{0,9}$")
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")  # ISO 3166, the tax jurisdiction
    domestic_tax_rate_pct: Percent | None = None  # for accounts taxed as domestic
    tax_label: Line = "VAT"
    default_payment_terms_days: int | None = Field(default=None, ge=0, le=365)
    # credit notes (issue 16 item 4): CN-2026-000001; None prints the default "CN"
    credit_note_number_prefix: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9]{0,9}$")

    @field_validator("vat_id")
    @classmethod
    def _vat(cls, value: str | None) -> str | None:
        return None if value is None else check_vat_id(value)

    def canonical_json(self) -> str:
        """Key-sorted JSON of the parsed issuer, decimals as strings: the hashed and stored form."""
        data = self.model_dump(mode="json")
        if data.get("credit_note_number_prefix") is None:
            # added after issuers were hashed: left out when unset, so every recorded hash stays valid
            data.pop("credit_note_number_prefix", None)
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


#: The issuer block statements printed before the issuer was reference data. The address is
#: a placeholder until finance confirms the registered one (see data/issuer.toml).
BUILT_IN = Issuer(
    legal_name="InferGate",
    address=("340 Pine Street, Suite 800", "San Francisco, CA 94104", "United States"),
    email="billing@useinfergate.com",
    country="US",  # not printed; the seller country an e-invoice needs (EN 16931 BT-40)
)


def _field_error(path: Path, exc: ValidationError) -> IssuerError:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "(file)"
    return IssuerError(f"{path}: field {field}: {first['msg']}")


def _logo(path: Path, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise IssuerError(f"{path}: field logo: must be the path of a PNG file")
    logo = (path.parent / value) if not Path(value).is_absolute() else Path(value)
    try:
        data = logo.read_bytes()
    except OSError as exc:
        raise IssuerError(f"{path}: field logo: cannot read {logo}: {exc.strerror or exc}") from None
    if not data.startswith(_PNG_MAGIC) or len(data) > MAX_LOGO_BYTES:
        raise IssuerError(f"{path}: field logo: {logo} is not a PNG file of at most {MAX_LOGO_BYTES} bytes")
    return base64.b64encode(data).decode("ascii")


def parse_issuer(data: bytes, path: Path) -> Issuer:
    """Validate issuer file bytes; a ``logo`` path (relative to the file) is read and embedded."""
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise IssuerError(f"{path}: cannot read issuer file: {exc}") from None
    if "logo_png_base64" in raw:
        raise IssuerError(f"{path}: field logo_png_base64: give the PNG's path as `logo` instead")
    if "logo" in raw:
        raw["logo_png_base64"] = _logo(path, raw.pop("logo"))
    try:
        return Issuer.model_validate(raw)
    except ValidationError as exc:
        raise _field_error(path, exc) from None


def parse_stored(content: bytes, name: str) -> Issuer:
    """An issuer from its stored canonical JSON (replays)."""
    try:
        return Issuer.model_validate_json(content)
    except ValidationError as exc:
        raise _field_error(Path(name), exc) from None


def load_issuer(path: Path | None) -> Issuer:
    """The issuer file at ``path``, or the built-in issuer when ``path`` is None."""
    if path is None:
        return BUILT_IN
    hint = "give the issuer reference file with --issuer (or INFERGATE_ISSUER); default data/issuer.toml"
    data = read_reference_file(path, "issuer file", missing=IssuerFileMissing, unreadable=IssuerError, hint=hint)
    return parse_issuer(data, path)


def _check_e_invoice_issuer(issuer: Issuer, account: Account, accounts_path: Path) -> None:
    """What an e-invoice needs from the issuer for this account (EN 16931 BT-40, BR-S/E-02, BR-CO-25)."""
    where = f"{accounts_path}: field accounts.[{account.id}].e_invoice"
    if issuer.country is None:
        raise IssuerError(f"{where}: an e-invoice needs the issuer's country (EN 16931 BT-40) in the issuer file")
    if account.tax_treatment in ("domestic", "exempt") and issuer.vat_id is None and issuer.tax_id is None:
        raise IssuerError(f"{where}: a {account.tax_treatment} e-invoice needs the issuer's vat_id or tax_id")
    if account.payment_terms_days is None and issuer.default_payment_terms_days is None:
        raise IssuerError(
            f"{where}: an e-invoice needs a due date (EN 16931 BR-CO-25): set payment_terms_days "
            "or the issuer's default_payment_terms_days"
        )


def check_accounts(issuer: Issuer, accounts: AccountsFile, accounts_path: Path) -> None:
    """Refuse account tax treatments the issuer cannot invoice under (names account and field)."""
    for account in accounts.accounts:
        where = f"{accounts_path}: field accounts.[{account.id}].tax_treatment"
        if account.tax_treatment == "domestic" and issuer.domestic_tax_rate_pct is None:
            raise IssuerError(
                f"{where}: 'domestic' needs the issuer's domestic_tax_rate_pct, which the issuer file does not set"
            )
        if account.e_invoice is not None:
            _check_e_invoice_issuer(issuer, account, accounts_path)
        if account.tax_treatment == "eu_reverse_charge":
            if issuer.vat_id is None or not is_eu_vat_id(issuer.vat_id):
                raise IssuerError(f"{where}: 'eu_reverse_charge' needs the issuer's EU vat_id in the issuer file")
            if account.vat_id is None or not is_eu_vat_id(account.vat_id):
                raise IssuerError(
                    f"{accounts_path}: field accounts.[{account.id}].vat_id: 'eu_reverse_charge' needs the "
                    "customer's EU VAT ID"
                )
