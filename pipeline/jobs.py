"""The jobs: ingest, rate and nightly, each one run recorded in the ledger.

Every job is one transaction on the database, under the run lock: it either commits
completely (data and its ledger row together) or leaves the database as it was. The ledger
row is first written as ``running`` in a transaction of its own, so a run killed half-way is
visible afterwards (the next run marks it ``crashed``).
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from core import console
from core.attempt_store import RUN_LAKE_TABLES, merge_key_files, remove_unlisted_lake_files, store_run_rows
from core.db import code_version, connect, insert_many, transaction
from core.defaults import (
    DEFAULT_ACCOUNTS_FILE,
    DEFAULT_DB,
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_TABLES_DIR,
)
from core.errors import BillingError, EmptyPeriod, UsageProblem
from core.faults import fault_point
from core.timing import step
from pipeline import ingest, ledger, rate, rated_summary, reference_state, snapshot
from pipeline.ingest import FileResult, Recounter
from pipeline.ingest.recounting import default_recounter
from pipeline.lock import ConcurrentRunError, exclusive_run, record_run_id
from pipeline.redact import safe_error_message
from pipeline.reference_state import Unchanged
from pipeline.spark.exchange import remove_leftovers as remove_exchange_leftovers
from reports.atomic import write_atomic

if TYPE_CHECKING:  # rendering (a process pool, the invoice model) is imported by the job that renders
    from pipeline import reference, statements  # reference: pydantic, only when files must be validated


@dataclass(frozen=True)
class Settings:
    """Where a job reads and writes; every path is overridable on the command line."""

    db_path: Path = DEFAULT_DB
    prices_dir: Path = DEFAULT_TABLES_DIR
    accounts_file: Path = DEFAULT_ACCOUNTS_FILE
    credits_file: Path | None = None  # credit grants; None: data/credits.csv if it exists, else none
    issuer_file: Path | None = None  # None: the built-in issuer (pipeline.issuer.BUILT_IN)
    memory_limit: str | None = DEFAULT_MEMORY_LIMIT
    engine: str = "duckdb"  # where rate.sql runs: duckdb, or spark (the same rules, transpiled)
    spark_attempts: str | None = None  # engine spark: read attempts from this Parquet path/URI
    on_file: Callable[[Path], None] | None = None  # progress callback, one call per staged file
    force_price_edit: bool = False  # accept an edited price version that already priced attempts
    reference: reference.Reference | None = None  # use this instead of the files (replays)
    snapshot_path: Path | None = None  # analyst snapshot published after each run (None: none)
    # the reference options the command line gave (not defaults): statements refuse such a file
    # when it is not the one rated, and only warn about a default that differs
    explicit_reference: frozenset[str] = frozenset()


@dataclass
class RunReport:
    """What a run did: the ledger row's content, for printing and exit codes."""

    run_id: int
    command: str
    files: list[FileResult] = field(default_factory=list)
    rated: rate.RateResult | None = None
    held_by_reason: dict[str, int] = field(default_factory=dict)
    outputs: list[tuple[str, str, int]] = field(default_factory=list)  # (path, sha256, size)
    snapshot: Path | None = None  # the analyst snapshot published after the commit
    snapshot_error: str | None = None  # why it could not be published (the run itself committed)
    refused: list[str] = field(default_factory=list)  # inputs not read: links, FIFOs, ... (one line each)
    # why the run exits 1 although its data committed (refused inputs, too many lines quarantined),
    # and a nightly's day whose files held no record: recorded in the ledger row with exit code 1
    problems: list[str] = field(default_factory=list)
    empty_day: NoInputForDay | None = None

    @property
    def lines_read(self) -> int:
        return sum(f.lines_read for f in self.files if not f.skipped)

    @property
    def quarantined(self) -> int:
        return sum(f.quarantined for f in self.files if not f.skipped)

    @property
    def reasons(self) -> list[str]:
        """Why the run exits 1 although it committed: its problems and an empty day (the ledger's message)."""
        return [*self.problems, *([str(self.empty_day)] if self.empty_day else [])]

    def quarantine_rate(self) -> float:  # allow-float: a ratio for the threshold, not money
        return self.quarantined / self.lines_read if self.lines_read else 0.0

    def empty_files(self) -> list[FileResult]:
        """Files that held no record (zero bytes, or only blank lines), now or when first ingested.

        A copy of a file that does hold records (same sha256, skipped) is not empty.
        """
        full = {f.sha256 for f in self.files if f.lines_read}
        return [f for f in self.files if not f.lines_read and f.sha256 not in full]


