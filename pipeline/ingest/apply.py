"""Applying a staged batch inside the run's transaction: R1 dedup (sql/dedup.sql), the R5
recount, storing attempts and quarantine (sql/store_batch.sql), and the per-file
accounting (lines read = accepted + duplicates + quarantined). On the Spark path ``parsed``
holds only the rows dedup must look at (pipeline/spark/staging.py); the other valid rows are
stored from the executors' parts, and each file's lines are the tasks' counts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb

from core.attempt_store import (
    ATTEMPT_KEYS,
    ATTEMPTS,
    attempts_of_runs,
    database_file,
    fold_stored_keys,
    list_run_parts,
    parquet_source,
    prepare_run_rows,
    store_run_rows,
    typed_rows,
)
from core.db import insert_many, run_script, sql_literal, sql_text
from core.timing import step
from pipeline.ingest.files import FileResult, input_name
from pipeline.ingest.recounting import Recounter, no_recount, recount_from_staged, recount_new_attempts
from pipeline.ingest.staging import StagedBatch
from pipeline.rate import note_probed_scope


def apply_staged(
    con: duckdb.DuckDBPyConnection, batch: StagedBatch, run_id: int, recounter: Recounter = no_recount
) -> list[FileResult]:
    """Dedup and store the staged, parsed batch. Call inside the run's transaction."""
    if not batch.staged:
        return list(batch.skipped)
    prepare_run_rows(con, ATTEMPTS)
    prepare_run_rows(con, ATTEMPT_KEYS)
    with step("dedup", after="after_dedup"):
        if not batch.twins_bound:  # under the run lock since staging: no run stored keys meanwhile
            bind_stored_twins(con)
        con.execute("CREATE OR REPLACE TEMP TABLE deduped AS " + sql_text("dedup.sql"))
    with step("recount", after="after_recount"):
        if batch.recounted:
            recount_from_staged(con)
        else:
            recount_new_attempts(con, recounter)
    with step("store"):
        bind_new_attempts(con, batch)
        run_script(con, "store_batch.sql", {"run_id": run_id}, when={"findings": _has_findings(con)})
        fold_stored_keys(con)  # the keys stored before migration 045 (once), into this run's file
        if batch.parts:
            store_executor_attempts(con, run_id, batch.store)
    results = _file_results(con, batch)
    insert_many(
        con,
        "INSERT INTO ingested_files VALUES (?, ?, ?, ?, ?, ?, ?, ?, now())",
        [
            (r.sha256, input_name(r.path), r.path, run_id, r.lines_read, r.accepted, r.duplicates, r.quarantined)
            for r in results
            if not r.skipped
        ],
    )
    return results + list(batch.skipped)


