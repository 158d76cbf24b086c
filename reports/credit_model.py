"""The prepaid credit block of a statement (issue 17): plain, checked data for the renderer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from core.money import Decimal, to_cents

__all__ = ["CreditSummary"]


@dataclass(frozen=True)
class CreditSummary:
    """Opening balance, credit granted (less reversals) in the period, applied, expired, closing,
    and (statement layout 7 on) restored: negative prior-period adjustments given back as credit.

    All cents; the block must add up: opening + granted + restored - applied - expired =
    closing, and no balance or movement but ``granted`` (a reversal) may be negative.
    """

    opening: Decimal
    granted: Decimal
    applied: Decimal
    expired: Decimal
    closing: Decimal
    restored: Decimal = Decimal("0")
    #: statement layout 11 on: the first day the block covers when it also covers months without
    #: a statement before its period (printed "Opening balance, <since>", "granted since <since>")
    since: date | None = None

    def __post_init__(self) -> None:
        for name in ("opening", "granted", "applied", "expired", "closing", "restored"):
            value = getattr(self, name)
            if not isinstance(value, Decimal):
                raise TypeError(f"CreditSummary.{name} must be Decimal, not {type(value).__name__}")
            if value != to_cents(value):
                raise ValueError(f"CreditSummary: {name} {value} is not rounded to cents")
            if name != "granted" and value < 0:
                raise ValueError(f"CreditSummary: {name} {value} is negative")
        if self.opening + self.granted + self.restored - self.applied - self.expired != self.closing:
            restored = f" + restored {self.restored}" if self.restored else ""
            raise ValueError(
                f"CreditSummary: opening {self.opening} + granted {self.granted}{restored} - applied {self.applied} "
                f"- expired {self.expired} != closing {self.closing}"
            )
