"""The analyst schema: documented example queries, views, margin and spend-limit reports.

One inline dataset (``ANALYST_RECORDS``), every expected figure worked out by hand below.
List prices per 1M tokens (2026-11-01): openai/gpt-5.5 in 7.5 / out 45 (upstream 5 / 30);
openai/gpt-5.5-pro in 45 / out 270 (upstream 30 / 180); no cached price (cached = input).

acct_acme (default group, spend limit 5.00)
  a1     11-20 10:00Z  gpt-5.5-pro  20000 in, 10000 out  0.9 + 2.7        = 3.6     upstream 0.6 + 1.8   = 2.4
  a2     11-20 12:00Z  gpt-5.5     100000 in, 10000 out  0.75 + 0.45      = 1.2     upstream 0.5 + 0.3   = 0.8
                       (the log says the upstream charged 0.79)                                 cumulative 4.8
  a3     11-20 23:30-01:00 = 11-21 00:30Z  20000 in, 2000 out  0.15 + 0.09 = 0.24  upstream 0.16  cumulative 5.04 > 5
  a4     11-21 10:00Z  gpt-5.5       1000 in, 100 out    0.0075 + 0.0045  = 0.012   upstream 0.008
  r5     attempt 1: 500 after 10000 in / 1000 out (upstream_error, upstream 0.05 + 0.03 = 0.08)
         attempt 2: 200, 10000 in / 1000 out           0.075 + 0.045    = 0.12    upstream 0.08
  r6     attempt 1: 200, 1000 in / 100 out, superseded (upstream 0.005 + 0.003 = 0.008)
         attempt 2: 200, 2000 in / 200 out             0.015 + 0.009    = 0.024   upstream 0.016
  429 x3 (11-21), 403 x1 (11-20): client_error, no usage
  unpriced: openai/gpt-4.1-mini -> held unpriced_model, no upstream price
  => billed 6, spend 5.196, over the limit by 0.196, crossed on 2026-11-21 (UTC) at 00:30Z
     statement lines: pro 0.90 + 2.70; gpt-5.5 in 133000 x 7.5 = 0.9975 -> 1.00,
     out 13300 x 45 = 0.5985 -> 0.60; total 5.20
acct_globex (enterprise x0.9: 6.75 in, 6.75 cached, 40.5 out)
  g1     10000 in of which 4000 cached, 1000 out: 0.0405 + 0.027 + 0.0405 = 0.108   upstream 0.08
  g2     no usage: recounted "Hello from InferGate." -> 12 in, 5 out (o200k_base):
         0.000081 + 0.0002025 = 0.0002835                                        upstream 0.00006 + 0.00015 = 0.00021
  => spend 0.1082835; lines 6012 x 6.75 = 0.040581 -> 0.04, 4000 x 6.75 = 0.027 -> 0.03,
     1005 x 40.5 = 0.0407025 -> 0.04; total 0.11
acct_exact (limit 0.12): one request 10000 in / 1000 out = 0.12 exactly: not above the limit;
     lines 0.075 -> 0.08 and 0.045 -> 0.05, total 0.13
acct_ghost (not in the accounts file): 1000 in / 100 out -> held unknown_account, upstream 0.008
December: acme 2026-11-30T19:00:00-05:00 = 2026-12-01T00:00Z, 1000 in / 100 out = 0.012
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from core.attempt_store import copy_database
from core.db import connect
from core.money import EXACT, ZERO, D
from pipeline.accounts import load_accounts
from reports.margin import format_margin, margin_rows, margin_totals, write_margin_csv
from reports.spend_limits import format_spend_limits, limit_breaches, rejections
from tests.conftest import Billing, cli_in_process, record, usage

ROOT = Path(__file__).resolve().parent.parent
HELLO = [{"role": "user", "content": "Hello from InferGate."}]

ANALYST_ACCOUNTS = textwrap.dedent(
    """
    [groups.default]
    multiplier = "1"
    [groups.enterprise]
    multiplier = "0.9"

    [[accounts]]
    id = "acct_acme"
    legal_name = "Acme Analytics GmbH"
    spend_limit_usd = "5.00"

    [[accounts]]
    id = "acct_globex"
    legal_name = "Globex Corporation"
    group = "enterprise"

    [[accounts]]
    id = "acct_exact"
    legal_name = "Exact Ltd"
    spend_limit_usd = "0.12"
    """
)


def _acme(**fields: Any) -> dict[str, Any]:
    return record(account_id="acct_acme", **fields)


def _rejected(event_id: str, status: int, ts: str) -> dict[str, Any]:
    code = "rate_limit_exceeded" if status == 429 else "forbidden"
    return _acme(event_id=event_id, status=status, error_code=code, finish_reason=None, usage=None, ts=ts)


ANALYST_RECORDS = [
    _acme(event_id="a1", model="openai/gpt-5.5-pro", ts="2026-11-20T10:00:00Z", usage=usage(20000, 10000)),
    _acme(event_id="a2", ts="2026-11-20T12:00:00Z", usage=usage(100000, 10000), upstream_cost_usd="0.79"),
    _acme(event_id="a3", ts="2026-11-20T23:30:00-01:00", usage=usage(20000, 2000)),
    _acme(event_id="a4", ts="2026-11-21T10:00:00Z", usage=usage(1000, 100)),
    _acme(event_id="r5a1", request_id="r5", attempt=1, ts="2026-11-21T11:00:00Z", status=500,
          error_code="upstream_timeout", finish_reason=None, usage=usage(10000, 1000)),
    _acme(event_id="r5a2", request_id="r5", attempt=2, ts="2026-11-21T11:00:05Z", usage=usage(10000, 1000)),
    _acme(event_id="r6a1", request_id="r6", attempt=1, ts="2026-11-21T12:00:00Z", usage=usage(1000, 100)),
    _acme(event_id="r6a2", request_id="r6", attempt=2, ts="2026-11-21T12:00:03Z", usage=usage(2000, 200)),
    _rejected("q1", 429, "2026-11-21T13:00:01Z"),
    _rejected("q2", 429, "2026-11-21T13:00:02Z"),
    _rejected("q3", 429, "2026-11-21T13:00:03Z"),
    _rejected("f1", 403, "2026-11-20T14:00:00Z"),
    _acme(event_id="unpriced", model="openai/gpt-4.1-mini", ts="2026-11-20T16:00:00Z", usage=usage(1000, 100)),
    record(event_id="g1", account_id="acct_globex", ts="2026-11-20T08:00:00Z", usage=usage(10000, 1000, cached=4000)),
    record(event_id="g2", account_id="acct_globex", ts="2026-11-20T09:00:00Z", usage=None,
           messages=HELLO, output_text="Hello from InferGate."),
    record(event_id="x1", account_id="acct_exact", ts="2026-11-20T15:00:00Z", usage=usage(10000, 1000)),
    record(event_id="ghost", account_id="acct_ghost", ts="2026-11-20T17:00:00Z", usage=usage(1000, 100)),
    _acme(event_id="d1", ts="2026-11-30T19:00:00-05:00", usage=usage(1000, 100)),
]  # fmt: skip


def analyst_billing(root: Path) -> Billing:
    billing = Billing(root)
    billing.settings.accounts_file.write_text(ANALYST_ACCOUNTS, encoding="utf-8")
    billing.log("requests-2026-11-20.jsonl", ANALYST_RECORDS)
    report = billing.nightly("2026-11-20")
    assert report.quarantined == 0
    return billing


@pytest.fixture(scope="module")
def analyst(tmp_path_factory: pytest.TempPathFactory) -> Billing:
    return analyst_billing(tmp_path_factory.mktemp("analyst"))


# --- the documented example queries (docs/analysts.md), in order, with the hand answers ---

EXAMPLE_ANSWERS: list[list[tuple[object, ...]]] = [
    # 1. acme on gpt-5.5 per UTC day: a2 on the 20th; a3 (23:30 at -01:00 is the 21st in UTC),
    #    a4, r5a2, r6a2 on the 21st: 0.24 + 0.012 + 0.12 + 0.024
    [("2026-11-20", 1, D("1.2")), ("2026-11-21", 4, D("0.396"))],
    # 2. November: 3 accounts, 6 + 2 + 1 billed, r5a1 r6a1 3x429 403 not billed, ghost and
    #    unpriced held; 5.196 + 0.1082835 + 0.12; statements 5.20 + 0.11 + 0.13.
    #    December: d1 only (-05:00 at 19:00 on the 30th is the 1st of December in UTC)
    [
        ("2026-11", 3, 9, 6, 2, D("5.4242835"), D("5.44")),
        ("2026-12", 1, 1, 0, 0, D("0.012"), D("0.01")),
    ],
    # 3. by exact spend; acct_exact (0.12) ranks above globex (0.1082835)
    [
        (1, "acct_acme", "Acme Analytics GmbH", 6, D("5.196"), D("5.20")),
        (2, "acct_exact", "Exact Ltd", 1, D("0.12"), D("0.13")),
        (3, "acct_globex", "Globex Corporation", 2, D("0.1082835"), D("0.11")),
    ],
    # 4. held: ghost (upstream 0.008), unpriced (no upstream price: 0); not billed:
    #    3x429 + 403, r6a1 superseded (0.008), r5a1 upstream_error (0.08)
    [
        ("held", "unknown_account", 1, D("0.008")),
        ("held", "unpriced_model", 1, D("0")),
        ("not_billed", "client_error", 4, D("0")),
        ("not_billed", "superseded_attempt", 1, D("0.008")),
        ("not_billed", "upstream_error", 1, D("0.08")),
    ],
    # 5. globex: g2 of g1, g2 estimated: 50.00 %, 0.0002835
    [("acct_globex", "openai/gpt-5.5", 2, 1, D("50.00"), D("0.0002835"))],
    # 6. acme 5.196 - 5.00 = 0.196, crossed by a3 on the 21st (UTC); acct_exact is at, not above
    [("acct_acme", D("5.00"), D("5.196"), D("0.196"), "2026-11-21")],
    # 7. gpt-4.1-mini: one held attempt, no price. gpt-5.5: revenue 1.596 + 0.1082835 + 0.12;
    #    billed cost 1.064 + 0.08021 + 0.08; unbilled 0.08 + 0.008 (not billed) + 0.008 (ghost)
    [
        ("openai/gpt-4.1-mini", D("0"), D("0"), D("0"), D("0")),
        ("openai/gpt-5.5", D("1.8242835"), D("1.22421"), D("0.096"), D("0.5040735")),
        ("openai/gpt-5.5-pro", D("3.6"), D("2.4"), D("0"), D("1.2")),
    ],
]


def example_queries() -> list[str]:
    text = (ROOT / "docs" / "analysts.md").read_text(encoding="utf-8")
    section = text.split("## Example queries", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, flags=re.S)


def _plain(rows: list[tuple[Any, ...]]) -> list[tuple[object, ...]]:
    return [tuple(v.isoformat() if hasattr(v, "isoformat") else v for v in row) for row in rows]


def test_docs_have_the_example_queries() -> None:
    assert len(example_queries()) == len(EXAMPLE_ANSWERS) >= 5


@pytest.mark.parametrize("number", range(1, len(EXAMPLE_ANSWERS) + 1))
def test_documented_example_query_gives_the_hand_computed_answer(analyst: Billing, number: int) -> None:
    query = example_queries()[number - 1]
    assert _plain(analyst.query(query)) == EXAMPLE_ANSWERS[number - 1]


def test_example_queries_run_in_the_duckdb_cli_on_the_snapshot(analyst: Billing, tmp_path: Path) -> None:
    """The documented client (duckdb-cli 1.5.x from PyPI) opens the snapshot and runs them."""
    import shutil
    import subprocess
    import sys

    from pipeline import snapshot

    duckdb_cli = shutil.which("duckdb", path=str(Path(sys.executable).parent))
    if duckdb_cli is None:
        pytest.skip("duckdb-cli is not installed (pip install 'duckdb-cli==1.5.6')")
    target = snapshot.publish_now(analyst.settings.db_path, tmp_path / "analyst.duckdb")
    for number, query in enumerate(example_queries(), start=1):
        result = subprocess.run(
            [duckdb_cli, "-readonly", "-csv", "-cmd", "SET TimeZone = 'UTC'", str(target), query],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.strip().splitlines()
        assert len(lines) == len(EXAMPLE_ANSWERS[number - 1]) + 1, (number, result.stdout)
    live = subprocess.run(
        [duckdb_cli, "-readonly", str(analyst.settings.db_path), "SELECT 1"], capture_output=True, text=True
    )
    assert live.returncode != 0 and "version number" in live.stderr  # why the snapshot exists


# --- views beyond the examples ---


def test_estimated_token_share_is_a_rounded_ratio_of_counts(analyst: Billing) -> None:
    # globex: 11000 + 17 billed tokens, 17 estimated: 100 x 17 / 11017 = 0.1543... -> 0.15
    row = analyst.one(
        "SELECT billed_tokens, estimated_tokens, estimated_token_pct FROM estimated_usage_share "
        "WHERE account_id = 'acct_globex'"
    )
    assert row == (11017, 17, D("0.15"))


def test_rejections_view_counts_429_and_403(analyst: Billing) -> None:
    # acme: 3 x 429 on the 21st, 1 x 403 on the 20th, out of 13 attempts in November
    assert analyst.query("SELECT * EXCLUDE (period) FROM rejections_by_account WHERE period = '2026-11'") == [
        ("acct_acme", 3, 1, 4, 13, 2)
    ]


def test_every_view_reads_in_any_session_time_zone(analyst: Billing) -> None:
    """Days come from the stored UTC usage_date, never from the reader's session zone (E2)."""
    con = connect(analyst.settings.db_path, read_only=True)
    try:
        con.execute("SET TimeZone = 'Pacific/Kiritimati'")  # UTC+14
        crossed = con.execute("SELECT crossed_on FROM spend_limit_status WHERE exceeded").fetchall()
        days = con.execute("SELECT DISTINCT usage_date FROM daily_usage ORDER BY 1").fetchall()
    finally:
        con.close()
    assert [d.isoformat() for (d,) in crossed] == ["2026-11-21"]
    assert [d.isoformat() for (d,) in days] == ["2026-11-20", "2026-11-21", "2026-12-01"]


