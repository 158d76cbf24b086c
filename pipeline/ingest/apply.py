"""Applying a staged batch inside the run's transaction: R1 dedup (sql/dedup.sql), the R5
recount, storing attempts and quarantine (sql/store_batch.sql), and the per-file
accounting (lines read = accepted + duplicates + quarantined).
"""

from __future__ import annotations

import duckdb

from core.attempt_store import ATTEMPTS, attempts_of_runs, prepare_run_rows
from core.db import insert_many, run_script, sql_text
from core.timing import step
from pipeline.ingest.files import FileResult, input_name
from pipeline.ingest.recounting import Recounter, no_recount, recount_from_staged, recount_new_attempts
from pipeline.ingest.staging import StagedBatch


def apply_staged(
    con: duckdb.DuckDBPyConnection, batch: StagedBatch, run_id: int, recounter: Recounter = no_recount
) -> list[FileResult]:
    """Dedup and store the staged, parsed batch. Call inside the run's transaction."""
    if not batch.staged:
        return list(batch.skipped)
    prepare_run_rows(con, ATTEMPTS)
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
        run_script(con, "store_batch.sql", {"run_id": run_id})
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


def bind_stored_twins(con: duckdb.DuckDBPyConnection) -> None:
    """``stored_keys`` (the stored attempts' keys that valid records of ``parsed`` share, with
    their runs) and ``stored_twins`` (those attempts' ids, content hashes and lines), for
    dedup.sql: the probe reads 8 bytes a stored attempt, and only the runs holding a matching
    key are opened (nearly always none)."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE stored_keys AS SELECT DISTINCT event_key, run_id FROM attempt_keys "
        "WHERE event_key IN (SELECT hash(event_id) FROM parsed WHERE problem IS NULL)"
    )
    runs = [int(r) for (r,) in con.execute("SELECT DISTINCT run_id FROM stored_keys ORDER BY 1").fetchall()]
    con.execute(
        "CREATE OR REPLACE TEMP TABLE stored_twins AS "
        "SELECT event_id, content_sha256, source_file, source_line FROM ("
        + attempts_of_runs(con, runs)
        + ") WHERE hash(event_id) IN (SELECT event_key FROM stored_keys)"
    )


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
        results.append(FileResult(str(path), sha, size, lines, accepted, duplicates, quarantined))
    return results
