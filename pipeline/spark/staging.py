"""Staging a batch with validation on the executors: what ``--engine spark`` runs for ingest.

The driver hashes the files (the executors do, for a ``--logs`` URI) and skips those ingested
before, as the DuckDB path does (:func:`pipeline.ingest.staging.select_new`). Spark parses the
rest on its executors (:mod:`pipeline.spark.remote`: each file a task running the DuckDB
path's own staging and parse.sql, writing its rows as Parquet into the exchange directory,
with the R5 counts of every usage-less billable record and the lookup keys of every valid
one, both made in the task by the DuckDB path's code).

The driver does not load every row, nor read the day's keys. After checking that the tasks'
DuckDB hashes as its own (:func:`check_key_probes`), it has Spark probe the stored keys (lake
files since migration 045) with the day's (:mod:`pipeline.spark.history`), and loads into the
TEMP table ``parsed`` only the rows dedup and store_batch.sql must see, which that Spark job
writes (:func:`load_special`): the quarantined ones, and the records whose event_id repeats in the
batch or is stored, unless the probe decided them (the same content throughout: duplicates, a
repeat's first new), or is that of a quarantine entry (masked or not). A resent day does not
reach the driver, only each file's count of duplicates.
dedup.sql, the recount (``staged_recounts``) and store_batch.sql run unchanged on those; every
other valid row not left out is new by dedup's own rule, and is stored by the task of its part: in the run's
transaction the probe's file of what no task stores is in the exchange directory, each task writes its
part's other valid rows with stored_attempts.sql's projection and masking as one Parquet file
(:func:`store_on_executors`), and the driver renames those files into the lake and lists them
as the run's attempts parts (:func:`pipeline.ingest.apply.store_executor_attempts`), so the
exchange directory lives until then (``StagedBatch.close``).

``staged_lines`` holds only the lines dedup may quote: every line of a file holding a record
whose event_id repeats with other content, in the batch or in the history (a
``duplicate_conflict`` is quarantined with its redacted record, and an attempt stored before
the canonical content hash is compared by its minified line). Such files are rare (a resent
file with edited records) and are staged again, by tasks. No prompt text travels
otherwise. So the driver no longer reads, frames, validates, recounts or dedups every line,
nor copies or writes the new attempts or their keys (tasks write those as the run's
``attempt_keys`` files): no attempt row and no key of one passes through it for ingest. Its
DuckDB writes the few rows dedup found new, and their keys, as the run's part 0. The same
probe names the day's requests that earlier runs hold attempts of (``probed_earlier``), from
which the rating takes its scope without reading the day's requests (pipeline/rate.py
``note_probed_scope``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

import duckdb

from core.attempt_store import ATTEMPT_KEYS, ATTEMPTS, listed_files, parquet_source, stored_table
from core.db import sql_literal
from core.timing import step
from pipeline.ingest.apply import LEFT_OUT_FILE, bind_twins_of_stored_keys
from pipeline.ingest.files import is_uri
from pipeline.ingest.staging import (
    StagedBatch,
    create_staging,
    parse_staged,
    select_new,
    select_new_files,
)
from pipeline.rate import PROBED_EARLIER
from pipeline.spark import SparkEngineError
from pipeline.spark.bridge import exchange_directory, spark_failures
from pipeline.spark.parse import KEY_COLUMNS, PROBE_KEY, RECOUNT_COLUMNS, VERSION_KEY, key_probe
from pipeline.spark.session import get_session


def stage_files_on_spark(
    con: duckdb.DuckDBPyConnection,
    paths: Sequence[Path | str],
    on_file: Callable[[Path], None] | None = None,
    ts_latest: datetime | None = None,
    memory_limit: str | None = None,
) -> StagedBatch:
    """:func:`pipeline.ingest.stage_files` with the parsing done by Spark's executors.

    Leaves the TEMP tables dedup reads behind, for the rows it must look at (see the module
    doc): ``parsed`` holds the quarantined and the special rows, row for row as the DuckDB
    path's (tested by tests/spark/test_parse_on_executors.py), ``staged_lines`` the lines the
    driver reads; the batch names the parts holding every row (the exchange directory stays
    until ``StagedBatch.close``). No Spark session is started when every file was ingested
    before. ``memory_limit``: the run's ``--memory-limit``, given to each task's DuckDB (a
    line that fits it on one engine fits it on the other; None: the tasks' default, 2GB).
    ``paths``: local paths, or URIs (``s3a://...``, from
    :func:`pipeline.spark.remote.files_for_day`) that only the cluster reads: those are hashed
    on the executors too (:mod:`pipeline.spark.remote`).
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
    with ExitStack() as kept:
        with step("parse", after="after_parse"):
            parts, lines, duplicates = _parse_on_executors(con, files, ts_latest, memory_limit, kept)
            if on_file and not uris:
                for _, path, _, _ in staged:
                    on_file(Path(path))
        _stage_files_with_conflicts(con, files, memory_limit)
        close = kept.pop_all().close  # the parts outlive staging: apply_staged stores from them
    store = functools.partial(store_on_executors, con, parts, memory_limit) if parts else None
    return StagedBatch(
        tuple(staged),
        tuple(skipped),
        recounted=True,
        twins_bound=True,
        parts=tuple(parts),
        lines=lines,
        duplicates=duplicates,
        close=close,
        store=store,
    )


def store_on_executors(
    con: duckdb.DuckDBPyConnection, parts: Sequence[Path], memory_limit: str | None, query: str
) -> list[tuple[Path, int]]:
    """Have a task write each part's rows by ``query`` ($part, $left_out: the stored
    attempts of :data:`pipeline.ingest.apply.EXECUTOR_STORED`, or their keys) into a fresh
    folder of the parts' exchange directory, which lives until the run's transaction ends;
    ``(file, rows)`` for the driver to list. ``left_out`` is there since
    :func:`load_special` (Spark's probe wrote it: 8 bytes a key left out, and a file and line a
    repeat left out)."""
    from pipeline.spark import remote

    work = parts[0].parent.parent  # the exchange directory of the parts (parsed/ in it)
    keys = work / LEFT_OUT_FILE
    out = work / f"stored-{sum(1 for _ in work.glob('stored-*')) + 1}"
    out.mkdir()
    with spark_failures("storing attempts"):
        return remote.store_parts(get_session(), parts, out, query, memory_limit, work / "spill", keys)


def _parse_on_executors(
    con: duckdb.DuckDBPyConnection,
    files: Sequence[tuple[int, str, str]],
    ts_latest: datetime | None,
    memory_limit: str | None,
    kept: ExitStack,
) -> tuple[list[Path], dict[int, int], dict[int, int]]:
    """Validate ``files`` (``(file_order, path or URI, sha256)``) on the executors, each file a
    task writing its rows as one Parquet part into an exchange directory that ``kept`` removes
    (no row passes through the JVM); load the rows dedup needs (:func:`load_special`). Nothing
    is parsed on the driver: ``parse_staged`` of nothing creates the typed, empty ``parsed``
    and the macros. The parts, each file's rows as the tasks counted them, and each file's
    duplicates decided by Spark's probe."""
    from pipeline.spark import remote

    parse_staged(con)
    parts: list[Path] = []
    lines: dict[int, int] = {}
    if files:
        work = kept.enter_context(exchange_directory(con))
        (work / "parsed").mkdir()
        (work / "spill").mkdir()  # the tasks' copies and DuckDB spills: raw lines, removed with the exchange
        with spark_failures("parsing"):
            parts, lines = remote.parse_files(
                get_session(), files, work / "parsed", ts_latest, memory_limit, work / "spill"
            )
    return parts, lines, load_special(con, parts)


def check_key_probes(parts: Sequence[Path]) -> None:
    """Refuse parts whose task's DuckDB hashes lookup keys otherwise than this one: its keys
    would miss the stored twins, and duplicates would be stored without a word."""
    import pyarrow.parquet as pq

    probe = key_probe()
    for part in parts:
        metadata = pq.read_schema(part).metadata or {}
        theirs = metadata.get(PROBE_KEY.encode(), b"").decode()
        if theirs != probe:
            version = metadata.get(VERSION_KEY.encode(), b"an unknown version").decode()
            raise SparkEngineError(
                f"the executors' DuckDB {version} hashes lookup keys differently from the driver's "
                f"{duckdb.__version__}: install duckdb=={duckdb.__version__} on the executors ({part.name})"
            )


def load_special(con: duckdb.DuckDBPyConnection, parts: Sequence[Path]) -> dict[int, int]:
    """Of the parts' rows, load into ``parsed`` (and their R5 counts into ``staged_recounts``)
    only those dedup and store_batch.sql must see; bind ``stored_twins`` for dedup. Returns
    each file's duplicates that Spark's probe decided (``file_order``: count): records
    ``dedup.sql`` would call ``duplicate`` without reading their lines (a stored record sent
    again with the same content, a batch's repeats after their first), so neither they nor
    their stored twins reach the driver.

    Spark finds the special keys (:func:`pipeline.spark.history.probe_history`): (a) repeated
    in the batch or (b) stored before, less the keys of the duplicates it decided; (c) the
    event_id of an unresolved quarantine entry or (d) of a quarantined line of this batch, or
    an id spelling the mask (store_batch.sql resolves such an entry when the record is now new,
    and reads the new records from ``deduped``). The driver receives the stored keys of the
    special records with their runs (``stored_keys``), never the day's or the history's keys.
    The same Spark job writes the parts' quarantined rows and rows with a special key, which
    the driver loads, and the file of what no task stores (:data:`LEFT_OUT_FILE`), which the
    driver moves into place without reading it; every other valid row is new by dedup.sql's
    own rule, and is stored from the parts (pipeline/ingest/apply.py). A hash collision only
    loads a row more: dedup compares event_ids.
    """
    counts = ", ".join(RECOUNT_COLUMNS)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE staged_recounts (file_order INTEGER, line_no BIGINT, "
        "est_input_tokens BIGINT, est_output_tokens BIGINT, est_tokenizer VARCHAR)"
    )
    con.execute("CREATE OR REPLACE TEMP TABLE stored_keys (event_key UBIGINT, run_id BIGINT)")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {PROBED_EARLIER} "
        "(account_id VARCHAR, request_id VARCHAR, run_id BIGINT, by_new BOOLEAN)"
    )
    check_key_probes(parts)
    if not parts:  # no line in any file: Spark may write no part file at all
        bind_twins_of_stored_keys(con)
        return {}
    from pipeline.spark import history

    work = parts[0].parent.parent  # the exchange directory of the parts (parsed/ in it)
    quarantined = work / "quarantined_ids.parquet"
    con.execute(
        "COPY (SELECT event_id FROM quarantine WHERE resolved_run_id IS NULL "
        "AND reason <> 'duplicate_conflict' AND event_id IS NOT NULL) "
        f"TO {sql_literal(str(quarantined))} (FORMAT parquet)"
    )
    stored_files = listed_files(con, ATTEMPT_KEYS)
    table = stored_table(con, ATTEMPT_KEYS)
    if con.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchone() == (True,):
        # keys not yet moved into a file (the first run after migration 045, or after a DuckDB
        # upgrade changed hash()): the next run that stores attempts moves them (once)
        unfolded = work / "stored_keys_in_table.parquet"
        con.execute(f"COPY (SELECT * FROM {table}) TO {sql_literal(str(unfolded))} (FORMAT parquet)")
        stored_files.append(unfolded)
    with step("probe"), spark_failures("probing the stored keys"):
        probed = history.probe_history(
            get_session(),
            parts,
            stored_files,
            quarantined,
            work / "probe",
            lambda runs: listed_files(con, ATTEMPTS, runs=runs),  # only the runs holding a key the day shares
        )
    earlier = history.output_files(probed.earlier)
    if earlier:
        con.execute(
            f"INSERT INTO {PROBED_EARLIER} SELECT account_id, request_id, CAST(run_id AS BIGINT), by_new "
            f"FROM {parquet_source(earlier)}"
        )
    stored = history.output_files(probed.stored)
    if stored:
        con.execute(
            "INSERT INTO stored_keys SELECT DISTINCT CAST(event_key AS UBIGINT), CAST(run_id AS BIGINT) "
            f"FROM {parquet_source(stored)}"
        )
    bind_twins_of_stored_keys(con)
    _place_left_out(con, history.output_files(probed.left_out), work / LEFT_OUT_FILE)
    counted = history.output_files(probed.duplicates)
    decided: dict[int, int] = {}  # each file's duplicates the probe decided
    if counted:
        query = f"SELECT file_order, CAST(sum(duplicates) AS BIGINT) FROM {parquet_source(counted)} GROUP BY 1"
        decided = {int(order): int(count) for order, count in con.execute(query).fetchall()}
    keys = ", ".join(KEY_COLUMNS)
    loaded = history.output_files(probed.loaded)
    if not loaded:
        return decided
    con.execute(f"CREATE OR REPLACE TEMP TABLE loaded_rows AS SELECT * FROM {parquet_source(loaded)}")
    con.execute(f"INSERT INTO parsed BY NAME SELECT * EXCLUDE ({counts}, {keys}) FROM loaded_rows")
    con.execute(
        f"INSERT INTO staged_recounts SELECT file_order, line_no, {counts} FROM loaded_rows "
        "WHERE est_tokenizer IS NOT NULL"
    )
    con.execute("DROP TABLE loaded_rows")
    return decided


