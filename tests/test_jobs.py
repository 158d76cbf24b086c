"""Jobs are transactional, idempotent and exclusive: crash anywhere, re-run, converge."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from core.attempt_store import ATTEMPTS, listed_attempt_files, prepare_run_rows
from core.db import connect
from pipeline import jobs, rate
from pipeline.cli import cli as cli_group
from pipeline.lock import ConcurrentRunError, exclusive_run
from tests.conftest import Billing, record, usage
from tests.faults.harness import SNAPSHOT  # the billing content of a database

CLI = str(Path(sys.executable).with_name("infergate-billing"))


def snapshot(billing: Billing) -> list[list[tuple[object, ...]]]:
    return [billing.query(f"{query} ORDER BY ALL") for query in SNAPSHOT]


def cli(billing: Billing, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed command in its own process (for the lock, which is held per process)."""
    base = [CLI, "--db", str(billing.settings.db_path), "--accounts", str(billing.settings.accounts_file)]
    return subprocess.run([*base, *args], capture_output=True, text=True, env=dict(os.environ), timeout=300)


def invoke(billing: Billing, *args: str) -> Result:
    """The command in this process (Click's CliRunner): output and exit code as from the shell."""
    runner = CliRunner(env={"INFERGATE_DB": None, "INFERGATE_QUIET": None, "INFERGATE_LOG_FORMAT": None})
    base = ["--db", str(billing.settings.db_path), "--accounts", str(billing.settings.accounts_file)]
    return runner.invoke(cli_group, [*base, *args], catch_exceptions=False)


