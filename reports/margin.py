"""The margin report (SPEC section 4): revenue against upstream reference cost, per model.

Upstream reference cost is tokens x the upstream price of the price version the attempt was
rated with (``rated_attempts.upstream_ref_cost``), for *every* attempt: the billed ones, and
the ones InferGate paid for but could not bill (failed after upstream usage, superseded
retries, no output, held). Where the log carried the upstream's own charge
(``upstream_cost_usd``) it is reported beside the reference cost of the same attempts.
Everything is exact DECIMAL from the view ``margin_by_model``; the printed table rounds to
cents for reading, the CSV does not round.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from core.money import format_usd
from core.period import Period
from reports.csvsafe import write_csv
from reports.texttable import render_table

__all__ = ["MARGIN_COLUMNS", "format_margin", "margin_rows", "margin_totals", "write_margin_csv"]

MARGIN_COLUMNS = (
    "period",
    "model",
    "billed_requests",
    "unbilled_attempts",
    "revenue_exact_usd",
    "revenue_statements_usd",
    "billed_upstream_cost_usd",
    "not_billed_upstream_cost_usd",
    "held_upstream_cost_usd",
    "unbilled_upstream_cost_usd",
    "upstream_cost_usd",
    "margin_exact_usd",
    "attempts_without_ref_price",
    "reported_cost_attempts",
    "reported_upstream_cost_usd",
    "ref_cost_of_reported_usd",
)
_SUMMED = MARGIN_COLUMNS[2:]


def _check(period: str) -> None:
    Period.check(period)


def margin_rows(con: duckdb.DuckDBPyConnection, period: str) -> list[dict[str, object]]:
    """One row per model with any attempt in the period, by model."""
    _check(period)
    cursor = con.execute(
        f"SELECT {', '.join(MARGIN_COLUMNS)} FROM margin_by_model WHERE period = $period ORDER BY model",
        {"period": period},
    )
    return [dict(zip(MARGIN_COLUMNS, row, strict=True)) for row in cursor.fetchall()]


def margin_totals(con: duckdb.DuckDBPyConnection, period: str) -> dict[str, object]:
    """The period's totals over all models, summed exactly by DuckDB."""
    _check(period)
    sums = ", ".join(f"sum({name})" for name in _SUMMED)
    row = con.execute(f"SELECT {sums} FROM margin_by_model WHERE period = $period", {"period": period}).fetchone()
    assert row is not None
    return {"period": period, "model": "TOTAL", **dict(zip(_SUMMED, row, strict=True))}


def write_margin_csv(con: duckdb.DuckDBPyConnection, period: str, out_dir: Path) -> Path:
    """``margin-YYYY-MM.csv``: the view's rows for the period, exact amounts, never rounded."""
    path = Path(out_dir) / f"margin-{period}.csv"
    write_csv(path, MARGIN_COLUMNS, [tuple(row[c] for c in MARGIN_COLUMNS) for row in margin_rows(con, period)])
    return path


def _usd(value: object) -> str:
    return "-" if value is None else format_usd(value)  # type: ignore[arg-type]


def format_margin(rows: list[dict[str, object]], totals: dict[str, object]) -> str:
    """A short table for the terminal: amounts rounded half-up to cents for display."""
    header = ("model", "billed", "unbilled", "revenue", "cost billed", "cost unbilled", "cost total", "margin")
    table = [
        (
            str(row["model"]),
            str(row["billed_requests"] or 0),
            str(row["unbilled_attempts"] or 0),
            _usd(row["revenue_exact_usd"]),
            _usd(row["billed_upstream_cost_usd"]),
            _usd(row["unbilled_upstream_cost_usd"]),
            _usd(row["upstream_cost_usd"]),
            _usd(row["margin_exact_usd"]),
        )
        for row in [*rows, totals]
    ]
    text = [render_table(header, table, footer_rows=1)]
    notes = []
    if totals["attempts_without_ref_price"]:
        unpriced = totals["attempts_without_ref_price"]
        notes.append(f"{unpriced} attempt(s) have no upstream price in force: their cost is not included")
    if totals["reported_cost_attempts"]:
        notes.append(
            f"upstream-reported cost {_usd(totals['reported_upstream_cost_usd'])} for "
            f"{totals['reported_cost_attempts']} attempt(s); reference cost of the same "
            f"{_usd(totals['ref_cost_of_reported_usd'])}"
        )
    return "\n".join(text + notes)


def margin_report(con: duckdb.DuckDBPyConnection, period: str, out_dir: Path) -> tuple[Path, str]:
    """What ``margin`` does: write ``margin-YYYY-MM.csv`` and return it with the terminal text."""
    path = write_margin_csv(con, period, out_dir)
    text = format_margin(margin_rows(con, period), margin_totals(con, period))
    return path, f"margin {period} (USD, upstream reference prices of the same price version)\n{text}"
