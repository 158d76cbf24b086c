"""Nothing to read or nothing to bill is said out loud (issue 20 items 4 and 5).

A nightly without a log file for its day, a day whose files hold no record, an export or a
statements run for a month without billed usage: each exits 1 with one ``Error:`` line
(naming the directory and pattern, or the period) and writes nothing, unless the operator
passes ``--allow-empty``; files without records are named in warnings either way.
"""

from __future__ import annotations

import gzip
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from core.errors import EmptyPeriod
from pipeline import jobs
from pipeline.cli import cli
from pipeline.jobs import NoInputForDay
from tests.conftest import Billing, BuiltOnce, record, usage

DAY = "2026-11-20"


def run(billing: Billing, *args: str) -> Result:
    base = ["--db", str(billing.settings.db_path), "--accounts", str(billing.settings.accounts_file), "--no-snapshot"]
    return CliRunner().invoke(cli, [*base, *args])


def nightly(billing: Billing, *extra: str) -> Result:
    return run(billing, "nightly", "--date", DAY, "--logs", str(billing.logs), *extra)


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]


def warnings(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("warning: ")]


def test_a_day_without_log_files_fails_naming_directory_and_pattern(tmp_path: Path) -> None:
    billing = Billing(tmp_path, migrated=False)  # no database yet: the refusal must not create one
    billing.log("requests-2026-11-19.jsonl", [record(ts="2026-11-19T10:00:00Z")])  # another day's file
    result = nightly(billing)
    assert result.exit_code == 1, result.output
    [line] = error_lines(result)
    assert line.startswith(f"Error: no log file for {DAY} in {billing.logs} (looked for *{DAY}*{{.jsonl,")
    assert "--allow-empty" in line and "Traceback" not in result.output
    assert not billing.settings.db_path.exists()  # refused before anything was opened or written


def test_allow_empty_runs_the_empty_day(billing: Billing) -> None:
    result = nightly(billing, "--allow-empty")
    assert result.exit_code == 0, result.output
    assert "run 1 succeeded" in result.output and result.stderr == ""
    assert billing.one("SELECT command, status, files_read FROM runs") == ("nightly", "succeeded", 0)


def test_the_library_refuses_the_empty_day_too(billing: Billing) -> None:
    with pytest.raises(NoInputForDay, match=f"no log file for {DAY}") as caught:
        jobs.run_nightly(billing.settings, date.fromisoformat(DAY), billing.logs)
    assert "--allow-empty" in caught.value.hint
    assert billing.nightly(DAY, allow_empty=True).files == []


def test_an_empty_file_beside_a_full_one_is_named_in_a_warning(billing: Billing) -> None:
    billing.log(f"requests-{DAY}.jsonl", [record(usage=usage(1000, 100))])
    zero = billing.logs / f"requests-{DAY}-eu.jsonl"
    zero.write_bytes(b"")
    empty_gz = billing.logs / f"requests-{DAY}-us.jsonl.gz"
    empty_gz.write_bytes(gzip.compress(b"\n\n", mtime=0))  # only blank lines: not records
    result = nightly(billing)
    assert result.exit_code == 0, result.output  # the day has records: it is billed
    assert warnings(result) == [
        f"warning: {zero}: empty file (0 bytes)",
        f"warning: {empty_gz}: no records in {empty_gz.stat().st_size} bytes",
    ]
    assert error_lines(result) == []


def test_a_day_of_only_empty_files_fails_after_naming_each(billing: Billing) -> None:
    zero = billing.logs / f"requests-{DAY}.jsonl"
    zero.write_bytes(b"")
    result = nightly(billing)
    assert result.exit_code == 1, result.output
    assert warnings(result) == [f"warning: {zero}: empty file (0 bytes)"]
    [line] = error_lines(result)
    assert line.startswith(f"Error: no records for {DAY}: every file for the day in {billing.logs} is empty")
    # re-running does not hide it: the file is already ingested, and still empty
    again = nightly(billing)
    assert again.exit_code == 1 and "already ingested" in again.output and len(error_lines(again)) == 1
    accepted = nightly(billing, "--allow-empty")
    assert accepted.exit_code == 0 and warnings(accepted) == [f"warning: {zero}: empty file (0 bytes)"]
    # the ledger says what cron saw: the two failed nights exit 1 with the reason, the third 0
    rows = billing.query("SELECT run_id, status, exit_code, message FROM runs ORDER BY run_id")
    assert [(r[1], r[2]) for r in rows] == [("succeeded", 1), ("succeeded", 1), ("succeeded", 0)]
    assert rows[0][3].startswith(f"no records for {DAY}: every file for the day") and rows[2][3] is None


