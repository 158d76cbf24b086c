"""The finance summary CSV per period (SPEC section 4): the ledger's view of a month."""

from __future__ import annotations

from pathlib import Path

import duckdb

from core import credit_ledger
from core.db import sql_text
from core.errors import EmptyPeriod
from core.money import D, tax_on
from core.period import Period
from reports import adjustment_detail
from reports.csvsafe import write_csv
from reports.statement_model import ADJUSTMENT_DETAIL_FROM, LAYOUT_VERSION, due_parameters

FINANCE_COLUMNS = (
    "account_id",
    "account_name",
    "period",
    "statement_number",
    "billed_requests",
    "input_uncached_tokens",
    "input_cached_tokens",
    "output_tokens",
    "usage_usd",
    "adjustments_usd",
    "total_usd",
    "price_versions",
    "credit_opening_usd",
    "credits_granted_usd",
    "credits_applied_usd",
    "credits_expired_usd",
    "credit_closing_usd",
    # issue 16: net = total_usd + credits_restored_usd - credits_applied_usd (what tax is on);
    # total_due = net + tax
    "net_usd",
    "tax_usd",
    "total_due_usd",
    # issue 16 item 4: credit notes issued against the row's statement so far (net, tax, total
    # credited) and what the statement leaves to pay after them: total_due_usd - credit_notes_usd
    "credit_notes_net_usd",
    "credit_notes_tax_usd",
    "credit_notes_usd",
    "total_due_after_credit_notes_usd",
    # statement layout 7 on: prepaid credit restored (negative prior-period adjustments of usage
    # prepaid credit had paid, given back as credit, not money); appended last so that no column
    # moves. Every row adds up: credit_opening + credits_granted + credits_restored -
    # credits_applied - credits_expired = credit_closing; total + credits_restored -
    # credits_applied = net; net + tax = total_due; total_due - credit_notes = total_due_after_...
    "credits_restored_usd",
)


def finance_summary(con: duckdb.DuckDBPyConnection, period: str) -> list[tuple[object, ...]]:
    Period.check(period)
    # an open period: its lines as a statement issued now would print them
    con.execute(
        "CREATE OR REPLACE TEMP TABLE due_lines AS " + sql_text("statement_lines_due.sql"), due_parameters(period)
    )
    _own_versions(con, period)
    _open_credits(con, period)
    rows = con.execute(sql_text("finance_summary.sql"), {"period": period}).fetchall()
    return [_with_tax(tuple(row)) for row in rows]


def _own_versions(con: duckdb.DuckDBPyConnection, period: str) -> None:
    """Layout 8 on: an open period's adjustment lines name the versions that priced their own
    tokens, as its draft statement does (reports.adjustment_detail.own_versions)."""
    if LAYOUT_VERSION < ADJUSTMENT_DETAIL_FROM:
        return
    keys = con.execute(
        "SELECT account_id, original_period, model, token_class, unit_price_per_1m, price_version FROM due_lines "
        "WHERE kind = 'adjustment' ORDER BY ALL"
    ).fetchall()
    if not keys:
        return
    named = adjustment_detail.own_versions(con, period, keys)
    changed = [(new, *key) for new, key in zip(named, keys, strict=True) if new != key[5]]
    if changed:
        con.executemany(
            "UPDATE due_lines SET price_version = ? WHERE kind = 'adjustment' AND account_id = ? "
            "AND original_period = ? AND model = ? AND token_class = ? AND unit_price_per_1m = ? AND price_version = ?",
            changed,
        )


def _with_tax(row: tuple[object, ...]) -> tuple[object, ...]:
    """An open period's row gets its tax here, by the one rule (``money.tax_on``, per statement
    on the net); an issued row keeps what its statement printed. Drops the helper rate column and
    appends what is left to pay after credit notes, before credits_restored_usd (the last column)."""
    *columns, net, tax, total_due, rate, cn_net, cn_tax, cn_total, restored = row
    if tax is None:
        tax = tax_on(D(net), D(rate) if rate is not None else D(0))
        total_due = D(net) + tax
    return (*columns, net, tax, total_due, cn_net, cn_tax, cn_total, D(total_due) - D(cn_total), restored)


def _open_credits(con: duckdb.DuckDBPyConnection, period: str) -> None:
    """The credit block of every account with grants for an open ``period`` (temp table)."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE open_credits (account_id VARCHAR, opening_usd DECIMAL(18,2), "
        "granted_usd DECIMAL(18,2), applied_usd DECIMAL(18,2), expired_usd DECIMAL(18,2), closing_usd DECIMAL(18,2), "
        "restored_usd DECIMAL(18,2))"
    )
    state = credit_ledger.load_state(con, statement_period=period)  # as the period's draft statement
    blocks = credit_ledger.period_blocks(state, period, sorted(state.accounts))
    if blocks:
        con.executemany(
            "INSERT INTO open_credits VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(a, b.opening, b.granted, b.applied, b.expired, b.closing, b.restored) for a, b in blocks.items()],
        )


def write_finance_summary(
    con: duckdb.DuckDBPyConnection, period: str, out_dir: Path, *, allow_empty: bool = True
) -> Path:
    """Write ``finance-summary-PERIOD.csv``: one row per account with something due.

    Without ``allow_empty`` a period with no row raises :class:`EmptyPeriod` and writes
    nothing: a header-only file would pass for a month in which nobody owes anything.
    """
    rows = finance_summary(con, period)
    if not rows and not allow_empty:
        raise EmptyPeriod.of(period, "nothing written")
    path = out_dir / f"finance-summary-{period}.csv"
    write_csv(path, FINANCE_COLUMNS, rows)
    return path
