"""A billing period: one UTC calendar month, written ``YYYY-MM``.

Every package parses, checks and steps periods here: one pattern, one error message, one
place that knows December is followed by January. A :class:`Period` is a small immutable value;
``str(period)`` is its ``YYYY-MM`` key, the form stored in the database and in file names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from core.errors import UsageProblem

__all__ = ["PERIOD_PATTERN", "Period", "PeriodError"]

PERIOD_PATTERN = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class PeriodError(UsageProblem, ValueError):
    """A period that is not ``YYYY-MM`` (a ValueError too, as the reports raised before)."""

    default_hint = "write the period as YYYY-MM, e.g. 2026-11"


@dataclass(frozen=True, order=True)
class Period:
    """One UTC month. Ordered by time; ``str()`` gives ``YYYY-MM``."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not (1 <= self.month <= 12 and 0 <= self.year <= 9999):
            raise PeriodError(f"period {self.year:04d}-{self.month:02d} is not YYYY-MM")

    @classmethod
    def parse(cls, text: object) -> Period:
        """``"2026-11"`` -> Period(2026, 11); anything else raises :class:`PeriodError`."""
        match = PERIOD_PATTERN.match(text) if isinstance(text, str) else None
        if match is None:
            raise PeriodError(f"period {text!r} is not YYYY-MM")
        return cls(int(match[1]), int(match[2]))

    @classmethod
    def is_valid(cls, text: object) -> bool:
        return isinstance(text, str) and PERIOD_PATTERN.match(text) is not None

    @classmethod
    def check(cls, text: str) -> str:
        """The text itself, once checked (for functions that keep periods as strings)."""
        return str(cls.parse(text))

    @classmethod
    def of(cls, when: datetime | date) -> Period:
        """The period an instant (its UTC month) or a calendar date falls in."""
        if isinstance(when, datetime):
            when = when.astimezone(UTC)
        return cls(when.year, when.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def end_day(self) -> date:
        """The first day of the next period (exclusive end)."""
        return self.next().first_day

    @property
    def start(self) -> datetime:
        """00:00 UTC on the first day."""
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """00:00 UTC on the first day of the next period (exclusive end)."""
        return self.next().start

    def bounds(self) -> tuple[datetime, datetime]:
        return self.start, self.end

    def next(self) -> Period:
        return Period(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Period:
        return Period(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    def contains(self, when: datetime | date) -> bool:
        return Period.of(when) == self
