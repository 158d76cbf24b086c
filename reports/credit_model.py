"""The prepaid credit block of a statement (issue 17): plain, checked data for the renderer."""

from __future__ import annotations

from dataclasses import dataclass

from core.money import Decimal, to_cents

__all__ = ["CreditSummary"]


@dataclass(frozen=True)
class CreditSummary:
    """Opening balance, credit granted (less reversals) in the period, applied, expired, closing.

    All cents; the block must add up: opening + granted - applied - expired = closing, and no
    balance or movement but ``granted`` (a reversal) may be negative.
    """

    opening: Decimal
    granted: Decimal
    applied: Decimal
    expired: Decimal
    closing: Decimal

    def __post_init__(self) -> None:
        for name in ("opening", "granted", "applied", "expired", "closing"):
            value = getattr(self, name)
            if not isinstance(value, Decimal):
                raise TypeError(f"CreditSummary.{name} must be Decimal, not {type(value).__name__}")
            if value != to_cents(value):
                raise ValueError(f"CreditSummary: {name} {value} is not rounded to cents")
            if name != "granted" and value < 0:
                raise ValueError(f"CreditSummary: {name} {value} is negative")
        if self.opening + self.granted - self.applied - self.expired != self.closing:
            raise ValueError(
                f"CreditSummary: opening {self.opening} + granted {self.granted} - applied {self.applied} "
                f"- expired {self.expired} != closing {self.closing}"
            )
