"""Statement layout 6: a line is one (model, token class, unit price), summed over the price
versions that priced it and rounded once (SPEC R4, R7: "lines per model and token class with
quantity, unit price", "summed at full precision and then rounded half-up").

A price version that starts inside a period and reprices one model used to split every other
model's lines in two at the same unit price, each rounded on its own. Here version 2026-11-15
reprices only openai/gpt-5.5-pro; acct_plain uses openai/gpt-5.5 (input 7.5/1M, output 45/1M,
the same in both versions) on the 10th and on the 20th, 600 input + 100 output tokens each:

    per version (layouts 1-5)   input  600 x 7.5/1M = 0.0045 -> 0.00, twice
                                output 100 x 45/1M  = 0.0045 -> 0.00, twice   total 0.00
    one line (layout 6)         input 1,200 x 7.5/1M = 0.009 -> 0.01
                                output  200 x 45/1M  = 0.009 -> 0.01          total 0.02
"""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import date
from pathlib import Path

import pytest

from core.money import D
from pipeline import jobs, statements
from reports.finance import finance_summary
from reports.statement_model import LAYOUT_VERSION
from tests.conftest import Billing, record, usage

BOTH = "2026-11-01;2026-11-15"


def _two_versions(billing: Billing, tmp_path: Path) -> None:
    prices = tmp_path / "prices"
    prices.mkdir()
    original = (billing.settings.prices_dir / "2026-11-01.toml").read_text(encoding="utf-8")
    (prices / "2026-11-01.toml").write_text(original, encoding="utf-8")
    pro = 'upstream_output_per_1m = "180"\nlist_input_per_1m = "45"\nlist_output_per_1m = "270"'
    assert pro in original
    newer = (
        original.replace('version = "2026-11-01"', 'version = "2026-11-15"')
        .replace("effective_from = 2026-11-01T00:00:00Z", "effective_from = 2026-11-15T00:00:00Z")
        .replace(pro, 'upstream_output_per_1m = "200"\nlist_input_per_1m = "45"\nlist_output_per_1m = "300"')
    )
    (prices / "2026-11-15.toml").write_text(newer, encoding="utf-8")
    billing.settings = dataclasses.replace(billing.settings, prices_dir=prices)


@pytest.fixture
def split(billing: Billing, tmp_path: Path) -> Billing:
    _two_versions(billing, tmp_path)
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="v1", ts="2026-11-10T12:00:00Z", usage=usage(600, 100)),
            record(event_id="v2", ts="2026-11-20T12:00:00Z", usage=usage(600, 100)),
        ],
    )
    billing.nightly()
    return billing


def _due(billing: Billing, layout: int) -> list[tuple[object, ...]]:
    con = jobs.connect(billing.settings.db_path, read_only=True)
    try:
        lines = statements.due_lines(con, "2026-11", "acct_plain", layout)["acct_plain"]
    finally:
        con.close()
    return [(ln.kind, ln.token_class, ln.price_version, ln.quantity_tokens, ln.amount) for ln in lines]


def test_one_line_per_unit_price_across_versions_rounded_once(split: Billing) -> None:
    assert LAYOUT_VERSION == 6
    # the exact rows stay one per version (what an auditor replaying a version reads)
    assert split.query(
        "SELECT price_version, token_class, quantity_tokens, amount_exact, amount FROM statement_lines ORDER BY 1, 2"
    ) == [
        ("2026-11-01", "input_uncached", 600, D("0.0045"), D("0.00")),
        ("2026-11-01", "output", 100, D("0.0045"), D("0.00")),
        ("2026-11-15", "input_uncached", 600, D("0.0045"), D("0.00")),
        ("2026-11-15", "output", 100, D("0.0045"), D("0.00")),
    ]
    assert _due(split, 6) == [
        ("usage", "input_uncached", BOTH, 1200, D("0.01")),
        ("usage", "output", BOTH, 200, D("0.01")),
    ]
    # a statement of layout 5 (a replay of one issued before) keeps one line per version
    assert _due(split, 5) == [
        ("usage", "input_uncached", "2026-11-01", 600, D("0.00")),
        ("usage", "input_uncached", "2026-11-15", 600, D("0.00")),
        ("usage", "output", "2026-11-01", 100, D("0.00")),
        ("usage", "output", "2026-11-15", 100, D("0.00")),
    ]
    # the analyst views add up as the statement does
    assert split.query("SELECT usage_usd, usage_exact FROM account_period_totals") == [(D("0.02"), D("0.009") * 2)]
    assert split.query("SELECT statement_total_usd FROM monthly_totals") == [(D("0.02"),)]
    assert split.query("SELECT revenue_statements_usd FROM margin_by_model") == [(D("0.02"),)]
    assert split.query(
        "SELECT token_class, price_versions, quantity_tokens, billed_requests, amount FROM printed_statement_lines "
        "ORDER BY 1"
    ) == [("input_uncached", BOTH, 1200, 2, D("0.01")), ("output", BOTH, 200, 2, D("0.01"))]


