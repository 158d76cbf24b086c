"""Input limits (issue #7, part 5), small versions: a 5 MB line, 200K identical lines and 10K
accounts in one day complete under ``--memory-limit 256MB`` with the right counts, and the
process never grows past that limit plus a fixed overhead. ``make soak`` runs the full
sizes (50 MB, 10M lines, 100K accounts).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from tests.limits import (
    FIXED_OVERHEAD_BYTES,
    Measured,
    bytes_of,
    run_measured,
    write_identical_lines,
    write_long_lines,
    write_many_accounts,
)

LIMIT = "256MB"


def completed_within_bounds(result: Measured, limit: str = LIMIT) -> None:
    assert result.returncode == 0, result.stderr
    assert result.peak_rss_bytes < bytes_of(limit) + FIXED_OVERHEAD_BYTES, result.peak_rss_bytes >> 20


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_five_megabyte_lines(tmp_path: Path) -> None:
    ids = write_long_lines(tmp_path / "logs", 5 << 20)
    result = run_measured(tmp_path / "db" / "billing.duckdb", tmp_path / "logs", LIMIT)
    completed_within_bounds(result)
    rows = dict(query(tmp_path / "db" / "billing.duckdb", "SELECT event_id, usage_source FROM rated_attempts"))
    assert rows == {i: ("estimated" if i == "long-messages" else "provider") for i in ids}


def test_two_hundred_thousand_identical_lines(tmp_path: Path) -> None:
    write_identical_lines(tmp_path / "logs", 200_000)
    result = run_measured(tmp_path / "db" / "billing.duckdb", tmp_path / "logs", LIMIT)
    completed_within_bounds(result)
    assert "read 200000 = accepted 1 + duplicates 199999 + quarantined 0" in result.stdout


def test_ten_thousand_accounts_in_one_day(tmp_path: Path) -> None:
    accounts = write_many_accounts(tmp_path, 10_000)
    db = tmp_path / "db" / "billing.duckdb"
    result = run_measured(db, tmp_path / "logs", LIMIT, accounts)
    completed_within_bounds(result)
    assert query(db, "SELECT count(*), count(DISTINCT account_id) FROM account_period_totals") == [(10_000, 10_000)]
