"""The credit state of the billing database: grants, issued movements, open-period drawdown.

Reads ``credit_grants`` (the grants file as loaded by the last rating run), ``credit_ledger``
(what finalized periods drew: never recomputed) and the open periods' usage
(``sql/credit_usage.sql``), and applies the rule of :mod:`core.drawdown`. Finalizing a
period stores its movements with the statements (:func:`store_period`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb

from core import drawdown
from core.attempt_store import attempts_of_runs, rated_rows
from core.db import sql_text
from core.drawdown import Grant, Movement, PeriodCredit
from core.errors import BillingError
from core.money import ZERO, Decimal
from core.period import Period
from core.statement_rules import DueRules

#: the current statement layout's rules (reports.statement_model.due_rules())
CURRENT_RULES = DueRules()


@dataclass(frozen=True)
class CreditState:
    grants: tuple[Grant, ...]
    issued: tuple[Movement, ...]  # stored (credit_ledger), in order
    fresh: tuple[Movement, ...] = ()  # computed now: the open periods', in order

    @property
    def movements(self) -> tuple[Movement, ...]:
        return self.issued + self.fresh

    @property
    def accounts(self) -> set[str]:
        return {g.account_id for g in self.grants}

    def summary(self, account_id: str, period: str) -> PeriodCredit | None:
        """The account's credit block for ``period``; None for an account without credit then."""
        if not any(g.account_id == account_id and drawdown.period_of(g.granted_at) <= period for g in self.grants):
            return None
        return drawdown.summarize(self.movements, account_id, period)


def _first_open(con: duckdb.DuckDBPyConnection) -> str | None:
    row = con.execute("SELECT max(period) FROM finalized_periods").fetchone()
    if row is None or row[0] is None:
        return None
    return str(Period.parse(row[0]).next())


def _adjusting_month(
    con: duckdb.DuckDBPyConnection, first_open: str | None, statement_period: str | None, rules: DueRules
) -> str | None:
    """The open month whose statement comes next: it carries the prior-period adjustments
    (draws and restores prepaid credit for them). Before layout 11 the first open month. From
    layout 11 the first open month in which an account with grants was billed, or the
    statement's own (``statement_period``) when none before it was: a month without such usage
    gets no statement, so the next statement also covers its credit movements
    (pipeline/sql/statement_lines_due.sql's `first_open` is the same month)."""
    if not rules.skipped_months_closed:
        return first_open
    row = con.execute(
        "SELECT min(period) FROM statement_lines WHERE period >= coalesce($open, '') "
        "AND account_id IN (SELECT account_id FROM credit_grants)",
        {"open": first_open},
    ).fetchone()
    billed = None if row is None else row[0]
    # never before the first open month: a month issued after a later one (late usage of a
    # month without statements) carries no adjustments of accounts with grants
    candidates = [p for p in (billed, statement_period) if p is not None and p >= (first_open or "")]
    return min(candidates) if candidates else first_open


def _into_next_statement(fresh: Sequence[Movement], first_open: str | None, month: str) -> list[Movement]:
    """Layout 11: the movements of the open months before ``month`` (months without a
    statement, in which no account with grants was billed: grants, reversals and expiries dated
    in them, or before the first statement) belong to ``month``'s statement, at their own
    instants. So every statement's credit block opens at the previous statement's closing, and
    finalizing ``month`` stores them. (A grant :func:`core.drawdown.draw` grants at its own time
    because an issued period drew it lies before ``first_open``: it stays there.)"""
    since = first_open or ""
    return [dataclasses.replace(m, period=month) if since <= m.period < month else m for m in fresh]


