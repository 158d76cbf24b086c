"""The one place that owns Decimal: parsing, exact arithmetic and cent rounding.

Billing never touches binary floats. Every amount, unit price and multiplier enters the
program through :func:`D` (which refuses floats), is computed under :data:`EXACT` (which traps
inexact results instead of silently rounding them) and leaves as a cent amount through
:func:`to_cents`, the only rounding step (half-up, SPEC R7).
"""

from __future__ import annotations

import decimal
from decimal import ROUND_HALF_UP, Decimal

from core.errors import BillingError

__all__ = [
    "CENT",
    "EXACT",
    "ZERO",
    "D",
    "Decimal",
    "MoneyError",
    "format_usd",
    "max_scale",
    "tax_on",
    "to_cents",
]

ZERO = Decimal(0)
CENT = Decimal("0.01")

# Enough digits for any exact product we form (38-digit DuckDB decimals), and traps that
# turn an accidental rounding or an invalid operation into an exception.
EXACT = decimal.Context(
    prec=60,
    rounding=ROUND_HALF_UP,
    traps=[decimal.Inexact, decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)


class MoneyError(BillingError, ValueError):
    """A value that cannot be an exact amount (a float, garbage text, NaN, infinity)."""


def D(value: object) -> Decimal:
    """Parse an exact decimal from a str, int or Decimal; refuse floats and garbage.

    >>> D("0.14745")
    Decimal('0.14745')
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise MoneyError(f'{value!r} is a binary float; write money as a string, e.g. "7.5"')
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except decimal.InvalidOperation:
            raise MoneyError(f"{value!r} is not a decimal number") from None
    else:
        raise MoneyError(f"{value!r} ({type(value).__name__}) is not a decimal number")
    if not result.is_finite():
        raise MoneyError(f"{value!r} is not a finite decimal number")
    return result


def max_scale(value: Decimal) -> int:
    """Number of digits after the decimal point that the value really needs."""
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def to_cents(amount: Decimal) -> Decimal:
    """Round an exact amount half-up to whole cents (the only rounding in billing, R7)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def format_usd(amount: Decimal) -> str:
    """Render a cent amount the way every CSV and statement prints it: '1234.50'."""
    return f"{to_cents(amount):.2f}"


_HUNDRED = Decimal(100)


def tax_on(net_amount: Decimal, rate_pct: Decimal) -> Decimal:
    """Tax on a statement's net amount: exact ``net x rate / 100``, then half-up to the cent.

    Computed once per statement on its net (never per line, so the printed tax is the tax on
    the printed net, whatever the number of lines), with the same rounding as every other
    amount (R7). The rate is a percentage with at most 2 decimals, so the exact product needs
    no more than 4 decimals before rounding: ``tax_on(D("10.05"), D("19"))`` is 1.9095 -> 1.91.
    """
    if not net_amount.is_finite() or not rate_pct.is_finite():
        raise MoneyError(f"tax on {net_amount} at {rate_pct}% is not a finite amount")
    if rate_pct < 0 or rate_pct > _HUNDRED:
        raise MoneyError(f"tax rate {rate_pct}% is outside [0, 100]")
    exact = EXACT.divide(EXACT.multiply(net_amount, rate_pct), _HUNDRED)
    return to_cents(exact)