def _sources_digest(settings: Settings) -> str | None:
    return reference_state.sources_digest(
        settings.prices_dir, settings.accounts_file, settings.credits_file, settings.issuer_file
    )


def load_reference(settings: Settings) -> reference.Reference:
    """The reference files, parsed and validated (or ``settings.reference``)."""
    if settings.reference is not None:
        return settings.reference
    from pipeline import reference
    from pipeline.accounts import load_accounts
    from pipeline.credits import load_credits
    from pipeline.issuer import check_accounts, load_issuer
    from pricing.versions import load_price_book

    before = _sources_digest(settings)
    accounts = load_accounts(settings.accounts_file)
    issuer = load_issuer(settings.issuer_file)
    check_accounts(issuer, accounts, settings.accounts_file)
    prices = load_price_book(settings.prices_dir)
    credits = load_credits(settings.credits_file)
    # the digest names what was validated only if no file changed while it was read
    sources = before if before is not None and before == _sources_digest(settings) else None
    return reference.Reference(prices, accounts, credits, issuer, sources)


def reference_for_run(settings: Settings, command: str) -> reference.Reference | Unchanged:
    """What a rating run uses: :class:`Unchanged` when the database was last loaded from
    exactly these files (no parsing: issue 14, item 5), else :func:`load_reference`.

    The database is peeked at under the run lock, taken for that moment only: a run that holds
    the lock opens the file read-write and must never find it held by a reader. When another
    run holds it the files are validated, as before (bad reference data is still reported
    before the lock refuses this run).
    """
    if settings.reference is None:
        digest = _sources_digest(settings)
        if digest is not None and settings.db_path.is_file():
            try:
                with exclusive_run(settings.db_path, command):
                    unchanged = reference_state.peek(settings.db_path, digest)
            except ConcurrentRunError:
                unchanged = None
            if unchanged is not None:
                return unchanged
    return load_reference(settings)


# Digests of what a run wrote: order-independent, over the rows without run ids. The rated rows
# are the ones the rating wrote (rated_attempts' rows of this run, less rated_run_id), digested
# where they were written (``pipeline/rated_summary.py``: by the rating's query over
# ``new_rated``, or per part by the executors' tasks, XORs combined) and taken from the rating's
# ``totals_table``, so no other run's file is opened and the driver reads no rated row here.
# The statement lines' columns as digested since migration 004: a column added later
# (override_requests, 030) is left out, so the digests recorded by earlier runs still verify.
DIGESTED_LINE_COLUMNS = (
    "account_id, period, model, token_class, price_version, price_basis, unit_price_per_1m, "
    "quantity_tokens, billed_requests, amount_exact, amount"
)
LINES_DIGEST_VERSION = 1  # the statement lines' (few rows a run: the cheaper version 2 is for rated rows)
DIGEST = f"CAST(coalesce(bit_xor({rated_summary.ROW_DIGESTS[LINES_DIGEST_VERSION]}), 0) AS VARCHAR)"  # rows r


def record_output_digests(con: duckdb.DuckDBPyConnection, run_id: int, rated: rate.RateResult) -> None:
    """Store a digest of the rows this run wrote (``replay --verify`` recomputes them): its
    rated attempts (their count and XOR of row digests, from ``rated.totals_table``: the value
    :data:`DIGEST` gives over the rows), and the statement lines of the periods its rating
    changed (``rated.periods_table``)."""
    con.execute(
        "INSERT INTO run_outputs (run_id, name, rows, digest, digest_version) SELECT $run_id, 'rated_attempts', "
        f"attempts, CAST(coalesce(digest, 0) AS VARCHAR), $version FROM {rated.totals_table}",
        {"run_id": run_id, "version": rated_summary.RATED_DIGEST_VERSION},
    )
    lines = (
        f"SELECT {DIGESTED_LINE_COLUMNS} FROM statement_lines WHERE (account_id, period) IN "
        f"(SELECT account_id, period FROM {rated.periods_table})"
    )
    con.execute(
        "INSERT INTO run_outputs (run_id, name, rows, digest, digest_version) "
        f"SELECT $run_id, 'statement_lines', count(*), {DIGEST}, $version FROM ({lines}) r",
        {"run_id": run_id, "version": LINES_DIGEST_VERSION},
    )