def _place_left_out(con: duckdb.DuckDBPyConnection, written: Sequence[Path], target: Path) -> None:
    """Make Spark's file of what the tasks leave out (``left_out``: keys and rows, one file) the
    exchange directory's :data:`LEFT_OUT_FILE`, by a rename: the decided duplicates' keys and
    rows (one a record of a resent day) pass through no driver. Several files or none (not what
    Spark writes for one partition) are combined by a COPY instead."""
    if len(written) == 1:
        written[0].rename(target)
        return
    rows = "SELECT NULL::UBIGINT AS event_key, NULL::INTEGER AS file_order, NULL::BIGINT AS line_no LIMIT 0"
    if written:
        rows = f"SELECT event_key, file_order, line_no FROM {parquet_source(written)}"
    con.execute(f"COPY ({rows}) TO {sql_literal(str(target))} (FORMAT parquet)")


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
WHERE left(t.content_sha256, 16) <> left(v.content_sha256, 16)  -- stored: 16 hex digits (migration 047)
ORDER BY 1
"""


def _stage_files_with_conflicts(
    con: duckdb.DuckDBPyConnection, files: Sequence[tuple[int, str, str]], memory_limit: str | None
) -> None:
    """Stage every line of the files dedup will need whole (see the module doc), by tasks
    (``staged_lines`` is empty before: the executors send no lines). Reads ``stored_twins``,
    bound by :func:`load_special` (dedup reuses them: ``StagedBatch.twins_bound``); ``parsed``
    holds every row sharing a key with a conflicting one, so the query finds what it would
    over all rows."""
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
