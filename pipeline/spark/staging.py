"""Staging a batch with validation on the executors: what ``--engine spark`` runs for ingest.

The driver hashes the files (the executors do, for a ``--logs`` URI) and skips those ingested
before, as the DuckDB path does (:func:`pipeline.ingest.staging.select_new`). Spark parses the
rest on its executors (:mod:`pipeline.spark.remote`: each file a task running the DuckDB
path's own staging and parse.sql, writing its rows as Parquet into the exchange directory); DuckDB loads it as
the TEMP table ``parsed``, and the R5 counts the tasks made (every usage-less billable
record, counted before dedup by the same code and tokenizers) as ``staged_recounts``. From
there the run is the DuckDB path's code: dedup, storing and the per-file accounting read
``parsed``; the recount keeps the counts of the records dedup found new.

``staged_lines`` holds only the lines dedup may quote: every line of a file holding a record
whose event_id repeats with other content, in the batch or in the history (a
``duplicate_conflict`` is quarantined with its redacted record, and an attempt stored before
the canonical content hash is compared by its minified line). Such files are rare (a resent
file with edited records) and are staged again, by tasks. No prompt text travels
otherwise. So the driver no longer reads, frames, validates or recounts lines; it still
receives every parsed row (dedup and storage on the executors are issue 15's next steps).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import duckdb

from core.attempt_store import parquet_source
from core.timing import step
from pipeline.ingest.apply import bind_stored_twins
from pipeline.ingest.files import is_uri
from pipeline.ingest.staging import (
    StagedBatch,
    create_staging,
    parse_staged,
    select_new,
    select_new_files,
)
from pipeline.spark import SparkEngineError
from pipeline.spark.bridge import exchange_directory, spark_failures
from pipeline.spark.parse import KEY_COLUMNS, RECOUNT_COLUMNS
from pipeline.spark.session import get_session


def stage_files_on_spark(
    con: duckdb.DuckDBPyConnection,
    paths: Sequence[Path | str],
    on_file: Callable[[Path], None] | None = None,
    ts_latest: datetime | None = None,
    memory_limit: str | None = None,
) -> StagedBatch:
    """:func:`pipeline.ingest.stage_files` with the parsing done by Spark's executors.

    Leaves the same TEMP tables behind (``parsed`` row for row as the DuckDB path's, tested by
    tests/spark/test_parse_on_executors.py; ``staged_lines`` with the lines the driver reads).
    No Spark session is started when every file was ingested before. ``memory_limit``: the
    run's ``--memory-limit``, given to each task's DuckDB (a line that fits it on one engine
    fits it on the other; None: the tasks' default, 2GB). ``paths``: local paths, or URIs
    (``s3a://...``, from :func:`pipeline.spark.remote.files_for_day`) that only the cluster
    reads: those are hashed on the executors too (:mod:`pipeline.spark.remote`).
    """
    create_staging(con)
    uris = [p for p in paths if isinstance(p, str) and is_uri(p)]
    if uris and len(uris) != len(paths):
        raise SparkEngineError("a batch is either local paths or URIs, not both")
    staged: Sequence[tuple[int, Path | str, str, int]]
    if uris:
        from pipeline.spark import remote

        with step("hash"), spark_failures("hashing the logs"):
            hashed = remote.hash_files(get_session(), uris)
        staged, skipped = select_new(con, [(uri, *hashed[uri]) for uri in uris])
    else:
        staged, skipped = select_new_files(con, [Path(p) for p in paths])
    # the path as given, as the DuckDB path reads it: a reader's error quoted in a quarantine
    # message names the file so (on a cluster, give --logs as an absolute path, or a URI)
    files = [(order, str(path), sha) for order, path, sha, _ in staged]
    with step("parse", after="after_parse"):
        _parse_on_executors(con, files, ts_latest, memory_limit)
        if on_file and not uris:
            for _, path, _, _ in staged:
                on_file(Path(path))
    _stage_files_with_conflicts(con, files, memory_limit)
    return StagedBatch(tuple(staged), tuple(skipped), recounted=True, twins_bound=True)


def _parse_on_executors(
    con: duckdb.DuckDBPyConnection,
    files: Sequence[tuple[int, str, str]],
    ts_latest: datetime | None,
    memory_limit: str | None,
) -> None:
    """``parsed`` and ``staged_recounts`` of ``files`` (``(file_order, path or URI, sha256)``),
    validated by the executors, each file a task writing its rows as one Parquet part into the
    exchange directory (no row passes through the JVM), loaded here. Nothing is parsed on the
    driver: ``parse_staged`` of nothing creates the typed, empty ``parsed`` and the macros."""
    from pipeline.spark import remote

    parse_staged(con)
    if not files:
        return
    with exchange_directory(con) as work:
        (work / "parsed").mkdir()
        (work / "spill").mkdir()  # the tasks' copies and DuckDB spills: raw lines, removed with the exchange
        with spark_failures("parsing"):
            parts, _ = remote.parse_files(
                get_session(), files, work / "parsed", ts_latest, memory_limit, work / "spill"
            )
        _load_parsed(con, parts)


def _load_parsed(con: duckdb.DuckDBPyConnection, parts: Sequence[Path]) -> None:
    """``parsed`` and ``staged_recounts`` (the executors' R5 counts) from their Parquet, by name."""
    counts = ", ".join(RECOUNT_COLUMNS)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE staged_recounts (file_order INTEGER, line_no BIGINT, "
        "est_input_tokens BIGINT, est_output_tokens BIGINT, est_tokenizer VARCHAR)"
    )
    if not parts:
        return  # no line in any file: Spark may write no part file at all
    source = parquet_source(parts)
    keys = ", ".join(KEY_COLUMNS)
    con.execute(f"INSERT INTO parsed BY NAME SELECT * EXCLUDE ({counts}, {keys}) FROM {source}")
    con.execute(
        f"INSERT INTO staged_recounts SELECT file_order, line_no, {counts} FROM {source} "
        "WHERE est_tokenizer IS NOT NULL"
    )


# files holding a valid record whose event_id is also, with other content, in the batch or stored
FILES_WITH_CONFLICTS = """
WITH valid AS (
    SELECT file_order, event_id, content_sha256, hash(event_id) AS event_key FROM parsed WHERE problem IS NULL
),
repeated AS (SELECT event_key FROM valid GROUP BY event_key HAVING count(DISTINCT content_sha256) > 1),
twins AS (
    SELECT event_key, event_id, content_sha256 FROM valid WHERE event_key IN (SELECT event_key FROM repeated)
    UNION ALL
    SELECT hash(event_id), event_id, content_sha256 FROM stored_twins
)
SELECT DISTINCT v.file_order
FROM valid v JOIN twins t ON t.event_key = v.event_key AND t.event_id = v.event_id
WHERE left(t.content_sha256, 32) <> left(v.content_sha256, 32)  -- stored: 32 hex digits (migration 026)
ORDER BY 1
"""


def _stage_files_with_conflicts(
    con: duckdb.DuckDBPyConnection, files: Sequence[tuple[int, str, str]], memory_limit: str | None
) -> None:
    """Stage every line of the files dedup will need whole (see the module doc), by tasks
    (``staged_lines`` is empty before: the executors send no lines). Binds ``stored_twins``,
    which dedup then reuses (``StagedBatch.twins_bound``)."""
    bind_stored_twins(con)
    conflicts = {order for (order,) in con.execute(FILES_WITH_CONFLICTS).fetchall()}
    if not conflicts:
        return
    from pipeline.spark import remote

    with exchange_directory(con) as work:
        (work / "lines").mkdir()
        (work / "spill").mkdir()
        wanted = [f for f in files if f[0] in conflicts]
        with spark_failures("staging lines"):
            parts = remote.stage_lines(get_session(), wanted, work / "lines", memory_limit, work / "spill")
        con.execute(f"INSERT INTO staged_lines SELECT * FROM {parquet_source(parts)}")