@contextmanager
def recorded_run(
    settings: Settings,
    command: str,
    args: dict[str, Any],
    ref: reference_state.Identified | None,
    stores_rows: bool = False,
) -> Iterator[tuple[duckdb.DuckDBPyConnection, RunReport]]:
    """Lock, open, open a ledger row, yield; the caller's work + ledger commit together.
    ``stores_rows``: the run stores rows of the lake tables (``connect``'s ``run_tables``)."""
    with exclusive_run(settings.db_path, command) as lock:
        con = connect(settings.db_path, memory_limit=settings.memory_limit, run_tables=stores_rows)
        try:
            con.execute(
                "UPDATE runs SET status = 'crashed', finished_at = now(), "
                "message = 'process ended without finishing; its changes were rolled back' "
                "WHERE status = 'running'"
            )
            fault_point("after_lock")
            remove_exchange_leftovers(settings.db_path)  # a killed Spark run's exchange, whatever engine runs now
            remove_unlisted_lake_files(con)  # files a failed or killed run or publication wrote
            run_id = _open_ledger_row(con, command, args, ref)
            fault_point("after_ledger_row")
            record_run_id(lock, run_id)
            console.current().run_opened(run_id, command)
            report = RunReport(run_id, command)
            try:
                yield con, report
            except BaseException as exc:
                _close_failed(con, run_id, exc)
                raise
            _publish_snapshot(con, settings, report)
        finally:
            con.close()
        fault_point("after_close")  # closed (and checkpointed), lock still held


def _remove_staged(batch: ingest.StagedBatch) -> None:
    """Remove what staging kept for the run's transaction (the Spark path's exchange directory).

    Called once the transaction has committed or rolled back: a failure here must neither mark
    a committed run failed nor hide the error of one that failed, so it is a warning; the next
    run on the database removes the leftover (pipeline/spark/exchange.py)."""
    try:
        batch.close()
    except OSError as exc:
        console.current().warning(
            f"could not remove the Spark exchange directory ({type(exc).__name__}: {safe_error_message(exc)}); "
            "the next run on this database removes it"
        )


def _publish_snapshot(con: duckdb.DuckDBPyConnection, settings: Settings, report: RunReport) -> None:
    """After the commit, still under the run lock: refresh the analysts' read-only copy.

    The run's data is committed whatever happens here, so a failure is reported, not raised.
    """
    if settings.snapshot_path is None:
        return
    try:
        report.snapshot = snapshot.publish(con, settings.snapshot_path)
    except (duckdb.Error, OSError) as exc:
        report.snapshot_error = f"{type(exc).__name__}: {safe_error_message(exc)}"


def _open_ledger_row(
    con: duckdb.DuckDBPyConnection, command: str, args: dict[str, Any], ref: reference_state.Identified | None
) -> int:
    row = con.execute("SELECT coalesce(max(run_id), 0) + 1 FROM runs").fetchone()
    assert row is not None
    run_id = int(row[0])
    con.execute(
        "INSERT INTO runs (run_id, command, args, started_at, status, code_version, pid, "
        "price_versions, accounts_sha256, credits_sha256, issuer_sha256) "
        "VALUES (?, ?, ?, now(), 'running', ?, ?, ?, ?, ?, ?)",
        [
            run_id,
            command,
            json.dumps(args, sort_keys=True, default=str),
            code_version(),
            os.getpid(),
            *(_ledger_hashes(ref) if ref else (None,) * 4),
        ],
    )
    return run_id


def _ledger_hashes(ref: reference_state.Identified) -> tuple[str, str, str | None, str]:
    """The ledger row's price_versions, accounts_sha256, credits_sha256 and issuer_sha256."""
    hashes = ref.hashes()
    return (
        json.dumps(hashes["prices"], sort_keys=True),
        hashes["accounts"],
        hashes.get("credits"),
        hashes["issuer"],
    )


def _reference_in_force(
    con: duckdb.DuckDBPyConnection, settings: Settings, run_id: int, ref: reference.Reference | Unchanged
) -> reference.Reference | Unchanged:
    """``ref``, unless it is :class:`Unchanged` and another run loaded other reference data
    since it was peeked at: then the files, validated (and the ledger row's hashes with them)."""
    if not isinstance(ref, Unchanged) or ref.held_by(con):
        return ref
    loaded = load_reference(settings)
    con.execute(
        "UPDATE runs SET price_versions = ?, accounts_sha256 = ?, credits_sha256 = ?, issuer_sha256 = ? "
        "WHERE run_id = ?",
        [*_ledger_hashes(loaded), run_id],
    )
    return loaded


