import dataclasses
from datetime import date, datetime

import pytest

from core.money import D
from pipeline.issuer import BUILT_IN
from reports.statement_model import (
    DEFAULT_BILLING_NOTES,
    AdjustmentLine,
    DailyUsage,
    NonBilledCount,
    StatementLine,
)

from . import fixtures


def test_fixture_adds_up_and_is_issued():
    doc = fixtures.statement()
    assert doc.usage_total == D("1764.77")
    assert doc.total_due == D("1783.19")
    assert not doc.is_draft and fixtures.draft().is_draft
    assert doc.billing_notes == DEFAULT_BILLING_NOTES


@pytest.mark.parametrize(
    "change",
    [
        {"usage_total": D("1764.78")},
        {"adjustments_total": D("0")},
        {"total_due": D("1764.77")},
        {"adjustments": ()},
        {"lines": fixtures.LINES[1:]},
    ],
)
def test_refuses_totals_that_do_not_add_up(change):
    with pytest.raises(ValueError, match="!="):
        dataclasses.replace(fixtures.statement(), **change)


def test_refuses_a_line_whose_amount_is_not_quantity_times_price():
    line = fixtures.LINES[3]  # 12,500,000 x $0.75/1M = 9.375 -> 9.38 half-up
    assert line.amount == D("9.38")
    with pytest.raises(ValueError, match="rounded to cents"):
        dataclasses.replace(line, amount=D("9.37"))


def test_refuses_floats_and_fractions_of_cents():
    line = fixtures.LINES[0]
    with pytest.raises(TypeError, match="Decimal"):
        dataclasses.replace(line, amount=56.25)
    with pytest.raises(TypeError, match="Decimal"):
        dataclasses.replace(line, unit_price_per_1m=45.0)
    with pytest.raises(ValueError, match="not rounded to cents"):
        AdjustmentLine("2026-10", "late records", D("1.005"))
    with pytest.raises(TypeError, match="int"):
        dataclasses.replace(line, quantity=True)


def test_refuses_bad_codes_and_periods():
    with pytest.raises(ValueError, match="token_class"):
        dataclasses.replace(fixtures.LINES[0], token_class="reasoning")
    with pytest.raises(ValueError, match="unknown reason"):
        NonBilledCount("teapot", 1)
    with pytest.raises(ValueError, match="YYYY-MM"):
        AdjustmentLine("2026-13", "late records", D("1.00"))
    with pytest.raises(ValueError, match="period 2026-11 is"):
        dataclasses.replace(fixtures.statement(), period_end=date(2026, 11, 30))
    with pytest.raises(TypeError, match="date"):
        dataclasses.replace(fixtures.statement(), issue_date=datetime(2026, 12, 2))
    with pytest.raises(ValueError, match="outside period"):
        dataclasses.replace(fixtures.statement(), daily_usage=(DailyUsage(date(2026, 12, 1), D("1"), 1),))
    with pytest.raises(ValueError, match="statement_number"):
        dataclasses.replace(fixtures.statement(), statement_number='IG-1"; content: "x')


def test_values_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        fixtures.statement().total_due = D("0")  # type: ignore[misc]
    with pytest.raises(TypeError, match="tuple"):
        dataclasses.replace(fixtures.statement(), lines=list(fixtures.LINES))


def test_issuer_and_notes_carry_the_public_pricing_text():
    assert BUILT_IN.email == "billing@useinfergate.com"
    notes = " ".join(DEFAULT_BILLING_NOTES)
    assert "per 1M tokens" in notes and "1.5\u00d7" in notes
    assert (
        "Final billed usage may depend on request type, model route, tokenization, provider "
        "behavior, failed/retried requests, and account-specific settings." in notes
    )
    assert "499" in notes


def test_line_accepts_a_zero_quantity_and_exact_price_decimals():
    line = StatementLine("m", "M", "output", 0, D("0.14745"), "v1", D("0"))
    assert line.token_class_label == "Output"