def _charges(
    con: duckdb.DuckDBPyConnection, adjusting: str | None, rules: DueRules
) -> tuple[dict[tuple[str, str], Decimal], dict[tuple[str, str], Decimal]]:
    """What each open statement of an account with grants charges: rounded lines (+ adjustments,
    less what they give back as prepaid credit); and what the statement of ``adjusting`` (the
    month carrying the adjustments, :func:`_adjusting_month`; None: none yet) restores to prepaid credit per (account,
    adjusted period) (layout 7 on, else nothing)."""
    lines = "printed_statement_lines" if rules.lines_by_unit_price else "statement_lines"
    charges: dict[tuple[str, str], Decimal] = {
        (a, p): Decimal(total)
        for a, p, total in con.execute(
            # the usage lines as the statement prints them (its layout's rules): from layout 6
            # one per unit price across price versions, rounded once (the view; an open period
            # has no line issued per version), before that one per version
            f"SELECT account_id, period, sum(amount) FROM {lines} "
            "WHERE account_id IN (SELECT account_id FROM credit_grants) "
            "AND period NOT IN (SELECT period FROM finalized_periods) GROUP BY ALL"
        ).fetchall()
    }
    restorations: dict[tuple[str, str], Decimal] = {}
    if adjusting is not None:
        rows = con.execute(
            "SELECT account_id, original_period, sum(amount), sum(restored) FROM ("
            + sql_text("statement_lines_due.sql")
            + ") WHERE kind = 'adjustment' AND account_id IN (SELECT account_id FROM credit_grants) GROUP BY ALL",
            # adjustments as the statement prices them (its layout's rules)
            rules.sql_parameters(adjusting),
        ).fetchall()
        for account, origin, amount, restored in rows:
            key = (account, adjusting)
            # the part restored to prepaid credit is not money given back: credit pays the rest
            charges[key] = charges.get(key, ZERO) + Decimal(amount) + Decimal(restored)
            if restored:
                restorations[(account, origin)] = Decimal(restored)
    return charges, restorations


def _later_payers(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], list[str]]:
    """(account, period) -> the issued periods whose statements asked positive adjustments of
    it: from layout 10 their grants take what a restoration gives back beyond the credit the
    period's own statement drew (statement_lines_due.sql counts it in `credit_left`)."""
    result: dict[tuple[str, str], list[str]] = {}
    for account, origin, period in con.execute(
        "SELECT DISTINCT s.account_id, l.original_period, s.period FROM statement_issued_lines l "
        "JOIN statements s USING (statement_number) WHERE l.kind = 'adjustment' AND l.amount > 0 ORDER BY ALL"
    ).fetchall():
        result.setdefault((account, origin), []).append(period)
    return result


def load_state(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime | None = None,
    rules: DueRules = CURRENT_RULES,
    statement_period: str | None = None,
) -> CreditState:
    """Every account's credit movements: issued ones as stored, open ones computed now (with
    usage also cut at ``as_of``, for a balance at that instant). ``rules``: those of the
    statement the open period's credit is drawn for (its layout's; by default the current
    layout's, reports.statement_model.due_rules); ``statement_period``: that statement's period
    (None: no statement, e.g. a balance)."""
    grants = tuple(
        Grant(gid, account, Decimal(amount), granted, expires, kind, reverses)
        for gid, account, amount, granted, expires, kind, reverses in con.execute(
            "SELECT grant_id, account_id, amount, granted_at, expires_at, kind, reverses FROM credit_grants "
            "ORDER BY source_line"
        ).fetchall()
    )
    issued = tuple(
        Movement(
            account, period, gid, kind, at, Decimal(amount), start, None if before is None else Decimal(before), origin
        )
        for account, period, gid, kind, at, amount, start, before, origin in con.execute(
            "SELECT account_id, period, grant_id, entry_kind, effective_at, amount, segment_start, "
            "usage_before_exact, restored_for FROM credit_ledger ORDER BY account_id, period, entry_no"
        ).fetchall()
    )
    if not grants:
        return CreditState((), issued)
    first_open = _first_open(con)
    usage = con.execute(sql_text("credit_usage.sql"), {"as_of": as_of}).fetchall()
    adjusting = _adjusting_month(con, first_open, statement_period, rules)
    charges, restorations = _charges(con, adjusting if first_open else None, rules)
    segments = drawdown.cents_segments(
        ((a, p, s, e, Decimal(x)) for a, p, s, e, x in usage), charges, idle_at_end=rules.idle_period_draws_at_end
    )
    later = _later_payers(con) if rules.period_money_given_back and restorations else None
    fresh = drawdown.draw(
        grants, segments, issued, first_open, restorations, later, adjusting, rules.skipped_months_closed
    )
    if rules.skipped_months_closed and adjusting is not None:
        fresh = _into_next_statement(fresh, first_open, adjusting)
    return CreditState(grants, issued, tuple(fresh))


class CreditOrderError(BillingError):
    """A period would be finalized before an earlier one that draws on the same credit."""