# --- margin report ---


def test_margin_is_revenue_minus_every_upstream_cost(analyst: Billing, tmp_path: Path) -> None:
    con = connect(analyst.settings.db_path, read_only=True)
    try:
        rows = {r["model"]: r for r in margin_rows(con, "2026-11")}
        totals = margin_totals(con, "2026-11")
        path = write_margin_csv(con, "2026-11", tmp_path)
    finally:
        con.close()
    gpt = rows["openai/gpt-5.5"]
    assert (gpt["billed_requests"], gpt["unbilled_attempts"]) == (8, 7)
    assert gpt["revenue_exact_usd"] == D("1.8242835")
    assert gpt["revenue_statements_usd"] == D("1.84")  # acme 1.00 + 0.60, globex 0.11, exact 0.13
    assert gpt["billed_upstream_cost_usd"] == D("1.22421")
    assert gpt["not_billed_upstream_cost_usd"] == D("0.088")  # r5a1 0.08 + r6a1 0.008
    assert gpt["held_upstream_cost_usd"] == D("0.008")  # ghost
    assert gpt["upstream_cost_usd"] == D("1.32021")
    assert gpt["margin_exact_usd"] == D("0.5040735")
    # a2 carried upstream_cost_usd 0.79; its reference cost is 0.8
    assert (gpt["reported_cost_attempts"], gpt["reported_upstream_cost_usd"], gpt["ref_cost_of_reported_usd"]) == (
        1,
        D("0.79"),
        D("0.8"),
    )
    assert rows["openai/gpt-4.1-mini"]["attempts_without_ref_price"] == 1
    # totals: 3.6 + 1.8242835 revenue, 2.4 + 1.32021 cost
    assert totals["revenue_exact_usd"] == D("5.4242835")
    assert totals["upstream_cost_usd"] == D("3.72021")
    assert totals["margin_exact_usd"] == D("1.7040735")
    table = format_margin(list(rows.values()), totals)
    assert re.search(r"^TOTAL\s+9\s+8\s+5\.42\s+3\.62\s+0\.10\s+3\.72\s+1\.70$", table, flags=re.M), table
    assert "1 attempt(s) have no upstream price" in table and "upstream-reported cost 0.79" in table
    csv_lines = path.read_text().splitlines()
    assert csv_lines[0].startswith("period,model,billed_requests,unbilled_attempts,revenue_exact_usd")
    assert any(line.startswith("2026-11,openai/gpt-5.5,8,7,1.82428350000000000000,1.84,") for line in csv_lines)