def _close_failed(con: duckdb.DuckDBPyConnection, run_id: int, exc: BaseException) -> None:
    try:
        con.execute(
            "UPDATE runs SET status = 'failed', finished_at = now(), exit_code = 1, message = ? WHERE run_id = ?",
            [f"{type(exc).__name__}: {safe_error_message(exc)}", run_id],
        )
    except duckdb.Error:
        pass  # the database itself is failing; the row stays 'running' and is marked crashed later


def close_succeeded(con: duckdb.DuckDBPyConnection, report: RunReport) -> None:
    """Record counts and per-file lines in the ledger (inside the run's transaction).

    ``status`` says the run's data committed; ``exit_code`` and ``message`` what cron saw: 1 and
    the reasons when the run reported problems (:attr:`RunReport.reasons`)."""
    fresh = [f for f in report.files if not f.skipped]
    problems = report.reasons
    con.execute(
        "UPDATE runs SET status = 'succeeded', finished_at = now(), exit_code = ?, message = ?, "
        "files_read = ?, files_skipped = ?, lines_read = ?, accepted = ?, duplicates = ?, "
        "quarantined = ?, rated = ? WHERE run_id = ?",
        [
            1 if problems else 0,
            "; ".join(problems) or None,
            len(fresh),
            len(report.files) - len(fresh),
            report.lines_read,
            sum(f.accepted for f in fresh),
            sum(f.duplicates for f in fresh),
            report.quarantined,
            report.rated.attempts if report.rated else 0,
            report.run_id,
        ],
    )
    fault_point("ledger:after_runs_update")
    insert_many(
        con,
        "INSERT INTO run_files VALUES (?, 'input', ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                report.run_id,
                ingest.recorded_input(f.path),
                f.sha256,
                f.size_bytes,
                f.lines_read,
                f.accepted,
                f.duplicates,
                f.quarantined,
                f.skipped,
            )
            for f in report.files
        ],
    )
    insert_many(
        con,
        "INSERT INTO run_files (run_id, kind, path, sha256, size_bytes) VALUES (?, 'output', ?, ?, ?)",
        [(report.run_id, path, sha, size) for path, sha, size in report.outputs],
    )


def _ingest_and_rate(
    settings: Settings,
    command: str,
    args: dict[str, Any],
    paths: Sequence[Path | str],
    scope: Callable[[duckdb.DuckDBPyConnection, int], None] | None,
    recounter: Recounter | None = None,
    checks: Callable[[RunReport], None] | None = None,
) -> RunReport:
    """Stage, ingest, rate (``scope``) and record one run; ``checks`` sets the report's problems
    before the ledger row is closed, so that the row says what the exit code will be."""
    if recounter is not None and settings.engine == "spark":
        # the executors recount with the offline tokenizers; a recounter given here would be ignored
        raise ValueError("a custom recounter works with the DuckDB engine only")
    ref = reference_for_run(settings, command) if scope is not None else None
    with recorded_run(settings, command, args, ref, stores_rows=True) as (con, report), ExitStack() as staged:
        with step("stage", after="after_stage"):
            batch = _stage_files(settings)(con, paths, settings.on_file, _ts_latest(args))
            staged.callback(_remove_staged, batch)  # the Spark path's parts: removed once the transaction ended
        with transaction(con, before_commit="before_commit", timed="commit", after_commit="after_commit"):
            with step("ingest", after="after_ingest"):
                report.files = ingest.apply_staged(con, batch, report.run_id, recounter or default_recounter())
            if scope is None:
                rate.mark_unrated(con, report.run_id)
            if scope is not None and ref is not None:
                with step("reference", after="after_reference"):
                    rate.reset_scope(con)
                    ref = _reference_in_force(con, settings, report.run_id, ref)
                    reference_state.check_used_versions(con, ref, settings.force_price_edit)
                    if not isinstance(ref, Unchanged):  # Unchanged: the tables and files hold it already
                        from pipeline import reference

                        reference.load_into(con, ref)
                        reference.remember_files(con, ref, report.run_id)
                if reference_state.stored_fingerprint(con) != ref.fingerprint():
                    rate.scope_open_periods(con)  # reference data changed: re-rate what is not issued
                scope(con, report.run_id)
                fault_point("after_scope")
                # (no issued_from: the live prices; the memory limit of the tasks writing rated rows)
                rated = rate.rate_scope(
                    con, report.run_id, settings.engine, settings.spark_attempts, None, settings.memory_limit
                )
                report.rated = rated
                fault_point("after_rate")
                with step("digests"):
                    reference_state.record_used_versions(con, ref, report.run_id, rated)
                    reference_state.store_fingerprint(con, ref)
                    record_output_digests(con, report.run_id, rated)
            with step("lake", after="after_lake"):
                # the run's attempts, their keys and rated rows into their lake files, listed by
                # this transaction
                for table in RUN_LAKE_TABLES:
                    store_run_rows(con, table, report.run_id)
                merge_key_files(con, report.run_id)  # the keys files stay few (size tiers)
            with step("ledger"):
                report.held_by_reason = dict(ledger.held_by_reason(con))
                if checks is not None:
                    checks(report)
                close_succeeded(con, report)
        return report


