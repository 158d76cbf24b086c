"""Audit replay: reproduce what was billed, reprice a period, and re-execute recorded runs.

Everything happens in a scratch database; the billing database is only read (ATTACHed
READ_ONLY), so a replay can never change issued statements or rated data.

* ``replay_period`` without prices re-rates the period from the stored attempts with the
  exact reference data the period was rated with when it was finalized (``reference_files``,
  by sha256), using only the attempts ingested up to the finalizing run, and re-renders each
  issued statement's CSVs and HTML: they must be byte-identical to the stored ones. Credit
  notes against the period's statements are rebuilt from their stored rows and their PDF,
  lines CSV and HTML compared with the stored bytes too.
* ``replay_period`` with prices reprices every request of the period with one price version
  (from ``pricing/`` or a file not yet committed) and reports the difference per account and
  model against what was issued (or, for an open period, what is drafted).
* ``verify_run`` re-executes every run up to a given one from its recorded input files and
  reference data, and compares the digests of what each run wrote; for the latest run it also
  compares the whole live database with the re-execution, which exposes tampering.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from core import console
from core.attempt_store import (
    ATTEMPT_KEYS,
    attempts_of_runs,
    attempts_table,
    primary_files,
    rated_rows,
    refresh_lake_views,
    stored_table,
)
from core.db import DatabaseMissing, column_exists, connect, table_exists
from core.errors import BillingError
from core.money import ZERO, Decimal
from pipeline import credit_notes, jobs, rate, rated_summary, reference, statements
from pipeline.filenames import checked_file_name, name_part
from pipeline.ingest import file_sha256, is_uri
from pricing.versions import LoadedVersion, PriceBook, content_hash, load_price_book, parse_version_file
from reports.atomic import write_atomic
from reports.csvsafe import csv_bytes


class ReplayError(BillingError, RuntimeError):
    """A replay that cannot be done (unknown period, missing stored reference data...)."""


@dataclass(frozen=True)
class FileCheck:
    statement_number: str
    kind: str
    status: str  # MATCH | DIFFERS | MISSING
    path: str


@dataclass(frozen=True)
class AmountDiff:
    account_id: str
    model: str
    old_amount: Decimal
    new_amount: Decimal

    @property
    def difference(self) -> Decimal:
        return self.new_amount - self.old_amount


@dataclass
class ReplayReport:
    period: str
    prices: str | None
    checks: list[FileCheck] = field(default_factory=list)
    diffs: list[AmountDiff] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    # a reprice: the version applied, where it was read, its content hash, and the hash the
    # period was issued with under the same id (None: no version of that id priced the period)
    priced_with: tuple[str, str, str, str | None] | None = None

    @property
    def matches(self) -> bool:
        return all(c.status == "MATCH" for c in self.checks)


@contextmanager
def scratch_with(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory billing database with the live one attached read-only as ``live``."""
    if not db_path.exists():
        raise DatabaseMissing.at(db_path)
    con = connect(":memory:", documented=False)
    try:
        con.execute(f"ATTACH '{str(db_path).replace(chr(39), chr(39) * 2)}' AS live (READ_ONLY)")
        # a database without some of its lake files is refused, as every other command does,
        # even when what a replay reads (the attempts) is whole: an audit never passes it
        primary_files(con, "live")
        yield con
    finally:
        con.close()


def _period_state(con: duckdb.DuckDBPyConnection, period: str) -> tuple[int, dict[str, Any]]:
    """The last run whose data the period's statements saw, and the reference data then."""
    row = con.execute("SELECT run_id, reference FROM live.finalized_periods WHERE period = ?", [period]).fetchone()
    if row is not None:
        if row[1] is None:
            raise ReplayError(
                f"{period} was finalized before reference data was recorded; cannot replay it exactly",
                hint="reprice it with --prices VERSION instead (a diff against what was issued)",
            )
        return int(row[0]), json.loads(row[1])
    last = con.execute("SELECT coalesce(max(run_id), 0) FROM live.runs").fetchone()
    state = con.execute("SELECT value FROM live.rating_state WHERE key = 'reference'").fetchone()
    if state is None:
        raise ReplayError("nothing has been rated yet", hint="run the nightly (or `rate`) first")
    return int(last[0]) if last else 0, json.loads(state[0])