# --- spend-limit report ---


def test_spend_limit_report_flags_the_crossing_day_and_the_excess(analyst: Billing) -> None:
    con = connect(analyst.settings.db_path, read_only=True)
    try:
        breaches = limit_breaches(con, "2026-11")
        rejected = rejections(con, "2026-11", min_rejections=4)
        few = rejections(con, "2026-11", min_rejections=5)
        december = limit_breaches(con, "2026-12")
    finally:
        con.close()
    assert _plain(breaches) == [
        (
            "2026-11",
            "acct_acme",
            "Acme Analytics GmbH",
            D("5.00"),
            D("5.196"),
            D("0.196"),
            "2026-11-21",
            "2026-11-21T00:30:00.000000Z",
        )
    ]
    assert rejected == [("2026-11", "acct_acme", "Acme Analytics GmbH", 3, 1, 4, 13, 2)] and few == []
    assert december == []  # 0.012 in December: the limit is monthly
    text = format_spend_limits("2026-11", breaches, rejected, 4)
    assert "over by       0.20  crossed on 2026-11-21" in text and "4 rejected of     13 attempts" in text


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from datetime import date

    from pipeline import jobs
    from pipeline.jobs import Settings

    settings = Settings(
        db_path=tmp_path_factory.mktemp("sample") / "sample.duckdb", accounts_file=ROOT / "data" / "accounts.toml"
    )
    for day in ("2026-11-29", "2026-11-30", "2026-12-01"):
        jobs.run_nightly(settings, date.fromisoformat(day), ROOT / "data" / "sample_logs")
    return settings.db_path


