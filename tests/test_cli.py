"""The installed CLI end to end on the committed sample logs, against golden files.

The demo flow runs the installed command in a process per step (the entry point itself is
under test); help, prices and sample-logs run in this process through Click's CliRunner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import Result

from core.db import connect
from pipeline.cli import cli
from tests.conftest import cli_in_process

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).with_name("infergate-billing"))
GOLDEN = Path(__file__).parent / "golden"


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def invoke(*args: str) -> Result:
    """The command in this process; relative defaults (pricing/tables, data/) resolve from ROOT."""
    return cli_in_process(*args, cwd=ROOT)


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same steps as `make demo`."""
    out = tmp_path_factory.mktemp("sample")
    db = str(out / "sample.duckdb")
    steps = [
        ("nightly", "--date", "2026-11-29", "--logs", "data/sample_logs"),
        ("nightly", "--date", "2026-11-30", "--logs", "data/sample_logs"),
        ("statements", "--period", "2026-11", "--finalize", "--issue-date", "2026-12-01", "--out", str(out)),
        ("nightly", "--date", "2026-12-01", "--logs", "data/sample_logs"),
        ("statements", "--period", "2026-12", "--finalize", "--issue-date", "2027-01-01", "--out", str(out)),
        ("export", "--period", "2026-11", "--out", str(out)),
        ("export", "--period", "2026-12", "--out", str(out)),
    ]
    for step in steps:
        result = run("--db", db, *step)
        assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.mark.parametrize("period", ["2026-11", "2026-12"])
def test_finance_summary_matches_golden_byte_for_byte(sample_run: Path, period: str) -> None:
    name = f"finance-summary-{period}.csv"
    produced = (sample_run / name).read_bytes()
    if os.environ.get("UPDATE_GOLDEN"):
        (GOLDEN / name).write_bytes(produced)
    assert produced == (GOLDEN / name).read_bytes()


def test_rerunning_the_nightly_changes_nothing(sample_run: Path) -> None:
    db = str(sample_run / "sample.duckdb")
    before = (sample_run / "finance-summary-2026-11.csv").read_bytes()
    result = run("--db", db, "nightly", "--date", "2026-11-30", "--logs", "data/sample_logs")
    assert result.returncode == 0 and "already ingested" in result.stdout
    issued = run("--db", db, "statements", "--period", "2026-11", "--finalize", "--out", str(sample_run))
    assert "is finalized" in issued.stdout
    assert run("--db", db, "export", "--period", "2026-11", "--out", str(sample_run / "again")).returncode == 0
    assert (sample_run / "again" / "finance-summary-2026-11.csv").read_bytes() == before


def test_sample_logs_exercise_every_reason_code(sample_run: Path) -> None:
    con = connect(sample_run / "sample.duckdb", read_only=True)  # the views over the lake files
    quarantined = {r for (r,) in con.execute("SELECT DISTINCT reason FROM quarantine").fetchall()}
    rated = {
        r for (r,) in con.execute("SELECT DISTINCT reason FROM rated_attempts WHERE reason IS NOT NULL").fetchall()
    }
    assert quarantined == {"parse_error", "invalid_record", "bad_timestamp", "duplicate_conflict", "usage_inconsistent"}
    assert {
        "superseded_attempt",
        "client_error",
        "upstream_error",
        "status_not_billable",
        "no_output",
        "unknown_account",
        "unpriced_model",
        "usage_missing",
    } <= rated
    sources = {s for (s,) in con.execute("SELECT DISTINCT usage_source FROM rated_attempts WHERE billable").fetchall()}
    assert "provider" in sources


def test_sample_logs_are_deterministic(tmp_path: Path) -> None:
    assert invoke("sample-logs", "--out", str(tmp_path)).exit_code == 0
    for path in sorted((ROOT / "data" / "sample_logs").iterdir()):
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name


def _commands(group=cli, prefix=()):  # type: ignore[no-untyped-def]
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


@pytest.mark.parametrize("command", list(_commands()), ids=" ".join)
def test_every_command_has_help_with_an_example(command: tuple[str, ...]) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout and "infergate-billing" in result.stdout


def test_prices_validate_and_list() -> None:
    assert invoke("prices", "validate").stdout.startswith("ok: 1 price version")
    # one of the tables named as FILE is checked with the others, not refused as its own duplicate
    shipped = invoke("prices", "validate", str(ROOT / "pricing" / "tables" / "2026-11-01.toml"))
    assert shipped.exit_code == 0 and shipped.stdout.startswith("ok: 1 price version"), shipped.output
    listing = invoke("prices", "list").stdout
    assert "openai/gpt-5.5 " in listing and "0.14745" in listing


def test_sample_december_statement_carries_the_late_november_usage(sample_run: Path) -> None:
    import csv

    rows = list(csv.DictReader((sample_run / "finance-summary-2026-12.csv").open()))
    adjusted = {r["account_id"]: r["adjustments_usd"] for r in rows if r["adjustments_usd"] != "0.00"}
    assert list(adjusted) == ["acct_umbrella"]  # the three late gpt-5.5 records in December's file
    pdf = sample_run / "statements" / "2026-12" / f"{rows[-1]['statement_number']}.pdf"
    assert pdf.exists()