def _live_has(con: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
    """Whether the attached live database's ``table`` has ``column`` (it may predate a migration)."""
    return column_exists(con, table, column, "live")


def _copy_history(con: duckdb.DuckDBPyConnection, period: str, cutoff: int, account: str | None) -> None:
    """Attempts known at the cutoff, and statements issued for earlier periods."""
    params = {"cutoff": cutoff, "period": period, "account": account}
    for statement in (
        # the live attempts: its table and its lake files (core/attempt_store.py)
        f"INSERT INTO {attempts_table(con)} SELECT * FROM ({attempts_of_runs(con, database='live')}) "
        "WHERE run_id <= $cutoff AND ($account IS NULL OR account_id = $account)",
        # and their lookup keys (the lake's rows carry none; this DuckDB's hash() in any case)
        f"INSERT INTO {stored_table(con, ATTEMPT_KEYS)} SELECT hash(event_id), hash(account_id, request_id), run_id "
        f"FROM {attempts_table(con)}",
        "INSERT INTO reference_files SELECT * FROM live.reference_files",
        "INSERT INTO finalized_periods SELECT * FROM live.finalized_periods WHERE period < $period",
        # by name: a database not yet migrated to statements.layout_version (024) replays too
        "INSERT INTO statements BY NAME SELECT * FROM live.statements WHERE period < $period "
        "AND ($account IS NULL OR account_id = $account)",
        "INSERT INTO statement_issued_lines SELECT * FROM live.statement_issued_lines "
        "WHERE statement_number IN (SELECT statement_number FROM statements)",
        # by name: a database not yet migrated to credit_ledger.restored_for and
        # statement_credits.restored_usd (035) replays too (NULL, 0.00: it restored nothing)
        "INSERT INTO credit_ledger BY NAME SELECT * FROM live.credit_ledger WHERE period < $period "
        "AND ($account IS NULL OR account_id = $account)",
        "INSERT INTO statement_credits BY NAME SELECT * FROM live.statement_credits "
        "WHERE statement_number IN (SELECT statement_number FROM statements)",
        # layout 8 on: the detail CSVs that say what was billed of a period adjusted since (its
        # own statement's, and those of statements listing the requests behind its adjustments)
        "INSERT INTO statement_files BY NAME SELECT f.* FROM live.statement_files f "
        "JOIN statements s USING (statement_number) WHERE f.kind = 'detail_csv' AND (EXISTS ("
        " SELECT 1 FROM live.statement_issued_lines l JOIN live.statements m USING (statement_number)"
        " WHERE l.kind = 'adjustment' AND m.account_id = s.account_id AND l.original_period = s.period)"
        " OR s.statement_number IN (SELECT statement_number FROM statement_issued_lines WHERE kind = 'adjustment'))",
    ):
        con.execute(statement, {k: v for k, v in params.items() if f"${k}" in statement} or None)
    if table_exists(con, "credit_notes", "live"):  # 017 on: what they credited bounds adjustments (layout 5)
        con.execute(
            "INSERT INTO credit_notes BY NAME SELECT * FROM live.credit_notes WHERE run_id <= $cutoff "
            "AND statement_number IN (SELECT statement_number FROM statements)",
            {"cutoff": cutoff},
        )
        con.execute(
            "INSERT INTO credit_note_lines BY NAME SELECT * FROM live.credit_note_lines "
            "WHERE credit_note_number IN (SELECT credit_note_number FROM credit_notes)"
        )
    if table_exists(con, "credit_note_money", "live"):  # 050 on: what rule-7 notes gave back of each line
        con.execute(
            "INSERT INTO credit_note_money BY NAME SELECT * FROM live.credit_note_money "
            "WHERE credit_note_number IN (SELECT credit_note_number FROM credit_notes)"
        )


def _override_book(settings: jobs.Settings, prices: str) -> PriceBook:
    """One price version, in force for every request: a version id from pricing/ or a file."""
    path = Path(prices)
    if path.suffix == ".toml" and path.is_file():
        version = parse_version_file(path)
        source = str(path)
    else:
        loaded = load_price_book(settings.prices_dir).by_id(prices)
        version, source = loaded.version, loaded.source_file
    always = version.model_copy(update={"effective_from": datetime(1970, 1, 1, tzinfo=UTC)})
    return PriceBook((LoadedVersion(always, source, content_hash(version), None),))


def _rate_everything(con: duckdb.DuckDBPyConnection, ref: reference.Reference) -> None:
    """Rate every copied attempt with ``ref``; an attempt billed in a period finalized before
    keeps the price it was billed at (R10, ``rate.sql``), which the live database's rated rows
    hold (from the moment its period is finalized, that price never changes again)."""
    reference.load_into(con, ref)
    rate.reset_scope(con)
    rate.scope_time_range(con, None, None)
    rate.rate_scope(con, 0, issued_from=rated_rows(con, database="live"))


def replay_period(
    settings: jobs.Settings, period: str, out_dir: Path, *, prices: str | None = None, account: str | None = None
) -> ReplayReport:
    """Reproduce (no ``prices``) or reprice (``prices``) one period; see the module docstring."""
    report = ReplayReport(period, prices)
    target = out_dir / (f"replay-{period}" + ("" if prices is None else f"-prices-{Path(prices).stem}"))
    with scratch_with(settings.db_path) as con:
        cutoff, hashes = _period_state(con, period)
        _copy_history(con, period, cutoff, account)
        ref = reference.from_stored(con, hashes)
        if prices is not None:
            book = _override_book(settings, prices)
            [applied] = book.versions
            issued = hashes.get("prices", {}) if isinstance(hashes.get("prices"), dict) else {}
            report.priced_with = (
                applied.version.version,
                str(applied.source_file),
                applied.sha256,
                issued.get(applied.version.version),
            )
            ref = reference.Reference(book, ref.accounts, ref.credits, ref.issuer)
        _rate_everything(con, ref)
        if prices is None:
            _reproduce(con, period, account, target, report)
        else:
            _reprice(con, period, account, target, report)
    return report


def _reproduce(
    con: duckdb.DuckDBPyConnection, period: str, account: str | None, target: Path, report: ReplayReport
) -> None:
    # the layout each was printed with (a database not yet migrated to 024 holds only layout 1)
    layout = "coalesce(layout_version, 1)" if _live_has(con, "statements", "layout_version") else "1"
    issued = con.execute(
        f"SELECT account_id, statement_number, issue_date, {layout} FROM live.statements "
        "WHERE period = $p AND ($a IS NULL OR account_id = $a) ORDER BY statement_number",
        {"p": period, "a": account},
    ).fetchall()
    if not issued:
        raise ReplayError(f"{period} has no issued statements to reproduce; finalize it first")
    due_by_layout: dict[int, dict[str, list[statements.DueLine]]] = {}  # each layout's adjustment rule
    names = statements.model_names(con)  # the lookup the statements were rendered with
    with console.current().progress("replay statements", len(issued)) as advance:
        for account_id, number, issue_date, layout in issued:
            if layout not in due_by_layout:
                due_by_layout[layout] = statements.due_lines(con, period, account, layout)
            due = due_by_layout[layout]
            lines = due.get(account_id, [])
            doc = statements.build_document(con, account_id, period, lines, number, issue_date, layout_version=layout)
            produced = {
                "lines_csv": statements.lines_csv(doc, due.get(account_id, []), names),
                "detail_csv": statements.detail_csv(con, account_id, period, layout, lines),
                "html": _render_html(doc).encode("utf-8"),
            }
            for kind, data in produced.items():
                report.checks.append(_compare(con, number, kind, data, target, report))
            advance(1)
    for number, kind, same in credit_notes.reproduce(con, period) if account is None else []:
        report.checks.append(FileCheck(number, kind, "MATCH" if same else "DIFFERS", f"credit note {number} {kind}"))
    extra = sorted(set(due) - {a for a, _, _, _ in issued})
    for account_id in extra:
        report.checks.append(FileCheck("(none)", "statement", "DIFFERS", f"replay bills {account_id}, not issued"))


def _compare(
    con: duckdb.DuckDBPyConnection, number: str, kind: str, data: bytes, target: Path, report: ReplayReport
) -> FileCheck:
    row = con.execute(
        "SELECT file_name, content FROM live.statement_files WHERE statement_number = ? AND kind = ?", [number, kind]
    ).fetchone()
    name = checked_file_name(row[0], ReplayError) if row else f"{name_part(number)}-{kind}"
    path = target / name
    write_atomic(path, data)
    report.written.append(path)
    if row is None:
        return FileCheck(number, kind, "MISSING", str(path))
    return FileCheck(number, kind, "MATCH" if bytes(row[1]) == data else "DIFFERS", str(path))


DIFF_HEADER = ("period", "account_id", "model", "old_amount_usd", "new_amount_usd", "difference_usd")


def _reprice(
    con: duckdb.DuckDBPyConnection, period: str, account: str | None, target: Path, report: ReplayReport
) -> None:
    """Old (issued, or drafted if the period is open) vs new amounts per account and model; a
    draft's lines as a statement of the current layout prints them (one per unit price across
    price versions, rounded once), computed here from the exact lines: the live database is
    attached read-only and may predate migration 033's view."""
    rows = con.execute(
        """
        WITH old AS (
            SELECT s.account_id, l.model, sum(l.amount) AS amount
            FROM live.statement_issued_lines l JOIN live.statements s USING (statement_number)
            WHERE s.period = $p AND l.kind = 'usage' GROUP BY ALL
            UNION ALL
            SELECT account_id, model, sum(amount) FROM (
                SELECT account_id, model, round(sum(amount_exact), 2) AS amount FROM live.statement_lines
                WHERE period = $p AND $p NOT IN (SELECT period FROM live.finalized_periods)
                GROUP BY account_id, model, token_class, unit_price_per_1m
            ) GROUP BY ALL
        ),
        new AS (
            SELECT account_id, model, sum(amount) AS amount FROM (
                SELECT account_id, model, round(sum(amount_exact), 2) AS amount FROM statement_lines
                WHERE period = $p GROUP BY account_id, model, token_class, unit_price_per_1m
            ) GROUP BY ALL
        )
        SELECT coalesce(o.account_id, n.account_id), coalesce(o.model, n.model),
               coalesce(o.amount, 0), coalesce(n.amount, 0)
        FROM old o FULL OUTER JOIN new n ON o.account_id = n.account_id AND o.model = n.model
        WHERE $a IS NULL OR coalesce(o.account_id, n.account_id) = $a
        ORDER BY 1, 2
        """,
        {"p": period, "a": account},
    ).fetchall()
    report.diffs = [AmountDiff(a, m, Decimal(old), Decimal(new)) for a, m, old, new in rows]
    path = target / f"replay-diff-{period}.csv"
    from reports.atomic import write_atomic

    write_atomic(
        path,
        csv_bytes(
            DIFF_HEADER,
            [(period, d.account_id, d.model, d.old_amount, d.new_amount, d.difference) for d in report.diffs],
        ),
    )
    report.written.append(path)


def diff_totals(report: ReplayReport) -> dict[str, tuple[Decimal, Decimal]]:
    """Per account: (old total, new total)."""
    totals: dict[str, tuple[Decimal, Decimal]] = {}
    for d in report.diffs:
        old, new = totals.get(d.account_id, (ZERO, ZERO))
        totals[d.account_id] = (old + d.old_amount, new + d.new_amount)
    return totals


@dataclass
class VerifyReport:
    run_id: int
    status: str  # MATCH | MISMATCH
    steps: list[str] = field(default_factory=list)
    first_difference: str | None = None  # one line naming everything that differs (printed last)
    differences: list[str] = field(default_factory=list)  # every difference, one line each


def verify_run(settings: jobs.Settings, run_id: int) -> VerifyReport:
    """Re-execute every succeeded run up to ``run_id`` from its recorded inputs; compare."""
    live = connect(settings.db_path, read_only=True)  # its views check the lake is there, as any open does
    try:
        runs = live.execute(
            "SELECT run_id, command, args, price_versions, accounts_sha256, credits_sha256, issuer_sha256 FROM runs "
            "WHERE status = 'succeeded' AND run_id <= ? ORDER BY run_id",
            [run_id],
        ).fetchall()
        if not runs or runs[-1][0] != run_id:
            raise ReplayError(f"run {run_id} is not a succeeded run in {settings.db_path}")
        latest = live.execute("SELECT max(run_id) FROM runs WHERE status = 'succeeded'").fetchone()
        report = VerifyReport(run_id, "MATCH")
        with tempfile.TemporaryDirectory(prefix="infergate-verify-") as tmp:
            scratch = jobs.Settings(
                db_path=Path(tmp) / "replay.duckdb",
                prices_dir=settings.prices_dir,
                accounts_file=settings.accounts_file,
                issuer_file=settings.issuer_file,
            )
            for live_run, command, args, prices, accounts, credits, issuer in runs:
                problem = _reexecute(
                    live,
                    scratch,
                    Path(tmp),
                    live_run,
                    command,
                    json.loads(args or "{}"),
                    prices,
                    accounts,
                    credits,
                    issuer,
                )
                report.steps.append(f"run {live_run} ({command}): {problem or 'MATCH'}")
                if problem:
                    # later runs built on this one: re-executing them would only repeat the difference
                    report.status, report.first_difference = "MISMATCH", f"run {live_run} ({command}): {problem}"
                    report.differences.append(report.first_difference)
                    return report
            if latest and latest[0] == run_id:
                tables = _compare_live_state(settings.db_path, scratch.db_path)
                report.steps.append(f"live database vs re-execution: {'MISMATCH' if tables else 'MATCH'}")
                report.steps.extend(f"  {problem}" for problem in tables.values())
                if tables:
                    report.status, report.differences = "MISMATCH", list(tables.values())
                    report.first_difference = (
                        f"{len(tables)} live table(s) differ from the re-execution: {', '.join(tables)}"
                    )
        return report
    finally:
        live.close()


def _reexecute(
    live: duckdb.DuckDBPyConnection,
    scratch: jobs.Settings,
    tmp: Path,
    live_run: int,
    command: str,
    args: dict[str, Any],
    prices: str | None,
    accounts: str | None,
    credits: str | None = None,
    issuer: str | None = None,
) -> str | None:
    """Re-run one recorded run on the scratch database; None if it wrote what the ledger says."""
    inputs = live.execute(
        "SELECT path, sha256 FROM run_files WHERE run_id = ? AND kind = 'input' ORDER BY path", [live_run]
    ).fetchall()
    remote = _remote_digests([path for path, _ in inputs if is_uri(path)])
    for path, sha in inputs:
        if path in remote:
            if not remote[path]:
                return f"input {path} is missing"
            if remote[path] != sha:
                return f"input {path} changed since the run (sha256 was {sha[:12]})"
            continue
        if not Path(path).is_file():
            return f"input {path} is missing"
        if file_sha256(Path(path)) != sha:
            return f"input {path} changed since the run (sha256 was {sha[:12]})"
    settings = scratch
    if prices is not None and accounts is not None:
        hashes: dict[str, Any] = {"prices": json.loads(prices), "accounts": accounts, "issuer": issuer}
        if credits is not None:
            hashes["credits"] = credits
        stored = reference.from_stored(live, hashes)
        settings = jobs.Settings(db_path=scratch.db_path, reference=stored, force_price_edit=True)
    if remote:  # a URI is read by Spark's executors only (the engines give the same rows)
        settings = dataclasses.replace(settings, engine="spark")
    paths = [p if p in remote else Path(p) for p, _ in inputs]
    replayed = jobs.reexecute(settings, command, args, paths, tmp / "out")
    if replayed is None:
        return None
    if replayed.wrote_files:
        return _compare_outputs(live, scratch.db_path, live_run)
    return _compare_digests(live, scratch.db_path, live_run, replayed.run_id)


def _remote_digests(uris: list[str]) -> dict[str, str]:
    """The sha256 of inputs recorded as URIs (``nightly --engine spark --logs s3a://...``),
    hashed by Spark's executors as the run hashed them; "" for one that is not there any more."""
    if not uris:
        return {}
    from pipeline.spark import require_pyspark

    require_pyspark()
    from pipeline.spark.bridge import spark_failures
    from pipeline.spark.remote import hash_files, missing
    from pipeline.spark.session import get_session

    with spark_failures("hashing the inputs"):
        spark = get_session()
        gone = set(missing(spark, uris))
        digests = hash_files(spark, [uri for uri in uris if uri not in gone])
    return {uri: digests[uri][0] if uri in digests else "" for uri in uris}


def _recorded_digests(con: duckdb.DuckDBPyConnection, run_id: int) -> dict[str, tuple[str, int]]:
    """Run ``run_id``'s output digests by name: (digest, digest_version); a database from before
    migration 046 (opened read-only, not migrated) recorded version 1 only."""
    version = "digest_version" if column_exists(con, "run_outputs", "digest_version") else "1"
    rows = con.execute(f"SELECT name, digest, {version} FROM run_outputs WHERE run_id = ?", [run_id]).fetchall()
    return {name: (digest, int(v)) for name, digest, v in rows}


def _compare_digests(live: duckdb.DuckDBPyConnection, scratch_db: Path, live_run: int, new_run: int) -> str | None:
    recorded_as = _recorded_digests(live, live_run)
    recorded = {name: digest for name, (digest, _) in recorded_as.items()}
    con = connect(scratch_db, read_only=True, lake_views=False)  # the ledger's digests
    try:
        again_as = _recorded_digests(con, new_run)
        again = {name: digest for name, (digest, _) in again_as.items()}
        # a run that recorded another version of its rated rows' digest (an older one): the
        # re-executed rows digested as the run digested its own
        if "rated_attempts" in recorded_as and "rated_attempts" in again_as:
            version = recorded_as["rated_attempts"][1]
            if version != again_as["rated_attempts"][1]:
                refresh_lake_views(con)
                again["rated_attempts"] = rated_summary.rated_digest(con, new_run, version)
    finally:
        con.close()
    differing = [
        f"output {name} differs (recorded digest {recorded.get(name)}, re-executed {again.get(name)})"
        for name in sorted(set(recorded) | set(again))
        if recorded.get(name) != again.get(name)
    ]
    return "; ".join(differing) or None


def _compare_outputs(live: duckdb.DuckDBPyConnection, scratch_db: Path, live_run: int) -> str | None:
    recorded = {
        Path(p).name: s
        for p, s in live.execute(
            "SELECT path, sha256 FROM run_files WHERE run_id = ? AND kind = 'output'", [live_run]
        ).fetchall()
    }
    con = connect(scratch_db, read_only=True, lake_views=False)  # the ledger's files
    try:
        again = {
            Path(p).name: s
            for p, s in con.execute(
                "SELECT path, sha256 FROM run_files WHERE kind = 'output' AND run_id = (SELECT max(run_id) FROM runs)"
            ).fetchall()
        }
    finally:
        con.close()
    differing = sorted(name for name in set(recorded) | set(again) if recorded.get(name) != again.get(name))
    return f"output file(s) differ: {', '.join(differing)}" if differing else None


# The LIVE_STATE queries of a column a migration added: compared on their own, when the live
# database has it (one not yet migrated, read only, lacks it); the table's query leaves it out.
LIVE_STATE_COLUMNS = {
    "credit_note_lines_printed": ("credit_note_lines", "printed_refunded_usd"),  # 048
    "credit_note_lines_given_back": ("credit_note_lines", "printed_given_back_usd"),  # 049
    "credit_note_money": ("credit_note_money", "money_usd"),  # 050: a table of its own
    "credit_note_lines_ask_restored": ("credit_note_lines", "printed_ask_restored_usd"),  # 052
}
_ADDED_NOTE_LINE_COLUMNS = ", ".join(f"'{c}'" for t, c in LIVE_STATE_COLUMNS.values() if t == "credit_note_lines")

# The live tables compared with the re-execution, without the columns that record when or
# by which run a row was written. Where a row came from is compared by file name and sha256,
# never by the path as spelled: databases written before ingest stored the file name only
# (see ingest.source_name) hold the path a run was given (``data/sample_logs/x.jsonl.gz``), in
# source_file and in the "(first at FILE:LINE)" of duplicate_conflict messages; both sides
# are reduced to the file name, so such a database verifies without being rewritten.
_NAME = "regexp_extract(source_file, '[^/]*$')"
_MESSAGE = r"regexp_replace(message, '\(first at [^()]*/([^/()]*:[0-9]+)\)', '(first at \1)')"
LIVE_STATE = {
    # the table and the lake files ({attempts}); the lookup keys are derived from the ids
    # the content digest by the 16 hex digits every row has kept since migration 047 (earlier
    # rows hold 32 or 64, and dedup compares them by those 16 too)
    "attempts": "SELECT * EXCLUDE (run_id, event_key, request_key) "
    f"REPLACE ({_NAME} AS source_file, left(content_sha256, 16) AS content_sha256) FROM ({{attempts}})",
    "quarantine": "SELECT * EXCLUDE (run_id, quarantined_at, resolved_run_id) "
    f"REPLACE ({_NAME} AS source_file, {_MESSAGE} AS message) FROM {{db}}.quarantine",
    "rated_attempts": "SELECT * EXCLUDE (rated_run_id) FROM ({rated})",
    "statement_lines": "SELECT * FROM {db}.statement_lines",
    # layout_version (migration 024) is left out: a database not yet migrated has no such column,
    # and the layout a statement was printed with is compared anyway, in its files' sha256
    "statements": "SELECT COLUMNS(lambda c: c NOT IN ('run_id', 'issued_at', 'layout_version')) FROM {db}.statements",
    "statement_issued_lines": "SELECT * FROM {db}.statement_issued_lines",
    "statement_files": "SELECT statement_number, kind, sha256 FROM {db}.statement_files",
    "credit_ledger": "SELECT * EXCLUDE (segment_start, usage_before_exact) FROM {db}.credit_ledger",
    # where applied credit sits in time (migration 019), for the periods the live database
    # stored it for: a period finalized before 019 has none, and re-executing it would add it
    "credit_ledger_segments": "SELECT account_id, period, entry_no, segment_start, usage_before_exact "
    "FROM {db}.credit_ledger WHERE period NOT IN "
    "(SELECT period FROM live.credit_ledger WHERE entry_kind = 'applied' AND segment_start IS NULL)",
    "statement_credits": "SELECT * FROM {db}.statement_credits",
    "credit_notes": "SELECT * EXCLUDE (run_id, issued_at) FROM {db}.credit_notes",
    # the part printed as refunded per line (migration 048), for the notes the live database
    # stored it for: a note of rules 3-5 issued before has none, and re-issuing it would add it
    # (the columns of LIVE_STATE_COLUMNS are compared on their own)
    "credit_note_lines": f"SELECT COLUMNS(lambda c: c NOT IN ({_ADDED_NOTE_LINE_COLUMNS})) "
    "FROM {db}.credit_note_lines",
    "credit_note_lines_printed": "SELECT credit_note_number, line_no, printed_refunded_usd FROM {db}.credit_note_lines "
    "WHERE credit_note_number NOT IN (SELECT credit_note_number FROM live.credit_note_lines "
    "WHERE printed_refunded_usd IS NULL AND refunded_usd IS NOT NULL)",
    # the part printed as given back (migration 049, credit note rule 6; NULL before, also when
    # a note of rules 1-5 re-executes)
    "credit_note_lines_given_back": "SELECT credit_note_number, line_no, printed_given_back_usd "
    "FROM {db}.credit_note_lines",
    # the part of an ask printed as credit a refund restored (migration 052, credit note rule 9;
    # NULL before, also when a note of rules 1-8 re-executes)
    "credit_note_lines_ask_restored": "SELECT credit_note_number, line_no, printed_ask_restored_usd "
    "FROM {db}.credit_note_lines",
    # what a note of rule 7 on gave back of each line of its statement (migration 050)
    "credit_note_money": "SELECT * FROM {db}.credit_note_money",
    "credit_note_files": "SELECT credit_note_number, kind, sha256 FROM {db}.credit_note_files",
}

# What names a row of each table in a report: a few of these are shown per differing table.
LIVE_KEYS = {
    "attempts": ("event_id",),
    "quarantine": ("source_file", "source_line"),
    "rated_attempts": ("event_id",),
    "statement_lines": ("account_id", "period", "model", "token_class", "price_version", "unit_price_per_1m"),
    "statements": ("statement_number",),
    "statement_issued_lines": ("statement_number", "line_no"),
    "statement_files": ("statement_number", "kind"),
    "credit_ledger": ("account_id", "period", "entry_no"),
    "credit_ledger_segments": ("account_id", "period", "entry_no"),
    "statement_credits": ("statement_number",),
    "credit_notes": ("credit_note_number",),
    "credit_note_lines": ("credit_note_number", "line_no"),
    "credit_note_lines_printed": ("credit_note_number", "line_no"),
    "credit_note_lines_given_back": ("credit_note_number", "line_no"),
    "credit_note_lines_ask_restored": ("credit_note_number", "line_no"),
    "credit_note_money": ("credit_note_number", "line_no"),
    "credit_note_files": ("credit_note_number", "kind"),
}
EXAMPLE_KEYS = 3


def _compare_live_state(live_db: Path, scratch_db: Path) -> dict[str, str]:
    """The whole live database against the re-execution: one line per table that differs.

    Every table is compared (not only up to the first difference), and each line gives the
    rows found only in the live database and only in the re-execution, a few example keys and,
    for an example present on both sides, the columns whose values differ.
    """
    con = duckdb.connect(":memory:")
    found: dict[str, str] = {}
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"ATTACH '{_quoted(live_db)}' AS live (READ_ONLY)")
        con.execute(f"ATTACH '{_quoted(scratch_db)}' AS again (READ_ONLY)")
        # the lake tables: the table and the lake files of each (core/attempt_store.py)
        stored = {
            db: {"attempts": attempts_of_runs(con, database=db), "rated": rated_rows(con, db)}
            for db in ("live", "again")
        }
        for table, query in LIVE_STATE.items():
            needs = LIVE_STATE_COLUMNS.get(table)
            if needs is not None and not _live_has(con, *needs):
                continue  # a live database not yet migrated (read only) lacks the column
            live = query.format(db="live", **stored["live"])
            again = query.format(db="again", **stored["again"])
            only_live = f"(({live}) EXCEPT ALL ({again}))"
            only_again = f"(({again}) EXCEPT ALL ({live}))"
            counts = con.execute(f"SELECT (SELECT count(*) FROM {only_live}), (SELECT count(*) FROM {only_again})")
            row = counts.fetchone()
            assert row is not None
            if row[0] or row[1]:
                found[table] = _describe(con, table, live, again, only_live, only_again, int(row[0]), int(row[1]))
    finally:
        con.close()
    return found


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


