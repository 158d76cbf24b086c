"""Statements per account and period: drafts, and finalized (issued, numbered, immutable).

A statement's lines come from ``sql/statement_lines_due.sql``: the period's usage lines plus
prior-period adjustments for late records of already finalized periods (R10). Finalizing a
period numbers its statements from one global gap-free sequence (``IG-2026-11-000042``) and
stores, in one transaction, the totals, every printed line and the exact bytes and sha256 of
every file. From then on nothing about that period's statements is ever recomputed: a re-run
only re-materializes missing files from the stored bytes and verifies existing ones.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from pipeline.db import sql_text
from pipeline.money import ZERO, Decimal, to_cents
from reports.atomic import write_atomic
from reports.csvsafe import csv_bytes
from reports.render import pdf_bytes, render_html
from reports.statement_model import (
    INFERGATE_ISSUER,
    AdjustmentLine,
    DailyUsage,
    NonBilledCount,
    Party,
    PriceVersionRef,
    StatementDocument,
    StatementLine,
)

NUMBER_PREFIX = "IG"
LINES_HEADER = (
    "statement_number",
    "account_id",
    "period",
    "kind",
    "original_period",
    "model",
    "model_name",
    "token_class",
    "price_version",
    "unit_price_per_1m",
    "quantity_tokens",
    "amount_usd",
)
DETAIL_HEADER = (
    "request_id",
    "event_id",
    "attempt",
    "ts",
    "model",
    "status",
    "usage_source",
    "input_uncached_tokens",
    "input_cached_tokens",
    "output_tokens",
    "reasoning_tokens",
    "image_tokens",
    "price_version",
    "unit_price_input_uncached",
    "unit_price_input_cached",
    "unit_price_output",
    "charge_usd",
)
PARALLEL_FROM = 8  # render in a process pool from this many statements on


class StatementError(RuntimeError):
    """A statements run that must not proceed (e.g. an issued file no longer matches)."""


@dataclass(frozen=True)
class DueLine:
    """One line due on a statement: usage of the period, or an adjustment for an earlier one."""

    kind: str  # usage | adjustment
    original_period: str
    model: str
    token_class: str
    price_version: str
    unit_price_per_1m: Decimal
    quantity_tokens: int
    amount: Decimal


@dataclass(frozen=True)
class StatementFiles:
    """The rendered files of one statement: kind -> (file name, bytes)."""

    account_id: str
    number: str | None
    document: StatementDocument
    files: dict[str, tuple[str, bytes]]


@dataclass
class StatementsReport:
    period: str
    finalized: bool
    already_finalized: bool = False
    statements: list[StatementFiles] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    restored: list[Path] = field(default_factory=list)


def period_bounds(period: str) -> tuple[date, date]:
    year, month = int(period[:4]), int(period[5:7])
    return date(year, month, 1), date(year + month // 12, month % 12 + 1, 1)


def due_lines(con: duckdb.DuckDBPyConnection, period: str, account_id: str | None = None) -> dict[str, list[DueLine]]:
    """Lines due per account for ``period`` (accounts with usage or adjustments only)."""
    rows = con.execute(sql_text("statement_lines_due.sql"), {"period": period}).fetchall()
    result: dict[str, list[DueLine]] = {}
    for account, *values in rows:
        if account_id is None or account == account_id:
            result.setdefault(account, []).append(DueLine(*values))
    known = {a for (a,) in con.execute("SELECT account_id FROM accounts").fetchall()}
    return {a: lines for a, lines in sorted(result.items()) if a in known}


def _model_names(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    rows = con.execute(
        "SELECT model, display_name FROM model_prices JOIN price_versions USING (version_id) ORDER BY effective_from"
    ).fetchall()
    return dict(rows)


def _party(con: duckdb.DuckDBPyConnection, account_id: str) -> Party:
    row = con.execute("SELECT legal_name, address, email FROM accounts WHERE account_id = ?", [account_id]).fetchone()
    assert row is not None
    return Party(name=row[0], address_lines=tuple(row[1]), email=row[2])


def _period_facts(con: duckdb.DuckDBPyConnection, account_id: str, period: str) -> dict[str, object]:
    """Counts printed on the statement: billed requests, estimates, daily usage, non-billed."""
    params = {"a": account_id, "p": period}
    billed, est_attempts, est_tokens = con.execute(
        "SELECT count(*) FILTER (WHERE outcome = 'billed'), "
        "count(*) FILTER (WHERE outcome = 'billed' AND usage_source = 'estimated'), "
        "coalesce(sum(input_uncached_tokens + input_cached_tokens + output_tokens) "
        "FILTER (WHERE outcome = 'billed' AND usage_source = 'estimated'), 0) "
        "FROM rated_attempts WHERE account_id = $a AND period = $p",
        params,
    ).fetchone() or (0, 0, 0)
    daily = con.execute(
        "SELECT usage_date, sum(charge_total), count(*) FROM rated_attempts "
        "WHERE account_id = $a AND period = $p AND outcome = 'billed' GROUP BY usage_date ORDER BY usage_date",
        params,
    ).fetchall()
    non_billed = con.execute(
        "SELECT reason, count(*) FROM rated_attempts WHERE account_id = $a AND period = $p "
        "AND outcome <> 'billed' GROUP BY reason ORDER BY reason",
        params,
    ).fetchall()
    return {
        "billed_requests": int(billed),
        "estimated_attempts": int(est_attempts),
        "estimated_tokens": int(est_tokens),
        "daily_usage": tuple(DailyUsage(day, to_cents(amount), int(n)) for day, amount, n in daily),
        "non_billed": tuple(NonBilledCount(reason, int(n)) for reason, n in non_billed),
    }


def _price_refs(con: duckdb.DuckDBPyConnection, versions: Sequence[str]) -> tuple[PriceVersionRef, ...]:
    refs = []
    for version in sorted(set(versions)):
        row = con.execute(
            "SELECT strftime(effective_from, '%Y-%m-%dT%H:%M:%SZ'), sha256 FROM price_versions WHERE version_id = ?",
            [version],
        ).fetchone()
        if row:
            refs.append(PriceVersionRef(version, row[0], row[1]))
    return tuple(refs)


def _adjustment_text(line: DueLine, names: dict[str, str]) -> str:
    klass = line.token_class.replace("_", " ")
    unit = f"{line.unit_price_per_1m.normalize():f}"
    return (
        f"Late usage for {line.original_period}: {names.get(line.model, line.model)}, {klass}, "
        f"{line.quantity_tokens:+,} tokens at ${unit}/1M (prices {line.price_version})"
    )


def build_document(
    con: duckdb.DuckDBPyConnection,
    account_id: str,
    period: str,
    lines: Sequence[DueLine],
    number: str | None,
    issue_date: date,
) -> StatementDocument:
    """Assemble everything printed on one statement from the database."""
    names = _model_names(con)
    usage = tuple(
        StatementLine(
            ln.model,
            names.get(ln.model, ln.model),
            ln.token_class,
            ln.quantity_tokens,
            ln.unit_price_per_1m,
            ln.price_version,
            ln.amount,
        )
        for ln in lines
        if ln.kind == "usage"
    )
    adjustments = tuple(
        AdjustmentLine(ln.original_period, _adjustment_text(ln, names), ln.amount)
        for ln in lines
        if ln.kind == "adjustment"
    )
    usage_total = sum((ln.amount for ln in usage), ZERO)
    adjustments_total = sum((ln.amount for ln in adjustments), ZERO)
    start, end = period_bounds(period)
    return StatementDocument(
        statement_number=number,
        account_id=account_id,
        account=_party(con, account_id),
        issuer=INFERGATE_ISSUER,
        period=period,
        period_start=start,
        period_end=end,
        issue_date=issue_date,
        currency="USD",
        lines=usage,
        adjustments=adjustments,
        usage_total=usage_total,
        adjustments_total=adjustments_total,
        total_due=usage_total + adjustments_total,
        price_versions=_price_refs(con, [ln.price_version for ln in lines]),
        **_period_facts(con, account_id, period),  # type: ignore[arg-type]
    )


def lines_csv(doc: StatementDocument, lines: Sequence[DueLine], names: dict[str, str]) -> bytes:
    rows = [
        (
            doc.statement_number,
            doc.account_id,
            doc.period,
            ln.kind,
            ln.original_period,
            ln.model,
            names.get(ln.model, ln.model),
            ln.token_class,
            ln.price_version,
            ln.unit_price_per_1m.normalize(),
            ln.quantity_tokens,
            ln.amount,
        )
        for ln in lines
    ]
    return csv_bytes(LINES_HEADER, rows)


def detail_csv(con: duckdb.DuckDBPyConnection, account_id: str, period: str) -> bytes:
    """Per-request usage of the period's billed attempts, for customers to reconcile."""
    rows = con.execute(
        "SELECT request_id, event_id, attempt, strftime(ts, '%Y-%m-%dT%H:%M:%S.%fZ'), model, status, usage_source, "
        "input_uncached_tokens, input_cached_tokens, output_tokens, reasoning_tokens, image_tokens, price_version, "
        "unit_price_input_uncached, unit_price_input_cached, unit_price_output, charge_total "
        "FROM rated_attempts WHERE account_id = ? AND period = ? AND outcome = 'billed' "
        "ORDER BY ts, request_id, event_id",
        [account_id, period],
    ).fetchall()
    exact = [tuple(v.normalize() if isinstance(v, Decimal) else v for v in row) for row in rows]
    return csv_bytes(DETAIL_HEADER, exact)


