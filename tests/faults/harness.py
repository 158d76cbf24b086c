"""Kill a real nightly run and check the database is as before or as after, never half.

The scenario is the committed sample: a database holding 2026-11-29 and 2026-11-30, and the
run under test, the nightly for 2026-12-01 (two files, a Parquet and a gzip, with late
records for November, so it touches both periods). A killed run must leave that database
either unchanged or complete; a re-run must then converge to the same tables and the same
finance CSV bytes as an uninterrupted run. Used by ``tests/faults/`` and by ``make soak``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from core.attempt_store import copy_database
from core.db import connect
from pipeline import jobs
from reports.finance import write_finance_summary
from tests.forked_cli import ForkedCLI, run_cli

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("infergate-billing"))
SAMPLE_LOGS = ROOT / "data" / "sample_logs"
ACCOUNTS = ROOT / "data" / "accounts.toml"
# The finance CSVs after the three sample nights, never finalized (tests/golden has the
# finalized demo flow, where the late November records become adjustments instead).
GOLDEN = ROOT / "tests" / "faults" / "golden"
PERIODS = ("2026-11", "2026-12")
DAYS = ("2026-11-29", "2026-11-30", "2026-12-01")

# The billing content of a database; which run wrote a row, and when, may differ.
SNAPSHOT = (
    "SELECT * EXCLUDE (run_id) FROM attempts",  # the view: the table and the listed lake files
    "SELECT * EXCLUDE (run_id) FROM attempt_keys",
    "SELECT * EXCLUDE (run_id, quarantined_at) FROM quarantine",
    "SELECT * EXCLUDE (rated_run_id) FROM rated_attempts",
    "SELECT reason, sum(change) FROM held_changes GROUP BY reason",  # the held counts, kept by difference
    "SELECT * FROM statement_lines",
    "SELECT * EXCLUDE (run_id, ingested_at) FROM ingested_files",
)
Snapshot = list[list[tuple[object, ...]]]

# Every named point the 2026-12-01 run passes (a test checks this against a trace).
RUN_POINTS = (
    "after_lock#1",
    "after_ledger_row#1",
    "staged_file#1",
    "staged_file#2",
    "after_parse#1",
    "after_stage#1",
    "after_dedup#1",
    "after_recount#1",
    "sql:store_batch.sql#1",
    "sql:store_batch.sql#2",
    "sql:store_batch.sql#3",
    "sql:store_batch.sql#4",
    "after_ingest#1",
    "after_reference#1",
    "after_scope#1",
    "rate:after_new_rated#1",
    "rate:after_delete#1",
    "rate:after_insert#1",
    "rate:after_affected_periods#1",
    "sql:aggregate.sql#1",
    "sql:aggregate.sql#2",
    "sql:aggregate.sql#3",
    "sql:aggregate.sql#4",
    "after_rate#1",
    "after_lake#1",
    "ledger:after_runs_update#1",
    "before_commit#1",
    "after_commit#1",
    "after_close#1",
)
# Points of the very first run on an empty database (the migration creates the schema).
FRESH_POINTS = ("migration:before_commit#1", "after_lock#1", "sql:store_batch.sql#2", "after_commit#1")


def cli(
    db: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The CLI on ``db`` with the sample accounts, a process forked from a warm server
    (tests/forked_cli.py: the same entry point, without a fresh interpreter's start)."""
    return run_cli(["--db", str(db), "--accounts", str(ACCOUNTS), *args], env=env, timeout=timeout)


def nightly_args(day: str) -> list[str]:
    return ["nightly", "--date", day, "--logs", str(SAMPLE_LOGS), "--max-quarantine-rate", "1"]


def snapshot(db: Path) -> Snapshot | None:
    """The billing tables' content, or None when the schema does not exist (yet)."""
    if not db.exists():
        return None
    con = connect(db, read_only=True)
    try:
        if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'runs'").fetchone()[0]:  # type: ignore[index]
            return None
        return [[tuple(row) for row in con.execute(f"{q} ORDER BY ALL").fetchall()] for q in SNAPSHOT]
    finally:
        con.close()


def exports(db: Path, out: Path) -> dict[str, bytes]:
    """The finance CSVs of both periods, as bytes."""
    con = connect(db, read_only=True)
    try:
        paths = [write_finance_summary(con, period, out) for period in PERIODS]
    finally:
        con.close()
    return {p.name: p.read_bytes() for p in paths}


def ledger(db: Path) -> list[tuple[int, str]]:
    con = connect(db, read_only=True)
    try:
        return [(int(r), str(s)) for r, s in con.execute("SELECT run_id, status FROM runs ORDER BY run_id").fetchall()]
    finally:
        con.close()