def _has_findings(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether store_batch.sql's quarantine insert has a row to insert: a line parse.sql found
    a problem with, or a duplicate conflict dedup.sql found."""
    row = con.execute(
        "SELECT EXISTS (SELECT 1 FROM parsed WHERE problem IS NOT NULL) "
        "OR EXISTS (SELECT 1 FROM deduped WHERE verdict = 'duplicate_conflict')"
    ).fetchone()
    return bool(row and row[0])


def bind_stored_twins(con: duckdb.DuckDBPyConnection) -> None:
    """``stored_keys`` (the stored attempts' keys that valid records of the batch share, with
    their runs) and ``stored_twins`` (:func:`bind_twins_of_stored_keys`), for dedup.sql: the
    probe reads 8 bytes a stored attempt, and only the runs holding a matching key are opened
    (nearly always none). (The Spark path probes on Spark: pipeline/spark/history.py.)"""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE stored_keys AS SELECT DISTINCT event_key, run_id FROM attempt_keys "
        "WHERE event_key IN (SELECT hash(event_id) FROM parsed WHERE problem IS NULL)"
    )
    bind_twins_of_stored_keys(con)


def bind_twins_of_stored_keys(con: duckdb.DuckDBPyConnection) -> None:
    """``stored_twins``: the ids, content hashes and lines of the stored attempts whose key is
    in ``stored_keys``, read from the files of their runs only."""
    runs = [int(r) for (r,) in con.execute("SELECT DISTINCT run_id FROM stored_keys ORDER BY 1").fetchall()]
    con.execute(
        "CREATE OR REPLACE TEMP TABLE stored_twins AS "
        "SELECT event_id, content_sha256, source_file, source_line FROM ("
        + attempts_of_runs(con, runs)
        + ") WHERE hash(event_id) IN (SELECT event_key FROM stored_keys)"
    )


_RECOUNTED = ", ".join(
    f"CASE WHEN est_tokenizer IS NOT NULL THEN {c} END AS {c}" for c in ("est_input_tokens", "est_output_tokens")
)


def bind_new_attempts(con: duckdb.DuckDBPyConnection, batch: StagedBatch) -> None:
    """TEMP VIEWs ``new_attempts``, the records dedup found new, with their R5 counts and
    lookup keys, and ``stored_new_attempts``, their stored columns (stored_attempts.sql), which
    store_batch.sql stores. With the Spark path's parts (``batch.parts``), also
    ``executor_attempts``: the valid rows of the parts that ``parsed`` does not hold and
    Spark's probe did not leave out (:data:`LEFT_OUT_FILE`, see pipeline/spark/history.py),
    new by dedup.sql's own rule (neither repeated nor stored, or the first of a repeat the
    probe decided), with the counts and keys their task made (a count without a tokenizer is
    kept by neither path); :func:`store_executor_attempts` stores them."""
    con.execute(
        "CREATE OR REPLACE TEMP VIEW new_attempts AS "
        "SELECT d.* EXCLUDE (verdict, first_file, first_line), r.est_input_tokens, r.est_output_tokens, "
        "r.est_tokenizer FROM deduped d LEFT JOIN recounts r USING (event_id) WHERE d.verdict = 'new'"
    )
    con.execute("CREATE OR REPLACE TEMP VIEW stored_new_attempts AS " + sql_text("stored_attempts.sql"))
    if batch.parts:
        left_out_file = sql_literal(str(batch.parts[0].parent.parent / LEFT_OUT_FILE))
        con.execute(
            "CREATE OR REPLACE TEMP VIEW executor_attempts AS "
            f"SELECT * EXCLUDE (est_input_tokens, est_output_tokens), {_RECOUNTED} "
            f"FROM {parquet_source(batch.parts)} "
            f"WHERE {_NOT_LEFT_OUT.replace('$left_out', left_out_file)}"
        )


def store_executor_attempts(con: duckdb.DuckDBPyConnection, run_id: int, store: StoreParts | None = None) -> None:
    """Store the parts' rows of ``executor_attempts`` without copying them into the driver's
    DuckDB: the rows, with the projection and masking of stored_attempts.sql, into the run's
    attempts lake files, and their keys into its attempt_keys files, listed in this
    transaction. Rating reads them from those files like any stored run's; a run that fails
    from here on leaves the files unlisted, and the next run removes them.

    With ``store`` (the Spark path: :func:`pipeline.spark.staging.store_on_executors`), each
    part's rows are written by a task, as :data:`EXECUTOR_STORED` with the part's path and
    the file of ``left_out`` filled in, and their keys by another (:data:`EXECUTOR_KEYS`);
    the files are listed as the run's parts 1.. (:func:`core.attempt_store.list_run_parts`):
    no attempt row and no key passes through the driver; the driver's own new rows
    (``run_attempts``, ``run_attempt_keys``) are part 0. Without it, one COPY writes both into
    the run's one file. Without a database file (in memory) the rows go into ``run_attempts``
    like the driver's."""
    stored = "WITH new_attempts AS (SELECT * FROM executor_attempts)\n" + sql_text("stored_attempts.sql")
    in_memory = database_file(con) is None
    if in_memory or store is None:  # the driver stores the rows, and so their keys
        con.execute(
            f"INSERT INTO {ATTEMPT_KEYS.run_table} SELECT event_key, request_key, $run FROM executor_attempts",
            {"run": run_id},
        )
    if in_memory:
        con.execute(f"INSERT INTO run_attempts BY NAME SELECT *, $run AS run_id FROM ({stored})", {"run": run_id})
        return
    if store is None:
        store_run_rows(con, ATTEMPTS, run_id, extra=stored)
        return
    # the run's requests that earlier runs hold attempts of, while run_attempts holds the
    # driver's rows: the rating's scope, found by the staging's probe (pipeline/rate.py)
    note_probed_scope(con, run_id)
    # part 0 of each: the few rows dedup found new on the driver, and their keys
    store_run_rows(con, ATTEMPTS, run_id)
    store_run_rows(con, ATTEMPT_KEYS, run_id)
    per_part = f"WITH new_attempts AS ({EXECUTOR_STORED})\n" + sql_text("stored_attempts.sql")
    list_run_parts(con, ATTEMPTS, run_id, store(typed_rows(con, ATTEMPTS, run_id, per_part)))
    list_run_parts(con, ATTEMPT_KEYS, run_id, store(EXECUTOR_KEYS.replace("$run", str(int(run_id)))))