def _render(doc: StatementDocument) -> tuple[bytes, bytes]:
    """HTML and PDF bytes of one statement (a top-level function: runs in worker processes)."""
    html = render_html(doc)
    return html.encode("utf-8"), pdf_bytes(html)


def render_all(docs: Sequence[StatementDocument]) -> list[tuple[bytes, bytes]]:
    """Render many statements, on every core when there are enough to pay for the pool."""
    if len(docs) < PARALLEL_FROM:
        return [_render(doc) for doc in docs]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(_render, docs, chunksize=4))


def file_stem(doc: StatementDocument) -> str:
    return doc.statement_number or f"draft-{doc.account_id}-{doc.period}"


def prepare(
    con: duckdb.DuckDBPyConnection,
    period: str,
    due: dict[str, list[DueLine]],
    numbers: dict[str, str] | None,
    issue_date: date,
) -> list[StatementFiles]:
    """Build, render and serialize the statements of a period (nothing is written yet)."""
    names = _model_names(con)
    docs, csvs = [], []
    for account, lines in due.items():
        doc = build_document(con, account, period, lines, (numbers or {}).get(account), issue_date)
        docs.append(doc)
        csvs.append((lines_csv(doc, lines, names), detail_csv(con, account, period)))
    result = []
    for doc, (html, pdf), (lines_data, detail_data) in zip(docs, render_all(docs), csvs, strict=True):
        stem = file_stem(doc)
        files = {
            "pdf": (f"{stem}.pdf", pdf),
            "html": (f"{stem}.html", html),
            "lines_csv": (f"{stem}-lines.csv", lines_data),
            "detail_csv": (f"{stem}-detail.csv", detail_data),
        }
        result.append(StatementFiles(doc.account_id, doc.statement_number, doc, files))
    return result


