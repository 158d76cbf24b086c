"""Generate the Spark SQL of the rating rules from ``sql/rate.sql`` (one source of truth).

``rate.sql`` is written in DuckDB's dialect and names only logical tables; sqlglot transpiles
it to Spark SQL, which is committed as ``sql/rate.spark.sql`` so that a review sees exactly
what a cluster runs and a test fails when it is stale. The sqlglot version is pinned exactly
(in the ``spark`` extra and here): another version may print different, even differently
behaving, SQL, so generating with any other version is refused.

    python -m pipeline.spark.sqlgen          # rewrite sql/rate.spark.sql  (make spark-sql)
    python -m pipeline.spark.sqlgen --check  # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version
from pathlib import Path

from core.db import sql_text
from pipeline.spark import SparkEngineError

SQLGLOT_PIN = "30.30.0"  # keep equal to the pin of the spark extra in pyproject.toml
SOURCE = "rate.sql"
TARGET = "rate.spark.sql"
SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
HEADER = (
    "-- GENERATED from pipeline/sql/rate.sql by sqlglot {version} (DuckDB -> Spark): do not edit.\n"
    "-- Edit rate.sql, then run `make spark-sql`; tests/spark fails while this file is stale.\n"
)


def generate(source: str) -> str:
    """Spark SQL for the DuckDB-dialect ``source``; raises where sqlglot cannot express it."""
    import sqlglot
    from sqlglot.errors import ErrorLevel

    found = version("sqlglot")
    if found != SQLGLOT_PIN:
        raise SparkEngineError(f"sqlglot {found} is installed, the Spark SQL is generated with {SQLGLOT_PIN}")
    # RAISE: an unsupported construct must stop generation, never become approximate SQL.
    # comments=False: sqlglot re-attaches comments at odd places; rate.sql is the commented text.
    statements = sqlglot.transpile(
        source, read="duckdb", write="spark", pretty=True, comments=False, unsupported_level=ErrorLevel.RAISE
    )
    if len(statements) != 1:
        raise SparkEngineError(f"{SOURCE} must hold exactly one statement, found {len(statements)}")
    return HEADER.format(version=SQLGLOT_PIN) + statements[0] + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate sql/rate.spark.sql from sql/rate.sql.")
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed file is stale")
    args = parser.parse_args(argv)
    fresh = generate(sql_text(SOURCE))
    target = SQL_DIR / TARGET
    current = target.read_text(encoding="utf-8") if target.exists() else ""
    if args.check:
        if current != fresh:
            print(f"{target} is stale: run `make spark-sql`", file=sys.stderr)
            return 1
        print(f"{target} is up to date")
        return 0
    if current != fresh:
        target.write_text(fresh, encoding="utf-8")
        print(f"wrote {target}")
    else:
        print(f"{target} unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