def _describe(
    con: duckdb.DuckDBPyConnection,
    table: str,
    live: str,
    again: str,
    only_live: str,
    only_again: str,
    in_live: int,
    in_again: int,
) -> str:
    """``live table T differs ...: counts; e.g. key (columns that differ), ...``."""
    keys = LIVE_KEYS[table]
    columns = ", ".join(keys)
    examples = con.execute(
        f"SELECT DISTINCT {columns} FROM (SELECT {columns} FROM {only_live} UNION ALL "
        f"SELECT {columns} FROM {only_again}) ORDER BY ALL LIMIT {EXAMPLE_KEYS}"
    ).fetchall()
    shown = []
    for example in examples:
        where = " AND ".join(f"{k} IS NOT DISTINCT FROM $key{i}" for i, k in enumerate(keys))
        params = {f"key{i}": v for i, v in enumerate(example)}
        label = " ".join(f"{k}={v}" for k, v in zip(keys, example, strict=True))
        sides = []
        for query in (live, again):
            cur = con.execute(f"SELECT * FROM ({query}) WHERE {where}", params)
            sides.append([dict(zip([d[0] for d in cur.description], r, strict=True)) for r in cur.fetchall()])
        if len(sides[0]) == 1 and len(sides[1]) == 1:
            changed = [c for c in sides[0][0] if sides[0][0][c] != sides[1][0].get(c)]
            label += f" (differs in {', '.join(changed)})" if changed else ""
        elif not sides[1]:
            label += " (only in live)"
        elif not sides[0]:
            label += " (only in the re-execution)"
        shown.append(label)
    return (
        f"live table {table} differs from the re-execution in {in_live + in_again} row(s) "
        f"({in_live} only in live, {in_again} only in the re-execution); e.g. {'; '.join(shown)}"
    )


def _render_html(doc: Any) -> str:
    """The statement's HTML (jinja2 imported here: a replay module loaded by the CLI costs nothing)."""
    from reports.render import render_html

    return render_html(doc)
