"""Issue 19 item 4: `sql --format table|csv|json|parquet --out FILE`, money exact in each.

One billed request of acct_plain on openai/gpt-5.5 (list 7.5 in / 45 out per 1M tokens,
markup already in the list price, group multiplier 1, no discount), computed by hand:
  input   2,500,000 x  7.5 / 1M = 18.75
  output    388,444 x 45   / 1M = 17.47998   -> statement line 17.48
  exact spend 36.22998; statement total 18.75 + 17.48 = 36.23 (DECIMAL(18,2))
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner, Result

from pipeline.cli import cli
from tests.conftest import Billing, record, usage

QUERY = (
    "SELECT period, statement_total_usd, spend_exact_usd, billed_requests, "
    "'=HYPERLINK(1)' AS note, NULL AS nothing FROM monthly_totals ORDER BY period"
)


@pytest.fixture(scope="module")
def billed(tmp_path_factory: pytest.TempPathFactory) -> Billing:
    billing = Billing(tmp_path_factory.mktemp("sql"))
    billing.log("requests-2026-11-20.jsonl", [record(usage=usage(2_500_000, 388_444))])
    billing.nightly("2026-11-20")
    published = CliRunner().invoke(cli, ["--db", str(billing.settings.db_path), "snapshot"])  # what sql reads
    assert published.exit_code == 0, published.output
    return billing


def sql(billing: Billing, *args: str) -> Result:
    runner = CliRunner(env={"INFERGATE_DB": None, "INFERGATE_SNAPSHOT": None})
    return runner.invoke(cli, ["--db", str(billing.settings.db_path), "sql", *args], catch_exceptions=False)


def test_table_is_todays_output(billed: Billing) -> None:
    result = sql(billed, QUERY)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = ["period", "statement_total_usd", "spend_exact_usd", "billed_requests", "note", "nothing"]
    assert lines[0].split() == header
    assert lines[2].split() == ["2026-11", "36.23", "36.22998000000000000000", "1", "=HYPERLINK(1)", "NULL"]


def test_csv_keeps_money_exact_and_neutralizes_formulas(billed: Billing) -> None:
    result = sql(billed, "--format", "csv", QUERY)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "period,statement_total_usd,spend_exact_usd,billed_requests,note,nothing\n"
        "2026-11,36.23,36.22998000000000000000,1,'=HYPERLINK(1),\n"
    )


def test_json_lines_carry_decimals_as_strings(billed: Billing) -> None:
    result = sql(billed, "--format", "json", QUERY)
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert row == {
        "period": "2026-11",
        "statement_total_usd": "36.23",
        "spend_exact_usd": "36.22998000000000000000",
        "billed_requests": 1,
        "note": "=HYPERLINK(1)",
        "nothing": None,
    }
    assert list(row) == ["period", "statement_total_usd", "spend_exact_usd", "billed_requests", "note", "nothing"]


def test_json_and_csv_write_every_row_not_max_rows(billed: Billing, tmp_path: Path) -> None:
    query = "SELECT i, CAST(i / 100 AS DECIMAL(10,2)) AS cents FROM range(250) t(i)"
    out = tmp_path / "all.csv"
    result = sql(billed, "--format", "csv", "--out", str(out), query)
    assert result.exit_code == 0 and result.stdout == f"wrote 250 row(s) to {out}\n"
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert len(rows) == 251 and rows[-1] == ["249", "2.49"]
    table = sql(billed, "--max-rows", "3", query)
    assert table.stdout.splitlines()[-1] == "(only the first 3 rows are shown)"


def test_parquet_keeps_the_decimal_type(billed: Billing, tmp_path: Path) -> None:
    out = tmp_path / "totals.parquet"
    result = sql(billed, "--format", "parquet", "--out", str(out), QUERY + ";")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote 1 row(s) to {out}\n"
    con = duckdb.connect()
    (total, exact, kind) = con.execute(
        "SELECT statement_total_usd, spend_exact_usd, typeof(statement_total_usd) FROM read_parquet(?)", [str(out)]
    ).fetchone()  # type: ignore[misc]
    assert (total, exact, kind) == (Decimal("36.23"), Decimal("36.22998"), "DECIMAL(18,2)")
    assert str(total) == "36.23"


def test_a_sum_of_counts_stays_exact_in_parquet_and_one_type_in_json(billed: Billing, tmp_path: Path) -> None:
    """The audit's case: monthly_usage sums BIGINT counts into HUGEINTs, which DuckDB writes to
    Parquet as DOUBLE (SPEC E3) and which JSON gave as a number or a string by size. Now
    DECIMAL(38,0) in Parquet, and strings in every JSON row."""
    query = "SELECT sum(i) AS total, CAST(1 AS HUGEINT) AS one FROM range(3) t(i)"
    out = tmp_path / "sums.parquet"
    assert sql(billed, "--format", "parquet", "--out", str(out), query).exit_code == 0
    con = duckdb.connect()
    kinds = con.execute("SELECT typeof(total), typeof(one), total FROM read_parquet(?)", [str(out)]).fetchone()
    assert kinds == ("DECIMAL(38,0)", "DECIMAL(38,0)", Decimal(3))
    result = sql(billed, "--format", "json", "SELECT sum(i) AS total FROM range(3) t(i)")
    assert json.loads(result.stdout) == {"total": "3"}


def test_parquet_needs_out(billed: Billing) -> None:
    result = sql(billed, "--format", "parquet", QUERY)
    assert result.exit_code == 2 and "give --out" in result.stderr


def test_an_existing_out_file_is_refused_unless_overwrite(billed: Billing, tmp_path: Path) -> None:
    for fmt in ("csv", "json", "parquet", "table"):
        out = tmp_path / f"keep.{fmt}"
        out.write_text("last month's extract\n", encoding="utf-8")
        refused = sql(billed, "--format", fmt, "--out", str(out), QUERY)
        assert refused.exit_code == 2 and "exists; not replaced" in refused.stderr and "--overwrite" in refused.stderr
        assert out.read_text(encoding="utf-8") == "last month's extract\n"
        replaced = sql(billed, "--format", fmt, "--out", str(out), "--overwrite", QUERY)
        assert replaced.exit_code == 0, replaced.output
        assert out.read_bytes() != b"last month's extract\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.csv", "keep.json", "keep.parquet", "keep.table"]


def test_a_failing_query_leaves_no_file(billed: Billing, tmp_path: Path) -> None:
    for fmt in ("csv", "json", "parquet"):
        out = tmp_path / f"broken.{fmt}"
        result = sql(billed, "--format", fmt, "--out", str(out), "SELECT * FROM no_such_table")
        assert result.exit_code == 1 and result.stderr.startswith("Error: ")
    assert list(tmp_path.iterdir()) == []


def test_table_to_a_file(billed: Billing, tmp_path: Path) -> None:
    out = tmp_path / "totals.txt"
    assert sql(billed, "--out", str(out), QUERY).exit_code == 0
    assert out.read_text(encoding="utf-8").splitlines()[2].split()[1] == "36.23"
