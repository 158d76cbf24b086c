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
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

from core.money import D
from pipeline import credit_notes, jobs, snapshot, statements
from reports.finance import finance_summary
from reports.statement_model import LAYOUT_VERSION
from tests.conftest import Billing, built_once, record, usage

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


def _build_split(billing: Billing) -> None:
    """gpt-5.5 used under two price versions in November (v1 on the 10th, v2 on the 20th), rated."""
    _two_versions(billing, billing.root)
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="v1", ts="2026-11-10T12:00:00Z", usage=usage(600, 100)),
            record(event_id="v2", ts="2026-11-20T12:00:00Z", usage=usage(600, 100)),
        ],
    )
    billing.nightly()


split = built_once("split", _build_split)


def _due(billing: Billing, period: str, layout: int = LAYOUT_VERSION) -> list[tuple[object, ...]]:
    """acct_plain's lines due for ``period`` on a statement of ``layout``."""
    con = jobs.connect(billing.settings.db_path, read_only=True)
    try:
        lines = statements.due_lines(con, period, "acct_plain", layout).get("acct_plain", [])
    finally:
        con.close()
    return [
        (ln.kind, ln.token_class, ln.price_version, ln.quantity_tokens, ln.amount, ln.credited_offset) for ln in lines
    ]


def test_one_line_per_unit_price_across_versions_rounded_once(split: Billing) -> None:
    assert LAYOUT_VERSION >= 6
    # the exact rows stay one per version (what an auditor replaying a version reads)
    assert split.query(
        "SELECT price_version, token_class, quantity_tokens, amount_exact, amount FROM statement_lines ORDER BY 1, 2"
    ) == [
        ("2026-11-01", "input_uncached", 600, D("0.0045"), D("0.00")),
        ("2026-11-01", "output", 100, D("0.0045"), D("0.00")),
        ("2026-11-15", "input_uncached", 600, D("0.0045"), D("0.00")),
        ("2026-11-15", "output", 100, D("0.0045"), D("0.00")),
    ]
    assert _due(split, "2026-11", 6) == [
        ("usage", "input_uncached", BOTH, 1200, D("0.01"), D("0.00")),
        ("usage", "output", BOTH, 200, D("0.01"), D("0.00")),
    ]
    # a statement of layout 5 (a replay of one issued before) keeps one line per version
    assert _due(split, "2026-11", 5) == [
        ("usage", "input_uncached", "2026-11-01", 600, D("0.00"), D("0.00")),
        ("usage", "input_uncached", "2026-11-15", 600, D("0.00"), D("0.00")),
        ("usage", "output", "2026-11-01", 100, D("0.00"), D("0.00")),
        ("usage", "output", "2026-11-15", 100, D("0.00"), D("0.00")),
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
    +100 x 45/1M = 0.0045 -> 0.00, one line each (keyed by unit price, not split per version).
    Layouts 6-7 name the versions of the period's line; layout 8 those that priced the late
    tokens (tests/test_adjustment_detail.py)."""
    out = tmp_path / "out"
    jobs.run_statements(split.settings, "2026-11", out, finalize=True, issue_date=date(2026, 12, 1))
    split.log(
        "requests-2026-12-01.jsonl",
        [record(event_id="late", ts="2026-11-25T10:00:00Z", usage=usage(2000, 100))],
    )
    split.nightly("2026-12-01")
    assert _due(split, "2026-12", 7) == [
        ("adjustment", "input_uncached", BOTH, 2000, D("0.02"), D("0.00")),
        ("adjustment", "output", BOTH, 100, D("0.00"), D("0.00")),
    ]
    assert _due(split, "2026-12", 8) == [
        ("adjustment", "input_uncached", "2026-11-15", 2000, D("0.02"), D("0.00")),
        ("adjustment", "output", "2026-11-15", 100, D("0.00"), D("0.00")),
    ]


def test_duckdb_cli_1_5_reads_the_new_views_on_the_analyst_snapshot(billing: Billing, tmp_path: Path) -> None:
    _two_versions(billing, tmp_path)
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="v1", ts="2026-11-10T12:00:00Z", usage=usage(600, 100)),
            record(event_id="v2", ts="2026-11-20T12:00:00Z", usage=usage(600, 100)),
        ],
    )
    billing.nightly()
    cli = shutil.which("duckdb", path=str(Path(sys.executable).parent))
    assert cli is not None
    target = snapshot.publish_now(billing.settings.db_path, tmp_path / "analyst.duckdb")
    for view in (
        "printed_statement_lines",
        "account_period_totals",
        "monthly_totals",
        "margin_by_model",
        "statement_reconciliation",
        "top_accounts",
    ):
        res = subprocess.run(
            [cli, "-readonly", "-csv", str(target), f"SELECT * FROM {view}"], capture_output=True, text=True, timeout=60
        )
        assert res.returncode == 0, (view, res.stderr)


def _build_issued5(billing: Billing) -> None:
    """November issued with layout 5 into ``<root>/out``: gpt-5.5 used under both price versions
    (same unit price), 100,000 input + 1,000 output tokens each: four lines (input v1 0.75,
    input v2 0.75, output v1 0.05, output v2 0.05)."""
    _two_versions(billing, billing.root)
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="a1", request_id="r1", ts="2026-11-10T12:00:00Z", usage=usage(100_000, 1_000)),
            record(event_id="b1", request_id="r2", ts="2026-11-20T12:00:00Z", usage=usage(100_000, 1_000)),
        ],
    )
    billing.nightly()
    jobs.run_statements(
        billing.settings, "2026-11", billing.root / "out", finalize=True, issue_date=date(2026, 12, 1), layout_version=5
    )


issued5 = built_once("issued5", _build_issued5)


def _number(billing: Billing, period: str = "2026-11") -> str:
    return billing.one(
        f"SELECT statement_number FROM statements WHERE period = '{period}' AND account_id = 'acct_plain'"
    )


def test_a_credited_line_of_a_layout_5_period_is_not_refunded_again_on_a_layout_6_statement(issued5: Billing) -> None:
    number = _number(issued5)
    assert issued5.query(
        f"SELECT line_no, token_class, price_version, quantity_tokens, amount FROM statement_issued_lines "
        f"WHERE statement_number = '{number}' ORDER BY line_no"
    ) == [
        (1, "input_uncached", "2026-11-01", 100_000, D("0.75")),
        (2, "input_uncached", "2026-11-15", 100_000, D("0.75")),
        (3, "output", "2026-11-01", 1_000, D("0.05")),
        (4, "output", "2026-11-15", 1_000, D("0.05")),
    ]
    # finance credits line 1 (the 2026-11-01 input line) in full: $0.75 given back
    credit_notes.issue_credit_note(
        issued5.settings, number, "disputed", issued5.root / "out", line_nos=[1], issue_date=date(2026, 12, 2)
    )
    # a late retry of request r1 (the credited line's request) supersedes it with 10,000 input tokens
    issued5.log(
        "requests-2026-12-03.jsonl",
        [record(event_id="a2", request_id="r1", attempt=2, ts="2026-11-10T12:05:00Z", usage=usage(10_000, 1_000))],
    )
    issued5.nightly("2026-12-03")
    # layout 5 (the rule the period was issued and credited under): the 90,000 tokens removed
    # belong to the credited line, already given back: nothing refunded again
    assert _due(issued5, "2026-12", layout=5) == [
        ("adjustment", "input_uncached", "2026-11-01", -90_000, D("0.00"), D("0.68")),
    ]
    # layout 6 (what December is issued with) keys the period as it was issued, per version: the
    # same 0.00 (offset 0.68), not -0.68 refunded a second time
    jobs.run_statements(
        issued5.settings, "2026-12", issued5.root / "out", finalize=True, issue_date=date(2027, 1, 1), layout_version=6
    )
    assert issued5.query(
        "SELECT layout_version, adjustments_usd, total_usd FROM statements WHERE period = '2026-12'"
    ) == [(6, D("0.00"), D("0.00"))]


def test_late_usage_of_an_uncredited_version_of_a_layout_5_period_is_billed_on_layout_6(issued5: Billing) -> None:
    """Same start; in December request r1 (credited line, 2026-11-01) drops 90,000 input tokens
    and 90,000 input tokens of new November usage arrive on the 20th (2026-11-15, never credited)."""
    number = _number(issued5)
    credit_notes.issue_credit_note(
        issued5.settings, number, "disputed", issued5.root / "out", line_nos=[1], issue_date=date(2026, 12, 2)
    )
    issued5.log(
        "requests-2026-12-03.jsonl",
        [
            record(event_id="a2", request_id="r1", attempt=2, ts="2026-11-10T12:05:00Z", usage=usage(10_000, 1_000)),
            record(event_id="c1", request_id="r3", ts="2026-11-21T12:00:00Z", usage=usage(90_000, 0)),
        ],
    )
    issued5.nightly("2026-12-03")
    five = _due(issued5, "2026-12", layout=5)
    assert five == [
        ("adjustment", "input_uncached", "2026-11-01", -90_000, D("0.00"), D("0.68")),
        ("adjustment", "input_uncached", "2026-11-15", 90_000, D("0.68"), D("0.00")),
    ]
    # layout 6: the late 2026-11-15 usage (+$0.68, on a line nobody credited) is billed as layout 5
    # bills it, not netted against the tokens removed from the credited line
    assert sum(ln[4] for ln in _due(issued5, "2026-12")) == D("0.68")


def test_a_period_adjusted_per_version_stays_per_version_in_the_views(billing: Billing, tmp_path: Path) -> None:
    """November issued with layout 5 (acct_enterprise had usage; acct_plain none). acct_plain's
    November usage arrives late under both versions (600 input + 100 output each: 0.0045 per
    version and class) and is billed per version on December's layout-5 statement (4 x 0.00).
    Nothing more is ever due for it (January, layout 6, has no adjustment), yet the views merge
    acct_plain's November lines (layout 6) because it has no November statement."""
    _two_versions(billing, tmp_path)
    billing.log(
        "requests-2026-11-20.jsonl", [record(event_id="e1", account_id="acct_enterprise", ts="2026-11-10T12:00:00Z")]
    )
    billing.nightly()
    out = tmp_path / "out"
    jobs.run_statements(billing.settings, "2026-11", out, finalize=True, issue_date=date(2026, 12, 1), layout_version=5)
    billing.log(
        "requests-2026-12-02.jsonl",
        [
            record(event_id="v1", ts="2026-11-10T12:00:00Z", usage=usage(600, 100)),
            record(event_id="v2", ts="2026-11-20T12:00:00Z", usage=usage(600, 100)),
            record(event_id="d1", account_id="acct_enterprise", ts="2026-12-02T12:00:00Z"),
        ],
    )
    billing.nightly("2026-12-02")
    jobs.run_statements(billing.settings, "2026-12", out, finalize=True, issue_date=date(2027, 1, 1), layout_version=5)
    assert billing.query(
        "SELECT l.price_version, l.token_class, l.quantity_tokens, l.amount FROM statement_issued_lines l "
        "JOIN statements s USING (statement_number) WHERE s.account_id = 'acct_plain' ORDER BY 1, 2"
    ) == [
        ("2026-11-01", "input_uncached", 600, D("0.00")),
        ("2026-11-01", "output", 100, D("0.00")),
        ("2026-11-15", "input_uncached", 600, D("0.00")),
        ("2026-11-15", "output", 100, D("0.00")),
    ]
    assert [ln for ln in _due(billing, "2027-01") if ln[0] == "adjustment"] == []  # nothing left to bill
    assert billing.query(
        "SELECT rated_now_usage_usd, late_adjusted_usd, late_pending_usd FROM statement_reconciliation "
        "WHERE account_id = 'acct_plain' AND period = '2026-11'"
    ) == [(D("0.00"), D("0.00"), D("0.00"))]


def test_an_override_line_across_versions_keeps_its_price_basis(billing: Billing, tmp_path: Path) -> None:
    """acct_pro has an override for gpt-5.5-pro (output 250/1M) from 2026-11-01; 2026-11-15
    changes gpt-5.5-pro's list output price 270 -> 300. Both halves of the month are billed at
    250: one merged line in layout 6."""
    _two_versions(billing, tmp_path)
    accounts = billing.settings.accounts_file
    accounts.write_text(
        accounts.read_text(encoding="utf-8")
        + (
            '\n[[accounts]]\nid = "acct_pro"\nlegal_name = "Pro Ltd"\n\n[[accounts.overrides]]\n'
            'model = "openai/gpt-5.5-pro"\neffective_from = 2026-11-01T00:00:00Z\n'
            'input_per_1m = "40"\ncached_input_per_1m = "4"\noutput_per_1m = "250"\n'
        ),
        encoding="utf-8",
    )
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="p1", account_id="acct_pro", model="openai/gpt-5.5-pro", ts="2026-11-10T12:00:00Z"),
            record(event_id="p2", account_id="acct_pro", model="openai/gpt-5.5-pro", ts="2026-11-20T12:00:00Z"),
        ],
    )
    billing.nightly()

    def lines(layout: int):
        res = jobs.run_statements(
            billing.settings, "2026-11", tmp_path / f"out{layout}", account_id="acct_pro", layout_version=layout
        )
        (st,) = res.statements
        return [
            (ln.token_class, ln.price_version, ln.unit_price_per_1m, ln.list_price_per_1m, ln.price_basis)
            for ln in st.document.lines
        ]

    five = lines(5)
    assert ("output", "2026-11-15", D("250"), D("300"), "negotiated price") in [
        (c, v, D(u), None if lp is None else D(lp), b) for c, v, u, lp, b in five
    ]
    six = [(c, v, D(u), None if lp is None else D(lp), b) for c, v, u, lp, b in lines(6)]
    (out6,) = [ln for ln in six if ln[0] == "output"]
    # the two list prices differ (none printed), but 250 is an override against both
    assert out6[4] == "negotiated price"


