"""Validation on Spark executors: the DuckDB path's own staging and ``parse.sql``, run per file.

Issue 15, first step of item 1. Each input file becomes one Spark task (a ``.jsonl.gz`` is not
splittable, and a file is the unit the ledger accounts for); the task opens an in-memory DuckDB,
stages the file with :func:`pipeline.ingest.staging.stage_file` and validates it with
:func:`pipeline.ingest.staging.parse_staged`, i.e. the same readers, fallback, macros,
``parse.sql`` and repeated-key check as ``nightly --engine duckdb``. Reason codes and messages
are therefore identical by construction, not by a port that could drift.

A file's rows (:func:`parse_file`) are shaped like the DuckDB path's TEMP table ``parsed``: one
row per non-blank line, ``problem`` NULL for a good line and ``{reason, field, message}`` for a
quarantined one, plus :data:`RECOUNT_COLUMNS`: the R5 counts of each usage-less billable
record, made in the task by the same code and tokenizers as on DuckDB, before dedup (the
driver keeps those of the records dedup finds new), so no prompt text leaves the executor.
Their Arrow schema is derived from ``parsed`` itself (see :func:`parsed_layout`), in types
Spark has, so a column added to ``parse.sql`` appears here without an edit. The task writes
them as one Parquet file into the exchange directory (:mod:`pipeline.spark.remote`, which
runs the tasks: a local path read in place, a ``--logs`` URI from the bytes Spark reads);
``nightly --engine spark`` loads them (:mod:`pipeline.spark.staging`).

Each valid row also carries its lookup keys (:data:`KEY_COLUMNS`, dedup.sql's expressions),
from which the driver decides which rows it must load (:mod:`pipeline.spark.staging`).

Not done here (docs/spark.md, "Validation on executors"): dedup verdicts and writing
partitions on the executors (rating runs on Spark from :mod:`pipeline.spark.bridge`).

Executors need this package (and duckdb, pyarrow, zstandard, the tokenizers it ships) installed; pyspark is imported
lazily, as in the other spark modules, so the DuckDB path never needs it.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import duckdb

from core.db import sql_identifier
from pipeline.ingest.files import file_sha256, refusal
from pipeline.ingest.recounting import default_recounter, recount_candidates_by_line
from pipeline.ingest.staging import create_staging, parse_staged, stage_file
from pipeline.spark import SparkEngineError

if TYPE_CHECKING:
    import pyarrow as pa

# The columns beside parse.sql's: the R5 counts of a candidate (NULL for every other line,
# and for a candidate whose usage cannot be established: it is held, as on DuckDB).
RECOUNT_COLUMNS = {"est_input_tokens": "bigint", "est_output_tokens": "bigint", "est_tokenizer": "string"}
# And the lookup keys of each valid record, as dedup.sql computes them (NULL on a quarantined
# line): the driver decides from them alone which rows it must load (pipeline/spark/staging.py).
# DuckDB's hash() has no seed, but may differ between versions: every part carries the task's
# :func:`key_probe`, which the driver compares with its own before it uses a key.
KEY_COLUMNS = {
    "event_key": "CASE WHEN p.problem IS NULL THEN hash(p.event_id) END",
    "request_key": "CASE WHEN p.problem IS NULL THEN hash(p.account_id, p.request_id) END",
}
# Parquet key-value metadata of a part: the task's key probe and DuckDB version
PROBE_KEY = "infergate.key_probe"
VERSION_KEY = "infergate.duckdb_version"
# Rows per Arrow batch a task hands to Spark: a quarantine copy is at most ~4 KB and the usage
# JSON at most 4 KB, so a batch stays in the tens of MiB even for the widest rows.
BATCH_ROWS = 8192
# DuckDB's buffer memory inside one task (the DuckDB path's default for a whole run): parse.sql
# halves a slice that does not fit, so this bounds the task's memory, not what it can parse.
TASK_MEMORY_LIMIT = "2GB"


def local_path(uri: str) -> Path:
    """The local path of ``uri``: a plain path or a ``file://`` URI (other schemes are read by
    Spark, :mod:`pipeline.spark.remote`, and reach :func:`parse_file` as local copies). Taken
    literally, as Hadoop takes a path: ``file:///a%20b`` names a file called ``a%20b``, here as
    under ``--logs``."""
    if "://" not in uri:  # a plain path, as given (a name may hold a colon: never a scheme here)
        return Path(uri)
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise SparkEngineError(
            f"{uri}: this reader opens local files; a --logs URI is read through Spark (see docs/spark.md)"
        )
    if parsed.netloc not in ("", "localhost"):
        raise SparkEngineError(f"{uri}: file:// URIs must name a local path (no host)")
    return Path(uri[len(f"file://{parsed.netloc}") :])


def task_connection(
    memory_limit: str | None = TASK_MEMORY_LIMIT, temp_directory: Path | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the session settings of :func:`core.db.connect` that parsing reads.

    ``TimeZone = 'UTC'`` matters to the messages (the "in the future" message prints an
    instant); extensions are never installed or downloaded. No migrations: staging and parsing
    only write TEMP tables (core.db.connect would spend ~0.4 CPU-s per task migrating).
    """
    config: dict[str, str | bool | int | float | list[str]] = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "threads": 1,  # a task is one core: Spark runs as many tasks as it has cores
    }
    if memory_limit:
        config["memory_limit"] = memory_limit
    if temp_directory is not None:  # else DuckDB's default: ./.tmp of whatever the worker's cwd is
        config["temp_directory"] = str(temp_directory)
    con = duckdb.connect(":memory:", config=config)
    con.execute("SET TimeZone = 'UTC'")
    return con


