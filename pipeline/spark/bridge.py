"""DuckDB side of ``--engine spark``: hand the rating scope to Spark, take the rated rows back.

Called by :func:`pipeline.rate.rate_scope` inside the run's transaction, in place of running
``rate.sql`` in DuckDB: it leaves the same temp table ``new_rated`` behind, so replacing
``rated_attempts``, refreshing statement lines and the ledger are the DuckDB code, unchanged.

The exchange is Parquet in a fresh work directory (under ``$INFERGATE_SPARK_WORKDIR`` if set,
else the system temp dir), removed afterwards, and by the next run on the database if a kill
left it (:func:`exchange_directory`). On a cluster that directory must be a path that
the driver (where DuckDB runs) and every executor see alike, e.g. a shared mount.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from core.db import sql_literal
from core.errors import BillingError
from pipeline.lake import database_path
from pipeline.spark import SparkEngineError, exchange, spark_error_line
from pipeline.spark.rating import ATTEMPT_COLUMNS, REFERENCE_TABLES, RatingInputs, rate, write_rated
from pipeline.spark.session import get_session


def _copy(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> None:
    """``COPY (query) TO path`` as Parquet (DuckDB writes TIMESTAMPTZ as a UTC instant)."""
    con.execute(f"COPY ({query}) TO {sql_literal(str(path))} (FORMAT parquet)")


def export_inputs(con: duckdb.DuckDBPyConnection, work: Path, attempts_uri: str | None) -> RatingInputs:
    """Write the scope, the scoped attempts (unless ``attempts_uri`` is given) and the reference data."""
    _copy(con, "SELECT account_id, request_id FROM rating_scope", work / "scope.parquet")
    if attempts_uri is None:
        _copy(con, f"SELECT {', '.join(ATTEMPT_COLUMNS)} FROM scoped_attempts", work / "attempts.parquet")
        attempts_uri = exchange.spark_uri(work / "attempts.parquet")
    reference = work / "reference"
    reference.mkdir()
    for table in REFERENCE_TABLES:
        _copy(con, f"SELECT * FROM {table}", reference / f"{table}.parquet")
    # file:// URIs, not bare paths: under a cluster's fs.defaultFS (hdfs://...) a bare path names
    # another file system than the exchange directory DuckDB wrote to and reads back from
    return RatingInputs(
        attempts=attempts_uri,
        scope=exchange.spark_uri(work / "scope.parquet"),
        reference_dir=exchange.spark_uri(reference),
    )


def load_rated(con: duckdb.DuckDBPyConnection, out: Path) -> None:
    """``new_rated`` from Spark's Parquet, typed as ``rated_attempts`` (less rated_run_id)."""
    con.execute("CREATE OR REPLACE TEMP TABLE new_rated AS SELECT * EXCLUDE (rated_run_id) FROM rated_attempts LIMIT 0")
    expected = [row[0] for row in con.execute("DESCRIBE new_rated").fetchall()]
    if not (out / "_SUCCESS").is_file():  # never read a missing output as "nothing rated"
        raise SparkEngineError(f"Spark rating wrote no committed output in {out}")
    files = sorted(out.glob("*.parquet"))
    if not files:
        return  # an empty scope: Spark may write no part file at all
    source = f"read_parquet({sql_literal(str(out / '*.parquet'))})"
    found = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
    if sorted(found) != sorted(expected):
        raise SparkEngineError(f"Spark output columns {found} differ from rated_attempts {expected}")
    con.execute(f"INSERT INTO new_rated BY NAME SELECT * FROM {source}")


@contextmanager
def exchange_directory(con: duckdb.DuckDBPyConnection) -> Iterator[Path]:
    """A fresh exchange directory for ``con``'s database (:mod:`pipeline.spark.exchange`)."""
    try:
        db_path: Path | None = database_path(con)
    except ValueError:  # an in-memory database
        db_path = None
    with exchange.exchange_directory(db_path) as work:
        yield work


@contextmanager
def spark_failures(what: str) -> Iterator[None]:
    """Any error of Spark's (no JVM, py4j, a failed task) as one line for the CLI, the cause kept."""
    try:
        yield
    except BillingError:  # ours already: one line (missing input, a refused file, ...)
        raise
    except Exception as exc:
        raise SparkEngineError(f"Spark {what} failed: {spark_error_line(exc)}") from exc


def rate_on_spark(con: duckdb.DuckDBPyConnection, attempts_uri: str | None = None) -> None:
    """Rate ``rating_scope`` with Spark; attempts from DuckDB, or from ``attempts_uri`` (Parquet)."""
    with exchange_directory(con) as work:
        inputs = export_inputs(con, work, attempts_uri)
        with spark_failures("rating"):
            spark = get_session()
            write_rated(rate(spark, inputs), exchange.spark_uri(work / "rated"))
        load_rated(con, work / "rated")