@pytest.mark.parametrize("period", ["2026-11", "2026-12"])
def test_sample_account_acme_crosses_its_limit_on_the_day_a_decimal_cumsum_says(sample_db: Path, period: str) -> None:
    limits = {a.id: a.spend_limit_usd for a in load_accounts(ROOT / "data" / "accounts.toml").accounts}
    assert limits["acct_acme"] == D("5.00")
    con = connect(sample_db, read_only=True)
    try:
        billed = con.execute(
            "SELECT usage_date, charge_total FROM rated_attempts "
            "WHERE account_id = 'acct_acme' AND outcome = 'billed' AND period = ? ORDER BY ts, event_id",
            [period],
        ).fetchall()
        breaches = limit_breaches(con, period)
    finally:
        con.close()
    total, crossed_on = ZERO, None
    for day, charge in billed:
        total = EXACT.add(total, charge)
        if crossed_on is None and total > limits["acct_acme"]:
            crossed_on = day
    assert crossed_on is not None
    flagged = {row[1]: row for row in breaches}
    assert set(flagged) == {"acct_acme"}  # hooli (limit 250.00) stays below
    assert flagged["acct_acme"][6] == crossed_on
    assert flagged["acct_acme"][5] == EXACT.subtract(total, limits["acct_acme"])


