"""Parquet export for analysts: rated attempts and statement lines, hive-partitioned by period.

Layout (one file per table and period; the ``period`` column lives in the directory name, as
hive partitioning has it)::

    OUT/rated_attempts/period=2026-11/data_0.parquet
    OUT/statement_lines/period=2026-11/data_0.parquet

DuckDB writes the files, so every DECIMAL keeps its precision and scale (e.g. charges
``DECIMAL(38,20)``, unit prices ``DECIMAL(24,14)``) as Parquet decimals, ``ts`` stays a UTC
instant and ``usage_date`` a date: polars and DuckDB read them back exactly::

    pl.read_parquet("OUT/rated_attempts/**/*.parquet", hive_partitioning=True)
    SELECT * FROM read_parquet('OUT/rated_attempts/**/*.parquet', hive_partitioning = true)

Re-exporting a period replaces its partition: the new files are written beside the dataset
and swapped in by two renames, so a reader sees the old partition or the new one (for an
instant between the renames, none), never a half-written file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb

from core import console
from core.errors import EmptyPeriod
from core.period import Period

__all__ = ["EXPORTED_TABLES", "write_parquet"]

# table -> total row order (SPEC E4: deterministic files for the same data)
EXPORTED_TABLES = {
    "rated_attempts": "ts, event_id",
    "statement_lines": "account_id, model, token_class, price_version, price_basis, unit_price_per_1m",
}


def write_parquet(
    con: duckdb.DuckDBPyConnection, period: str, out_dir: Path, *, allow_empty: bool = True
) -> list[Path]:
    """Write (or replace) the ``period=YYYY-MM`` partition of every exported table.

    Without ``allow_empty`` a period without any rated attempt raises :class:`EmptyPeriod`
    and writes (and replaces) nothing.
    """
    Period.check(period)
    if not allow_empty:
        row = con.execute("SELECT count(*) FROM rated_attempts WHERE period = $period", {"period": period}).fetchone()
        if not row or not row[0]:
            raise EmptyPeriod.of(period, "no rated attempts, nothing written")
    out_dir = Path(out_dir)
    written = []
    with console.current().progress("export tables", len(EXPORTED_TABLES)) as advance:
        for table, order in EXPORTED_TABLES.items():
            written.append(_export_table(con, table, order, period, out_dir))
            advance(1)
    return written


def _export_table(con: duckdb.DuckDBPyConnection, table: str, order: str, period: str, out_dir: Path) -> Path:
    """Write one table's partition to a staging folder, then swap it in; the file's path."""
    partition = f"period={period}"
    staging = out_dir / f".staging-{table}-{partition}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    path = staging / "data_0.parquet"
    con.execute(
        f"COPY (SELECT * EXCLUDE (period) FROM {table} WHERE period = $period ORDER BY {order}) "
        "TO $path (FORMAT parquet)",
        {"period": period, "path": str(path)},
    )
    return _swap_in(staging, out_dir / table / partition) / path.name


def _swap_in(staging: Path, final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    retired = final.parent.parent / f".retired-{final.parent.name}-{final.name}"
    shutil.rmtree(retired, ignore_errors=True)
    if final.exists():
        final.rename(retired)
    staging.rename(final)
    shutil.rmtree(retired, ignore_errors=True)
    return final
