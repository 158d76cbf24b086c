"""Statement layout 8: the detail CSV lists the requests behind each prior-period adjustment,
and an adjustment line names the price versions that priced its own tokens.

acct_plain, openai/gpt-5.5 at its list price: input 7.5/1M, output 45/1M. November, issued
on 2026-12-01 (IG-2026-11-000001):

    r1 attempt 1 (a1)  400,000 input, 100,000 output   3.00 + 4.50 = 7.50
    r2 attempt 1 (b1)    1,000 input,      10 output   0.0075 + 0.00045

December's file brings two late November records: a retry of r1 (a2: 400,000 input, 60,000
output), which supersedes a1, and a new request r3 (c1: 123,457 input, 3,333 output).
December's adjustment lines for November:

    input   +400,000 - 400,000 + 123,457 = +123,457 x 7.5/1M = 0.9259275 -> +0.93
    output   +60,000 - 100,000 +   3,333 =  -36,667 x 45/1M  = -1.650015 -> -1.65

and the detail CSV's adjustment rows: a1 removed (-400,000, -100,000, -7.5, billed on
IG-2026-11-000001), a2 added (5.7 = 3.00 + 2.70), c1 added (0.9259275 + 0.149985 =
1.0759125): their charges sum to -0.7240875, the two lines' tokens x unit price exactly.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline import jobs, replay, statements
from reports.finance import finance_summary
from reports.statement_model import LAYOUT_VERSION
from tests.conftest import Billing, BuiltOnce, record, usage
from tests.test_lines_by_unit_price import _two_versions

NOVEMBER = "IG-2026-11-000001"
DECEMBER = "IG-2026-12-000002"


def _detail(out: Path, period: str, number: str) -> list[dict[str, str]]:
    text = (out / "statements" / period / f"{number}-detail.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def _lines(out: Path, period: str, number: str) -> list[dict[str, str]]:
    text = (out / "statements" / period / f"{number}-lines.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def _issue_november_then_december(billing: Billing, out: Path, layout_version: int | None = None) -> None:
    """November bills a1 and b1 and is issued; December's file brings a1's retry a2, a late
    request c1 of November and December's own d1, and December is issued (both at
    ``layout_version``, the current layout when None)."""
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="a1", request_id="r1", ts="2026-11-10T12:00:00Z", usage=usage(400_000, 100_000)),
            record(event_id="b1", request_id="r2", ts="2026-11-12T12:00:00Z", usage=usage(1_000, 10)),
        ],
    )
    billing.nightly()
    jobs.run_statements(
        billing.settings, "2026-11", out, finalize=True, issue_date=date(2026, 12, 1), layout_version=layout_version
    )
    billing.log(
        "requests-2026-12-01.jsonl",
        [
            record(event_id="a2", request_id="r1", attempt=2, ts="2026-11-10T12:00:05Z", usage=usage(400_000, 60_000)),
            record(event_id="c1", request_id="r3", ts="2026-11-28T09:30:00Z", usage=usage(123_457, 3_333)),
            record(event_id="d1", request_id="r4", ts="2026-12-02T08:00:00Z", usage=usage(2_000, 200)),
        ],
    )
    billing.nightly("2026-12-01")
    jobs.run_statements(
        billing.settings, "2026-12", out, finalize=True, issue_date=date(2027, 1, 1), layout_version=layout_version
    )


@pytest.fixture(scope="module")
def _late_once(tmp_path_factory: pytest.TempPathFactory) -> BuiltOnce:
    return BuiltOnce(
        tmp_path_factory, "late", lambda billing: _issue_november_then_december(billing, billing.root / "out")
    )


@pytest.fixture
def late(_late_once: BuiltOnce) -> tuple[Billing, Path]:
    """November and December issued (:func:`_issue_november_then_december`): built once per
    module, a fresh copy for each test."""
    billing = _late_once.restore()
    return billing, billing.root / "out"


def test_the_detail_csv_lists_the_requests_behind_an_adjustment_and_they_add_up(late: tuple[Billing, Path]) -> None:
    billing, out = late
    assert LAYOUT_VERSION >= 8
    lines = [r for r in _lines(out, "2026-12", DECEMBER) if r["kind"] == "adjustment"]
    assert [(r["original_period"], r["token_class"], r["quantity_tokens"], r["amount_usd"]) for r in lines] == [
        ("2026-11", "input_uncached", "123457", "0.93"),
        ("2026-11", "output", "-36667", "-1.65"),
    ]
    detail = _detail(out, "2026-12", DECEMBER)
    # December's own request first, as before; then the adjustment's, removed before added
    assert [(d["kind"], d["original_period"], d["change"], d["event_id"]) for d in detail] == [
        ("usage", "2026-12", "", "d1"),
        ("adjustment", "2026-11", "removed", "a1"),
        ("adjustment", "2026-11", "added", "a2"),
        ("adjustment", "2026-11", "added", "c1"),
    ]
    rows = [d for d in detail if d["kind"] == "adjustment"]
    assert [
        (d["request_id"], d["attempt"], d["input_uncached_tokens"], d["output_tokens"], d["charge_usd"], d["billed_on"])
        for d in rows
    ] == [
        ("r1", "1", "-400000", "-100000", "-7.5", NOVEMBER),
        ("r1", "2", "400000", "60000", "5.7", ""),
        ("r3", "1", "123457", "3333", "1.0759125", ""),
    ]
    # the rows reconcile the lines: tokens per class, and their exact charge rounds to the line
    assert sum(int(d["input_uncached_tokens"]) for d in rows) == 123_457
    assert sum(int(d["output_tokens"]) for d in rows) == -36_667
    exact = sum((Decimal(d["charge_usd"]) for d in rows), Decimal(0))
    assert str(exact) == "-0.7240875"
    assert exact.quantize(Decimal("0.01")) == sum((Decimal(r["amount_usd"]) for r in lines), Decimal(0))
    # November's detail CSV (issued at this layout too) says what each row is
    assert [(d["kind"], d["original_period"], d["event_id"]) for d in _detail(out, "2026-11", NOVEMBER)] == [
        ("usage", "2026-11", "a1"),
        ("usage", "2026-11", "b1"),
    ]
    # and replay re-issues both months byte for byte
    for period in ("2026-11", "2026-12"):
        report = replay.replay_period(billing.settings, period, out / "replay")
        assert report.checks and report.matches, [c for c in report.checks if c.status != "MATCH"]


def test_a_later_adjustment_lists_only_what_changed_since_the_last_statement(late: tuple[Billing, Path]) -> None:
    """January: one more late November request (e1, 10,000 input x 7.5/1M = 0.075 -> 0.08).
    December listed a1, a2 and c1; January lists e1 alone and adds up to its own line."""
    billing, out = late
    billing.log(
        "requests-2027-01-02.jsonl",
        [record(event_id="e1", request_id="r5", ts="2026-11-29T10:00:00Z", usage=usage(10_000, 0))],
    )
    billing.nightly("2027-01-02")
    result = jobs.run_statements(billing.settings, "2027-01", out, finalize=True, issue_date=date(2027, 2, 1))
    (number,) = [st.number for st in result.statements]
    assert number is not None
    adjustments = [r for r in _lines(out, "2027-01", number) if r["kind"] == "adjustment"]
    assert [(r["token_class"], r["quantity_tokens"], r["amount_usd"]) for r in adjustments] == [
        ("input_uncached", "10000", "0.08")
    ]
    detail = _detail(out, "2027-01", number)
    assert [(d["kind"], d["change"], d["event_id"], d["charge_usd"]) for d in detail] == [
        ("adjustment", "added", "e1", "0.075")
    ]
    report = replay.replay_period(billing.settings, "2027-01", out / "replay")
    assert report.checks and report.matches, [c for c in report.checks if c.status != "MATCH"]


def test_a_statement_of_layout_7_keeps_its_detail_csv(late: tuple[Billing, Path]) -> None:
    """Replays re-issue a layout 7 statement's detail CSV as it was: the period's requests only."""
    billing, _ = late
    con = jobs.connect(billing.settings.db_path, read_only=True)
    try:
        due = statements.due_lines(con, "2026-12", "acct_plain", 7)
        data = statements.detail_csv(con, "acct_plain", "2026-12", 7, due["acct_plain"])
    finally:
        con.close()
    assert data.decode("utf-8").splitlines()[0] == ",".join(statements.DETAIL_HEADER)
    assert [r["event_id"] for r in csv.DictReader(io.StringIO(data.decode("utf-8")))] == ["d1"]


def _due_versions(billing: Billing, layout: int) -> list[tuple[str, str, int]]:
    con = jobs.connect(billing.settings.db_path, read_only=True)
    try:
        lines = statements.due_lines(con, "2026-12", "acct_plain", layout).get("acct_plain", [])
    finally:
        con.close()
    return [(ln.token_class, ln.price_version, ln.quantity_tokens) for ln in lines if ln.kind == "adjustment"]


def test_an_adjustment_names_only_the_versions_that_priced_its_tokens(billing: Billing, tmp_path: Path) -> None:
    """Version 2026-11-15 reprices only gpt-5.5-pro: gpt-5.5 costs 7.5/45 per 1M in both, so
    November's lines are one per class, "prices 2026-11-01, 2026-11-15". A late request of the
    25th (2026-11-15 only) is +2,000 input (0.015 -> 0.02) and +100 output (0.0045 -> 0.00):
    layout 7 named both versions, though 2026-11-01 priced none of its tokens; layout 8 names
    2026-11-15, and the statement lists only that version."""
    _two_versions(billing, tmp_path)
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="v1", request_id="q1", ts="2026-11-10T12:00:00Z", usage=usage(600, 100)),
            record(event_id="v2", request_id="q2", ts="2026-11-20T12:00:00Z", usage=usage(600, 100)),
        ],
    )
    billing.nightly()
    out = tmp_path / "out"
    jobs.run_statements(billing.settings, "2026-11", out, finalize=True, issue_date=date(2026, 12, 1))
    billing.log(
        "requests-2026-12-01.jsonl",
        [record(event_id="late", ts="2026-11-25T10:00:00Z", usage=usage(2000, 100))],
    )
    billing.nightly("2026-12-01")
    both = "2026-11-01;2026-11-15"
    assert _due_versions(billing, 7) == [("input_uncached", both, 2000), ("output", both, 100)]
    assert _due_versions(billing, 8) == [("input_uncached", "2026-11-15", 2000), ("output", "2026-11-15", 100)]
    # the draft finance summary's price_versions agrees with the draft statement
    con = jobs.connect(billing.settings.db_path, read_only=True)
    try:
        assert [row[11] for row in finance_summary(con, "2026-12")] == ["2026-11-15"]
    finally:
        con.close()
    result = jobs.run_statements(billing.settings, "2026-12", out, finalize=True, issue_date=date(2027, 1, 1))
    (st,) = result.statements
    texts = [adj.description for adj in st.document.adjustments]
    assert texts == [
        "Late usage for 2026-11: OpenAI GPT-5.5, input uncached, +2,000 tokens at $7.5/1M (prices 2026-11-15)",
        "Late usage for 2026-11: OpenAI GPT-5.5, output, +100 tokens at $45/1M (prices 2026-11-15)",
    ]
    assert [r.version_id for r in st.document.price_versions] == ["2026-11-15"]


def test_a_retry_across_versions_names_both(billing: Billing, tmp_path: Path) -> None:
    """A request of the 14th (attempt 1, 2026-11-01: 600 input, 100 output) retried on the 15th
    (attempt 2, 2026-11-15: 800 input, 100 output), the retry arriving late: the adjustment is
    +200 input (-600 at 2026-11-01, +800 at 2026-11-15: both versions priced its tokens) and no
    output line (-100 and +100 cancel out: no line at all)."""
    _two_versions(billing, tmp_path)
    billing.log(
        "requests-2026-11-20.jsonl",
        [record(event_id="w1", request_id="q1", ts="2026-11-14T23:59:59Z", usage=usage(600, 100))],
    )
    billing.nightly()
    out = tmp_path / "out"
    jobs.run_statements(billing.settings, "2026-11", out, finalize=True, issue_date=date(2026, 12, 1))
    billing.log(
        "requests-2026-12-01.jsonl",
        [record(event_id="w2", request_id="q1", attempt=2, ts="2026-11-15T00:00:01Z", usage=usage(800, 100))],
    )
    billing.nightly("2026-12-01")
    assert _due_versions(billing, 8) == [("input_uncached", "2026-11-01;2026-11-15", 200)]


def test_requests_with_formula_and_line_break_ids_are_recognised_as_issued(billing: Billing, tmp_path: Path) -> None:
    """November's detail CSV wrote these ids neutralized and quoted ("'=1+1", a CR inside a
    cell); read back, they are the attempts November billed, not late ones: December's
    adjustment lists the late request alone (1,000 input x 7.5/1M + 100 output x 45/1M)."""
    hostile = {"=e\r=1+1": "r\r=1+1", "+e\n+2": 'r,"x"\r@SUM(A1)', "-e\r\n-3": "r\r\n-3", "'=e": "plain"}
    billing.log(
        "requests-2026-11-20.jsonl",
        [record(event_id=k, request_id=v, usage=usage(1000, 100)) for k, v in hostile.items()],
    )
    billing.nightly()
    out = tmp_path / "out"
    jobs.run_statements(billing.settings, "2026-11", out, finalize=True, issue_date=date(2026, 12, 1))
    billing.log("requests-2026-12-01.jsonl", [record(event_id="late", ts="2026-11-28T00:00:00Z")])
    billing.nightly("2026-12-01")
    result = jobs.run_statements(billing.settings, "2026-12", out, finalize=True, issue_date=date(2027, 1, 1))
    (st,) = result.statements
    assert st.number is not None
    assert [(d["change"], d["event_id"], d["charge_usd"]) for d in _detail(out, "2026-12", st.number)] == [
        ("added", "late", "0.012")
    ]


def test_a_period_issued_with_layout_7_is_the_baseline_and_earlier_layout_7_lines_are_rows(
    billing: Billing, tmp_path: Path
) -> None:
    """The first layout 8 statements adjust periods issued before it. November issued with
    layout 7 (a1, b1 as in the module docstring), December with layout 7 (a2 and c1 arrive:
    +123,457 input 0.93, -36,667 output -1.65, no rows: layout 7 lists none), January with
    layout 8 after e1 arrives (10,000 input, 0.075 -> 0.08). November's detail CSV (layout 7:
    no kind column) is the baseline: a1 removed, a2, c1 and e1 added, and December's two lines
    taken back as billed_before rows (-123,457 x 7.5/1M = -0.9259275, +36,667 x 45/1M =
    1.650015), so the rows still add up to January's line: 10,000 tokens, 0.075."""
    out = tmp_path / "out"
    _issue_november_then_december(billing, out, layout_version=7)
    assert [d["event_id"] for d in _detail(out, "2026-12", DECEMBER)] == ["d1"]  # layout 7: its own requests
    billing.log(
        "requests-2027-01-02.jsonl",
        [record(event_id="e1", request_id="r5", ts="2026-11-29T10:00:00Z", usage=usage(10_000, 0))],
    )
    billing.nightly("2027-01-02")
    result = jobs.run_statements(billing.settings, "2027-01", out, finalize=True, issue_date=date(2027, 2, 1))
    (st,) = result.statements
    assert st.number is not None and st.document.layout_version == LAYOUT_VERSION  # 8 on: it lists the rows
    assert [(a.amount, a.description.split("(")[-1]) for a in st.document.adjustments] == [
        (Decimal("0.08"), "prices 2026-11-01)")
    ]
    rows = _detail(out, "2027-01", st.number)
    assert [
        (d["change"], d["event_id"], d["input_uncached_tokens"], d["output_tokens"], d["charge_usd"], d["billed_on"])
        for d in rows
    ] == [  # fmt: skip
        ("removed", "a1", "-400000", "-100000", "-7.5", NOVEMBER),
        ("added", "a2", "400000", "60000", "5.7", ""),
        ("added", "c1", "123457", "3333", "1.0759125", ""),
        ("added", "e1", "10000", "0", "0.075", ""),
        ("billed_before", "", "-123457", "0", "-0.9259275", DECEMBER),
        ("billed_before", "", "0", "36667", "1.650015", DECEMBER),
    ]
    assert sum(int(d["input_uncached_tokens"]) for d in rows) == 10_000
    assert sum(int(d["output_tokens"]) for d in rows) == 0
    assert str(sum((Decimal(d["charge_usd"]) for d in rows), Decimal(0))) == "0.0750000"
    # February: f1 (20,000 input, 0.15) arrives; January's rows are the baseline now, December's
    # lines are not taken back a second time
    billing.log(
        "requests-2027-02-02.jsonl",
        [record(event_id="f1", request_id="r6", ts="2026-11-30T10:00:00Z", usage=usage(20_000, 0))],
    )
    billing.nightly("2027-02-02")
    result = jobs.run_statements(billing.settings, "2027-02", out, finalize=True, issue_date=date(2027, 3, 1))
    (feb,) = result.statements
    assert feb.number is not None
    assert [(d["change"], d["event_id"], d["charge_usd"]) for d in _detail(out, "2027-02", feb.number)] == [
        ("added", "f1", "0.15")
    ]
    for period in ("2027-01", "2027-02"):
        report = replay.replay_period(billing.settings, period, out / "replay")
        assert report.checks and report.matches, [c for c in report.checks if c.status != "MATCH"]


