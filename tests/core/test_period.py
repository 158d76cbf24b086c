"""core.period: one parser, one error, and the month arithmetic at the year's ends."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from core.errors import UsageProblem
from core.period import Period, PeriodError


def test_parse_and_text_round_trip() -> None:
    assert Period.parse("2026-11") == Period(2026, 11)
    assert str(Period(2026, 1)) == "2026-01"
    assert Period.check("2026-12") == "2026-12"


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-1", "26-11", "2026/11", "", " 2026-11", None, 202611])
def test_anything_else_is_one_error(text: object) -> None:
    with pytest.raises(PeriodError) as info:
        Period.parse(text)
    assert str(info.value) == f"period {text!r} is not YYYY-MM"
    # a usage problem for the CLI (exit 2, with a hint), and still the ValueError the reports raised
    assert isinstance(info.value, UsageProblem) and isinstance(info.value, ValueError)
    assert info.value.hint == "write the period as YYYY-MM, e.g. 2026-11"
    assert not Period.is_valid(text)


def test_bounds_are_utc_midnights_end_exclusive() -> None:
    nov = Period(2026, 11)
    assert nov.bounds() == (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    assert (nov.first_day, nov.end_day) == (date(2026, 11, 1), date(2026, 12, 1))


def test_december_and_january_step_over_the_year() -> None:
    assert Period(2026, 12).next() == Period(2027, 1)
    assert Period(2027, 1).previous() == Period(2026, 12)
    assert Period(2026, 12).end == datetime(2027, 1, 1, tzinfo=UTC)
    assert Period(2026, 6).next().previous() == Period(2026, 6)


def test_of_and_contains_use_the_utc_month() -> None:
    # 2026-11-30 23:30 at UTC-1 is 2026-12-01 00:30 UTC: December
    late = datetime(2026, 11, 30, 23, 30, tzinfo=timezone(timedelta(hours=-1)))
    assert Period.of(late) == Period(2026, 12)
    assert Period(2026, 12).contains(late) and not Period(2026, 11).contains(late)
    assert Period.of(date(2026, 2, 28)) == Period(2026, 2)
    # the end instant belongs to the next period
    assert not Period(2026, 11).contains(Period(2026, 11).end)


def test_ordered_by_time() -> None:
    assert Period(2026, 12) < Period(2027, 1) < Period(2027, 2)
