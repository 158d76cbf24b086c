from datetime import date

from core.money import D
from reports.formatting import day_range, long_date, money, period_label, tokens, unit_price


def test_money_has_separators_sign_and_cents():
    assert money(D("1783.19")) == "$1,783.19"
    assert money(D("-12.3")) == "-$12.30"
    assert money(D("0")) == "$0.00"
    assert money(D("-0.00")) == "$0.00"
    assert money(D("1234567.005")) == "$1,234,567.01"


def test_unit_price_shows_every_decimal_and_at_least_two():
    assert unit_price(D("7.5")) == "$7.50"
    assert unit_price(D("270")) == "$270.00"
    assert unit_price(D("0.14745")) == "$0.14745"
    assert unit_price(D("0.0147450")) == "$0.014745"
    assert unit_price(D("1500.123456")) == "$1,500.123456"


def test_tokens_and_dates():
    assert tokens(310_455_120) == "310,455,120"
    assert long_date(date(2026, 12, 2)) == "2 December 2026"
    assert period_label(date(2026, 11, 1)) == "November 2026"
    assert day_range(date(2026, 11, 1), date(2026, 12, 1)) == "1 \u2013 30 November 2026"