# --- the commands (thin: the figures above, printed and written) ---


def _invoke(billing: Billing, *args: str) -> Any:
    from click.testing import CliRunner

    from pipeline.cli import cli

    base = ["--db", str(billing.settings.db_path), "--accounts", str(billing.settings.accounts_file)]
    return CliRunner().invoke(cli, [*base, *args])


def test_margin_command_prints_the_table_and_writes_the_csv(analyst: Billing, tmp_path: Path) -> None:
    result = _invoke(analyst, "margin", "--period", "2026-11", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "openai/gpt-5.5-pro" in result.output and re.search(r"^TOTAL .* 1\.70$", result.output, flags=re.M)
    assert (tmp_path / "margin-2026-11.csv").is_file()
    assert _invoke(analyst, "margin", "--period", "2026-13").exit_code == 2


def test_spend_limits_command(analyst: Billing, tmp_path: Path) -> None:
    result = _invoke(analyst, "spend-limits", "--period", "2026-11", "--min-rejections", "4", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "accounts above their spend limit in 2026-11: 1" in result.output
    assert "spent: the exact usage of the period, rounded once; the statement sums rounded lines" in result.output
    assert "limit       5.00  spent       5.20  over by       0.20" in result.output  # 5.196 exact, shown to the cent
    assert "crossed on 2026-11-21 (at 2026-11-21T00:30:00.000000Z)" in result.output
    breaches = (tmp_path / "spend-limits-2026-11.csv").read_text().splitlines()
    assert breaches[1] == (
        "2026-11,acct_acme,Acme Analytics GmbH,5.00,5.19600000000000000000,0.19600000000000000000,"
        "2026-11-21,2026-11-21T00:30:00.000000Z"
    )
    assert (tmp_path / "rejections-2026-11.csv").read_text().splitlines()[1] == (
        "2026-11,acct_acme,Acme Analytics GmbH,3,1,4,13,2"
    )


def test_export_csv_stays_the_default_and_parquet_is_asked_for(analyst: Billing, tmp_path: Path) -> None:
    csv_run = _invoke(analyst, "export", "--period", "2026-11", "--out", str(tmp_path))
    assert csv_run.exit_code == 0 and (tmp_path / "finance-summary-2026-11.csv").is_file()
    assert not (tmp_path / "rated_attempts").exists()
    parquet_run = _invoke(analyst, "export", "--period", "2026-11", "--format", "parquet", "--out", str(tmp_path))
    assert parquet_run.exit_code == 0, parquet_run.output
    assert (tmp_path / "rated_attempts" / "period=2026-11" / "data_0.parquet").is_file()
    assert (tmp_path / "statement_lines" / "period=2026-11" / "data_0.parquet").is_file()


def test_schema_doc_command_prints_docs_schema_md(analyst: Billing) -> None:
    result = _invoke(analyst, "schema-doc")
    assert result.exit_code == 0
    assert result.output == (ROOT / "docs" / "schema.md").read_text(encoding="utf-8")


# --- issue 20 item 7: issued totals, totals as rated now, and the adjustments between them ---
#
# List prices 2026-11-01: gpt-5.5 in 7.5 / out 45 per 1M; acct_discount 12.5 % off: 6.5625 / 39.375.
# November, issued 2026-12-01:
#   p1  acct_plain     100,000 in, 1,000,000 out: 0.75 + 45.00                       usage 45.75
#   d1  acct_discount   10,000 in,    20,000 out: 0.065625 -> 0.07, 0.7875 -> 0.79   usage 0.86
#   numbers in account order: IG-2026-11-000001 acct_discount, IG-2026-11-000002 acct_plain
# 2026-12-02: late1 acct_plain 2026-11-30T23:00Z, 10,000 out: November output line now
#   1,010,000 x 45 = 45.45, November as rated now 0.75 + 45.45 = 46.20 (late 0.45);
#   dec1 acct_plain 2026-12-02, 20,000 out = 0.90.
# December, issued 2027-01-01: IG-2026-12-000003 acct_plain usage 0.90 + adjustment 0.45 = 1.35.
# 2026-12-03: late2 acct_discount 2026-11-29T10:00Z, 10,000 in / 20,000 out: November lines now
#   20,000 x 6.5625 = 0.13125 -> 0.13 and 40,000 x 39.375 = 1.575 -> 1.58 = 1.71 (late 0.85,
#   not on any statement yet: December is issued, January is open).

RECONCILIATION_ANSWERS = {
    "2026-11": [
        ("acct_discount", "IG-2026-11-000001", D("0.86"), D("0.00"), D("0.85"), D("1.71")),
        ("acct_plain", "IG-2026-11-000002", D("45.75"), D("0.45"), D("0.00"), D("46.20")),
    ],
    "2026-12": [("acct_plain", "IG-2026-12-000003", D("0.90"), D("0.00"), D("0.00"), D("0.90"))],
}


@pytest.fixture(scope="module")
def reconciled(tmp_path_factory: pytest.TempPathFactory) -> Billing:
    from datetime import date

    from pipeline import jobs

    billing = Billing(tmp_path_factory.mktemp("reconciled"))
    out = billing.root / "out"
    billing.log("requests-2026-11-20.jsonl", [
        record(event_id="p1", account_id="acct_plain", usage=usage(100_000, 1_000_000)),
        record(event_id="d1", account_id="acct_discount", usage=usage(10_000, 20_000)),
    ])  # fmt: skip
    billing.nightly("2026-11-20")
    jobs.run_statements(billing.settings, "2026-11", out, finalize=True, issue_date=date(2026, 12, 1))
    billing.log("requests-2026-12-02.jsonl", [
        record(event_id="late1", account_id="acct_plain", ts="2026-11-30T23:00:00Z", usage=usage(0, 10_000)),
        record(event_id="dec1", account_id="acct_plain", ts="2026-12-02T08:00:00Z", usage=usage(0, 20_000)),
    ])  # fmt: skip
    billing.nightly("2026-12-02")
    jobs.run_statements(billing.settings, "2026-12", out, finalize=True, issue_date=date(2027, 1, 1))
    billing.log("requests-2026-12-03.jsonl", [
        record(event_id="late2", account_id="acct_discount", ts="2026-11-29T10:00:00Z", usage=usage(10_000, 20_000)),
    ])  # fmt: skip
    billing.nightly("2026-12-03")
    return billing


def reconciliation_query() -> str:
    text = (ROOT / "docs" / "analysts.md").read_text(encoding="utf-8")
    section = text.split("## Issued totals and totals as rated now", 1)[1].split("\n## ", 1)[0]
    (query,) = re.findall(r"```sql\n(.*?)```", section, flags=re.S)
    return str(query)


@pytest.mark.parametrize("period", ["2026-11", "2026-12"])
def test_documented_reconciliation_query_gives_the_hand_computed_answer(reconciled: Billing, period: str) -> None:
    query = reconciliation_query()
    assert "WHERE period = '2026-11'" in query
    assert reconciled.query(query.replace("'2026-11'", f"'{period}'")) == RECONCILIATION_ANSWERS[period]


@pytest.mark.parametrize("period", ["2026-11", "2026-12"])
def test_issued_columns_are_the_finance_summary_and_rated_now_is_account_period_totals(
    reconciled: Billing, period: str, tmp_path: Path
) -> None:
    import csv

    result = _invoke(reconciled, "export", "--period", period, "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    with (tmp_path / f"finance-summary-{period}.csv").open(newline="", encoding="utf-8") as handle:
        finance = [
            (r["account_id"], r["statement_number"], D(r["usage_usd"]), D(r["adjustments_usd"]), D(r["total_usd"]))
            for r in csv.DictReader(handle)
        ]
    view = reconciled.query(
        "SELECT account_id, statement_number, issued_usage_usd, issued_adjustments_usd, issued_total_usd "
        "FROM statement_reconciliation WHERE period = ? AND period_status = 'issued' ORDER BY account_id",
        [period],
    )
    assert view == finance
    # November: issued 0.86 + 45.75; December: 0.90 plus the 0.45 adjustment for November = 1.35
    expected_totals = {"2026-11": [D("0.86"), D("45.75")], "2026-12": [D("1.35")]}[period]
    assert [row[4] for row in finance] == expected_totals
    # as rated now: the older views, unchanged (their "statement" columns are the period as rated now)
    assert reconciled.query(
        "SELECT account_id, rated_now_usage_usd FROM statement_reconciliation WHERE period = ? ORDER BY 1", [period]
    ) == reconciled.query(
        "SELECT account_id, CAST(usage_usd AS DECIMAL(18,2)) FROM account_period_totals WHERE period = ? ORDER BY 1",
        [period],
    )


def test_an_open_period_has_no_issued_figures(reconciled: Billing) -> None:
    # the nightly of the record's own day: a ts two days past the run's --date is implausible
    reconciled.log("requests-2027-01-02.jsonl", [
        record(event_id="jan1", account_id="acct_plain", ts="2027-01-02T08:00:00Z", usage=usage(0, 20_000)),
    ])  # fmt: skip
    reconciled.nightly("2027-01-02")
    row = reconciled.one(
        "SELECT period_status, statement_number, issued_usage_usd, issued_total_usd, rated_now_usage_usd, "
        "late_usage_usd, late_pending_usd FROM statement_reconciliation WHERE period = '2027-01'"
    )
    assert row == ("open", None, None, None, D("0.90"), None, None)


# --- issue 20 item 8: the analyst commands of README.md and docs/analysts.md, run as written ---


def _blocks(path: Path, languages: tuple[str, ...]) -> list[tuple[str, str]]:
    text = path.read_text(encoding="utf-8")
    return [(lang, body) for lang, body in re.findall(r"```(\w+)\n(.*?)```", text, flags=re.S) if lang in languages]


def analyst_command_blocks() -> list[tuple[str, str, str]]:
    """(document, language, text): README's blocks that query the analyst snapshot, and every
    shell and Python block of docs/analysts.md (its SQL blocks are the example queries above)."""
    readme = [("README.md", lang, body) for lang, body in _blocks(ROOT / "README.md", ("sh",)) if "analyst" in body]
    docs = [("docs/analysts.md", lang, body) for lang, body in _blocks(ROOT / "docs" / "analysts.md", ("sh", "python"))]
    return readme + docs


def test_readme_and_analyst_docs_have_the_analyst_commands() -> None:
    blocks = analyst_command_blocks()
    readme = [body for doc, _, body in blocks if doc == "README.md"]
    assert len(readme) == 1 and "duckdb -readonly" in readme[0] and " sql " in readme[0]
    assert len(blocks) >= 6
    # every `duckdb` command opens a snapshot: DuckDB 1.5 cannot read the pipeline's own files
    for _, lang, body in blocks:
        for line in body.splitlines():
            if lang == "sh" and re.match(r"^(\S*/)?duckdb ", line):
                assert ".analyst.duckdb" in line, line


@pytest.fixture(scope="module")
def project_dir(sample_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project directory as a user has it after `make setup` and `make demo` (and a nightly),
    and the Parquet export docs/analysts.md makes before it reads it with polars: every block
    runs alone, whatever worker or order runs the others (the export block writes it again)."""
    import os
    import shutil
    import sys

    from pipeline import snapshot

    root = tmp_path_factory.mktemp("project")
    venv = Path(sys.executable).parent.parent
    (root / ".venv").symlink_to(venv, target_is_directory=True)
    (root / "data").mkdir()
    (root / "out").mkdir()
    shutil.copy(ROOT / "data" / "accounts.toml", root / "data" / "accounts.toml")
    for db in (root / "data" / "infergate.duckdb", root / "out" / "demo.duckdb"):
        copy_database(sample_db, db)
        snapshot.publish_now(db)
    # the docs' own client venv, as `python3 -m venv duckdb-cli-venv && ... pip install` leaves it
    (root / "duckdb-cli-venv" / "bin").mkdir(parents=True)
    os.symlink(venv / "bin" / "duckdb", root / "duckdb-cli-venv" / "bin" / "duckdb")
    exported = cli_in_process("export", "--period", "2026-11", "--format", "parquet", "--out", "out/parquet", cwd=root)
    assert exported.exit_code == 0, exported.output
    return root


ANALYST_BLOCKS = analyst_command_blocks()


@pytest.mark.parametrize(
    ("document", "language", "block"), ANALYST_BLOCKS, ids=[f"{d}-{i}" for i, (d, _, _) in enumerate(ANALYST_BLOCKS)]
)
def test_documented_analyst_commands_run_as_written(
    project_dir: Path, document: str, language: str, block: str
) -> None:
    import importlib.metadata
    import os
    import shutil
    import subprocess
    import sys

    if shutil.which("duckdb", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("the venv has no duckdb command: duckdb-cli is a dev dependency (make setup installs it)")
    script = block
    for pin in re.findall(r"pip install '?duckdb-cli==([\d.]+)'?", block):
        # the one line that downloads: check it pins the client the project installs instead
        assert pin == importlib.metadata.version("duckdb-cli")
        script = re.sub(r"^python3 -m venv duckdb-cli-venv && .*pip install .*$", "", script, flags=re.M)
    env = {k: v for k, v in os.environ.items() if k not in ("INFERGATE_DB", "VIRTUAL_ENV")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # as after `. .venv/bin/activate`
    command = ["bash", "-e", "-c", script] if language == "sh" else [sys.executable, "-c", script]
    result = subprocess.run(
        command,
        cwd=project_dir,
        env=env,
        input="SELECT count(*) AS rows_of_daily_usage FROM daily_usage;\n",  # an interactive `duckdb` session
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{document}:\n{block}\n{result.stdout}\n{result.stderr}"
    assert "Error" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.stdout.strip() or language == "python", block
    if "duckdb -readonly" in block and "SELECT" not in block:
        assert "rows_of_daily_usage" in result.stdout  # the session ran the query typed into it
    if "acct_acme" in block:
        # acme on gpt-5.5-pro in the sample logs: 55 requests on 11-29, 42 on 11-30, 60 on 12-01
        assert re.search(r"2026-11-29\D+55\D", result.stdout) and re.search(r"2026-12-01\D+60\D", result.stdout)