def test_failure_inside_the_run_leaves_the_database_as_before(billing: Billing, monkeypatch) -> None:
    billing.log("requests-2026-11-20.jsonl", [record(usage=usage(1000, 100))])
    billing.nightly()
    before = snapshot(billing)
    billing.log("requests-2026-11-21.jsonl", [record(), "garbage"])

    def explode(*args: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(rate, "rate_scope", explode)
    with pytest.raises(RuntimeError):
        billing.nightly("2026-11-21")
    assert snapshot(billing) == before
    assert billing.query("SELECT status, message FROM runs ORDER BY run_id")[-1] == (
        "failed",
        "RuntimeError: disk on fire",
    )


def test_a_run_is_rated_from_its_own_attempts_files_only_when_they_hold_its_whole_scope(billing: Billing) -> None:
    """``rate.own_attempt_files``, what ``--engine spark`` gives Spark instead of an export of
    ``scoped_attempts``: the run's listed files when the run is the only one holding attempts
    of the scope and none of its attempts is still in the TEMP table; else none (the export)."""
    billing.log("requests-2026-11-20.jsonl", [record(event_id="a")])
    billing.nightly("2026-11-20")
    con = connect(billing.settings.db_path)
    try:
        own = listed_attempt_files(con, runs=[1])
        assert len(own) == 1 and rate.own_attempt_files(con, 1, [1]) == own
        assert rate.own_attempt_files(con, 1, [0, 1]) == []  # an earlier run holds attempts in scope
        assert rate.own_attempt_files(con, 2, [2]) == []  # no file listed for the run
        prepare_run_rows(con, ATTEMPTS)
        con.execute("INSERT INTO run_attempts SELECT * FROM attempts")
        assert rate.own_attempt_files(con, 1, [1]) == []  # attempts not in the files yet
    finally:
        con.close()


# The crash tests (SIGKILL at every fault point and at random instants) are in tests/faults/.


def test_second_run_at_once_is_refused_naming_the_holder(billing: Billing) -> None:
    billing.log("requests-2026-11-20.jsonl", [record()])
    with exclusive_run(billing.settings.db_path, "nightly"):
        result = cli(billing, "nightly", "--date", "2026-11-20", "--logs", str(billing.logs))
        with pytest.raises(ConcurrentRunError):
            billing.nightly()
    assert result.returncode == 1
    assert "in use by (nightly, pid" in result.stderr and "refused" in result.stderr
    assert billing.nightly().files[0].accepted == 1  # the lock is free again


def test_quarantine_above_threshold_exits_1(billing: Billing) -> None:
    billing.log("requests-2026-11-20.jsonl", [record(), "garbage", "more garbage"])
    result = invoke(billing, "nightly", "--date", "2026-11-20", "--logs", str(billing.logs))
    assert result.exit_code == 1
    assert "2 of 3 lines quarantined" in result.stderr
    ok = invoke(billing, "nightly", "--date", "2026-11-20", "--logs", str(billing.logs), "--max-quarantine-rate", "1")
    assert ok.exit_code == 0


def test_usage_errors_exit_2(billing: Billing) -> None:
    assert invoke(billing, "nightly", "--date", "not-a-date").exit_code == 2
    assert invoke(billing, "export").exit_code == 2
    assert invoke(billing, "rate", "--period", "2026-13").exit_code == 2


def test_bad_reference_data_is_a_clear_error_not_a_traceback(billing: Billing) -> None:
    billing.settings.accounts_file.write_text('[[accounts]]\nid = "a"\nlegal_name = "A"\ndiscount_pct = 12.5\n')
    result = invoke(billing, "nightly", "--date", "2026-11-20", "--logs", str(billing.logs))
    assert result.exit_code == 1
    assert "accounts.toml: field accounts.[a].discount_pct" in result.stderr and "float" in result.stderr
    assert "Traceback" not in result.stderr


def test_ingest_then_rate_equals_nightly(billing: Billing, tmp_path: Path) -> None:
    records = [record(usage=usage(1000 * i, 10 * i)) for i in range(1, 5)]
    path = billing.log("requests-2026-11-20.jsonl", records)
    billing.nightly()
    other = Billing(tmp_path / "other")
    jobs.run_ingest(other.settings, [str(path)])
    assert other.one("SELECT count(*) FROM rated_attempts") == 0
    jobs.run_rate(other.settings, None, None)
    assert other.query("SELECT * FROM statement_lines ORDER BY ALL") == billing.query(
        "SELECT * FROM statement_lines ORDER BY ALL"
    )


def test_a_custom_recounter_is_refused_with_the_spark_engine(billing: Billing) -> None:
    """On Spark the executors recount with the offline tokenizers: a recounter handed to the job
    would be ignored silently, so it is refused before anything runs."""
    import dataclasses

    billing.log("requests-2026-11-20.jsonl", [record()])
    settings = dataclasses.replace(billing.settings, engine="spark")
    with pytest.raises(ValueError, match="DuckDB engine only"):
        jobs.run_ingest(settings, [str(billing.logs / "*.jsonl")], recounter=lambda rows: [None] * len(rows))
    assert not billing.settings.db_path.exists() or billing.one("SELECT count(*) FROM runs") == 0


def test_staging_that_cannot_be_removed_after_the_commit_is_a_warning_not_a_failed_run(
    billing: Billing, monkeypatch, capsys
) -> None:
    """The Spark path keeps its exchange directory until the transaction ends; removing it can
    fail (an NFS .nfs file, a late task). The run is committed by then: it must stay succeeded,
    with a warning (found by review: it was recorded failed, exit 1, its data committed)."""
    import dataclasses

    staging = jobs._stage_files

    def stage(settings: jobs.Settings):
        def staged(*args, **kwargs):
            def refuse() -> None:
                raise OSError(16, "Device or resource busy")

            return dataclasses.replace(staging(settings)(*args, **kwargs), close=refuse)

        return staged

    monkeypatch.setattr(jobs, "_stage_files", stage)
    billing.log("requests-2026-11-20.jsonl", [record(event_id="a", usage=usage(1000, 100))])
    billing.nightly("2026-11-20")
    assert billing.one("SELECT count(*) FROM attempts") == 1
    assert billing.query("SELECT command, status FROM runs") == [("nightly", "succeeded")]
    assert "could not remove the Spark exchange directory (OSError" in capsys.readouterr().err
