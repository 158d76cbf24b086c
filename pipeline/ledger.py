"""Reading the run ledger and the quarantine: what ``runs list``, ``runs show`` and
``quarantine`` print, as queries beside the tables they read (``runs``, ``run_files``,
``run_outputs``, ``quarantine``, ``held_changes``).

Each function takes an open connection (read-only is enough) and returns rows; the
command line only formats them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from core.db import table_exists
from core.errors import BillingError

#: The reasons rate.sql holds an attempt with (outcome ``held``, billed once resolved); the
#: other reason codes are quarantined lines or final verdicts.
HELD_REASONS = ("unknown_account", "unpriced_model", "usage_missing")


class RunNotFound(BillingError):
    """``runs show`` / ``replay --verify`` named a run id the ledger does not hold."""

    default_hint = "`infergate-billing runs list` lists the runs"


@dataclass(frozen=True)
class RunSummary:
    """One line of ``runs list``."""

    run_id: int
    command: str
    status: str
    started: str  # 'YYYY-MM-DD HH:MM:SS' UTC
    lines_read: Any
    accepted: Any
    quarantined: Any
    rated: Any


@dataclass(frozen=True)
class RunDetail:
    """Everything ``runs show`` prints about one run."""

    fields: list[tuple[str, Any]]  # every column of its ``runs`` row, in table order
    files: list[tuple[Any, ...]]  # kind, path, sha256, lines_read, accepted, duplicates, quarantined, skipped
    outputs: list[tuple[Any, ...]]  # name, rows, digest


@dataclass(frozen=True)
class QuarantineSummary:
    """What ``quarantine`` prints: counts per reason, held attempts per reason, open records."""

    counts: list[tuple[str, int, int]]  # reason, open, all
    held: list[tuple[str, int]]  # reason, held attempts
    records: list[tuple[str, int, str, str]]  # source_file, source_line, reason, message
    # held attempts, oldest first: source_file, source_line, reason, event_id, account_id, model, ts
    held_records: list[tuple[str, int, str, str, str, str, datetime]] = dataclasses.field(default_factory=list)


def recent_runs(con: duckdb.DuckDBPyConnection, limit: int) -> list[RunSummary]:
    """The ``limit`` newest runs, newest first."""
    rows = con.execute(
        "SELECT run_id, command, status, strftime(started_at, '%Y-%m-%d %H:%M:%S'), "
        "lines_read, accepted, quarantined, rated FROM runs ORDER BY run_id DESC LIMIT ?",
        [limit],
    ).fetchall()
    return [RunSummary(*row) for row in rows]


def run_detail(con: duckdb.DuckDBPyConnection, run_id: int, where: object) -> RunDetail:
    """One run's ledger row, its files and output digests; :class:`RunNotFound` if there is none
    (``where`` names the database in the message)."""
    cursor = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
    row = cursor.fetchone()
    if row is None:
        raise RunNotFound(f"no run {run_id} in {where}")
    names = [d[0] for d in cursor.description]
    files = con.execute(
        "SELECT kind, path, sha256, lines_read, accepted, duplicates, quarantined, skipped "
        "FROM run_files WHERE run_id = ? ORDER BY kind, path",
        [run_id],
    ).fetchall()
    outputs = con.execute(
        "SELECT name, rows, digest FROM run_outputs WHERE run_id = ? ORDER BY name", [run_id]
    ).fetchall()
    return RunDetail(list(zip(names, row, strict=True)), files, outputs)


def held_by_reason(con: duckdb.DuckDBPyConnection, reason: str | None = None) -> list[tuple[str, int]]:
    """Held attempts per reason (only ``reason`` when given): the sum of what every rating
    changed (``held_changes``, migration 027), not a scan of every rated row. A database not
    migrated that far (opened read-only by this version) is counted from its rated rows."""
    if table_exists(con, "held_changes"):
        query = (
            "SELECT reason, sum(change) FROM held_changes WHERE $r IS NULL OR reason = $r "
            "GROUP BY reason HAVING sum(change) <> 0 ORDER BY reason"
        )
    else:
        query = (
            "SELECT reason, count(*) FROM rated_attempts WHERE outcome = 'held' AND ($r IS NULL OR reason = $r) "
            "GROUP BY reason ORDER BY reason"
        )
    return [(str(r), int(n)) for r, n in con.execute(query, {"r": reason}).fetchall()]


def quarantine_summary(con: duckdb.DuckDBPyConnection, reason: str | None, limit: int) -> QuarantineSummary:
    """Quarantined records (open / all) and held attempts per reason, and the first ``limit``
    open records (all of them for one ``reason`` when given)."""
    counts = con.execute(
        "SELECT reason, count(*) FILTER (WHERE resolved_run_id IS NULL), count(*) FROM quarantine "
        "WHERE $r IS NULL OR reason = $r GROUP BY reason ORDER BY reason",
        {"r": reason},
    ).fetchall()
    held = held_by_reason(con, reason)
    records = con.execute(
        "SELECT source_file, source_line, reason, message FROM quarantine "
        "WHERE resolved_run_id IS NULL AND ($r IS NULL OR reason = $r) "
        "ORDER BY quarantine_id LIMIT $n",
        {"r": reason, "n": limit},
    ).fetchall()
    return QuarantineSummary(counts, held, records, held_attempts(con, reason, limit - len(records)))


def held_attempts(
    con: duckdb.DuckDBPyConnection, reason: str | None, limit: int
) -> list[tuple[str, int, str, str, str, str, datetime]]:
    """The first ``limit`` held attempts (``reason``'s only, when given), oldest first, with the
    file and line each came from: what an operator fixes (an account to add, a price, a usage).

    Reads the rated rows of every period (a held attempt stays held until resolved), which is a
    query an operator asks for, never part of a nightly."""
    if limit <= 0 or (reason is not None and reason not in HELD_REASONS):
        return []
    rows = con.execute(
        "SELECT a.source_file, a.source_line, r.reason, r.event_id, r.account_id, r.model, r.ts "
        "FROM rated_attempts r JOIN attempts a USING (event_id) "
        "WHERE r.outcome = 'held' AND ($r IS NULL OR r.reason = $r) "
        "ORDER BY r.ts, r.event_id LIMIT $n",
        {"r": reason, "n": limit},
    ).fetchall()
    return [(str(f), int(n), str(c), str(e), str(a), str(m), ts) for f, n, c, e, a, m, ts in rows]
