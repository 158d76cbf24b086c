"""The spend-limit report: accounts above their monthly limit, and accounts often rejected.

An account exceeded its limit when its exact billed spend in the period is strictly above
``accounts.spend_limit_usd``. The crossing is found on the cumulative exact spend in the total
order (ts, event_id): the UTC day (and start time) of the billed attempt that took it above
the limit (view ``spend_limit_status``). Rejections are the attempts answered 429 (rate
limited) or 403 (forbidden), counted per account from ``rated_attempts.status`` (view
``rejections_by_account``).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from core.money import format_usd
from core.period import Period
from reports.csvsafe import write_csv

__all__ = [
    "BREACH_COLUMNS",
    "DEFAULT_MIN_REJECTIONS",
    "REJECTION_COLUMNS",
    "format_spend_limits",
    "limit_breaches",
    "rejections",
    "write_spend_limit_csvs",
]

DEFAULT_MIN_REJECTIONS = 10

BREACH_COLUMNS = (
    "period",
    "account_id",
    "account_name",
    "spend_limit_usd",
    "spend_exact_usd",
    "over_limit_usd",
    "crossed_on",
    "crossed_at",
)
REJECTION_COLUMNS = (
    "period",
    "account_id",
    "account_name",
    "rate_limited_429",
    "forbidden_403",
    "rejections",
    "attempts",
    "days_with_rejections",
)


def _check(period: str) -> None:
    Period.check(period)


def limit_breaches(con: duckdb.DuckDBPyConnection, period: str) -> list[tuple[object, ...]]:
    """Accounts whose exact spend in ``period`` went above their limit, in crossing order."""
    _check(period)
    return [
        tuple(row)
        for row in con.execute(
            """
            SELECT s.period, s.account_id, a.legal_name, s.spend_limit_usd, s.spend_exact_usd, s.over_limit_usd,
                   s.crossed_on, strftime(s.crossed_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ')
            FROM spend_limit_status s
            LEFT JOIN accounts a ON a.account_id = s.account_id
            WHERE s.period = $period AND s.exceeded
            ORDER BY s.crossed_at, s.account_id
            """,
            {"period": period},
        ).fetchall()
    ]


def rejections(
    con: duckdb.DuckDBPyConnection, period: str, min_rejections: int = DEFAULT_MIN_REJECTIONS
) -> list[tuple[object, ...]]:
    """Accounts with at least ``min_rejections`` 429/403 attempts in ``period``, most first."""
    _check(period)
    return [
        tuple(row)
        for row in con.execute(
            """
            SELECT r.period, r.account_id, a.legal_name, r.rate_limited_429, r.forbidden_403, r.rejections,
                   r.attempts, r.days_with_rejections
            FROM rejections_by_account r
            LEFT JOIN accounts a ON a.account_id = r.account_id
            WHERE r.period = $period AND r.rejections >= $min
            ORDER BY r.rejections DESC, r.account_id
            """,
            {"period": period, "min": min_rejections},
        ).fetchall()
    ]


def write_spend_limit_csvs(
    con: duckdb.DuckDBPyConnection, period: str, out_dir: Path, min_rejections: int = DEFAULT_MIN_REJECTIONS
) -> list[Path]:
    """``spend-limits-YYYY-MM.csv`` and ``rejections-YYYY-MM.csv`` (exact amounts)."""
    breaches_path = Path(out_dir) / f"spend-limits-{period}.csv"
    rejections_path = Path(out_dir) / f"rejections-{period}.csv"
    write_csv(breaches_path, BREACH_COLUMNS, limit_breaches(con, period))
    write_csv(rejections_path, REJECTION_COLUMNS, rejections(con, period, min_rejections))
    return [breaches_path, rejections_path]


def format_spend_limits(
    period: str, breaches: list[tuple[object, ...]], rejected: list[tuple[object, ...]], min_rejections: int
) -> str:
    """The report for the terminal; amounts rounded half-up to cents for display."""
    lines = [f"accounts above their spend limit in {period}: {len(breaches)}"]
    if breaches:  # a statement sums its rounded lines, so its total can differ by cents
        lines.append("  (spent: the exact usage of the period, rounded once; the statement sums rounded lines)")
    for _, account, name, limit, spend, over, day, at in breaches:
        lines.append(
            f"  {account:<16} {str(name or ''):<28} limit {format_usd(limit):>10}  spent {format_usd(spend):>10}  "  # type: ignore[arg-type]
            f"over by {format_usd(over):>10}  crossed on {day} (at {at})"  # type: ignore[arg-type]
        )
    lines.append(f"accounts with {min_rejections} or more 429/403 rejections in {period}: {len(rejected)}")
    for _, account, name, r429, r403, total, attempts, days in rejected:
        lines.append(
            f"  {account:<16} {str(name or ''):<28} {total:>6} rejected of {attempts:>6} attempts "
            f"(429: {r429}, 403: {r403}) on {days} day(s)"
        )
    return "\n".join(lines)


def spend_limit_report(
    con: duckdb.DuckDBPyConnection, period: str, out_dir: Path, min_rejections: int = DEFAULT_MIN_REJECTIONS
) -> tuple[list[Path], str]:
    """What ``spend-limits`` does: write both CSVs and return them with the terminal text."""
    paths = write_spend_limit_csvs(con, period, out_dir, min_rejections)
    text = format_spend_limits(
        period, limit_breaches(con, period), rejections(con, period, min_rejections), min_rejections
    )
    return paths, text
