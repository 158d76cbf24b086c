"""DuckDB side of ``--engine spark``: hand the rating scope to Spark, take the rated rows back.

Called by :func:`pipeline.rate.rate_scope` inside the run's transaction, in place of running
``rate.sql`` in DuckDB. For a run on a database file, the executors write the rated rows as
the run's lake files in the stored layout, which the driver lists (:func:`publish_rated`), and
``new_rated`` is a view over those files; else (a database in memory) Spark's output is loaded
into the temp table ``new_rated``. Either way replacing ``rated_attempts``, refreshing
statement lines and the ledger are the DuckDB code, unchanged.

The attempts Spark rates come from the first of: a Parquet dataset the caller names
(``--spark-attempts``); the run's own attempts lake files, when they hold the whole scope (a
nightly whose requests all began in its own run: :func:`pipeline.rate.own_attempt_files`),
hard-linked (else copied) into the exchange directory as they are; an export of DuckDB's
``scoped_attempts`` (a re-rate, an ingest-only run to catch up, a retry of an earlier day's
request: scopes reaching other runs' attempts).

The exchange is Parquet in a fresh work directory (under ``$INFERGATE_SPARK_WORKDIR`` if set,
else the system temp dir), removed afterwards, and by the next run on the database if a kill
left it (:func:`exchange_directory`). On a cluster that directory must be a path that
the driver (where DuckDB runs) and every executor see alike, e.g. a shared mount.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb

from core.attempt_store import (
    BOUNDS,
    RATED,
    computed_from,
    computed_mismatches,
    database_file,
    file_select,
    list_run_parts,
    parquet_source,
    refuse_mismatches,
    stored_columns,
    stored_table,
    typed_rows,
)
from core.db import sql_literal, table_exists
from core.errors import BillingError
from pipeline import rated_summary
from pipeline.lake import database_path
from pipeline.rate import NEW_RATED, drop_temp, ensure_issued_prices
from pipeline.spark import SparkEngineError, exchange, spark_error_line
from pipeline.spark.rating import ATTEMPT_COLUMNS, INPUT_TABLES, RatingInputs, count_requests, rate, write_rated
from pipeline.spark.session import get_session


def _copy(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> None:
    """``COPY (query) TO path`` as Parquet (DuckDB writes TIMESTAMPTZ as a UTC instant)."""
    con.execute(f"COPY ({query}) TO {sql_literal(str(path))} (FORMAT parquet)")


def share_files(files: Sequence[Path], folder: Path) -> Path:
    """``files`` in the exchange directory ``folder`` (made here), where the executors read:
    hard links when the lake and the exchange are on one file system (no byte is copied), else
    copies. Only the names in ``folder`` go when the exchange directory is removed."""
    folder.mkdir()
    for i, source in enumerate(files):
        target = folder / f"{i:06d}-{source.name}"  # the run's files, whatever their names
        try:
            os.link(source, target)
        except OSError:  # another file system (a shared mount for the exchange), or no links
            shutil.copyfile(source, target)
    return folder


def export_inputs(
    con: duckdb.DuckDBPyConnection,
    work: Path,
    attempts_uri: str | None,
    attempt_files: Sequence[Path] = (),
    earlier: str | None = None,
) -> RatingInputs:
    """Write the scope, the scoped attempts and the reference data. The attempts are not
    exported when ``attempts_uri`` is given (Spark reads it) or ``attempt_files``, Parquet
    files holding every attempt of the scope in the table's types (a nightly's own attempts
    lake files: :func:`pipeline.rate.own_attempt_files`), which are shared into ``work``.

    ``earlier``: a table of the other attempts in scope (a Spark nightly's probed scope,
    :func:`pipeline.rate._bind_probed_scope`), exported beside ``attempt_files`` (when it has
    any: a nightly's requests rarely began in an earlier run); then every request of those
    attempts is in scope, and no scope is written (nor read: the run's requests never pass
    through the driver)."""
    scope = None
    if earlier is None:
        _copy(con, "SELECT account_id, request_id FROM rating_scope", work / "scope.parquet")
        scope = exchange.spark_uri(work / "scope.parquet")
    extra = None
    if earlier is not None and con.execute(f"SELECT EXISTS (SELECT 1 FROM {earlier})").fetchone() == (True,):
        _copy(con, f"SELECT {', '.join(ATTEMPT_COLUMNS)} FROM {earlier}", work / "earlier.parquet")
        extra = exchange.spark_uri(work / "earlier.parquet")
    if attempts_uri is None and attempt_files:
        attempts_uri = exchange.spark_uri(share_files(attempt_files, work / "attempts"))
    if attempts_uri is None:
        _copy(con, f"SELECT {', '.join(ATTEMPT_COLUMNS)} FROM scoped_attempts", work / "attempts.parquet")
        attempts_uri = exchange.spark_uri(work / "attempts.parquet")
    reference = work / "reference"
    reference.mkdir()
    ensure_issued_prices(con)
    for table in INPUT_TABLES:
        _copy(con, f"SELECT * FROM {table}", reference / f"{table}.parquet")
    # file:// URIs, not bare paths: under a cluster's fs.defaultFS (hdfs://...) a bare path names
    # another file system than the exchange directory DuckDB wrote to and reads back from
    return RatingInputs(attempts=attempts_uri, scope=scope, reference_dir=exchange.spark_uri(reference), earlier=extra)


def _empty_new_rated(con: duckdb.DuckDBPyConnection) -> list[str]:
    """An empty TEMP table ``new_rated`` typed as ``rated_attempts`` (less rated_run_id); its columns."""
    drop_temp(con, NEW_RATED)
    con.execute(f"CREATE TEMP TABLE {NEW_RATED} AS SELECT * EXCLUDE (rated_run_id) FROM rated_attempts LIMIT 0")
    return [row[0] for row in con.execute(f"DESCRIBE {NEW_RATED}").fetchall()]


def rated_output(con: duckdb.DuckDBPyConnection, out: Path) -> list[Path]:
    """The Parquet files of Spark's committed rating output ``out`` (none: an empty scope),
    checked to hold the columns of ``rated_attempts`` (less rated_run_id) by their footers."""
    expected = [
        row[0] for row in con.execute("DESCRIBE SELECT * EXCLUDE (rated_run_id) FROM rated_attempts").fetchall()
    ]
    if not (out / "_SUCCESS").is_file():  # never read a missing output as "nothing rated"
        raise SparkEngineError(f"Spark rating wrote no committed output in {out}")
    files = sorted(out.glob("*.parquet"))
    if not files:
        return []  # an empty scope: Spark may write no part file at all
    found = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {parquet_source(files)}").fetchall()]
    if sorted(found) != sorted(expected):
        raise SparkEngineError(f"Spark output columns {found} differ from rated_attempts {expected}")
    return files


def load_rated(con: duckdb.DuckDBPyConnection, out: Path) -> None:
    """``new_rated`` from Spark's Parquet, typed as ``rated_attempts`` (less rated_run_id): the
    rated rows through the driver's DuckDB (a database without a file, which has no lake)."""
    _empty_new_rated(con)
    files = rated_output(con, out)
    if files:
        con.execute(f"INSERT INTO {NEW_RATED} BY NAME SELECT * FROM {parquet_source(files)}")


def publish_rated(
    con: duckdb.DuckDBPyConnection, run_id: int, work: Path, memory_limit: str | None = None
) -> list[Path]:
    """The run's rated rows as lake files written by the executors (issue 15): one task a file
    of Spark's rating output (``work/rated``) writes its rows with an in-task DuckDB, as the
    driver's DuckDB writes a run's rated file (the table's columns in order and types, cast,
    ``rated_run_id`` the run's, ordered by ``RATED.order``, ``PARQUET_OPTIONS``; since
    migration 039 without the charges and with the unit prices as text, each task checking
    that its rows' charges are tokens x unit price: the driver lists none otherwise), under a
    name of its task attempt renamed into place when complete; the driver renames the files
    into the lake as the run's parts 1.. and lists them in this transaction
    (:func:`core.attempt_store.list_run_parts`).

    Each task also computes, over the part it wrote, the small results the driver needs of the
    rated rows (:mod:`pipeline.rated_summary`: statement-line contributions, periods, held per
    reason, price versions, counts, digest, ts range) and returns them as text; the driver
    combines the listed parts' results into the summaries' TEMP tables and records the run's
    bounds (``lake_file_bounds``) from them, reading no rated row. ``new_rated`` becomes a TEMP
    VIEW over the listed files (the rows, for whoever asks; the rating's next stages read the
    summaries).

    A run that fails or is killed from here on leaves the files unlisted (in the exchange
    directory, or in the lake), and the next run removes them. The files listed."""
    from pipeline.spark import remote

    files = rated_output(con, work / "rated")
    empty = f"SELECT * EXCLUDE (rated_run_id) FROM {stored_table(con, RATED)} LIMIT 0"  # new_rated's types
    computed = computed_from(con, RATED) is not None
    query = f"{typed_rows(con, RATED, run_id, 'SELECT * FROM read_parquet($part)')} ORDER BY {RATED.order}"
    # each task summarizes its part read back as the views read a lake file (the charges
    # computed, the prices cast back), so the results, digest included, are new_rated's
    summaries = rated_summary.file_part_queries(con)
    # and, in the layout without the charges, counts the rows of its part of Spark's output
    # whose charges (or prices as text) would read back otherwise (check_computed's query, run
    # where the rows are): the driver lists no part of a run that has any
    check = computed_mismatches(con, RATED, "SELECT * FROM read_parquet($part)") if computed else None
    if check is not None:
        summaries.append(f"SELECT CAST(COLUMNS(*) AS VARCHAR) FROM ({check})")
    (work / "published").mkdir()
    (work / "spill").mkdir(exist_ok=True)
    with spark_failures("writing rated rows"):
        written, results = remote.store_summarized_parts(
            get_session(),
            files,
            work / "published",
            query,
            memory_limit,
            work / "spill",
            what="writing rated rows",
            summaries=summaries,
        )
    if check is not None:  # the last query's one row a part: (rows that would read back otherwise, first)
        mismatched = [(int(str(result[-1][0][0])), result[-1][0][1]) for result in results]
        results = [result[:-1] for result in results]
        refuse_mismatches(
            RATED, sum(n for n, _ in mismatched), min((first for n, first in mismatched if n and first), default=None)
        )
    listed = list_run_parts(con, RATED, run_id, written)
    # the listed parts' results (a part without rows is not listed, and adds nothing)
    rated_summary.combine(con, empty, [result for (_, rows), result in zip(written, results, strict=True) if rows])
    if listed and table_exists(con, BOUNDS):  # one row a run: its parts' range of ts, as for one file
        con.execute(
            f"INSERT INTO {BOUNDS} (table_name, run_id, ts_min, ts_max) "
            f"SELECT $folder, $run, ts_min, ts_max FROM {rated_summary.TOTALS.table}",
            {"folder": RATED.view, "run": run_id},
        )
    if not listed:
        _empty_new_rated(con)
        return []
    drop_temp(con, NEW_RATED)
    rows = f"SELECT {file_select(RATED, stored_columns(con, RATED), computed)} FROM {parquet_source(listed)} AS r"
    con.execute(f"CREATE TEMP VIEW {NEW_RATED} AS SELECT * EXCLUDE (rated_run_id) FROM ({rows})")
    return listed


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


def rate_on_spark(
    con: duckdb.DuckDBPyConnection,
    attempts_uri: str | None = None,
    attempt_files: Sequence[Path] = (),
    run_id: int | None = None,
    memory_limit: str | None = None,
    earlier: str | None = None,
) -> tuple[bool, int | None]:
    """Rate ``rating_scope`` with Spark; attempts from ``attempts_uri`` (Parquet), else from
    ``attempt_files`` (the run's lake files, when they are the scope), else exported from DuckDB.
    With ``earlier`` (a table of more attempts, beside ``attempt_files``), every request of
    the attempts is in scope, and ``rating_scope`` is not read (:func:`export_inputs`).

    With ``run_id`` and a database file, the executors write the rated rows as the run's lake
    files (:func:`publish_rated`; True); else they are loaded into ``new_rated`` (False), which
    the caller stores. And, with ``earlier``, the number of requests rated, which Spark counts
    (else None: the caller's scope table has them)."""
    with exchange_directory(con) as work:
        inputs = export_inputs(con, work, attempts_uri, attempt_files, earlier)
        requests = None
        with spark_failures("rating"):
            spark = get_session()
            write_rated(rate(spark, inputs), exchange.spark_uri(work / "rated"))
            if earlier is not None:  # (an empty scope: Spark may write no part file at all)
                rated = any((work / "rated").glob("*.parquet"))
                requests = count_requests(spark, exchange.spark_uri(work / "rated")) if rated else 0
        if run_id is not None and database_file(con) is not None:
            publish_rated(con, run_id, work, memory_limit)
            return True, requests
        load_rated(con, work / "rated")
        return False, requests
