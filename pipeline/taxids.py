"""VAT identification numbers: checked for format (and check digits) before they are printed.

A VAT ID on an invoice is a legal statement: a reverse-charge invoice without the customer's
valid VAT ID shifts the tax back onto the issuer. python-stdnum knows each country's format and
check-digit rule; we only pick the country's module from the two-letter prefix. EU member
states (with Greece's ``EL``) go through ``stdnum.eu.vat``; other countries (``GB``, ``CH``,
``NO``...) through their own ``vat`` module where stdnum has one.
"""

from __future__ import annotations

from functools import cache
from types import ModuleType

__all__ = ["VatIdError", "check_vat_id", "eu_prefixes", "is_eu_vat_id"]


@cache
def _eu_vat() -> ModuleType:
    """python-stdnum's EU VAT module, imported on first use (issue 14: not on every CLI start)."""
    from stdnum.eu import vat

    return vat


@cache
def eu_prefixes() -> frozenset[str]:
    """VAT prefixes of the EU member states (Greece uses EL, Northern Ireland's XI is EU VAT for goods)."""
    return frozenset(_eu_vat().MEMBER_STATES) | {"el"}


class VatIdError(ValueError):
    """A VAT ID that is not well formed for its country (message names the problem)."""


def check_vat_id(value: str) -> str:
    """The VAT ID in its compact form (``DE 136 695 976`` -> ``DE136695976``), or VatIdError."""
    text = value.strip().replace(" ", "").replace(".", "").replace("-", "").upper()
    prefix = text[:2].lower()
    if len(text) < 4 or not prefix.isalpha():
        raise VatIdError(f"{value!r} does not start with a two-letter country prefix (e.g. DE136695976)")
    from stdnum import get_cc_module
    from stdnum.exceptions import ValidationError

    module = _eu_vat() if prefix in eu_prefixes() else get_cc_module(prefix, "vat")
    if module is None:
        raise VatIdError(f"{value!r}: no VAT number format is known for country prefix {prefix.upper()}")
    try:
        module.validate(text)
    except ValidationError as exc:
        raise VatIdError(f"{value!r} is not a valid {prefix.upper()} VAT number ({exc})") from None
    return text


def is_eu_vat_id(value: str) -> bool:
    """Whether a (checked) VAT ID belongs to an EU member state."""
    return value[:2].lower() in eu_prefixes()