def rerun(db: Path, day: str) -> None:
    """The re-run after a kill, in-process (the CLI is a thin adapter over this call)."""
    settings = jobs.Settings(db_path=db, accounts_file=ACCOUNTS)
    jobs.run_nightly(settings, date.fromisoformat(day), SAMPLE_LOGS)


@dataclass
class Scenario:
    """Prepared databases and the states a killed run may leave."""

    root: Path
    base_db: Path  # after 2026-11-29 and 2026-11-30
    before: Snapshot
    after: Snapshot
    after_csv: dict[str, bytes]
    first_day: Snapshot  # an empty database after the 2026-11-29 nightly
    run_seconds: float  # the uninterrupted 2026-12-01 run, start to exit
    startup_seconds: float  # the CLI printing its version: a fork of the warm server

    @classmethod
    def build(cls, root: Path) -> Scenario:
        root.mkdir(parents=True, exist_ok=True)
        base = root / "base" / "billing.duckdb"
        for day in DAYS[:2]:
            done = cli(base, *nightly_args(day))
            assert done.returncode == 0, done.stderr
            if day == DAYS[0]:
                first_day = snapshot(base)
        full = root / "full" / "billing.duckdb"
        full.parent.mkdir()
        copy_database(base, full)
        started = time.monotonic()
        done = cli(full, *nightly_args(DAYS[2]))
        run_seconds = time.monotonic() - started
        assert done.returncode == 0, done.stderr
        started = time.monotonic()
        cli(full, "--version")
        startup_seconds = time.monotonic() - started
        before, after = snapshot(base), snapshot(full)
        assert before is not None and after is not None and first_day is not None
        return cls(
            root,
            base,
            before,
            after,
            exports(full, root / "full-csv"),
            first_day,
            run_seconds,
            startup_seconds,
        )

    def kill(self, work: Path, point: str | None = None, delay: float | None = None, fresh: bool = False) -> str:
        """Run the nightly, kill it (at ``point`` or after ``delay`` s), check, re-run, check.

        Returns what happened: ``before`` or ``after`` (killed, database in that state) or
        ``finished`` (a random delay outlived the run). Raises AssertionError otherwise.
        """
        work.mkdir(parents=True)
        db = work / "billing.duckdb"
        day = DAYS[0] if fresh else DAYS[2]
        if not fresh:
            copy_database(self.base_db, db)
        env = {"INFERGATE_FAULT": point} if point else {}
        proc = ForkedCLI(["--db", str(db), "--accounts", str(ACCOUNTS), *nightly_args(day)], env=env)
        try:
            proc.wait(timeout=delay if delay is not None else 300)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        stderr = proc.output()[1].decode()
        if point:
            assert proc.returncode == -signal.SIGKILL, f"{point}: not killed (rc {proc.returncode}): {stderr}"
        assert proc.returncode in (0, -signal.SIGKILL), f"rc {proc.returncode}: {stderr}"
        before: Snapshot | None = None if fresh else self.before
        after = self.first_day if fresh else self.after
        state = snapshot(db)
        if state == after:
            outcome = "after"
        elif state == before or (fresh and state in (None, [[] for _ in SNAPSHOT])):
            outcome = "before"
        else:
            raise AssertionError(f"half-written database after a kill ({point or f'{delay:.3f}s'})")
        if proc.returncode == 0:
            assert outcome == "after"
            outcome = "finished"
        rerun(db, day)
        assert snapshot(db) == after, f"re-run did not converge ({point or f'{delay:.3f}s'})"
        statuses = [status for _, status in ledger(db)]
        assert statuses[-1] == "succeeded" and "running" not in statuses, statuses
        assert set(statuses) <= {"succeeded", "crashed"}, statuses
        if not fresh:
            assert exports(db, work / "csv") == self.after_csv
        return outcome

    def random_delays(self, count: int, seed: int) -> list[float]:
        """Seeded instants spread over the run, from the end of the imports to its exit."""
        rng = random.Random(seed)
        low, high = self.startup_seconds * 0.8, self.run_seconds * 1.05
        return [rng.uniform(low, max(high, low + 0.05)) for _ in range(count)]


def seed_from_env() -> int:
    """``INFERGATE_FAULT_SEED`` replays a failure; otherwise a fresh seed, printed by the caller."""
    value = os.environ.get("INFERGATE_FAULT_SEED")
    return int(value) if value else random.SystemRandom().randrange(1, 2**31)