def test_a_cached_line_at_the_input_price_is_recognised_when_version_sets_differ(
    billing: Billing, tmp_path: Path
) -> None:
    """gpt-5.5 has no cached price (cached = input 7.5). Uncached input on the 10th and 20th
    (versions 2026-11-01;2026-11-15), cached input only on the 20th (2026-11-15)."""
    from reports.render import printed_lines

    _two_versions(billing, tmp_path)
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="k1", ts="2026-11-10T12:00:00Z", usage=usage(100_000, 1_000)),
            record(event_id="k2", ts="2026-11-20T12:00:00Z", usage=usage(100_000, 1_000, cached=10_000)),
        ],
    )
    billing.nightly()

    def at_input(layout: int):
        res = jobs.run_statements(
            billing.settings, "2026-11", tmp_path / f"o{layout}", account_id="acct_plain", layout_version=layout
        )
        (st,) = res.statements
        return [(ln.token_class, ln.price_version) for ln in printed_lines(st.document).at_input_price]

    assert at_input(5) == [("input_cached", "2026-11-15")]
    assert at_input(6) == [("input_cached", "2026-11-15")]  # "same price as input", not 7.50 again


def test_reprice_of_a_database_not_yet_migrated_to_033(billing: Billing, tmp_path: Path) -> None:
    """replay attaches the live database READ_ONLY and never migrates it; replays of databases not
    yet migrated are supported (test_replay: 024): the diff must not need migration 033's view."""
    import duckdb

    from pipeline import replay

    billing.log("requests-2026-11-20.jsonl", [record(event_id="x1", ts="2026-11-10T12:00:00Z")])
    billing.nightly()
    jobs.run_statements(billing.settings, "2026-11", tmp_path / "out", finalize=True, issue_date=date(2026, 12, 1))
    con = duckdb.connect(str(billing.settings.db_path))
    con.execute("DROP VIEW printed_statement_lines")  # as main wrote it before 033
    con.execute("DELETE FROM schema_migrations WHERE name LIKE '033_%'")
    con.close()
    report = replay.replay_period(billing.settings, "2026-11", tmp_path / "out", prices="2026-11-01")
    assert {d.difference for d in report.diffs} == {D("0")}