def _issue(billing: Billing, out: Path, period: str, issue: str, layout: int | None = None) -> str:
    options = {} if layout is None else {"layout_version": layout}
    result = jobs.run_statements(
        billing.settings, period, out, finalize=True, issue_date=date.fromisoformat(issue), **options
    )
    (st,) = result.statements
    assert st.number is not None
    return st.number


def _adjustment_rows(out: Path, period: str, number: str) -> list[tuple[str, str, str, str, str]]:
    return [
        (d["change"], d["event_id"], d["request_id"], d["input_uncached_tokens"], d["charge_usd"])
        for d in _detail(out, period, number)
        if d["kind"] == "adjustment"
    ]


def test_a_late_request_whose_id_is_written_as_a_billed_ones_cell_is_added(billing: Billing, tmp_path: Path) -> None:
    """Event ids "'=e" and "=e" are both written as the cell "'=e". November bills "'=e" (q1);
    December's file brings a late November request "=e" (q2, 1,000 input x 7.5/1M = 0.0075 ->
    a +0.01 line). The cell alone took it as billed: the line printed with no row behind it.
    The request id tells them apart: "=e" is added."""
    out = tmp_path / "out"
    billing.log("requests-2026-11-20.jsonl", [record(event_id="'=e", request_id="q1", usage=usage(2000, 0))])
    billing.nightly()
    _issue(billing, out, "2026-11", "2026-12-01")
    billing.log(
        "requests-2026-12-01.jsonl",
        [record(event_id="=e", request_id="q2", ts="2026-11-28T00:00:00Z", usage=usage(1000, 0))],
    )
    billing.nightly("2026-12-01")
    december = _issue(billing, out, "2026-12", "2027-01-01")
    lines = [r for r in _lines(out, "2026-12", december) if r["kind"] == "adjustment"]
    assert [(r["quantity_tokens"], r["amount_usd"]) for r in lines] == [("1000", "0.01")]
    assert _adjustment_rows(out, "2026-12", december) == [("added", "'=e", "q2", "1000", "0.0075")]


