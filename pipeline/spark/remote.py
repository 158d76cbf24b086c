"""Log files validated by Spark tasks, each writing its file's rows as one Parquet part; and log
files only the cluster reads (``nightly --engine spark --logs s3a://...``): listed, hashed and
validated without the driver reading a byte of them.

Issue 15 item 1. A ``--logs`` given as a URI (``s3a://``, ``hdfs://``, ``abfs://``, and
``file://`` for a shared mount) is read through Hadoop's FileSystem, which is what Spark
reads with: whatever connector the cluster is configured with (for S3, hadoop-aws on the
classpath and its ``spark.hadoop.fs.s3a.*`` settings) works here, and nothing else is
needed on the driver. A plain path is read by the driver's and executors' local file
system: the driver hashes it, a task reads it in place (:func:`parse_files` takes both).

- **Listing** (:func:`files_for_day`): the driver asks Hadoop's FileSystem for the logs
  directory's entries (metadata only): the day's files are those whose name holds the date
  and ends in a supported suffix, as on a local directory; anything but a regular file is
  refused and reported, as a link is locally.
- **Hashing** (:func:`hash_files`): each file's sha256 and size are computed on the
  executors, from the bytes Spark's ``binaryFile`` reader hands them; the driver receives
  three values a file and skips the files ingested before, as on a local path
  (:func:`pipeline.ingest.staging.select_new`).
- **Validation** (:func:`parse_files`): each new file is one task (an RDD of the files, one
  partition each), which runs :func:`pipeline.spark.parse.parse_file` (DuckDB's readers, the
  Python fallback, parse.sql, the R5 recount) and writes the rows as one Parquet part into the
  exchange directory itself: no row passes through the JVM. A URI's bytes are first checked
  against the run's digest and written to a fresh local directory under the file's own name;
  a reader's error quoted in a message names the file by its URI, never by the task's copy.
- **Lines for dedup** (:func:`stage_lines`): the rare files whose records conflict with
  others (see :mod:`pipeline.spark.staging`) are staged by tasks too, their lines sent to
  the driver through the exchange directory.

``binaryFile`` holds a file in memory as one value: a log file must be under 2 GiB
(compressed), which a gateway's hourly files are by far. pyspark's RDD API moves the bytes
to the Python workers (no pandas needed); every function given to Spark is module-level, so
it pickles by reference to this installed module.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from core.attempt_store import PARQUET_OPTIONS
from core.db import sql_literal
from pipeline.ingest.files import InputMissing, file_kind, is_uri, refusal, secret_in_name
from pipeline.ingest.files import uri_file_name as file_name
from pipeline.spark import SparkEngineError, spark_error_line


def _file_system(spark: Any, uri: str) -> tuple[Any, Any]:
    """Hadoop's ``(Path, FileSystem)`` for ``uri``, as Spark's readers resolve it."""
    path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(uri)
    return path, path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())


def missing(spark: Any, uris: Sequence[str]) -> list[str]:
    """The ``uris`` that are not files (any more): replay's "input ... is missing"."""
    gone = []
    for uri in uris:
        path, fs = _file_system(spark, uri)
        if not fs.isFile(path):
            gone.append(uri)
    return gone