def _stage_files(settings: Settings) -> Callable[..., ingest.StagedBatch]:
    """Staging and validation: in DuckDB, or (``--engine spark``) on Spark's executors."""
    if settings.engine == "spark":
        from pipeline.spark.staging import stage_files_on_spark  # pyspark only when asked for

        return functools.partial(stage_files_on_spark, memory_limit=settings.memory_limit)
    return ingest.stage_files


def _ts_latest(args: dict[str, Any]) -> datetime | None:
    """The future bound of a run's timestamps, from its recorded arguments only.

    ``as_of`` is the UTC day the run started, recorded in ``runs.args`` (``date`` is a
    nightly's ``--date``): ``replay --verify`` passes the recorded arguments back, so the
    re-execution judges every ``ts`` against the same bound. A run recorded before the bound
    existed has no ``as_of`` and none (its original verdicts are re-executed).
    """
    as_of = date.fromisoformat(args["as_of"]) if args.get("as_of") else None
    if as_of is None:
        return None
    run_day = date.fromisoformat(args["date"]) if args.get("date") else None
    return ingest.latest_plausible_ts(run_day, as_of)


def quarantine_problem(report: RunReport, max_rate: float | None) -> str | None:  # allow-float: a share
    """The run's problem when more of its lines were quarantined than ``max_rate`` (None: no bound)."""
    if max_rate is None or report.quarantine_rate() <= max_rate:
        return None
    return (
        f"{report.quarantined} of {report.lines_read} lines quarantined "
        f"({report.quarantine_rate():.1%} > {max_rate:.1%}); see `infergate-billing quarantine`"
    )


def _problem_checks(refused: list[str], max_rate: float | None) -> Callable[[RunReport], None]:  # allow-float
    """The checks of an ingesting run: files refused, and the quarantine rate against ``max_rate``."""

    def checks(report: RunReport) -> None:
        report.refused = refused  # the other files were ingested; exit 1 so that cron notices
        too_many = quarantine_problem(report, max_rate)
        report.problems = [*refused, *([too_many] if too_many else [])]

    return checks


def run_ingest(
    settings: Settings,
    patterns: Sequence[str],
    recounter: Recounter | None = None,
    *,
    max_quarantine_rate: float | None = None,  # allow-float: a share of lines, not money
) -> RunReport:
    """Ingest files into attempts/quarantine without rating (``rate`` or ``nightly`` rate them).

    ``max_quarantine_rate``: above it the run is a problem (exit 1, recorded); None: no bound."""
    refused: list[str] = []
    paths = ingest.discover(patterns, refused)
    args = {"files": [str(p) for p in paths], "as_of": datetime.now(UTC).date().isoformat()}
    checks = _problem_checks(refused, max_quarantine_rate)
    return _ingest_and_rate(settings, "ingest", args, paths, None, recounter, checks)


def run_rate(settings: Settings, start: datetime | None, end: datetime | None) -> RunReport:
    """Re-rate every request with an attempt in ``[start, end)`` and refresh its aggregates."""

    def scope(con: duckdb.DuckDBPyConnection, run_id: int) -> None:
        rate.scope_time_range(con, start, end)

    args = {"from": start.isoformat() if start else None, "to": end.isoformat() if end else None}
    return _ingest_and_rate(settings, "rate", args, [], scope)


class NoInputForDay(BillingError):
    """The nightly found no log file for its day: a broken shipment must not pass as a quiet day."""


def day_pattern(day: date) -> str:
    """The file names a day's nightly reads, as a shell-style pattern for messages."""
    return f"*{day.isoformat()}*{{{','.join(ingest.SUPPORTED_SUFFIXES)}}}"


