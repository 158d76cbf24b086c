"""The analyst snapshot: published after every run, readable while a run holds the database."""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from core.attempt_store import ATTEMPTS_COMMENT, RATED_COMMENT
from core.db import connect
from core.money import D
from pipeline import snapshot
from pipeline.cli import cli
from pipeline.lock import exclusive_run
from tests.conftest import Billing, record, usage

CLI = str(Path(sys.executable).with_name("infergate-billing"))

CONTENT = (
    "SELECT * FROM attempts ORDER BY ALL",
    "SELECT * FROM rated_attempts ORDER BY ALL",
    "SELECT * FROM statement_lines ORDER BY ALL",
    "SELECT * FROM runs ORDER BY ALL",
    "SELECT * FROM daily_usage ORDER BY ALL",
    "SELECT * FROM margin_by_model ORDER BY ALL",
    # the file's catalog (not the live connection's TEMP view over the lake), less the internal
    # lookup keys the snapshot leaves out (snapshot.INTERNAL_TABLES)
    # (the live tables attempts_before_lake and rated_before_lake are the snapshot's views
    # attempts and rated_attempts, migrations 025 and 027)
    "SELECT replace(replace(table_name, 'attempts_before_lake', 'attempts'), 'rated_before_lake', 'rated_attempts'), "
    "column_name, data_type, comment "
    "FROM duckdb_columns() WHERE NOT internal "
    "AND database_name <> 'temp' AND table_name NOT IN ('attempt_keys', 'attempt_keys_before_lake') ORDER BY ALL",
    # attempts and rated_attempts are views over the Parquet lake in the snapshot (issue 14 item 2)
    "SELECT view_name, comment FROM duckdb_views() WHERE NOT internal AND NOT temporary "
    "AND view_name NOT IN ('attempts', 'rated_attempts') ORDER BY ALL",
    "SELECT table_name, comment FROM duckdb_tables() WHERE table_name NOT IN ('attempts', 'rated_attempts') "
    "AND NOT temporary "
    "AND table_name NOT IN ('attempt_keys', 'attempt_keys_before_lake', 'attempts_before_lake', 'rated_before_lake') "
    "ORDER BY ALL",
)
LAKE_VIEWS = (
    "SELECT view_name, comment FROM duckdb_views() WHERE view_name IN ('attempts', 'rated_attempts') ORDER BY 1"
)
# the views' comments: what the views attempts and rated_attempts are
LAKE_TABLES = "SELECT 'attempts', $attempts UNION ALL SELECT 'rated_attempts', $rated ORDER BY 1"


def base_args(billing: Billing) -> list[str]:
    return ["--db", str(billing.settings.db_path), "--accounts", str(billing.settings.accounts_file)]


def with_snapshot(billing: Billing) -> Billing:
    target = snapshot.default_snapshot_path(billing.settings.db_path)
    billing.settings = dataclasses.replace(billing.settings, snapshot_path=target)
    return billing


def test_a_run_publishes_a_read_only_copy_equal_to_the_database(billing: Billing) -> None:
    with_snapshot(billing)
    billing.log("requests-2026-11-20.jsonl", [record(usage=usage(1000, 100)), record(status=500, finish_reason=None)])
    report = billing.nightly()
    target = billing.settings.db_path.with_name("billing.analyst.duckdb")
    assert report.snapshot == target and report.snapshot_error is None
    assert stat.S_IMODE(target.stat().st_mode) == 0o444
    assert not target.with_name(target.name + ".wal").exists()
    # connect(): the live attempts are read through the connection's view (core/attempt_store.py)
    live, copy = connect(billing.settings.db_path, read_only=True), snapshot.open_snapshot(target)
    try:
        for query in CONTENT:
            assert copy.execute(query).fetchall() == live.execute(query).fetchall(), query
        expected = live.execute(LAKE_TABLES, {"attempts": ATTEMPTS_COMMENT, "rated": RATED_COMMENT}).fetchall()
        assert copy.execute(LAKE_VIEWS).fetchall() == expected != []
        assert copy.execute("SELECT status FROM runs").fetchall() == [("succeeded",)]
    finally:
        live.close()
        copy.close()