def test_a_hold_back_of_a_layout_5_version_line_does_not_swallow_usage_of_the_other_version(issued5: Billing) -> None:
    """The upgrade path: November and December issued with layout 5. Line 1 (input, 2026-11-01)
    credited; r1's retry removes 90,000 of its tokens: December (layout 5) prints 0.00 for them
    and holds back 0.68. January is the first layout-6 statement: 90,000 new input tokens of
    November arrive on the 21st (2026-11-15 line, never credited, nothing held back on it)."""
    out = issued5.root / "out"
    number = _number(issued5)
    credit_notes.issue_credit_note(
        issued5.settings, number, "disputed", out, line_nos=[1], issue_date=date(2026, 12, 2)
    )
    issued5.log(
        "requests-2026-12-03.jsonl",
        [
            record(event_id="a2", request_id="r1", attempt=2, ts="2026-11-10T12:05:00Z", usage=usage(10_000, 1_000)),
            record(event_id="d1", request_id="r9", ts="2026-12-03T12:00:00Z", usage=usage(1_000, 100)),
        ],
    )
    issued5.nightly("2026-12-03")
    jobs.run_statements(issued5.settings, "2026-12", out, finalize=True, issue_date=date(2027, 1, 1), layout_version=5)
    assert issued5.query(
        "SELECT l.price_version, l.quantity_tokens, l.amount FROM statement_issued_lines l JOIN statements s "
        "USING (statement_number) WHERE s.period = '2026-12' AND l.kind = 'adjustment'"
    ) == [("2026-11-01", -90_000, D("0.00"))]
    issued5.log(
        "requests-2027-01-02.jsonl",
        [
            record(event_id="c1", request_id="r3", ts="2026-11-21T12:00:00Z", usage=usage(90_000, 0)),
        ],
    )
    issued5.nightly("2027-01-02")
    # layout 5 bills the new 2026-11-15 tokens: +90,000 x 7.5/1M = 0.675 -> +0.68
    assert [ln[4] for ln in _due(issued5, "2027-01", layout=5) if ln[0] == "adjustment"] == [D("0.68")]
    # layout 6: the same +0.68 (what was held back belongs to the other version's line)
    assert [ln[4] for ln in _due(issued5, "2027-01") if ln[0] == "adjustment"] == [D("0.68")]


