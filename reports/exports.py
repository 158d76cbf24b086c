"""``export``: a period's finance summary CSV, or its rated attempts and statement lines as
Parquet, and whether what was written holds any row."""

from __future__ import annotations

from pathlib import Path

import duckdb

from reports.finance import write_finance_summary
from reports.parquet_export import write_parquet


def export_period(
    con: duckdb.DuckDBPyConnection, period: str, out_dir: Path, file_format: str, *, allow_empty: bool
) -> tuple[list[Path], bool]:
    """Write the period's files in ``file_format`` (csv or parquet); return them, and True when
    (with ``allow_empty``) they hold no row."""
    if file_format == "parquet":
        paths = write_parquet(con, period, out_dir, allow_empty=allow_empty)
        empty = (
            allow_empty
            and not con.execute("SELECT count(*) FROM rated_attempts WHERE period = ?", [period]).fetchall()[0][0]
        )
        return paths, bool(empty)
    path = write_finance_summary(con, period, out_dir, allow_empty=allow_empty)
    return [path], path.read_bytes().count(b"\n") <= 1  # the header line only
