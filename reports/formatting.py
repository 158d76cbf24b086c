"""How numbers and dates read on a statement: one function per kind of value.

Locale-independent on purpose (English month names, ',' thousands separator, '.' decimal
point), so the same data always renders to the same bytes.
"""

from __future__ import annotations

from datetime import date, timedelta

from core.money import Decimal, max_scale, to_cents

__all__ = ["day_range", "long_date", "money", "period_label", "tokens", "unit_price"]

_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def money(amount: Decimal) -> str:
    """A cent amount as printed on a statement: '$1,234.50', '-$12.30'."""
    cents = to_cents(amount)
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents):,.2f}"


def unit_price(price: Decimal) -> str:
    """A unit price with every decimal it has, at least two: '$7.50', '$0.14745'."""
    return f"${price:,.{max(2, max_scale(price))}f}"


def tokens(quantity: int) -> str:
    """A token count with thousands separators: '12,345,678'."""
    return f"{quantity:,}"


def long_date(day: date) -> str:
    """'1 December 2026'."""
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def period_label(start: date) -> str:
    """'November 2026'."""
    return f"{_MONTHS[start.month - 1]} {start.year}"


def day_range(start: date, end_exclusive: date) -> str:
    """The days of a half-open period as people read them: '1 – 30 November 2026'."""
    last = end_exclusive - timedelta(days=1)
    if (start.year, start.month) == (last.year, last.month):
        return f"{start.day} \u2013 {long_date(last)}"
    return f"{long_date(start)} \u2013 {long_date(last)}"
