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


def test_parse_slices_cover_every_line_once_and_bound_the_text_of_a_vector() -> None:
    """Short lines are parsed in big statements (every core), long ones in byte-bounded slices."""
    from pipeline import ingest

    con = duckdb.connect()
    ingest._create_staging(con)
    sizes = {1: [100] * 10_000, 2: [100] * 3000 + [40_000] * 300 + [100] * 5000}  # file 2: a heavy stretch
    for f, lengths in sizes.items():
        con.execute(
            "INSERT INTO staged_lines SELECT ?, 'f', 's', i + 1, repeat('x', (?)[i + 1]), NULL "
            "FROM range(?) t(i)",
            [f, lengths, len(lengths)],
        )
    max_bytes = 1 << 20
    slices = ingest._line_slices(con, max_bytes)
    covered = [(f, n) for f, lo, hi in slices for n in range(lo, hi + 1)]
    assert covered == [(f, n) for f, lengths in sizes.items() for n in range(1, len(lengths) + 1)]
    assert slices[0] == (1, 1, 10_000)  # one file of short lines: one statement
    for f, lo, hi in slices:
        text = sum(length + 1 for length in sizes[f][lo - 1 : hi])
        # a light run never has more than max_bytes/2 per vector-length block; a heavy slice
        # holds at most max_bytes, unless it is a single line
        if text > max_bytes:
            blocks = {n // ingest.VECTOR_LINES for n in range(lo, hi + 1)}
            for b in blocks:
                in_block = [sizes[f][n - 1] + 1 for n in range(lo, hi + 1) if n // ingest.VECTOR_LINES == b]
                assert sum(in_block) <= max_bytes // 2
    heavy = [s for s in slices if s[0] == 2 and s[1] > 2048 and s[2] < 3300]
    assert len(heavy) > 1
    assert all(sum(sizes[2][n - 1] + 1 for n in range(lo, hi + 1)) <= max_bytes for _, lo, hi in heavy)