def test_the_snapshot_opens_while_a_run_holds_the_database(billing: Billing) -> None:
    billing.log("requests-2026-11-20.jsonl", [record(usage=usage(1000, 100))])
    run = subprocess.run(
        [CLI, *base_args(billing), "nightly", "--date", "2026-11-20", "--logs", str(billing.logs)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and "analyst snapshot published" in run.stdout, run.stderr
    # this process now holds the database read-write, as a nightly run does
    writer = duckdb.connect(str(billing.settings.db_path))
    try:
        query = "SELECT account_id, spend_exact_usd FROM daily_usage"
        read = subprocess.run([CLI, *base_args(billing), "sql", query], capture_output=True, text=True)
        assert read.returncode == 0, read.stderr
        assert read.stdout.splitlines()[-1].split() == ["acct_plain", "0.01200000000000000000"]
        live = subprocess.run([CLI, *base_args(billing), "sql", "--live", query], capture_output=True, text=True)
        assert live.returncode == 1
        assert "being written by a running job" in live.stderr and "Traceback" not in live.stderr
    finally:
        writer.close()


def test_a_failed_publication_keeps_the_run_and_the_previous_snapshot(billing: Billing, monkeypatch) -> None:
    with_snapshot(billing)
    billing.log("requests-2026-11-20.jsonl", [record(usage=usage(1000, 100))])
    first = billing.nightly()
    assert first.snapshot is not None
    before = first.snapshot.read_bytes()

    def broken(con: object, target: Path) -> Path:
        raise OSError("disk full")

    monkeypatch.setattr(snapshot, "publish", broken)
    billing.log("requests-2026-11-21.jsonl", [record(ts="2026-11-21T08:00:00Z", usage=usage(2000, 100))])
    second = billing.nightly("2026-11-21")
    assert second.snapshot is None and second.snapshot_error == "OSError: disk full"
    assert billing.one("SELECT status FROM runs WHERE run_id = ?", [second.run_id]) == "succeeded"
    assert billing.one("SELECT count(*) FROM rated_attempts") == 2  # the run's data committed
    assert first.snapshot.read_bytes() == before


def test_cli_exits_1_when_the_snapshot_cannot_be_published(billing: Billing) -> None:
    billing.log("requests-2026-11-20.jsonl", [record()])
    blocker = billing.root / "not-a-dir"
    blocker.write_text("")
    result = CliRunner().invoke(
        cli,
        [*base_args(billing), "--snapshot", str(blocker / "a.duckdb"), "nightly", "--date", "2026-11-20",
         "--logs", str(billing.logs)],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "run 1 succeeded" in result.output and "analyst snapshot was not published" in result.output


def test_no_snapshot_flag_and_on_demand_publication(billing: Billing, tmp_path: Path) -> None:
    billing.log("requests-2026-11-20.jsonl", [record(usage=usage(1000, 100))])
    runner = CliRunner()
    args = [*base_args(billing), "--no-snapshot", "nightly", "--date", "2026-11-20", "--logs", str(billing.logs)]
    assert runner.invoke(cli, args).exit_code == 0
    default = billing.settings.db_path.with_name("billing.analyst.duckdb")
    assert not default.exists()
    missing = runner.invoke(cli, [*base_args(billing), "sql", "SELECT 1"])
    assert missing.exit_code == 1 and "no analyst snapshot at" in missing.output
    # a stale temporary file from a killed publication does not get in the way
    stale = default.with_name(f".{default.name}.tmp")
    stale.write_bytes(b"half a database")
    published = runner.invoke(cli, [*base_args(billing), "snapshot"])
    assert published.exit_code == 0 and str(default) in published.output
    assert not stale.exists()
    result = runner.invoke(cli, [*base_args(billing), "sql", "SELECT spend_exact_usd FROM monthly_totals"])
    assert result.exit_code == 0 and result.output.splitlines()[-1].strip() == "0.01200000000000000000"
    assert D(result.output.splitlines()[-1]) == D("0.012")


def test_on_demand_publication_is_refused_while_a_run_holds_the_lock(billing: Billing) -> None:
    billing.log("requests-2026-11-20.jsonl", [record()])
    billing.nightly()
    with exclusive_run(billing.settings.db_path, "nightly"):
        result = CliRunner().invoke(cli, [*base_args(billing), "snapshot"])
    assert result.exit_code == 1 and "in use by (nightly" in result.output


def test_sql_prints_at_most_max_rows(billing: Billing) -> None:
    billing.log("requests-2026-11-20.jsonl", [record(), record(), record()])
    billing.nightly()
    snapshot.publish_now(billing.settings.db_path)
    result = CliRunner().invoke(
        cli, [*base_args(billing), "sql", "--max-rows", "2", "SELECT event_id FROM rated_attempts ORDER BY 1"]
    )
    assert result.exit_code == 0
    assert len(result.output.splitlines()) == 5 and "only the first 2 rows" in result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file modes")
def test_snapshot_file_is_read_only(billing: Billing) -> None:
    billing.log("requests-2026-11-20.jsonl", [record()])
    billing.nightly()
    target = snapshot.publish_now(billing.settings.db_path)
    with pytest.raises(duckdb.Error):
        duckdb.connect(str(target)).execute("CREATE TABLE x (i INTEGER)")


def test_the_snapshot_cannot_be_the_database_itself(billing: Billing) -> None:
    db = str(billing.settings.db_path)
    result = CliRunner().invoke(cli, ["--db", db, "--snapshot", db, "nightly", "--logs", str(billing.logs)])
    assert result.exit_code == 2 and "another file than the database" in result.output
