"""Statement documents for the rendering tests, written out by hand with their exact amounts."""

from __future__ import annotations

import dataclasses
from datetime import date

from core.money import EXACT, D, Decimal, to_cents
from pipeline.issuer import BUILT_IN
from reports.invoice_model import IssuerParty
from reports.statement_model import (
    AdjustmentLine,
    DailyUsage,
    NonBilledCount,
    Party,
    PriceVersionRef,
    StatementDocument,
    StatementLine,
)

PRICE_VERSION = PriceVersionRef(
    version_id="2026-11-01",
    effective_from="2026-11-01T00:00:00Z",
    sha256="d1a5d52b35d8aed0e35787309cc2cc973a2951b915674b45538e475baf9d5dfa",
)

#: The issuer statements printed before it was reference data (pipeline.issuer.BUILT_IN).
ISSUER = IssuerParty(name=BUILT_IN.legal_name, address_lines=BUILT_IN.address, email=BUILT_IN.email)

ACCOUNT = Party(
    name="Northwind Analytics GmbH",
    address_lines=("Friedrichstra\u00dfe 68", "10117 Berlin", "Germany"),
    email="accounts-payable@northwind-analytics.example",
)


def _line(model: str, name: str, token_class: str, quantity: int, price: str, amount: str):
    return StatementLine(
        model=model,
        model_name=name,
        token_class=token_class,
        quantity=quantity,
        unit_price_per_1m=D(price),
        price_version="2026-11-01",
        amount=D(amount),
        list_price_per_1m=D(price),  # no group multiplier or discount on this account
        price_basis="list price",
    )


# quantity x unit price / 1M, rounded half-up to the cent, worked out by hand (the model
# re-checks each one when the line is built).
LINES = (
    _line("openai/gpt-5.5-pro", "OpenAI GPT-5.5 Pro", "input_uncached", 1_250_000, "45", "56.25"),
    _line("openai/gpt-5.5-pro", "OpenAI GPT-5.5 Pro", "output", 312_408, "270", "84.35"),
    _line("openai/gpt-5.5", "OpenAI GPT-5.5", "input_uncached", 48_213_907, "7.5", "361.60"),
    _line("openai/gpt-5.5", "OpenAI GPT-5.5", "input_cached", 12_500_000, "0.75", "9.38"),
    _line("openai/gpt-5.5", "OpenAI GPT-5.5", "output", 26_104_332, "45", "1174.69"),
    _line("deepseek-v4-flash", "DeepSeek V4 Flash", "input_uncached", 310_455_120, "0.14745", "45.78"),
    _line("deepseek-v4-flash", "DeepSeek V4 Flash", "input_cached", 95_000_000, "0.014745", "1.40"),
    _line("deepseek-v4-flash", "DeepSeek V4 Flash", "output", 41_876_503, "0.2949", "12.35"),
    _line("deepseek-v4-pro", "DeepSeek V4 Pro", "input_uncached", 22_040_000, "0.6525", "14.38"),
    _line("deepseek-v4-pro", "DeepSeek V4 Pro", "output", 3_517_761, "1.305", "4.59"),
)

DAILY = (
    (2, "87.86", 237), (3, "69.41", 187), (4, "122.74", 331), (5, "61.04", 164),
    (6, "110.47", 298), (9, "92.32", 249), (10, "59.51", 160), (11, "107.44", 290),
    (12, "57.32", 154), (13, "99.57", 269), (16, "60.77", 164), (17, "62.99", 170),
    (18, "98.59", 266), (19, "141.50", 382), (20, "66.52", 179), (23, "77.13", 208),
    (24, "120.23", 324), (25, "154.39", 417), (30, "114.97", 310),
)  # fmt: skip


def statement() -> StatementDocument:
    """An issued November 2026 statement: ten lines, one adjustment, $1,783.19 due."""
    return StatementDocument(
        statement_number="IG-2026-11-000042",
        account_id="acct_7Hq2N4",
        account=ACCOUNT,
        issuer=ISSUER,
        period="2026-11",
        period_start=date(2026, 11, 1),
        period_end=date(2026, 12, 1),
        issue_date=date(2026, 12, 2),
        currency="USD",
        lines=LINES,
        adjustments=(
            AdjustmentLine(
                original_period="2026-10",
                description="Late usage records for October 2026 (7 requests, OpenAI GPT-5.5)",
                amount=D("18.42"),
            ),
        ),
        usage_total=D("1764.77"),
        adjustments_total=D("18.42"),
        total_due=D("1783.19"),
        billed_requests=4759,
        daily_usage=tuple(DailyUsage(date(2026, 11, day), D(amount), requests) for day, amount, requests in DAILY),
        non_billed=(
            NonBilledCount("superseded_attempt", 214),
            NonBilledCount("client_error", 37),
            NonBilledCount("upstream_error", 12),
            NonBilledCount("no_output", 5),
            NonBilledCount("usage_missing", 1),
        ),
        price_versions=(PRICE_VERSION,),
        estimated_attempts=18,
        estimated_tokens=41_207,
    )


def draft() -> StatementDocument:
    """The same statement before finalizing: no number yet."""
    return dataclasses.replace(statement(), statement_number=None)


def with_account_name(name: str) -> StatementDocument:
    return dataclasses.replace(statement(), account=dataclasses.replace(ACCOUNT, name=name))


def empty_period() -> StatementDocument:
    """A February with no billed usage at all."""
    return dataclasses.replace(
        statement(),
        period="2027-02",
        period_start=date(2027, 2, 1),
        period_end=date(2027, 3, 1),
        issue_date=date(2027, 3, 2),
        lines=(),
        adjustments=(),
        usage_total=D("0"),
        adjustments_total=D("0"),
        total_due=D("0"),
        billed_requests=0,
        daily_usage=(),
        non_billed=(),
        price_versions=(),
        estimated_attempts=0,
        estimated_tokens=0,
    )


def long_statement(n_lines: int = 400) -> StatementDocument:
    """A statement with many lines, to see it paginate: amounts derived, not hand-written."""
    classes = ("input_uncached", "input_cached", "output")
    lines = []
    for i in range(n_lines):
        quantity = 1_000_003 * (i % 97 + 1) + 7 * i
        price = Decimal("0.14745") * (i % 5 + 1)
        amount = to_cents(EXACT.multiply(EXACT.multiply(D(quantity), price), D("0.000001")))
        lines.append(
            StatementLine(
                model=f"tenant-route/model-{i // 3:03d}",
                model_name=f"Routed model {i // 3:03d}",
                token_class=classes[i % 3],
                quantity=quantity,
                unit_price_per_1m=price,
                price_version="2026-11-01",
                amount=amount,
            )
        )
    usage_total = sum((line.amount for line in lines), D("0"))
    base = statement()
    return dataclasses.replace(
        base,
        lines=tuple(lines),
        usage_total=usage_total,
        total_due=usage_total + base.adjustments_total,
    )