def test_the_draft_finance_summary_and_the_issued_statement_agree(split: Billing, tmp_path: Path) -> None:
    con = jobs.connect(split.settings.db_path, read_only=True)
    try:
        (draft,) = [r for r in finance_summary(con, "2026-11") if r[0] == "acct_plain"]
    finally:
        con.close()
    # usage_usd, adjustments_usd, total_usd, price_versions (SPEC section 4's columns 9-12)
    assert draft[4:12] == (2, 1200, 0, 200, D("0.02"), D("0.00"), D("0.02"), BOTH)

    out = tmp_path / "out"
    result = jobs.run_statements(split.settings, "2026-11", out, finalize=True, issue_date=date(2026, 12, 1))
    (number,) = [st.number for st in result.statements if st.number]
    sql = f"SELECT usage_usd, total_usd, price_versions FROM statements WHERE statement_number = '{number}'"
    issued = split.one(sql)
    assert issued == (D("0.02"), D("0.02"), BOTH)
    assert split.query(
        "SELECT line_no, token_class, price_version, quantity_tokens, amount FROM statement_issued_lines "
        f"WHERE statement_number = '{number}' ORDER BY line_no"
    ) == [(1, "input_uncached", BOTH, 1200, D("0.01")), (2, "output", BOTH, 200, D("0.01"))]
    folder = out / "statements" / "2026-11"
    rows = list(csv.DictReader(io.StringIO((folder / f"{number}-lines.csv").read_text(encoding="utf-8"))))
    assert [(r["token_class"], r["price_version"], r["amount_usd"]) for r in rows] == [
        ("input_uncached", BOTH, "0.01"),
        ("output", BOTH, "0.01"),
    ]
    html = split.one(f"SELECT content FROM statement_files WHERE statement_number = '{number}' AND kind = 'html'")
    assert b"prices 2026-11-01, 2026-11-15" in html
    # issued: the reconciliation has nothing pending (no phantom cent between the views and it)
    assert split.query(
        "SELECT issued_usage_usd, rated_now_usage_usd, late_pending_usd FROM statement_reconciliation "
        "WHERE account_id = 'acct_plain'"
    ) == [(D("0.02"), D("0.02"), D("0.00"))]


def test_late_usage_is_one_adjustment_per_unit_price(split: Billing, tmp_path: Path) -> None:
    """November issued as one line per class; 2,000 input and 100 output tokens arrive late on
    the 25th (version 2026-11-15). December's adjustment: +2,000 x 7.5/1M = 0.015 -> 0.02 and
    +100 x 45/1M = 0.0045 -> 0.00, one line each (keyed by unit price, not split per version)."""
    out = tmp_path / "out"
    jobs.run_statements(split.settings, "2026-11", out, finalize=True, issue_date=date(2026, 12, 1))
    split.log(
        "requests-2026-12-01.jsonl",
        [record(event_id="late", ts="2026-11-25T10:00:00Z", usage=usage(2000, 100))],
    )
    split.nightly("2026-12-01")
    assert _due_december(split) == [
        ("adjustment", "input_uncached", BOTH, 2000, D("0.02")),
        ("adjustment", "output", BOTH, 100, D("0.00")),
    ]


def _due_december(billing: Billing) -> list[tuple[object, ...]]:
    con = jobs.connect(billing.settings.db_path, read_only=True)
    try:
        lines = statements.due_lines(con, "2026-12", "acct_plain")["acct_plain"]
    finally:
        con.close()
    return [(ln.kind, ln.token_class, ln.price_version, ln.quantity_tokens, ln.amount) for ln in lines]