def check_finalize_order(con: duckdb.DuckDBPyConnection, period: str) -> None:
    """Refuse to issue ``period`` while an earlier period of an account with grants is open:
    its balance would be issued on top of draws that can still change."""
    row = con.execute(
        "SELECT min(period) FROM statement_lines WHERE period < $p "
        "AND period NOT IN (SELECT period FROM finalized_periods) "
        "AND account_id IN (SELECT account_id FROM credit_grants)",
        {"p": period},
    ).fetchone()
    if row is not None and row[0] is not None:
        raise CreditOrderError(
            f"cannot finalize {period}: {row[0]} is not finalized and accounts with prepaid credit billed in it",
            hint=f"finalize {row[0]} first (`infergate-billing statements --period {row[0]} --finalize`)",
        )


def store_period(con: duckdb.DuckDBPyConnection, state: CreditState, period: str, numbers: dict[str, str]) -> None:
    """Finalizing ``period``: keep its movements and each statement's credit block (in the transaction)."""
    entries: dict[str, int] = {}
    rows = []
    for m in state.fresh:
        if m.period != period:
            continue
        entries[m.account_id] = entries.get(m.account_id, 0) + 1
        rows.append(
            (m.account_id, period, entries[m.account_id], m.grant_id, m.kind, m.at, m.amount, m.start, m.before)
            + (m.origin,)
        )
    if rows:
        con.executemany(
            "INSERT INTO credit_ledger (account_id, period, entry_no, grant_id, entry_kind, effective_at, amount, "
            "segment_start, usage_before_exact, restored_for) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    for account, number in sorted(numbers.items()):
        block = state.summary(account, period)
        if block is not None:
            con.execute(
                "INSERT INTO statement_credits (statement_number, opening_usd, granted_usd, applied_usd, "
                "expired_usd, closing_usd, restored_usd) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [number, block.opening, block.granted, block.applied, block.expired, block.closing, block.restored],
            )


def usage_inside(con: duckdb.DuckDBPyConnection, state: CreditState, at: datetime) -> drawdown.InstantUsage:
    """For each issued segment that contains ``at``: its exact billed usage before ``at`` and
    from ``at`` on, counting only the attempts its period was finalized with (ingested before
    the finalizing run; later ones were drawn as adjustments of a later period). A segment
    lies inside one UTC day, so this reads at most the day of ``at``."""
    segments = drawdown.straddling_segments(state.movements, at)
    if not segments:
        return {}
    day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    billed = (
        "SELECT r.account_id, r.period, r.ts, r.charge_total, r.event_id "
        f"FROM ({rated_rows(con, since=day, until=day + timedelta(days=1))}) r "
        "JOIN finalized_periods f ON f.period = r.period "
        "WHERE r.outcome = 'billed' AND r.account_id IN (SELECT account_id FROM credit_grants)"
    )
    # the runs that stored those attempts, by their keys: only their lake files are read
    runs = [
        int(r)
        for (r,) in con.execute(
            f"SELECT DISTINCT run_id FROM attempt_keys WHERE event_key IN (SELECT hash(event_id) FROM ({billed}))"
        ).fetchall()
    ]
    rows = con.execute(
        f"SELECT b.account_id, b.period, b.ts, b.charge_total FROM ({billed}) b "
        f"JOIN ({attempts_of_runs(con, runs)}) a USING (event_id) JOIN finalized_periods f ON f.period = b.period "
        "WHERE a.run_id < f.run_id"
    ).fetchall()
    by_account: dict[str, list[tuple[str, datetime, datetime]]] = {}
    for account, period, start, end in segments:
        by_account.setdefault(account, []).append((period, start, end))
    found: dict[tuple[str, str, datetime], tuple[Decimal | None, Decimal | None]] = {}
    for account, period, start, _ in segments:
        found[(account, period, start)] = (None, None)
    for account, period, ts, charge in rows:
        for seg_period, start, end in by_account.get(account, ()):
            if seg_period == period and start <= ts < end:
                until, rest = found[(account, period, start)]
                exact = Decimal(charge)
                if ts < at:
                    found[(account, period, start)] = ((until or ZERO) + exact, rest)
                else:
                    found[(account, period, start)] = (until, (rest or ZERO) + exact)
    return found


def period_blocks(state: CreditState, period: str, accounts: Sequence[str]) -> dict[str, PeriodCredit]:
    return {a: b for a in accounts if (b := state.summary(a, period)) is not None}