def test_a_superseded_attempt_whose_cell_collides_is_removed_once(billing: Billing, tmp_path: Path) -> None:
    """November bills "=e" (q1, 2,000 input) and "'=e" (q2, 3,000 input): both cells "'=e".
    December's file brings q1 attempt 2 (x2, 2,500 input), which supersedes "=e": a +500 input
    line (0.00375 -> 0.00). Joined on the cell alone, "=e" was removed twice (-2,000 x 2); each
    issued row is matched once, with its request id and attempt: removed -2,000, added +2,500."""
    out = tmp_path / "out"
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="=e", request_id="q1", ts="2026-11-10T00:00:00Z", usage=usage(2000, 0)),
            record(event_id="'=e", request_id="q2", ts="2026-11-11T00:00:00Z", usage=usage(3000, 0)),
        ],
    )
    billing.nightly()
    _issue(billing, out, "2026-11", "2026-12-01")
    billing.log(
        "requests-2026-12-01.jsonl",
        [record(event_id="x2", request_id="q1", attempt=2, ts="2026-11-10T00:00:05Z", usage=usage(2500, 0))],
    )
    billing.nightly("2026-12-01")
    december = _issue(billing, out, "2026-12", "2027-01-01")
    assert _adjustment_rows(out, "2026-12", december) == [
        ("removed", "'=e", "q1", "-2000", "-0.015"),
        ("added", "x2", "q1", "2500", "0.01875"),
    ]
    report = replay.replay_period(billing.settings, "2026-12", out / "replay")
    assert report.checks and report.matches, [c for c in report.checks if c.status != "MATCH"]