def files_for_day(spark: Any, logs_uri: str, stamp: str, refused: list[str]) -> list[str]:
    """The entries of ``logs_uri`` named for ``stamp`` (``YYYY-MM-DD``) with a supported suffix,
    as URIs in the form Hadoop gives them (``file:/x``, ``s3a://bucket/x``).

    Sorted as local files are (R1's "first": by name, then by the whole URI). An entry that is
    not a regular file goes to ``refused`` (one line each); a ``file://`` entry is also looked
    at with ``lstat``, so a symbolic link on a local mount is refused as it is locally.
    """
    try:
        directory, fs = _file_system(spark, logs_uri)
        exists = fs.exists(directory) and fs.getFileStatus(directory).isDirectory()
        statuses = fs.listStatus(directory) if exists else []
    except Exception as exc:  # py4j's and pyspark's errors alike: one line naming the URI
        raise SparkEngineError(
            f"cannot list {logs_uri}: {spark_error_line(exc)}",
            hint="a URI in --logs is read by the cluster's Hadoop file system: check its connector "
            "(for s3a://, hadoop-aws on the classpath) and credentials; see docs/spark.md",
        ) from None
    if not exists:
        raise InputMissing(
            f"{logs_uri}: logs directory does not exist",
            hint="give the directory the gateway ships its logs to with --logs",
        )
    found: list[str] = []
    for status in statuses:
        uri = _normal(str(status.getPath().toString()))
        name = file_name(uri)
        if stamp not in name or not file_kind(Path(name)):
            continue
        local = _local(uri)
        reason = refusal(local) if local is not None else secret_in_name(uri)
        if reason is None and (status.isSymlink() or not status.isFile()):
            reason = f"{uri}: is not a regular file; refused, log files are read only as regular files"
        if reason is None and ":" in name:
            # Hadoop's Path takes "a:b" for a scheme; its readers cannot open such a name
            reason = f"{uri}: a ':' in a file name cannot be read through Hadoop's file system; rename the file"
        if reason:
            refused.append(reason)
            continue
        found.append(uri)
    return sorted(found, key=lambda uri: (file_name(uri), uri))


def _normal(uri: str) -> str:
    """``uri`` as the run records it: Hadoop writes a local file ``file:/x``, which is no
    ``scheme://`` URI (and would be taken for a relative path); it becomes ``file:///x``."""
    if uri.startswith("file:/") and not uri.startswith("file://"):
        return "file://" + uri[len("file:") :]
    return uri


EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _nonempty(files: Sequence[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
    """The files with bytes to read: a zero-byte file is an empty log (0 lines, as
    :func:`pipeline.ingest.staging.stage_file` has it), and Spark's readers skip it anyway."""
    return [f for f in files if f[2] != EMPTY_SHA256]


def _local(uri: str) -> Path | None:
    """The local path of a ``file:///x`` URI (:func:`_normal`'s form), else None."""
    return Path(uri[len("file://") :]) if uri.startswith("file:///") else None  # literal, as Hadoop reads it


def _literal(uri: str) -> str:
    """``uri`` for Spark's ``load``, which takes every path for a glob: ``[eu]``, ``{x}``, ``*``,
    ``?`` and ``\\`` in a file name are escaped, so a name is only ever itself."""
    return re.sub(r"([\\\[\]{}*?])", r"\\\1", uri)


def _contents(spark: Any, uris: Sequence[str]) -> Any:
    """An RDD of ``(path, content)`` rows, one file per partition.

    ``binaryFile`` packs small files into one task up to ``spark.sql.files.maxPartitionBytes``;
    validating a file costs far more than reading it, so every file gets its own task (a
    maximum of 1 byte: the reader never splits a file, so each is one partition). The setting
    is the session's and is read when the job is planned, so it is set around the planning
    and put back.
    """
    key = "spark.sql.files.maxPartitionBytes"
    before = spark.conf.get(key, None)
    spark.conf.set(key, "1")
    try:
        frame = spark.read.format("binaryFile").load([_literal(uri) for uri in uris]).select("path", "content")
        rdd = frame.rdd
        rdd.getNumPartitions()  # plans the scan while the setting holds
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)
    return rdd


_Done = TypeVar("_Done")


def _run_tasks(spark: Any, task: _Task, write: Callable[..., _Done], what: str) -> dict[int, _Done]:
    """``write`` for every file of ``task``, one file per Spark task; ``{file_order: what write
    returned}`` (its rows; with the part's summaries for :func:`store_parts`).

    Files named by URI reach the task as bytes from Spark's ``binaryFile`` reader (the cluster's
    file systems); local paths (a mount every executor sees alike) are read by the task in place."""
    locations = list(task.files)
    try:
        if all(is_uri(location) for location in locations):
            loop = functools.partial(_per_file, task, write)
            rdd = _contents(spark, locations).mapPartitions(loop)
        else:
            loop = functools.partial(_per_local_file, task, write)
            rdd = spark.sparkContext.parallelize(locations, len(locations)).mapPartitions(loop)
        return dict(rdd.collect())
    except SparkEngineError:
        raise
    except Exception as exc:  # py4j's and pyspark's errors alike (a task's own error included)
        raise SparkEngineError(f"Spark {what} failed: {spark_error_line(exc)}") from None


def hash_files(spark: Any, uris: Sequence[str]) -> dict[str, tuple[str, int]]:
    """``{uri: (sha256, size)}`` of every file, computed on the executors, in the JVM (the bytes
    never reach a Python worker)."""
    if not uris:
        return {}
    from pyspark.sql import functions as F  # noqa: N812

    try:
        frame = spark.read.format("binaryFile").load([_literal(uri) for uri in uris])
        rows = frame.select("path", F.sha2("content", 256), "length").collect()
    except Exception as exc:
        raise SparkEngineError(f"Spark hashing failed: {spark_error_line(exc)}") from None
    hashed = {_normal(path): (str(sha), int(size)) for path, sha, size in rows}
    for uri in uris:
        if uri not in hashed:
            path, fs = _file_system(spark, uri)
            if fs.getFileStatus(path).getLen() != 0:
                raise SparkEngineError(f"Spark did not read {uri} (read {len(hashed)} of {len(uris)} files)")
            hashed[uri] = (EMPTY_SHA256, 0)  # Spark's file readers leave zero-byte files out
    return hashed


@dataclass(frozen=True)
class _Task:
    """What a task needs besides the file: picklable, built on the driver."""

    files: dict[str, tuple[int, str]]  # uri -> (file_order, sha256)
    out_dir: str
    spill_parent: str | None
    ts_latest: str | None = None
    memory_limit: str | None = None
    query: str | None = None  # store_parts: the SELECT of a part's rows to write ($part: the part)
    left_out: str | None = None  # store_parts: the file $left_out names (None: the query names none)
    summaries: tuple[str, ...] = ()  # store_parts: SELECTs over the part written ($written), returned as text


def _local_copy(uri: str, content: bytes, sha: str, spill_parent: str | None) -> tuple[Path, Path]:
    """A fresh directory holding ``content`` under the file's own name (the name is stored with
    every record, and its suffix says how to read it); ``(directory, file)``.

    The bytes must be those the run hashed (``sha``): the file is read again for each step, and
    an object overwritten or a file still being written in between would give records that do
    not come from the bytes the ledger names."""
    if hashlib.sha256(content).hexdigest() != sha:
        raise SparkEngineError(f"{uri} changed while the run read it (sha256 was {sha[:12]}); run the day again")
    directory = Path(tempfile.mkdtemp(prefix="infergate-remote-", dir=spill_parent or None))
    local = directory / file_name(uri)
    local.write_bytes(content)
    return directory, local


def _attempt_name(part: Path) -> str:
    """Where a task attempt writes ``part`` before renaming it into place: its own name, so two
    attempts of one task (a retry, speculation) never write one file."""
    from pyspark import TaskContext

    context = TaskContext.get()
    return f"{part}.{context.taskAttemptId() if context is not None else os.getpid()}.tmp"


def _per_file(task: _Task, write: Callable[..., _Done], rows: Iterable[Any]) -> Iterator[tuple[int, _Done]]:
    """A task's loop over files read by Spark: each file's bytes (checked against the run's
    digest) as a local copy under its own name, written out by ``write`` (:func:`_write_part`)."""
    for row in rows:
        uri = _normal(row.path)
        order, sha = task.files[uri]
        directory, local = _local_copy(uri, bytes(row.content), sha, task.spill_parent)
        try:
            yield order, _write_part(task, write, order, uri, sha, local, directory)
        finally:
            shutil.rmtree(directory, ignore_errors=True)


def _per_local_file(task: _Task, write: Callable[..., _Done], paths: Iterable[str]) -> Iterator[tuple[int, _Done]]:
    """A task's loop over local files: each read in place (named in messages as the run was
    given it, as on DuckDB), the task's DuckDB spilling into a fresh directory."""
    for path in paths:
        order, sha = task.files[path]
        directory = Path(tempfile.mkdtemp(prefix="infergate-task-", dir=task.spill_parent or None))
        try:
            yield order, _write_part(task, write, order, None, sha, Path(path), directory)
        finally:
            shutil.rmtree(directory, ignore_errors=True)


def _write_part(
    task: _Task, write: Callable[..., _Done], order: int, shown_as: str | None, sha: str, local: Path, directory: Path
) -> _Done:
    """``write(task, order, shown_as, sha, local, directory, partial)`` writes the file's part to
    ``partial`` and says how many rows (and what else it returns); the part is renamed into
    place (the driver reads only complete parts). ``shown_as``: the URI messages name instead of the task's copy."""
    part = Path(task.out_dir) / f"part-{order:06d}.parquet"
    partial = _attempt_name(part)
    count = write(task, order, shown_as, sha, local, directory, partial)
    os.replace(partial, part)
    return count


def _write_parsed(
    task: _Task, order: int, shown_as: str | None, sha: str, local: Path, directory: Path, partial: str
) -> int:
    """The file's ``parsed`` rows (and R5 counts, lookup keys), as
    :func:`pipeline.spark.parse.parse_file` makes them; the part's metadata says how this
    task's DuckDB hashes lookup keys, and which DuckDB it is."""
    import duckdb
    import pyarrow.parquet as pq

    from pipeline.spark.parse import PROBE_KEY, VERSION_KEY, key_probe, parse_file, parsed_layout

    layout = parsed_layout()
    ts_latest = datetime.fromisoformat(task.ts_latest) if task.ts_latest else None
    written = 0
    schema = layout.arrow_schema.with_metadata({PROBE_KEY: key_probe(), VERSION_KEY: duckdb.__version__})
    with pq.ParquetWriter(partial, schema, compression="zstd") as writer:
        batches = parse_file(order, str(local), layout, ts_latest, task.memory_limit, sha, str(directory), shown_as)
        for batch in batches:
            writer.write_batch(batch)
            written += batch.num_rows
    return written


def parse_files(
    spark: Any,
    files: Sequence[tuple[int, str, str]],
    out_dir: Path,
    ts_latest: datetime | None,
    memory_limit: str | None,
    spill_parent: Path,
) -> tuple[list[Path], dict[int, int]]:
    """Validate ``files`` (``(file_order, path or URI, sha256)``) on the executors; the Parquet
    parts, one per file with bytes, each holding the file's ``parsed`` rows, R5 counts and
    lookup keys, and ``{file_order: rows}`` (a file without bytes has no part and no rows)."""
    files = _nonempty(files)
    if not files:
        return [], {}
    task = _Task(
        {location: (order, sha) for order, location, sha in files},
        str(out_dir),
        str(spill_parent),
        ts_latest.isoformat() if ts_latest else None,
        memory_limit,
    )
    done = _run_tasks(spark, task, _write_parsed, "parsing")
    return _parts(out_dir, [order for order, _, _ in files], done), done


def _parts(out_dir: Path, orders: Sequence[int], done: dict[int, Any]) -> list[Path]:
    """The part of every file in ``orders``, checked: a file Spark did not hand to a task would
    otherwise pass as a file without lines."""
    parts = []
    for order in orders:
        part = out_dir / f"part-{order:06d}.parquet"
        if order not in done or not part.is_file():
            raise SparkEngineError(f"Spark wrote no output for file {order} in {out_dir}")
        parts.append(part)
    return parts


def _write_lines(
    task: _Task, order: int, shown_as: str | None, sha: str, local: Path, directory: Path, partial: str
) -> int:
    """The file's ``staged_lines`` rows, as the driver would stage them."""
    from pipeline.ingest.staging import create_staging, stage_file
    from pipeline.spark.parse import TASK_MEMORY_LIMIT, show_file_as, task_connection

    con = task_connection(task.memory_limit or TASK_MEMORY_LIMIT, temp_directory=directory)
    try:
        create_staging(con)
        stage_file(con, local, order, sha)
        if shown_as is not None:
            show_file_as(con, local, shown_as)
        lines = "SELECT * FROM staged_lines ORDER BY line_no"
        con.execute(f"COPY ({lines}) TO {sql_literal(partial)} (FORMAT parquet, COMPRESSION zstd)")
        count = con.execute("SELECT count(*) FROM staged_lines").fetchone()
    finally:
        con.close()
    return int(count[0]) if count else 0


def stage_lines(
    spark: Any, files: Sequence[tuple[int, str, str]], out_dir: Path, memory_limit: str | None, spill_parent: Path
) -> list[Path]:
    """Stage every line of ``files`` on the executors (as ``staged_lines`` rows, one Parquet
    part per file), for the driver's dedup to quote; see :mod:`pipeline.spark.staging`."""
    files = _nonempty(files)
    if not files:
        return []
    task = _Task({uri: (order, sha) for order, uri, sha in files}, str(out_dir), str(spill_parent), None, memory_limit)
    done = _run_tasks(spark, task, _write_lines, "staging lines")
    return _parts(out_dir, [order for order, _, _ in files], done)


def _write_stored(
    task: _Task, order: int, shown_as: str | None, sha: str, local: Path, directory: Path, partial: str
) -> tuple[int, list[list[tuple[str | None, ...]]]]:
    """The rows of the part ``local`` by ``task.query`` (its masking macros made here, as parsing
    makes them), in the lake's Parquet options: what the driver lists as one of the run's lake
    files (stored attempts, or rated rows); and the rows of each of ``task.summaries`` over the
    file written (``$written``: its rows as stored, read back by this task's DuckDB), as text."""
    from pipeline.redact import install_sql_macro
    from pipeline.spark.parse import TASK_MEMORY_LIMIT, task_connection

    assert task.query is not None
    con = task_connection(task.memory_limit or TASK_MEMORY_LIMIT, temp_directory=directory)
    try:
        install_sql_macro(con)
        # one pass over the query as written: a path holding "$part" is not substituted again
        values = {
            "$part": sql_literal(str(local)),
            "$left_out": sql_literal(task.left_out or ""),
            "$written": sql_literal(partial),
        }
        row = con.execute(f"COPY ({_substitute(task.query, values)}) TO {sql_literal(partial)} ({PARQUET_OPTIONS})")
        written = row.fetchone()
        summaries = [con.execute(_substitute(query, values)).fetchall() for query in task.summaries]
    finally:
        con.close()
    return (int(written[0]) if written else 0), summaries


def _substitute(query: str, values: dict[str, str]) -> str:
    return re.sub(r"\$(?:part|left_out|written)\b", lambda m: values[m.group(0)], query)


def store_parts(
    spark: Any,
    parts: Sequence[Path],
    out_dir: Path,
    query: str,
    memory_limit: str | None,
    spill_parent: Path,
    left_out: Path | None = None,
    what: str = "storing attempts",
) -> list[tuple[Path, int]]:
    """Write each part's rows by ``query`` (``$part`` its path and ``$left_out`` the file
    ``left_out``: the stored attempts of a part of parsed rows, or the rated rows of a part
    of Spark's rating output) on the executors, one task a part, as one Parquet file each in
    ``out_dir`` in the lake's options (``PARQUET_OPTIONS``), each written under a name of its
    own task attempt and renamed into place when complete; ``(file, rows)`` in the parts' order."""
    written, _ = store_summarized_parts(spark, parts, out_dir, query, memory_limit, spill_parent, left_out, what)
    return written


def store_summarized_parts(
    spark: Any,
    parts: Sequence[Path],
    out_dir: Path,
    query: str,
    memory_limit: str | None,
    spill_parent: Path,
    left_out: Path | None = None,
    what: str = "storing attempts",
    summaries: Sequence[str] = (),
) -> tuple[list[tuple[Path, int]], list[list[list[tuple[str | None, ...]]]]]:
    """:func:`store_parts`, each task also running ``summaries`` (SELECTs whose ``$written`` is
    the file it wrote, every column text) over the file it wrote; the files, and each part's
    summaries' rows (``[part][summary]``), in the parts' order. Only these small results reach
    the driver, through Spark's ``collect``."""
    if not parts:
        return [], []
    files = {str(part): (order, "") for order, part in enumerate(parts)}
    keys = None if left_out is None else str(left_out)
    task = _Task(files, str(out_dir), str(spill_parent), None, memory_limit, query, keys, tuple(summaries))
    done = _run_tasks(spark, task, _write_stored, what)
    written = _parts(out_dir, list(range(len(parts))), done)
    return [(path, done[order][0]) for order, path in enumerate(written)], [
        done[order][1] for order in range(len(parts))
    ]
