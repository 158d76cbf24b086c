"""Statements per account and period: drafts, and finalized (issued, numbered, immutable).

A statement's lines come from ``sql/statement_lines_due.sql``: the period's usage lines plus
prior-period adjustments for late records of already finalized periods (R10). Finalizing a
period numbers its statements from one global gap-free sequence (``IG-2026-11-000042``) and
stores, in one transaction, the totals, every printed line and the exact bytes and sha256 of
every file. From then on nothing about that period's statements is ever recomputed: a re-run
only re-materializes missing files from the stored bytes and verifies existing ones.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from core import console, credit_ledger
from core.db import sql_text
from core.drawdown import PeriodCredit
from core.errors import BillingError, UsageProblem
from core.money import ZERO, D, Decimal, to_cents
from core.period import Period
from core.timing import step
from pipeline.filenames import checked_file_name, name_part
from pipeline.invoicing import InvoicingContext, number_prefix, read_invoicing
from pipeline.issuer import BUILT_IN
from pipeline.lock import release_inherited
from reports.atomic import write_atomic
from reports.credit_model import CreditSummary
from reports.csvsafe import csv_bytes, sql_csv_lines
from reports.statement_model import (
    ADJUSTMENT_DETAIL_FROM,
    LAYOUT_VERSION,
    PREPAID_ROW_FROM,
    AdjustmentLine,
    DailyUsage,
    NonBilledCount,
    Party,
    PriceVersionRef,
    StatementDocument,
    StatementLine,
    due_parameters,
    due_rules,
    price_versions_of,
    versions_text,
)

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
    # issue 16: where the unit price comes from (a tax row has kind 'tax' and only amount_usd)
    "list_price_per_1m",
    "price_basis",
)
# the per-request detail CSV: its header, and each cell as DuckDB formats it exactly as
# csv_bytes writes it (tested), listed once
_DETAIL_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("request_id", "request_id", "text"),
    ("event_id", "event_id", "text"),
    ("attempt", "attempt", "integer"),
    ("ts", "strftime(ts, '%Y-%m-%dT%H:%M:%S.%fZ')", "text"),
    ("model", "model", "text"),
    ("status", "status", "integer"),
    ("usage_source", "usage_source", "text"),
    ("input_uncached_tokens", "input_uncached_tokens", "integer"),
    ("input_cached_tokens", "input_cached_tokens", "integer"),
    ("output_tokens", "output_tokens", "integer"),
    ("reasoning_tokens", "reasoning_tokens", "integer"),
    ("image_tokens", "image_tokens", "integer"),
    ("price_version", "price_version", "text"),
    ("unit_price_input_uncached", "unit_price_input_uncached", "decimal"),
    ("unit_price_input_cached", "unit_price_input_cached", "decimal"),
    ("unit_price_output", "unit_price_output", "decimal"),
    ("charge_usd", "charge_total", "decimal"),
)
DETAIL_HEADER = tuple(header for header, _, _ in _DETAIL_COLUMNS)
# layout 8 on: every row says what it is: `usage` of the period, or `adjustment` of an issued
# period (original_period), `change` added / removed / billed_before, and `billed_on` the
# statement that billed what a removed or billed_before row takes back (docs/invoicing.md)
_DETAIL_COLUMNS_8: tuple[tuple[str, str, str], ...] = (
    ("kind", "kind", "text"),
    ("original_period", "original_period", "text"),
    ("change", "change", "text"),
    *_DETAIL_COLUMNS,
    ("billed_on", "billed_on", "text"),
)
DETAIL_HEADER_8 = tuple(header for header, _, _ in _DETAIL_COLUMNS_8)
PARALLEL_FROM = 8  # render in a process pool from this many statements on
#: The render workers' garbage-collector thresholds (issue 14): WeasyPrint allocates some 10^5
#: objects per statement, and Python's default (700) ran a collection every few hundred of
#: them, ~11% of a statement's CPU; the workers only render, and their garbage is freed by
#: reference counting all the same. Memory: a few MB of cyclic garbage at most between runs.
WORKER_GC_THRESHOLDS = (50_000, 20, 100)


class StatementError(BillingError, RuntimeError):
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
    # layout 5 on: the amount less the tokens' charge. Positive: the part of a negative
    # adjustment not given back because credit notes already credited the line; negative: the
    # part of a positive one not billed because an earlier line held it back so
    credited_offset: Decimal = ZERO
    # layout 7 on: of a negative adjustment, the part prepaid credit had paid, given back as
    # prepaid credit (positive; not netted from the money due)
    restored: Decimal = ZERO
    # layout 7 on, a draft of a month after an earlier open one: what the earlier month's
    # statement (which carries the adjustment first) restores of it; this draft restores none
    deferred: Decimal = ZERO


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
    run_id: int = 0  # the ledger's run that rendered them
    statements: list[StatementFiles] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    restored: list[Path] = field(default_factory=list)


# where statement_lines_due.sql's CTEs end and its lines-due SELECT begins
_LINES_DUE_SELECT = "\n\nSELECT account_id, 'usage' AS kind,"


def _from_due_ctes(
    con: duckdb.DuckDBPyConnection, select: str, parameters: dict[str, object], layout_version: int
) -> list[tuple]:
    """``select`` over the CTEs of statement_lines_due.sql (with ``layout_version``'s rules), so
    that what credit notes count of a period's money is what statements count, never a copy."""
    text = sql_text("statement_lines_due.sql")
    if _LINES_DUE_SELECT not in text:
        raise RuntimeError("statement_lines_due.sql: its final SELECT moved; update _LINES_DUE_SELECT")
    ctes = text[: text.index(_LINES_DUE_SELECT)]
    return con.execute(f"{ctes}\n{select}", {**due_parameters("0000-00", layout_version), **parameters}).fetchall()


def period_money_left(
    con: duckdb.DuckDBPyConnection, account_id: str, period: str, layout_version: int = LAYOUT_VERSION
) -> Decimal:
    """What is left to give back in money of what was asked for the issued ``period``, counted
    exactly as the next statement's refunds count it (statement_lines_due.sql's `paid`): its
    statement's usage money less what credit notes gave back of it (``line_money``: a note's
    money to the lines it credited, then to the statement's other lines), plus later statements'
    asks of it less what notes gave back of those, less the money refunded since, as a statement
    of ``layout_version`` counts it."""
    rows = _from_due_ctes(
        con, "SELECT money_left FROM paid WHERE account_id = $account AND original_period = $of",
        {"account": account_id, "of": period}, layout_version,
    )  # fmt: skip
    return D(rows[0][0]) if rows else ZERO


def period_credit_pool(
    con: duckdb.DuckDBPyConnection, account_id: str, period: str, layout_version: int = LAYOUT_VERSION
) -> tuple[Decimal, Decimal] | None:
    """What is left to restore in prepaid credit of what paid the issued ``period``, counted
    exactly as the next statement's refunds count it (statement_lines_due.sql's `paid`,
    ``credit_left``: its statement's credit less what its notes kept, plus later asks' credit
    no note credited and the credit notes' money moved to its asks, less what was restored for
    it since, never below 0), as a statement of ``layout_version`` counts it; and of what
    `paid` added back there, what credit notes of rule 9 on printed as given back of later asks
    of ``period``, credit a refund of it had restored (``ask_restored_printed``: the same sum a
    new note counts as printed). None when the account has no statement of ``period`` (no
    `paid` row: its refunds restore nothing). One reading of the CTEs, each planned anew."""
    rows = _from_due_ctes(
        con,
        "SELECT p.credit_left, coalesce(a.restored, 0) FROM paid p LEFT JOIN ask_restored_printed a "
        "USING (account_id, original_period) WHERE p.account_id = $account AND p.original_period = $of",
        {"account": account_id, "of": period}, layout_version,
    )  # fmt: skip
    return (D(rows[0][0]), D(rows[0][1])) if rows else None


def money_given_back_by_line(
    con: duckdb.DuckDBPyConnection, statement_number: str, layout_version: int = LAYOUT_VERSION
) -> dict[int, Decimal]:
    """Line number -> the money credit notes gave back of what that line of an issued statement
    asked (statement_lines_due.sql's ``line_money``; lines no note touched: absent)."""
    rows = _from_due_ctes(
        con, "SELECT line_no, sum(given_back) FROM line_money WHERE statement_number = $number GROUP BY line_no",
        {"number": statement_number}, layout_version,
    )  # fmt: skip
    return {int(n): D(v) for n, v in rows if v}


def due_lines(
    con: duckdb.DuckDBPyConnection, period: str, account_id: str | None = None, layout_version: int = LAYOUT_VERSION
) -> dict[str, list[DueLine]]:
    """Lines due per account for ``period`` (accounts with usage or adjustments only), with the
    adjustment rule of ``layout_version`` (an issued statement's own in a replay)."""
    rows = con.execute(sql_text("statement_lines_due.sql"), due_parameters(period, layout_version)).fetchall()
    result: dict[str, list[DueLine]] = {}
    for account, *values in rows:
        if account_id is None or account == account_id:
            result.setdefault(account, []).append(DueLine(*values))
    known = {a for (a,) in con.execute("SELECT account_id FROM accounts").fetchall()}
    due = {a: lines for a, lines in sorted(result.items()) if a in known}
    if layout_version >= ADJUSTMENT_DETAIL_FROM:
        due = _own_versions(con, period, due)
    return due


def _own_versions(
    con: duckdb.DuckDBPyConnection, period: str, due: dict[str, list[DueLine]]
) -> dict[str, list[DueLine]]:
    """Layout 8 on: each adjustment line names the price versions that priced its own tokens
    (reports.adjustment_detail.own_versions), not every version of the period's line now."""
    from reports import adjustment_detail

    keys = [
        (a, ln.original_period, ln.model, ln.token_class, ln.unit_price_per_1m, ln.price_version)
        for a, lines in due.items()
        for ln in lines
        if ln.kind == "adjustment"
    ]
    if not keys:
        return due
    named = iter(adjustment_detail.own_versions(con, period, keys))
    return {
        a: [replace(ln, price_version=next(named)) if ln.kind == "adjustment" else ln for ln in lines]
        for a, lines in due.items()
    }


def model_names(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Each model's printed name; where price versions name it differently, the latest one's."""
    rows = con.execute(
        "SELECT model, display_name FROM model_prices JOIN price_versions USING (version_id) ORDER BY effective_from"
    ).fetchall()
    return dict(rows)


_ACCOUNT = "period = $p AND ($a IS NULL OR account_id = $a)"


@dataclass(frozen=True)
class PeriodContext:
    """Everything a period's statements print besides their lines, read with a few set-based
    queries for all accounts at once (one query per statement and fact would scan
    rated_attempts thousands of times for a month-end run)."""

    names: dict[str, str]
    parties: dict[str, Party]
    price_refs: dict[str, PriceVersionRef]
    facts: dict[str, dict[str, object]]
    invoicing: InvoicingContext
    credits: dict[str, PeriodCredit] = field(default_factory=dict)  # accounts with prepaid credit

    def facts_of(self, account_id: str) -> dict[str, object]:
        return self.facts.get(account_id) or _facts(0, 0, 0, [], [])

    def refs_of(self, versions: Sequence[str]) -> tuple[PriceVersionRef, ...]:
        named = {v for field in versions for v in price_versions_of(field)}
        return tuple(self.price_refs[v] for v in sorted(named) if v in self.price_refs)


def _facts(billed: int, est_attempts: int, est_tokens: int, daily: list[tuple], non_billed: list[tuple]) -> dict:
    """Counts printed on the statement: billed requests, estimates, daily usage, non-billed."""
    return {
        "billed_requests": int(billed),
        "estimated_attempts": int(est_attempts),
        "estimated_tokens": int(est_tokens),
        "daily_usage": tuple(DailyUsage(day, to_cents(amount), int(n)) for day, amount, n in daily),
        "non_billed": tuple(NonBilledCount(reason, int(n)) for reason, n in non_billed),
    }


def period_context(
    con: duckdb.DuckDBPyConnection, period: str, account_id: str | None = None, layout_version: int = LAYOUT_VERSION
) -> PeriodContext:
    """The context of ``period``'s statements: every account's, or only ``account_id``'s."""
    params = {"p": period, "a": account_id}
    daily: dict[str, list[tuple]] = {}
    for account, *row in con.execute(
        "SELECT account_id, usage_date, sum(charge_total), count(*) FROM rated_attempts "
        f"WHERE {_ACCOUNT} AND outcome = 'billed' GROUP BY account_id, usage_date ORDER BY account_id, usage_date",
        params,
    ).fetchall():
        daily.setdefault(account, []).append(tuple(row))
    non_billed: dict[str, list[tuple]] = {}
    for account, *row in con.execute(
        f"SELECT account_id, reason, count(*) FROM rated_attempts WHERE {_ACCOUNT} AND outcome <> 'billed' "
        "GROUP BY account_id, reason ORDER BY account_id, reason",
        params,
    ).fetchall():
        non_billed.setdefault(account, []).append(tuple(row))
    facts = {
        account: _facts(billed, est_attempts, est_tokens, daily.get(account, []), non_billed.get(account, []))
        for account, billed, est_attempts, est_tokens in con.execute(
            "SELECT account_id, count(*) FILTER (WHERE outcome = 'billed'), "
            "count(*) FILTER (WHERE outcome = 'billed' AND usage_source = 'estimated'), "
            "coalesce(sum(input_uncached_tokens + input_cached_tokens + output_tokens) "
            "FILTER (WHERE outcome = 'billed' AND usage_source = 'estimated'), 0) "
            f"FROM rated_attempts WHERE {_ACCOUNT} GROUP BY account_id",
            params,
        ).fetchall()
    }
    parties = {
        account: Party(name=name, address_lines=tuple(address), email=email)
        for account, name, address, email in con.execute(
            "SELECT account_id, legal_name, address, email FROM accounts WHERE $a IS NULL OR account_id = $a",
            {"a": account_id},
        ).fetchall()
    }
    refs = {
        version: PriceVersionRef(version, since, sha)
        for version, since, sha in con.execute(
            "SELECT version_id, strftime(effective_from, '%Y-%m-%dT%H:%M:%SZ'), sha256 FROM price_versions"
        ).fetchall()
    }
    state = credit_ledger.load_state(con, rules=due_rules(layout_version), statement_period=period)
    credits = credit_ledger.period_blocks(state, period, sorted(state.accounts & (parties.keys())))
    return PeriodContext(model_names(con), parties, refs, facts, read_invoicing(con, account_id), credits)


def adjustment_text(line: DueLine, names: dict[str, str]) -> str:
    klass = line.token_class.replace("_", " ")
    unit = f"{line.unit_price_per_1m.normalize():f}"
    text = (
        f"Late usage for {line.original_period}: {names.get(line.model, line.model)}, {klass}, "
        f"{line.quantity_tokens:+,} tokens at ${unit}/1M (prices {versions_text(line.price_version)})"
    )
    if line.credited_offset > 0:
        text += f"; ${line.credited_offset} of it already credited by credit note, not refunded again"
    elif line.credited_offset < 0:
        text += f"; ${-line.credited_offset} of it held back before, as already credited, not billed again"
    if line.restored > 0:
        text += f"; ${line.restored} of it restored to prepaid credit"
    if line.deferred > 0:
        text += f"; ${line.deferred} of it to be restored to prepaid credit by the earlier open month's statement"
    return text


def build_document(
    con: duckdb.DuckDBPyConnection,
    account_id: str,
    period: str,
    lines: Sequence[DueLine],
    number: str | None,
    issue_date: date,
    context: PeriodContext | None = None,
    layout_version: int = LAYOUT_VERSION,
) -> StatementDocument:
    """Assemble everything printed on one statement (``context``: read for many at once;
    ``layout_version``: the layout to print it with, an issued statement's own in a replay)."""
    ctx = context or period_context(con, period, account_id, layout_version)
    names, inv = ctx.names, ctx.invoicing
    usage = tuple(
        StatementLine(
            ln.model,
            names.get(ln.model, ln.model),
            ln.token_class,
            ln.quantity_tokens,
            ln.unit_price_per_1m,
            ln.price_version,
            ln.amount,
            *inv.line_pricing(account_id, ln.price_version, ln.model, ln.token_class, ln.unit_price_per_1m),
        )
        for ln in lines
        if ln.kind == "usage"
    )
    adjustments = tuple(
        AdjustmentLine(ln.original_period, adjustment_text(ln, names), ln.amount)
        for ln in lines
        if ln.kind == "adjustment"
    )
    usage_total = sum((ln.amount for ln in usage), ZERO)
    adjustments_total = sum((ln.amount for ln in adjustments), ZERO)
    month = Period.parse(period)
    start, end = month.first_day, month.end_day
    block = ctx.credits.get(account_id)
    credits = (
        None
        if block is None
        else CreditSummary(
            block.opening, block.granted, block.applied, block.expired, block.closing, block.restored, block.since
        )
    )
    applied = credits.applied if credits else ZERO
    restored = sum((ln.restored for ln in lines if ln.kind == "adjustment"), ZERO)
    tax, tax_amount = inv.tax_of(account_id, usage_total + adjustments_total + restored - applied)
    marked = inv.of(account_id)
    party = ctx.parties[account_id]
    if marked.country is not None:
        party = replace(party, country=marked.country)
    return StatementDocument(
        statement_number=number,
        account_id=account_id,
        account=party,
        issuer=inv.issuer,
        period=period,
        period_start=start,
        period_end=end,
        issue_date=issue_date,
        currency="USD",
        lines=usage,
        adjustments=adjustments,
        usage_total=usage_total,
        adjustments_total=adjustments_total,
        total_due=usage_total + adjustments_total + restored - applied + tax_amount,
        price_versions=ctx.refs_of([ln.price_version for ln in lines]),
        credits_applied=applied,
        credits_restored=restored,
        credits=credits,
        tax_amount=tax_amount,
        tax=tax,
        terms=inv.terms_of(account_id, issue_date),
        e_invoice=marked.e_invoice,
        layout_version=layout_version,
        **ctx.facts_of(account_id),  # type: ignore[arg-type]
    )


def lines_csv(doc: StatementDocument, lines: Sequence[DueLine], names: dict[str, str]) -> bytes:
    """The statement's lines as printed (list price and basis for usage lines), then (layout 5
    on) the prepaid credit it applied as a negative row, then its tax row: so the rows add up to
    the amount due, as the PDF does."""
    usage = iter(doc.lines)
    printed = [next(usage) if ln.kind == "usage" else None for ln in lines]
    rows: list[tuple[object, ...]] = [
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
            p.list_price_per_1m.normalize() if p is not None and p.list_price_per_1m is not None else None,
            p.price_basis if p is not None else None,
        )
        for ln, p in zip(lines, printed, strict=True)
    ]
    if doc.credits_restored:  # layout 7 on: the part of negative adjustments given back as credit
        head = (doc.statement_number, doc.account_id, doc.period, "prepaid_credit_restored", doc.period)
        rows.append(head + (None, "Restored to prepaid credit") + (None,) * 4 + (doc.credits_restored, None, None))
    if doc.credits_applied and doc.layout_version >= PREPAID_ROW_FROM:
        rows.append((doc.statement_number, doc.account_id, doc.period, "prepaid_credit", doc.period)
                    + (None, "Prepaid credit applied") + (None,) * 4 + (-doc.credits_applied, None, None))  # fmt: skip
    if doc.tax is not None:
        rows.append((doc.statement_number, doc.account_id, doc.period, "tax", doc.period)
                    + (None, doc.tax.heading) + (None,) * 4 + (doc.tax_amount, None, None))  # fmt: skip
    return csv_bytes(LINES_HEADER, rows)


_DETAIL_CELLS = tuple((cell, kind) for _, cell, kind in _DETAIL_COLUMNS)
_DETAIL_QUERY = (
    "SELECT account_id, line FROM ("
    + sql_csv_lines(
        _DETAIL_CELLS,
        f"(SELECT * FROM rated_attempts WHERE {_ACCOUNT} AND outcome = 'billed')",
        keep=("account_id", "ts", "request_id", "event_id"),
    )
    + ") ORDER BY account_id, ts, request_id, event_id"
)
_DETAIL_CELLS_8 = tuple((cell, kind) for _, cell, kind in _DETAIL_COLUMNS_8)
_DETAIL_ROWS_8 = (
    "SELECT account_id, 'usage' AS kind, period AS original_period, CAST(NULL AS VARCHAR) AS change, "
    "CAST(NULL AS VARCHAR) AS billed_on, request_id, event_id, attempt, ts, model, status, usage_source, "
    "input_uncached_tokens, input_cached_tokens, output_tokens, reasoning_tokens, image_tokens, price_version, "
    "unit_price_input_uncached, unit_price_input_cached, unit_price_output, "
    "CAST(charge_total AS DECIMAL(38,20)) AS charge_total, 0 AS part, 0 AS change_order, "
    "CAST(NULL AS VARCHAR) AS token_class "
    f"FROM rated_attempts WHERE {_ACCOUNT} AND outcome = 'billed'"
)
_DETAIL_ADJUSTMENT_ROWS_8 = (
    "SELECT account_id, 'adjustment', original_period, change, billed_on, request_id, event_id, attempt, ts, model, "
    "status, usage_source, input_uncached_tokens, input_cached_tokens, output_tokens, reasoning_tokens, "
    "image_tokens, price_version, unit_price_input_uncached, unit_price_input_cached, unit_price_output, charge, 1, "
    "CASE change WHEN 'removed' THEN 1 WHEN 'added' THEN 2 ELSE 3 END, token_class "
    "FROM adjustment_detail_rows WHERE $a IS NULL OR account_id = $a"
)
_DETAIL_ORDER_8 = (
    "ORDER BY account_id, part, original_period, change_order, ts, request_id, event_id, billed_on, model, "
    "CASE token_class WHEN 'input_uncached' THEN 1 WHEN 'input_cached' THEN 2 ELSE 3 END, price_version"
)
_DETAIL_QUERY_8 = (
    "SELECT account_id, line FROM ("
    + sql_csv_lines(
        _DETAIL_CELLS_8,
        f"({_DETAIL_ROWS_8} UNION ALL {_DETAIL_ADJUSTMENT_ROWS_8})",
        keep=("account_id", "part", "original_period", "change_order", "ts", "request_id", "event_id", "billed_on",
              "model", "token_class", "price_version"),
    )
    + f") {_DETAIL_ORDER_8}"
)  # fmt: skip
DETAIL_CHUNK_ROWS = 65536


def _detail_bytes(lines: Sequence[str], layout_version: int = 1) -> bytes:
    header = DETAIL_HEADER_8 if layout_version >= ADJUSTMENT_DETAIL_FROM else DETAIL_HEADER
    return csv_bytes(header, []) + "".join(line + "\n" for line in lines).encode("utf-8")


def detail_csvs(
    con: duckdb.DuckDBPyConnection,
    period: str,
    account_id: str | None = None,
    layout_version: int = LAYOUT_VERSION,
    due: dict[str, list[DueLine]] | None = None,
) -> dict[str, bytes]:
    """Per-request usage of the period's billed attempts, for customers to reconcile: one CSV
    per account (every account's, or only ``account_id``'s). DuckDB writes the lines (on
    every core; 10M rows cell by cell in Python took 150 s), read a chunk at a time.

    Layout 8 on, after them the rows behind each prior-period adjustment of ``due`` (the
    statements' lines due), pipeline/adjustment_detail.py."""
    if layout_version < ADJUSTMENT_DETAIL_FROM:
        cursor = con.execute(_DETAIL_QUERY, {"p": period, "a": account_id})
    else:
        from reports import adjustment_detail

        pairs = {
            (a, ln.original_period)
            for a, lines in (due or {}).items()
            if account_id is None or a == account_id
            for ln in lines
            if ln.kind == "adjustment"
        }
        adjustment_detail.build(con, period, pairs)
        cursor = con.execute(_DETAIL_QUERY_8, {"p": period, "a": account_id})
    result: dict[str, bytes] = {}
    current: str | None = None
    lines: list[str] = []
    while chunk := cursor.fetchmany(DETAIL_CHUNK_ROWS):
        for account, line in chunk:
            if account != current:
                if current is not None:
                    result[current] = _detail_bytes(lines, layout_version)
                current, lines = account, []
            lines.append(line)
    if current is not None:
        result[current] = _detail_bytes(lines, layout_version)
    return result


def detail_csv(
    con: duckdb.DuckDBPyConnection,
    account_id: str,
    period: str,
    layout_version: int = LAYOUT_VERSION,
    lines: Sequence[DueLine] = (),
) -> bytes:
    """The per-request usage CSV of one account (header only when nothing was billed);
    ``lines``: its statement's lines due (layout 8 on: the adjustments it lists the requests of)."""
    found = detail_csvs(con, period, account_id, layout_version, {account_id: list(lines)})
    return found.get(account_id) or _detail_bytes([], layout_version)


def _render(doc: StatementDocument) -> tuple[bytes, bytes]:
    """HTML and PDF bytes of one statement (a top-level function: runs in worker processes)."""
    from reports.render import render_html, statement_pdf  # jinja2: not on a nightly's start (issue 14)

    html = render_html(doc)
    return html.encode("utf-8"), statement_pdf(doc, html)


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _worker_init(parent_pid: int) -> None:
    """Start of a render worker (forked from the run): let go of the run lock and die with
    the run. A worker forked while the run holds its flock shares the lock; if the run is
    killed, a worker that lived on would keep the database locked for every later run. So
    the worker closes its copy of the lock descriptor, asks Linux to SIGKILL it when its
    parent dies, and exits at once if the parent is already gone (died before the request)."""
    release_inherited()
    gc.set_threshold(*WORKER_GC_THRESHOLDS)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl: the closed lock descriptor is what matters
    if os.getppid() != parent_pid:
        os._exit(1)


@contextmanager
def _renderer(count: int) -> Iterator[Callable[[Sequence[StatementDocument]], Iterator[tuple[bytes, bytes]]]]:
    """Render many statements: on every core, in worker processes, when there are enough to pay
    for the pool. The pool starts on submission, so the caller works on while it renders."""
    if count < PARALLEL_FROM:
        yield lambda docs: iter([_render(doc) for doc in docs])
        return
    import reports.pdf  # noqa: F401  WeasyPrint loads once here, not in every forked worker

    gc.freeze()  # the run's objects so far: the workers' collections never walk them (issue 14)
    try:
        with ProcessPoolExecutor(
            max_workers=os.cpu_count() or 1,
            mp_context=multiprocessing.get_context("fork"),  # cheap: the renderer was imported just above
            initializer=_worker_init,
            initargs=(os.getpid(),),
        ) as pool:
            yield lambda docs: pool.map(_render, docs, chunksize=4)
    finally:
        gc.unfreeze()


def file_stem(doc: StatementDocument) -> str:
    """The name shared by a statement's files: its number, or for a draft the account id made
    a safe name part (``pipeline.filenames``: an id such as ``../x`` never becomes a path)."""
    return doc.statement_number or f"draft-{name_part(doc.account_id)}-{doc.period}"


def prepare(
    con: duckdb.DuckDBPyConnection,
    period: str,
    due: dict[str, list[DueLine]],
    numbers: dict[str, str] | None,
    issue_date: date,
    layout_version: int = LAYOUT_VERSION,
) -> list[StatementFiles]:
    """Build, render and serialize the statements of a period (nothing is written yet).

    The PDFs render in worker processes while this process writes the CSVs.
    """
    only = next(iter(due)) if len(due) == 1 else None
    with step("context"):
        ctx = period_context(con, period, only, layout_version)
        docs = [
            build_document(con, account, period, lines, (numbers or {}).get(account), issue_date, ctx, layout_version)
            for account, lines in due.items()
        ]
    with _renderer(len(docs)) as render:
        rendered = render(docs)
        with step("csv"):
            details = detail_csvs(con, period, only, layout_version, due) if docs else {}
            csvs = [(lines_csv(doc, due[doc.account_id], ctx.names), details.get(doc.account_id)) for doc in docs]
        with step("render_wait"), console.current().progress("render statements", len(docs)) as advance:
            pages = []
            for page in rendered:
                pages.append(page)
                advance(1)
    result = []
    for doc, (html, pdf), (lines_data, detail_data) in zip(docs, pages, csvs, strict=True):
        stem = file_stem(doc)
        files = {
            "pdf": (f"{stem}.pdf", pdf),
            "html": (f"{stem}.html", html),
            "lines_csv": (f"{stem}-lines.csv", lines_data),
            "detail_csv": (f"{stem}-detail.csv", detail_data or _detail_bytes([], layout_version)),
        }
        result.append(StatementFiles(doc.account_id, doc.statement_number, doc, files))
    return result


def check_e_invoice_seller(con: duckdb.DuckDBPyConnection, accounts: Sequence[str], layout_version: int) -> None:
    """Refuse to issue an e-invoice that does not identify the seller (EN 16931 BR-CO-26: the
    seller identifier, legal registration identifier or VAT identifier must be present).

    A buyer's system checks that rule and rejects the e-invoice; the statement would be issued,
    numbered and immutable all the same. From statement layout 4 the issuer's ``registration``
    is its BT-30; its ``vat_id`` is BT-31 except on invoices 'not subject to VAT' (BR-O-02)."""
    from reports.einvoice import identifies_seller  # only a finalize of an e-invoice account needs it

    inv = read_invoicing(con)
    issuer = inv.issuer
    for account_id in accounts:
        marked = inv.of(account_id)
        if marked.e_invoice is None:
            continue
        treatment = marked.tax_treatment or ""  # an e-invoice account has one (pipeline/accounts.py)
        if not identifies_seller(issuer.registration, issuer.vat_id, treatment, layout_version):
            raise UsageProblem(
                f"{account_id} receives an EN 16931 e-invoice, which must identify the seller (BR-CO-26), "
                f"and the rated issuer {issuer.name!r} has no registration"
                + ("" if marked.tax_treatment == "out_of_scope" else " nor vat_id"),
                hint="set registration (the company register and number) in the issuer file, run "
                "`infergate-billing rate --period <this period>` with it, then finalize again",
            )


def check_issue_date(con: duckdb.DuckDBPyConnection, period: str, issue_date: date) -> None:
    """Refuse to issue ``period`` on ``issue_date`` before the period has ended (an issued
    statement never changes: the rest of the month would become next month's adjustments, on
    a statement that says it covers the whole month), or before the last statement already
    issued (numbers are gap-free and must follow their dates, as credit notes' do)."""
    end = Period.parse(period).end_day  # the first day after the period
    if issue_date < end:
        raise UsageProblem(
            f"{period} has not ended on the issue date {issue_date}: it ends on {end - timedelta(days=1)}",
            hint=f"finalize once the month is over, with --issue-date {end} or later (the default is today, UTC)",
        )
    row = con.execute(
        "SELECT issue_date, statement_number FROM statements ORDER BY issue_date DESC, sequence_no DESC LIMIT 1"
    ).fetchone()
    if row is not None and row[0] is not None and issue_date < row[0]:
        raise UsageProblem(
            f"issue date {issue_date} is before {row[1]} was issued ({row[0]})",
            hint="statement numbers follow their issue dates: give --issue-date on or after it",
        )


def assign_numbers(con: duckdb.DuckDBPyConnection, period: str, accounts: Sequence[str]) -> dict[str, str]:
    """Next numbers of the global gap-free sequence, in account order, with the issuer's prefix."""
    row = con.execute("SELECT coalesce(max(sequence_no), 0) FROM statements").fetchone()
    start = int(row[0]) if row else 0
    prefix = number_prefix(con)
    return {a: f"{prefix}-{period}-{start + i:06d}" for i, a in enumerate(sorted(accounts), start=1)}


def store_issued(
    con: duckdb.DuckDBPyConnection,
    period: str,
    issue_date: date,
    run_id: int,
    statements: Sequence[StatementFiles],
    due: dict[str, list[DueLine]],
) -> None:
    """Record issued statements, their lines and file bytes (inside the run's transaction)."""
    # credit first: the drawdown reads the period's adjustments, which the rows below settle
    layouts = {st.document.layout_version for st in statements}  # one finalize: one layout
    if len(layouts) > 1:
        raise ValueError(f"one finalize issues one layout, not {sorted(layouts)}")
    rules = due_rules(min(layouts, default=LAYOUT_VERSION))
    credit_ledger.store_period(
        con,
        credit_ledger.load_state(con, rules=rules, statement_period=period),
        period,
        {st.account_id: st.number for st in statements if st.number},
    )
    for st in statements:
        doc, number = st.document, st.number
        assert number is not None
        lines = due[st.account_id]
        tokens = {
            k: sum(ln.quantity_tokens for ln in lines if ln.kind == "usage" and ln.token_class == k)
            for k in ("input_uncached", "input_cached", "output")
        }
        con.execute(
            "INSERT INTO statements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now(), ?)",
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
                doc.usage_total + doc.adjustments_total,  # the charges; credit and tax are stored beside
                ";".join(r.version_id for r in doc.price_versions),
                run_id,
                doc.layout_version,
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
        _store_invoicing(con, doc, number)
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


def _store_invoicing(con: duckdb.DuckDBPyConnection, doc: StatementDocument, number: str) -> None:
    """What the statement printed for tax, amount due and terms, and which issuer it was from."""
    issuer_sha = con.execute("SELECT coalesce(max(sha256), ?) FROM issuer", [BUILT_IN.sha256]).fetchone()
    terms = doc.terms
    con.execute(
        "INSERT INTO statement_invoicing VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            number,
            issuer_sha[0] if issuer_sha else BUILT_IN.sha256,
            doc.tax.treatment if doc.tax else None,
            doc.tax.rate_pct if doc.tax else None,
            doc.net_amount,
            doc.tax_amount,
            doc.total_due,
            terms.due_date if terms else None,
            terms.po_reference if terms else None,
        ],
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
        path = out_dir / checked_file_name(name, StatementError)
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


STAGING_SUFFIX = ".issuing"  # a finalize run's file, written before its commit


def staging_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{STAGING_SUFFIX}")


def clear_staging(out_dir: Path) -> None:
    """Remove files staged by a finalize run that died or failed before renaming them."""
    if out_dir.is_dir():
        for stale in out_dir.glob(f".*{STAGING_SUFFIX}"):
            stale.unlink(missing_ok=True)


def stage_issued(out_dir: Path, statements: Sequence[StatementFiles]) -> list[tuple[Path, Path]]:
    """Before the commit: write every file a finalize will issue under a staging name, synced.

    Issued means the files exist, so the files are written first: a directory that cannot
    take them (read-only, full, not a directory) fails the run before anything is numbered.
    An existing file of the same name with other bytes is refused here too (it would refuse
    the restore later). Returns (staged, final) pairs; on failure nothing staged is left.
    """
    pairs: list[tuple[Path, Path]] = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        clear_staging(out_dir)
        for st in statements:
            for kind, (name, data) in st.files.items():
                if kind == "html":
                    continue  # stored in the database only, like materialize_issued
                final = out_dir / name
                if final.exists() and final.read_bytes() != data:
                    raise StatementError(
                        f"{final}: a different file already has this issued statement's name; "
                        "move it away and run again"
                    )
                staged = staging_path(final)
                pairs.append((staged, final))
                with open(staged, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
    except OSError as exc:
        _remove(pair[0] for pair in pairs)
        where = pairs[-1][1] if pairs else out_dir
        raise OSError(exc.errno, f"cannot write: {exc.strerror}", str(where)) from exc
    except BaseException:
        _remove(pair[0] for pair in pairs)
        raise
    return pairs


def publish_staged(pairs: Sequence[tuple[Path, Path]]) -> list[Path]:
    """After the commit: rename the staged files to their issued names, then sync the folder.

    A crash between the commit and the last rename leaves staged files behind and some
    issued names missing: the next ``statements --finalize`` of the period restores them
    from the bytes stored with the statements (and removes the staged leftovers)."""
    try:
        for staged, final in pairs:
            os.replace(staged, final)
        for folder in {final.parent for _, final in pairs}:
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except OSError as exc:
        raise StatementError(
            f"{exc.filename}: {exc.strerror}; the statements ARE issued (their files are stored "
            "in the database): run the same `statements --finalize` again to restore the files"
        ) from exc
    return [final for _, final in pairs]


def _remove(paths: Iterator[Path]) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


def is_finalized(con: duckdb.DuckDBPyConnection, period: str) -> bool:
    return con.execute("SELECT count(*) FROM finalized_periods WHERE period = ?", [period]).fetchone() != (0,)


def today_utc() -> date:
    return datetime.now(UTC).date()