def test_the_first_layout_8_statement_names_no_version_a_layout_7_line_took_back(
    billing: Billing, tmp_path: Path
) -> None:
    """gpt-5.5 costs the same under 2026-11-01 and 2026-11-15. November (layout 7) bills v1
    (the 10th); December (layout 7) adjusts late1 (the 20th, 2026-11-15: +2,000 input, a line
    naming "2026-11-01;2026-11-15"). January (layout 8): late2 (the 5th, 2026-11-01, 3,000
    input). Its rows: late1 and late2 added, December's line billed_before -2,000, which cancels
    late1's 2026-11-15 tokens: January's +3,000 line names 2026-11-01 alone."""
    _two_versions(billing, tmp_path)
    out = tmp_path / "out"
    billing.log("requests-2026-11-20.jsonl", [record(event_id="v1", ts="2026-11-10T12:00:00Z", usage=usage(600, 0))])
    billing.nightly()
    _issue(billing, out, "2026-11", "2026-12-01", layout=7)
    billing.log(
        "requests-2026-12-01.jsonl", [record(event_id="late1", ts="2026-11-20T10:00:00Z", usage=usage(2000, 0))]
    )
    billing.nightly("2026-12-01")
    _issue(billing, out, "2026-12", "2027-01-01", layout=7)
    billing.log(
        "requests-2027-01-02.jsonl", [record(event_id="late2", ts="2026-11-05T10:00:00Z", usage=usage(3000, 0))]
    )
    billing.nightly("2027-01-02")
    january = _issue(billing, out, "2027-01", "2027-02-01")
    assert [(r["change"], r["event_id"], r["input_uncached_tokens"]) for r in _detail(out, "2027-01", january)] == [
        ("added", "late2", "3000"),
        ("added", "late1", "2000"),
        ("billed_before", "", "-2000"),
    ]
    lines = [r for r in _lines(out, "2027-01", january) if r["kind"] == "adjustment"]
    assert [(r["quantity_tokens"], r["price_version"]) for r in lines] == [("3000", "2026-11-01")]


def test_a_statement_run_reads_each_issued_detail_csv_once(
    billing: Billing, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Naming the versions (due_lines) and writing the rows (detail_csvs) both need what
    November's detail CSV says was billed: it is read once per run, not once for each."""
    from reports import adjustment_detail

    out = tmp_path / "out"
    billing.log("requests-2026-11-20.jsonl", [record(event_id="a1", request_id="r1", usage=usage(2000, 0))])
    billing.nightly()
    _issue(billing, out, "2026-11", "2026-12-01")
    billing.log(
        "requests-2026-12-01.jsonl",
        [record(event_id="b1", request_id="r2", ts="2026-11-28T00:00:00Z", usage=usage(1000, 0))],
    )
    billing.nightly("2026-12-01")
    reads: list[int] = []
    read = adjustment_detail._read_detail
    monkeypatch.setattr(adjustment_detail, "_read_detail", lambda *a: reads.append(1) or read(*a))
    december = _issue(billing, out, "2026-12", "2027-01-01")
    assert len(reads) == 1
    assert _adjustment_rows(out, "2026-12", december) == [("added", "b1", "r2", "1000", "0.0075")]