#: The exchange directory's file of what no task stores (Spark's probe writes it,
#: pipeline/spark/history.py ``left_out``): the keys of the records the driver loads (dedup
#: decides them) and of the stored records' duplicates, and the batch's repeats after their
#: first by file and line (the duplicates the probe decided).
LEFT_OUT_FILE = "left_out.parquet"

#: A valid row of the parts that a task stores: neither its key nor itself left out (``$left_out``:
#: the file, keys with a NULL line_no, rows with a NULL key: a batch's repeats after their first).
#: The keys as the parts type them (Spark writes UBIGINT keys as DECIMAL(20,0), which holds every
#: one exactly).
_NOT_LEFT_OUT = (
    "problem IS NULL AND event_key NOT IN (SELECT CAST(event_key AS UBIGINT) FROM read_parquet($left_out) "
    "WHERE event_key IS NOT NULL) AND {'f': file_order, 'l': line_no} NOT IN (SELECT {'f': file_order, "
    "'l': line_no} FROM read_parquet($left_out) WHERE event_key IS NULL)"
)

#: The rows of one part (``$part``) that a task stores: valid, and not left out (``$left_out``,
#: :data:`LEFT_OUT_FILE`): ``executor_attempts`` of one part.
EXECUTOR_STORED = (
    f"SELECT * EXCLUDE (est_input_tokens, est_output_tokens), {_RECOUNTED} FROM read_parquet($part) "
    f"WHERE {_NOT_LEFT_OUT}"
)

#: The lookup keys of the rows of one part that a task stores (:data:`EXECUTOR_STORED`), with the
#: run (``$run``) that stores them: the part's file of the lake table ``attempt_keys``.
EXECUTOR_KEYS = f"SELECT event_key, request_key, CAST($run AS BIGINT) AS run_id FROM ({EXECUTOR_STORED})"

#: Writes each part's stored attempts by the given query (see :data:`EXECUTOR_STORED`); the
#: files written, complete, with their rows.
StoreParts = Callable[[str], list[tuple[Path, int]]]


def _file_results(con: duckdb.DuckDBPyConnection, batch: StagedBatch) -> list[FileResult]:
    counts = {
        row[0]: row[1:]
        for row in con.execute(
            """
            SELECT p.file_order,
                   count(*) AS lines_read,
                   count(*) FILTER (WHERE d.verdict = 'new') AS accepted,
                   count(*) FILTER (WHERE d.verdict = 'duplicate') AS duplicates,
                   count(*) FILTER (WHERE p.problem IS NOT NULL OR d.verdict = 'duplicate_conflict') AS quarantined
            FROM parsed p
            LEFT JOIN deduped d USING (file_order, line_no)
            GROUP BY p.file_order
            """
        ).fetchall()
    }
    results = []
    for order, path, sha, size in batch.staged:
        lines, accepted, duplicates, quarantined = counts.get(order, (0, 0, 0, 0))
        if batch.lines is not None:  # parsed holds some rows: every other one was accepted
            lines = batch.lines.get(order, 0)
            duplicates += (batch.duplicates or {}).get(order, 0)  # those the probe decided
            accepted = lines - duplicates - quarantined
        results.append(FileResult(str(path), sha, size, lines, accepted, duplicates, quarantined))
    return results