def _build_billed(billing: Billing) -> None:
    billing.log(f"requests-{DAY}.jsonl", [record(usage=usage(1000, 100))])
    billing.nightly(DAY)


@pytest.fixture(scope="module")
def _billed_once(tmp_path_factory: pytest.TempPathFactory) -> BuiltOnce:
    return BuiltOnce(tmp_path_factory, "billed", _build_billed)


@pytest.fixture
def billed(_billed_once: BuiltOnce) -> Billing:
    """November has billed usage; every other month has none. Built once per module, a fresh
    copy for each test."""
    return _billed_once.restore()


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_exporting_a_period_without_billed_usage_writes_nothing(
    billed: Billing, tmp_path: Path, file_format: str
) -> None:
    out = tmp_path / "out"
    result = run(billed, "export", "--period", "2030-05", "--format", file_format, "--out", str(out))
    assert result.exit_code == 1, result.output
    [line] = error_lines(result)
    assert line.startswith("Error: no billed usage in 2030-05: ") and "nothing written" in line
    assert not out.exists() or list(out.rglob("*")) == []
    assert run(billed, "export", "--period", "2026-11", "--format", file_format, "--out", str(out)).exit_code == 0


def test_allow_empty_writes_the_header_only_summary_and_says_so(billed: Billing, tmp_path: Path) -> None:
    result = run(billed, "export", "--period", "2030-05", "--out", str(tmp_path), "--allow-empty")
    assert result.exit_code == 0, result.output
    path = tmp_path / "finance-summary-2030-05.csv"
    assert f"wrote {path}" in result.output
    assert path.read_bytes().count(b"\n") == 1 and path.read_bytes().startswith(b"account_id,")
    assert warnings(result) == ["warning: no billed usage in 2030-05: the file(s) written hold no rows"]


def test_statements_for_a_period_without_usage_fail_and_issue_nothing(billed: Billing, tmp_path: Path) -> None:
    result = run(billed, "statements", "--period", "2025-01", "--finalize", "--out", str(tmp_path))
    assert result.exit_code == 1, result.output
    [line] = error_lines(result)
    assert line.startswith("Error: no billed usage in 2025-01: no statement written")
    assert billed.query("SELECT * FROM finalized_periods WHERE period = '2025-01'") == []
    assert billed.one("SELECT status FROM runs WHERE command = 'statements'") == "failed"
    assert not (tmp_path / "statements").exists()
    # an account without usage in a period with usage: the same, for that account
    draft = run(billed, "statements", "--period", "2026-11", "--account", "acct_discount", "--out", str(tmp_path))
    assert draft.exit_code == 1 and "no billed usage in 2026-11 for account acct_discount" in draft.stderr


def test_allow_empty_closes_an_empty_period(billed: Billing, tmp_path: Path) -> None:
    args = ("statements", "--period", "2025-01", "--finalize", "--issue-date", "2025-02-01", "--out", str(tmp_path))
    result = run(billed, *args, "--allow-empty")
    assert result.exit_code == 0, result.output
    assert "0 issued statement(s)" in result.output
    assert billed.one("SELECT count(*) FROM finalized_periods WHERE period = '2025-01'") == 1


def test_the_library_refuses_an_empty_period(billed: Billing, tmp_path: Path) -> None:
    with pytest.raises(EmptyPeriod, match="no billed usage in 2025-01"):
        jobs.run_statements(billed.settings, "2025-01", tmp_path)