@dataclass(frozen=True)
class ParsedLayout:
    """How a task writes ``parsed``: the DuckDB select list and its Arrow schema."""

    select: str
    arrow_schema: pa.Schema


def _spark_type(arrow_type: pa.DataType) -> str | None:
    """The Spark SQL type holding ``arrow_type`` exactly, or None (then the column goes as text)."""
    import pyarrow as pa

    simple = {
        pa.string(): "string",
        pa.large_string(): "string",
        pa.bool_(): "boolean",
        pa.int8(): "tinyint",
        pa.int16(): "smallint",
        pa.int32(): "int",
        pa.int64(): "bigint",
        pa.float32(): "float",
        pa.float64(): "double",
        pa.date32(): "date",
    }
    if arrow_type in simple:
        return simple[arrow_type]
    if pa.types.is_decimal(arrow_type) and arrow_type.precision <= 38:
        return f"decimal({arrow_type.precision},{arrow_type.scale})"
    if pa.types.is_timestamp(arrow_type) and arrow_type.tz is not None:
        return "timestamp"  # an instant (TIMESTAMP_LTZ); naive timestamps are not instants (E2)
    if pa.types.is_struct(arrow_type):
        fields = []
        for child in arrow_type:
            inner = _spark_type(child.type)
            if inner is None:
                return None
            fields.append(f"`{child.name}`:{inner}")
        return f"struct<{','.join(fields)}>"
    return None  # unsigned or huge integers, JSON, UUID, maps, lists, naive times: Spark lacks them


def _arrow_type(spark_type: str, arrow_type: pa.DataType) -> pa.DataType:
    """The Arrow type Spark expects for a column it reads as ``spark_type``."""
    import pyarrow as pa

    if spark_type == "string":
        return pa.string()
    if spark_type == "timestamp":
        return pa.timestamp("us", tz="UTC")
    return arrow_type