def assign_numbers(con: duckdb.DuckDBPyConnection, period: str, accounts: Sequence[str]) -> dict[str, str]:
    """Next numbers of the global gap-free sequence, in account order."""
    row = con.execute("SELECT coalesce(max(sequence_no), 0) FROM statements").fetchone()
    start = int(row[0]) if row else 0
    return {a: f"{NUMBER_PREFIX}-{period}-{start + i:06d}" for i, a in enumerate(sorted(accounts), start=1)}


def store_issued(
    con: duckdb.DuckDBPyConnection,
    period: str,
    issue_date: date,
    run_id: int,
    statements: Sequence[StatementFiles],
    due: dict[str, list[DueLine]],
) -> None:
    """Record issued statements, their lines and file bytes (inside the run's transaction)."""
    for st in statements:
        doc, number = st.document, st.number
        assert number is not None
        lines = due[st.account_id]
        tokens = {
            k: sum(ln.quantity_tokens for ln in lines if ln.kind == "usage" and ln.token_class == k)
            for k in ("input_uncached", "input_cached", "output")
        }
        con.execute(
            "INSERT INTO statements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
            [
                number,
                int(number.rsplit("-", 1)[1]),
                st.account_id,
                period,
                issue_date,
                doc.billed_requests,
                tokens["input_uncached"],
                tokens["input_cached"],
                tokens["output"],
                doc.usage_total,
                doc.adjustments_total,
                doc.total_due,
                ";".join(r.version_id for r in doc.price_versions),
                run_id,
            ],
        )
        con.executemany(
            "INSERT INTO statement_issued_lines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    number,
                    i,
                    ln.kind,
                    ln.original_period,
                    ln.model,
                    ln.token_class,
                    ln.price_version,
                    ln.unit_price_per_1m,
                    ln.quantity_tokens,
                    ln.amount,
                )
                for i, ln in enumerate(lines, start=1)
            ],
        )
        con.executemany(
            "INSERT INTO statement_files VALUES (?, ?, ?, ?, ?)",
            [(number, kind, name, hashlib.sha256(data).hexdigest(), data) for kind, (name, data) in st.files.items()],
        )
    # the reference data the period's rated data was computed with, for replays
    con.execute(
        "INSERT INTO finalized_periods SELECT ?, ?, ?, ?, now(), "
        "(SELECT value FROM rating_state WHERE key = 'reference')",
        [period, run_id, issue_date, len(statements)],
    )


def materialize_issued(con: duckdb.DuckDBPyConnection, period: str, out_dir: Path) -> tuple[list[Path], list[Path]]:
    """Write missing issued files from their stored bytes; refuse if an existing one differs."""
    restored, present = [], []
    rows = con.execute(
        "SELECT f.file_name, f.sha256, f.content FROM statement_files f JOIN statements s USING (statement_number) "
        "WHERE s.period = ? AND f.kind <> 'html' ORDER BY f.file_name",
        [period],
    ).fetchall()
    for name, sha, content in rows:
        path = out_dir / name
        if path.exists():
            if hashlib.sha256(path.read_bytes()).hexdigest() != sha:
                raise StatementError(
                    f"{path}: differs from the issued statement (sha256 {sha[:12]}); "
                    "issued statements are immutable; move the file away to restore it"
                )
            present.append(path)
            continue
        write_atomic(path, bytes(content))
        restored.append(path)
    return restored, present


def is_finalized(con: duckdb.DuckDBPyConnection, period: str) -> bool:
    return con.execute("SELECT count(*) FROM finalized_periods WHERE period = ?", [period]).fetchone() != (0,)


def today_utc() -> date:
    return datetime.now(UTC).date()
