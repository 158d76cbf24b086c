"""Prepaid credit balances as of an instant, for the gateway and for people (issue 17).

A balance is exact from the ledger: grants less reversals, credit applied and expired that
took effect by the instant (issued periods as stored, open periods as drawn now; see
``core/drawdown.py``). Open periods' usage segments are also cut at the instant asked for,
and an issued segment that contains it is cut there by :func:`core.drawdown.drawn_by`, so
the balance counts exactly the usage billed before it (as far as the nightly has billed it;
docs/credits.md, "balances").

Alerts: an account is listed when its balance is below ``threshold``, or when at its recent
daily usage (billed charges over the last ``window_days`` days before the instant) it would
run out within ``days``: balance x window_days < usage in window x days (no division, exact).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from core.attempt_store import rated_rows
from core.credit_ledger import load_state, usage_inside
from core.drawdown import balance_at
from core.money import ZERO, Decimal, to_cents
from reports.atomic import write_atomic
from reports.csvsafe import csv_bytes

BALANCE_COLUMNS = ("account_id", "as_of", "balance_usd", "recent_usage_usd", "window_days", "alert")


@dataclass(frozen=True)
class Balance:
    account_id: str
    as_of: datetime
    balance: Decimal  # cents
    recent_usage: Decimal  # exact billed charges in the window
    window_days: int
    alert: str  # '' | below_threshold | runs_out_soon | below_threshold;runs_out_soon

    def row(self) -> tuple[object, ...]:
        stamp = self.as_of.strftime("%Y-%m-%dT%H:%M:%SZ")
        return (self.account_id, stamp, self.balance, to_cents(self.recent_usage), self.window_days, self.alert)


def balances(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    *,
    threshold: Decimal = ZERO,
    days: int = 7,
    window_days: int = 7,
) -> list[Balance]:
    """Every account with credit grants, its balance at ``as_of`` and its alerts."""
    state = load_state(con, as_of)
    inside = usage_inside(con, state, as_of)
    since = as_of - timedelta(days=window_days)
    # the window's rated rows only: the lake files of other days are not opened
    usage = dict(
        con.execute(
            f"SELECT account_id, sum(charge_total) FROM ({rated_rows(con, since=since, until=as_of)}) "
            "WHERE outcome = 'billed' GROUP BY account_id"
        ).fetchall()
    )
    result = []
    for account in sorted(state.accounts):
        left = to_cents(balance_at(state.movements, account, as_of, inside))  # 0.00, never 0, before a grant
        recent = Decimal(usage.get(account, ZERO))
        alerts = []
        if left < threshold:
            alerts.append("below_threshold")
        if recent > 0 and left * window_days < recent * days:
            alerts.append("runs_out_soon")
        result.append(Balance(account, as_of, left, recent, window_days, ";".join(alerts)))
    return result


def write_balances(rows: list[Balance], path: Path, fmt: str) -> None:
    """CSV (what the gateway loads to enforce its balance limit) or Parquet (DECIMAL kept)."""
    if fmt == "csv":
        write_atomic(path, csv_bytes(BALANCE_COLUMNS, [b.row() for b in rows]))
        return
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(
            "CREATE TABLE b (account_id VARCHAR, as_of TIMESTAMPTZ, balance_usd DECIMAL(18,2), "
            "recent_usage_usd DECIMAL(18,2), window_days INTEGER, alert VARCHAR)"
        )
        if rows:  # none (no account holds a grant): the file has the columns and no row
            con.executemany(
                "INSERT INTO b VALUES (?, ?, ?, ?, ?, ?)",
                [(b.account_id, b.as_of, b.balance, to_cents(b.recent_usage), b.window_days, b.alert) for b in rows],
            )
        tmp = path.with_name(f".{path.name}.tmp")
        con.execute(f"COPY b TO '{str(tmp).replace(chr(39), chr(39) * 2)}' (FORMAT parquet)")
        tmp.replace(path)
    finally:
        con.close()
