"""The finance summary CSV per period (SPEC section 4): the ledger's view of a month."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from core.db import sql_text
from core.errors import EmptyPeriod
from reports.csvsafe import write_csv

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
)
PERIOD_PATTERN = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def finance_summary(con: duckdb.DuckDBPyConnection, period: str) -> list[tuple[object, ...]]:
    if not PERIOD_PATTERN.match(period):
        raise ValueError(f"period {period!r} is not YYYY-MM")
    con.execute("CREATE OR REPLACE TEMP TABLE due_lines AS " + sql_text("statement_lines_due.sql"), {"period": period})
    return [tuple(row) for row in con.execute(sql_text("finance_summary.sql"), {"period": period}).fetchall()]


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