def _uri_files_for_day(settings: Settings, logs_uri: str, day: date, refused: list[str]) -> list[str]:
    """The day's files under a ``--logs`` URI, listed by the cluster's file system (Spark only)."""
    if settings.engine != "spark":
        raise UsageProblem(
            f"--logs {logs_uri}: a URI is read by Spark's file system connectors",
            hint="add --engine spark, or give a local directory",
        )
    from pipeline.spark import remote
    from pipeline.spark.bridge import spark_failures
    from pipeline.spark.session import get_session

    with spark_failures("listing the logs"):
        return remote.files_for_day(get_session(), logs_uri, day.isoformat(), refused)


def files_for_day(logs_dir: Path, day: date, refused: list[str] | None = None) -> list[Path]:
    """The log files named for ``day`` in ``logs_dir`` (e.g. requests-2026-11-25.jsonl.gz);
    links and non-regular files among them go to ``refused`` (see ``ingest.discover``)."""
    if not logs_dir.is_dir():
        raise ingest.InputMissing(
            f"{logs_dir}: logs directory does not exist",
            hint="give the directory the gateway ships its logs to with --logs",
        )
    stamp = day.isoformat()
    # escaped: a directory or file name holding [, * or ? is a name here, never a pattern
    names = [glob.escape(str(p)) for p in sorted(logs_dir.iterdir()) if stamp in p.name and ingest.file_kind(p)]
    return ingest.discover(names, refused)


def run_nightly(
    settings: Settings,
    day: date,
    logs_dir: Path | str,
    recounter: Recounter | None = None,
    *,
    allow_empty: bool = False,
    max_quarantine_rate: float | None = None,  # allow-float: a share of lines, not money
) -> RunReport:
    """Ingest the day's files, rate what they touch (plus anything held), refresh aggregates.

    No file for the day is an error (:class:`NoInputForDay`), before anything is written:
    for a cron job a missing shipment and a quiet day look the same otherwise. With
    ``allow_empty`` the run goes ahead and re-rates what is held or affected by new
    reference data. Links and non-regular files are refused and reported (exit 1), the
    day's other files are still billed. Files that hold no record at all, or more lines
    quarantined than ``max_quarantine_rate``, are problems too: the run commits, its ledger
    row says exit code 1 and why (:attr:`RunReport.problems`, :attr:`RunReport.empty_day`).
    """
    refused: list[str] = []
    paths: Sequence[Path | str]
    if isinstance(logs_dir, str) and ingest.is_uri(logs_dir):  # ``s3a://...``: listed and read by the cluster
        paths = _uri_files_for_day(settings, logs_dir, day, refused)
    else:
        paths = files_for_day(Path(logs_dir), day, refused)
    if not paths and not refused and not allow_empty:
        reference_for_run(settings, "nightly")  # bad reference data is the bigger problem: report it first
        raise NoInputForDay(
            f"no log file for {day.isoformat()} in {logs_dir} (looked for {day_pattern(day)})",
            hint="check the log shipment for that day; if the gateway really had no traffic, re-run with --allow-empty",
        )
    args = {
        "date": day.isoformat(),
        "logs": str(logs_dir),
        "files": [str(p) for p in paths],
        "as_of": datetime.now(UTC).date().isoformat(),
    }
    ingest_checks = _problem_checks(refused, max_quarantine_rate)

    def checks(report: RunReport) -> None:
        ingest_checks(report)
        report.empty_day = empty_day_problem(report, day, logs_dir, allow_empty=allow_empty)

    return _ingest_and_rate(settings, "nightly", args, paths, rate.scope_new_and_open, recounter, checks)


def empty_day_problem(
    report: RunReport, day: date, logs_dir: Path | str, *, allow_empty: bool = False
) -> NoInputForDay | None:
    """After a nightly that found files for its day: :class:`NoInputForDay` when every one of
    them held no record (the run is recorded; the day is still a broken shipment), unless
    ``allow_empty``."""
    if report.files and len(report.empty_files()) == len(report.files) and not allow_empty:
        return NoInputForDay(
            f"no records for {day.isoformat()}: every file for the day in {logs_dir} is empty "
            f"(run {report.run_id} recorded them)",
            hint="check the log shipment for that day; if the gateway really had no traffic, pass --allow-empty",
        )
    return None


def yesterday_utc() -> date:
    return (datetime.now(UTC) - timedelta(days=1)).date()


class ReferenceChanged(BillingError):
    """A statement would print reference data other than what the database was rated with."""

    default_hint = (
        "run `infergate-billing rate` (or the nightly) with these files first: it re-rates what "
        "they change, and statements then print what was billed"
    )