@functools.cache
def parsed_layout() -> ParsedLayout:
    """The columns of ``parsed``, read from the DuckDB path itself (an empty parse on the driver).

    Every column keeps its type where Spark has it (DECIMAL with the same precision and scale,
    TIMESTAMPTZ as a UTC instant, the ``problem`` struct), so Spark can read the parts too; a
    type Spark lacks would be written as its DuckDB text (``CAST(... AS VARCHAR)``). Today no
    column of parse.sql needs that.
    """
    import pyarrow as pa

    con = task_connection(memory_limit=None)
    try:
        create_staging(con)
        parse_staged(con)  # nothing staged: creates the empty ``parsed``, typed
        schema = con.sql("SELECT * FROM parsed").to_arrow_table().schema
    finally:
        con.close()
    select, fields = [], []
    for field in schema:
        quoted = sql_identifier(field.name)
        spark_type = _spark_type(field.type)
        if spark_type is None:
            select.append(f"CAST(p.{quoted} AS VARCHAR) AS {quoted}")
            spark_type = "string"
        else:
            select.append(f"p.{quoted}")
        fields.append(pa.field(field.name, _arrow_type(spark_type, field.type)))
    # R5 counts of each candidate, made in the task: the texts never leave the executor
    for name, spark_type in RECOUNT_COLUMNS.items():
        select.append(f"r.{name}")
        fields.append(pa.field(name, pa.int64() if spark_type == "bigint" else pa.string()))
    # UBIGINT, which Spark lacks (it would read UINT_64 as decimal(20,0)): not through _spark_type,
    # which would write it as text
    for name, expression in KEY_COLUMNS.items():
        select.append(f"{expression} AS {name}")
        fields.append(pa.field(name, pa.uint64()))
    return ParsedLayout(", ".join(select), pa.schema(fields))


@functools.cache
def key_probe() -> str:
    """What this process's DuckDB makes of two lookup keys, in the one- and two-argument forms
    of ``hash()`` that :data:`KEY_COLUMNS` use (the first is :data:`core.db._KEY_PROBE`'s)."""
    con = duckdb.connect(":memory:")
    try:
        row = con.execute(
            "SELECT CAST(hash('infergate lookup key') AS VARCHAR) || '/' "
            "|| CAST(hash('infergate', 'lookup key') AS VARCHAR)"
        ).fetchone()
    finally:
        con.close()
    assert row is not None
    return str(row[0])


def show_file_as(con: duckdb.DuckDBPyConnection, path: Path, shown_as: str) -> None:
    """Name the file ``shown_as`` (its URI) in what staging wrote about a task's local copy at
    ``path``: a reader's error quoted in ``stage_problem``, where every message naming the file
    comes from (parse.sql's own messages name fields, never files)."""
    con.execute(
        "UPDATE staged_lines SET stage_problem = replace(stage_problem, ?, ?) WHERE contains(stage_problem, ?)",
        [str(path), shown_as, str(path)],
    )


def parse_file(
    order: int,
    uri: str,
    layout: ParsedLayout,
    ts_latest: datetime | None = None,
    memory_limit: str | None = None,
    sha256: str | None = None,
    spill_parent: str | None = None,
    shown_as: str | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stage and parse one file in a fresh in-memory DuckDB; its ``parsed`` rows as Arrow batches.

    Runs on an executor (also callable directly: the test's engines agree through it). The file
    is read as the DuckDB path reads it (:func:`stage_file`: DuckDB's readers, the Python
    fallback for files they refuse), hashed for ``source_sha256``, and never followed if it is a
    link (:func:`refusal`; discovery on the driver refuses those already, this is the backstop).
    DuckDB spills (raw lines: prompts, keys) into a fresh directory under ``spill_parent`` (the
    run's exchange directory, removed with it; else the system temp dir), removed at the end.
    ``shown_as``: the name messages give the file when ``uri`` is a task's local copy of it
    (:mod:`pipeline.spark.remote`: a reader's error then names the URI the run was given).
    """
    path = local_path(uri)
    if reason := refusal(path):
        raise SparkEngineError(reason)
    spill = Path(tempfile.mkdtemp(prefix="infergate-task-", dir=spill_parent or None))
    con = task_connection(memory_limit or TASK_MEMORY_LIMIT, temp_directory=spill)
    try:
        create_staging(con)
        stage_file(con, path, order, sha256 or file_sha256(path))
        if shown_as is not None:
            show_file_as(con, path, shown_as)
        parse_staged(con, ts_latest=ts_latest)
        # R5 here: counts travel, texts do not (untimed: a task's stderr is not the run's log)
        recount_candidates_by_line(con, default_recounter(timed=False))
        joined = "parsed p LEFT JOIN recounts r ON r.event_id = CAST(p.line_no AS VARCHAR)"
        for batch in con.sql(f"SELECT {layout.select} FROM {joined} ORDER BY p.line_no").to_arrow_reader(BATCH_ROWS):
            yield batch.cast(layout.arrow_schema)
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