def test_a_merged_line_credited_then_found_smaller_is_not_refunded_twice(billing: Billing, tmp_path: Path) -> None:
    """November issued with layout 6 (line 1 merged: 200,000 input = 1.50), credited in full; a
    retry removes 90,000 tokens: 0.00 with 0.68 already credited, not -0.68 again."""
    _two_versions(billing, tmp_path)
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="a1", request_id="r1", ts="2026-11-10T12:00:00Z", usage=usage(100_000, 1_000)),
            record(event_id="b1", request_id="r2", ts="2026-11-20T12:00:00Z", usage=usage(100_000, 1_000)),
        ],
    )
    billing.nightly()
    out = tmp_path / "out"
    jobs.run_statements(billing.settings, "2026-11", out, finalize=True, issue_date=date(2026, 12, 1))
    number = _number(billing)
    rep = credit_notes.issue_credit_note(
        billing.settings, number, "disputed", out, line_nos=[1], issue_date=date(2026, 12, 2)
    )
    html = billing.one(
        f"SELECT content FROM credit_note_files WHERE credit_note_number = '{rep.number}' AND kind = 'html'"
    )
    assert b"prices 2026-11-01, 2026-11-15" in html
    billing.log(
        "requests-2026-12-03.jsonl",
        [
            record(event_id="a2", request_id="r1", attempt=2, ts="2026-11-10T12:05:00Z", usage=usage(10_000, 1_000)),
        ],
    )
    billing.nightly("2026-12-03")
    assert _due(billing, "2026-12", 7) == [("adjustment", "input_uncached", BOTH, -90_000, D("0.00"), D("0.68"))]
    # layout 8: the line names the version that priced the 90,000 tokens (both attempts: 2026-11-01)
    assert _due(billing, "2026-12", 8) == [
        ("adjustment", "input_uncached", "2026-11-01", -90_000, D("0.00"), D("0.68"))
    ]