def check_reference_is_rated(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Refuse statements when an accounts or issuer file given on the command line differs from
    the one the database was last rated with (warn when it is the default file): they print
    names, addresses, tax treatment, remittance and terms from the database, so an edited file
    (new bank details, a renamed customer) would be silently ignored, and issued so for good.
    Compared by the hashes the rating recorded."""
    row = con.execute("SELECT value FROM rating_state WHERE key = 'reference'").fetchone()
    if row is None:
        return  # nothing rated yet: nothing is due either
    stored = json.loads(row[0])
    current: dict[str, tuple[Path, str]] = {}  # key in the stored hashes -> (file, its hash now)
    if "accounts" in stored and settings.accounts_file.is_file():
        current["accounts"] = (settings.accounts_file, hashlib.sha256(settings.accounts_file.read_bytes()).hexdigest())
    if "issuer" in stored and settings.issuer_file is not None and settings.issuer_file.is_file():
        from pipeline.issuer import load_issuer

        current["issuer"] = (settings.issuer_file, load_issuer(settings.issuer_file).sha256)
    for key, (path, sha) in current.items():
        option = f"--{key}"
        if stored[key] != sha:
            message = f"{path} ({option}) differs from the {key} file the database was last rated with"
            if option in settings.explicit_reference:
                raise ReferenceChanged(message)
            # a default file: the database may have been rated with another one on purpose
            console.current().warning(
                f"{message}; statements print the rated one (run `infergate-billing rate` to load the file)"
            )


def run_statements(
    settings: Settings,
    period: str,
    out_dir: Path,
    *,
    account_id: str | None = None,
    finalize: bool = False,
    issue_date: date | None = None,
    allow_empty: bool = False,
    layout_version: int | None = None,
    reexecution: bool = False,
) -> statements.StatementsReport:
    """Render a period's statements: drafts, or (``finalize``) issue numbered, immutable ones.

    A finalized period is never re-rendered: missing files are restored from the stored bytes.
    A period (or ``account_id``) with nothing due raises :class:`EmptyPeriod` (the run is
    recorded as failed, nothing is written or finalized) unless ``allow_empty``: zero
    statements look like a finished month-end otherwise. ``layout_version``: the statement
    layout (None: the current one), recorded in the run's arguments so that ``replay
    --verify`` re-renders the run's statements with the layout they were printed with.
    ``reexecution``: replay re-executing a recorded run: it does what the run did, so the checks
    that guard new statements (the issue date, the reference files rated) are not asked again.
    """
    from pipeline import statements  # not on a nightly's start (issue 14: import time)
    from reports.statement_model import LAYOUT_VERSION

    if finalize and account_id:
        raise UsageProblem("a period is finalized for all accounts at once; drop --account")
    when = issue_date or statements.today_utc()
    target = out_dir / "statements" / period
    layout = LAYOUT_VERSION if layout_version is None else layout_version
    args = {
        "period": period,
        "account": account_id,
        "finalize": finalize,
        "issue_date": when.isoformat(),
        "layout": layout,
    }
    result = statements.StatementsReport(period, finalize)
    with recorded_run(settings, "statements", args, None) as (con, report):
        result.run_id = report.run_id
        known = con.execute("SELECT count(*) FROM accounts WHERE account_id = ?", [account_id]).fetchall()
        if account_id is not None and known[0][0] == 0:
            raise UsageProblem(
                f"--account {account_id}: no such account in the database",
                hint="account ids are those of the accounts reference file (infergate-billing sql "
                '"SELECT account_id, legal_name FROM accounts")',
            )
        if statements.is_finalized(con, period):
            result.already_finalized = True
            statements.clear_staging(target)
            result.restored, _ = statements.materialize_issued(con, period, target)
            with transaction(con):
                close_succeeded(con, report)
            return result
        if not reexecution:
            check_reference_is_rated(con, settings)
        due = statements.due_lines(con, period, account_id, layout)
        if not due and not allow_empty:
            raise EmptyPeriod.of(period, "no statement written", account_id)
        if finalize:
            from core import credit_ledger  # only a finalize needs it

            credit_ledger.check_finalize_order(con, period)
            if not reexecution:
                statements.check_issue_date(con, period, when)
                statements.check_e_invoice_seller(con, list(due), layout)
        numbers = statements.assign_numbers(con, period, list(due)) if finalize else None
        result.statements = statements.prepare(con, period, due, numbers, when, layout)
        fault_point("statements:after_render")
        folder = target if finalize else target / "drafts"
        outputs = [(folder / name, data) for st in result.statements for name, data in st.files.values()]
        report.outputs = [(str(p), hashlib.sha256(d).hexdigest(), len(d)) for p, d in outputs]
        # issued means the files exist: written (staged) before the commit, renamed after it
        staged = statements.stage_issued(target, result.statements) if finalize else []
        if finalize:
            fault_point("statements:after_stage")
        try:
            with transaction(con, before_commit="statements:before_commit", after_commit="statements:after_commit"):
                if finalize:
                    statements.store_issued(con, period, when, report.run_id, result.statements, due)
                close_succeeded(con, report)
        except BaseException:
            statements.clear_staging(target)  # rolled back: nothing was issued
            raise
        if finalize:
            published = statements.publish_staged(staged)
            fault_point("statements:after_publish")
            # verifies every issued file against its stored sha256 (restores any missing)
            restored, _ = statements.materialize_issued(con, period, target)
            result.written = published + restored
        else:
            for path, data in outputs:
                if not path.name.endswith(".html"):
                    write_atomic(path, data)
                    result.written.append(path)
    return result


# --- re-executing a recorded run (``replay --verify``) ------------------------------------


@dataclass(frozen=True)
class Reexecution:
    """A recorded run executed again: the new run's id, and whether what it wrote is files
    (statements: compared file by file) rather than rows (compared by their digests)."""

    run_id: int
    wrote_files: bool = False


def _rerun_ingest(settings: Settings, args: dict[str, Any], inputs: Sequence[Path], out_dir: Path) -> Reexecution:
    return Reexecution(_ingest_and_rate(settings, "ingest", args, inputs, None).run_id)


def _rerun_nightly(settings: Settings, args: dict[str, Any], inputs: Sequence[Path], out_dir: Path) -> Reexecution:
    return Reexecution(_ingest_and_rate(settings, "nightly", args, inputs, rate.scope_new_and_open).run_id)


def _rerun_rate(settings: Settings, args: dict[str, Any], inputs: Sequence[Path], out_dir: Path) -> Reexecution:
    start = datetime.fromisoformat(args["from"]) if args.get("from") else None
    end = datetime.fromisoformat(args["to"]) if args.get("to") else None
    return Reexecution(run_rate(settings, start, end).run_id)


def _rerun_statements(settings: Settings, args: dict[str, Any], inputs: Sequence[Path], out_dir: Path) -> Reexecution:
    result = run_statements(
        settings,
        args["period"],
        out_dir,
        account_id=args.get("account"),
        finalize=bool(args.get("finalize")),
        issue_date=date.fromisoformat(args["issue_date"]),
        allow_empty=True,  # re-execute what the run did, even a run that wrote nothing
        layout_version=args.get("layout", 1),  # a run recorded before layouts printed the first
        reexecution=True,
    )
    return Reexecution(result.run_id, wrote_files=True)


def _rerun_credit_note(settings: Settings, args: dict[str, Any], inputs: Sequence[Path], out_dir: Path) -> Reexecution:
    from pipeline import credit_notes  # it builds on this module: imported where a note is re-run

    result = credit_notes.issue_credit_note(
        settings,
        args["statement"],
        args["reason"],
        out_dir,
        line_nos=args.get("lines"),
        issue_date=date.fromisoformat(args["issue_date"]),
        money_rule=args.get("rule", 1),  # a run recorded before credit note rule 2 credited by rule 1
    )
    return Reexecution(result.run_id, wrote_files=True)


# the ledger's ``runs.command`` -> how that job re-runs from its recorded ``args`` and inputs
_REEXECUTE: dict[str, Callable[[Settings, dict[str, Any], Sequence[Path], Path], Reexecution]] = {
    "ingest": _rerun_ingest,
    "nightly": _rerun_nightly,
    "rate": _rerun_rate,
    "statements": _rerun_statements,
    "credit-note": _rerun_credit_note,
}


def reexecute(
    settings: Settings, command: str, args: dict[str, Any], inputs: Sequence[Path], out_dir: Path
) -> Reexecution | None:
    """Run a recorded run again, from its ledger row's ``command`` and ``args`` and its input
    files, on the database of ``settings``; files it writes go under ``out_dir``. None for a
    command that writes no billing data (nothing to re-execute)."""
    rerun = _REEXECUTE.get(command)
    return rerun(settings, args, inputs, out_dir) if rerun is not None else None
