"""Log files the cluster reads (``nightly --engine spark --logs s3a://...``): listed, hashed and
validated without the driver reading a byte of them.

Issue 15 item 1. A ``--logs`` given as a URI (``s3a://``, ``hdfs://``, ``abfs://``, and
``file://`` for a shared mount) is read through Hadoop's FileSystem, which is what Spark
reads with: whatever connector the cluster is configured with (for S3, hadoop-aws on the
classpath and its ``spark.hadoop.fs.s3a.*`` settings) works here, and nothing else is
needed on the driver. A plain path is still read by the driver's and executors' local
file system (:mod:`pipeline.spark.staging`), as before.

- **Listing** (:func:`files_for_day`): the driver asks Hadoop's FileSystem for the logs
  directory's entries (metadata only): the day's files are those whose name holds the date
  and ends in a supported suffix, as on a local directory; anything but a regular file is
  refused and reported, as a link is locally.
- **Hashing** (:func:`hash_files`): each file's sha256 and size are computed on the
  executors, from the bytes Spark's ``binaryFile`` reader hands them; the driver receives
  three values a file and skips the files ingested before, as on a local path
  (:func:`pipeline.ingest.staging.select_new`).
- **Validation** (:func:`parse_files`): each new file is one task, which writes the bytes
  to a fresh local directory under its own name and runs the same
  :func:`pipeline.spark.parse.parse_file` as for a local path (DuckDB's readers, the
  Python fallback, parse.sql, the R5 recount), then writes the rows as one Parquet file into
  the exchange directory. A reader's error quoted in a message names the file by its URI,
  never by the task's copy.
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
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from core.db import sql_literal
from pipeline.ingest.files import InputMissing, file_kind, refusal
from pipeline.ingest.files import uri_file_name as file_name
from pipeline.spark import SparkEngineError


def _java_error(exc: Exception) -> str:
    """The first line of a Java exception's message, for a one-line error."""
    text = str(getattr(exc, "java_exception", None) or exc)
    return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)[:300]


def files_for_day(spark: Any, logs_uri: str, stamp: str, refused: list[str]) -> list[str]:
    """The entries of ``logs_uri`` named for ``stamp`` (``YYYY-MM-DD``) with a supported suffix,
    as URIs in the form Hadoop gives them (``file:/x``, ``s3a://bucket/x``).

    Sorted as local files are (R1's "first": by name, then by the whole URI). An entry that is
    not a regular file goes to ``refused`` (one line each); a ``file://`` entry is also looked
    at with ``lstat``, so a symbolic link on a local mount is refused as it is locally.
    """
    from py4j.protocol import Py4JJavaError

    jvm = spark.sparkContext._jvm
    try:
        directory = jvm.org.apache.hadoop.fs.Path(logs_uri)
        fs = directory.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        if not fs.exists(directory) or not fs.getFileStatus(directory).isDirectory():
            raise InputMissing(
                f"{logs_uri}: logs directory does not exist",
                hint="give the directory the gateway ships its logs to with --logs",
            )
        statuses = fs.listStatus(directory)
    except Py4JJavaError as exc:
        raise SparkEngineError(
            f"cannot list {logs_uri}: {_java_error(exc)}",
            hint="a URI in --logs is read by the cluster's Hadoop file system: check its connector "
            "(for s3a://, hadoop-aws on the classpath) and credentials; see docs/spark.md",
        ) from None
    found: list[str] = []
    for status in statuses:
        uri = _normal(str(status.getPath().toString()))
        name = file_name(uri)
        if stamp not in name or not file_kind(Path(name)):
            continue
        local = _local(uri)
        reason = refusal(local) if local is not None else None
        if reason is None and (status.isSymlink() or not status.isFile()):
            reason = f"{uri}: is not a regular file; refused, log files are read only as regular files"
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
        frame = spark.read.format("binaryFile").load(list(uris)).select("path", "content")
        rdd = frame.rdd
        rdd.getNumPartitions()  # plans the scan while the setting holds
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)
    return rdd


def _run_tasks(spark: Any, uris: Sequence[str], task: Callable[[Iterable[Any]], Iterator[Any]], what: str) -> list[Any]:
    """``task`` over the ``(path, content)`` rows of ``uris``, one file per task; what the tasks yield."""
    from py4j.protocol import Py4JJavaError

    try:
        return list(_contents(spark, uris).mapPartitions(task).collect())
    except Py4JJavaError as exc:
        raise SparkEngineError(f"Spark {what} failed: {_java_error(exc)}") from None


def _hash_partition(rows: Iterable[Any]) -> Iterator[tuple[str, str, int]]:
    for row in rows:
        content = bytes(row.content)
        yield _normal(row.path), hashlib.sha256(content).hexdigest(), len(content)


def hash_files(spark: Any, uris: Sequence[str]) -> dict[str, tuple[str, int]]:
    """``{uri: (sha256, size)}`` of every file, computed on the executors."""
    if not uris:
        return {}
    hashed = {uri: (sha, size) for uri, sha, size in _run_tasks(spark, uris, _hash_partition, "hashing")}
    for uri in uris:
        if uri not in hashed:
            if _length(spark, uri) != 0:
                raise SparkEngineError(f"Spark did not read {uri} (read {len(hashed)} of {len(uris)} files)")
            hashed[uri] = (EMPTY_SHA256, 0)  # Spark's file readers leave zero-byte files out
    return hashed


def _length(spark: Any, uri: str) -> int:
    """The size of ``uri`` as the cluster's file system reports it."""
    path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(uri)
    return int(path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).getFileStatus(path).getLen())


@dataclass(frozen=True)
class _Task:
    """What a task needs besides the file: picklable, built on the driver."""

    files: dict[str, tuple[int, str]]  # uri -> (file_order, sha256)
    out_dir: str
    spill_parent: str | None
    ts_latest: str | None = None
    memory_limit: str | None = None


def _local_copy(uri: str, content: bytes, spill_parent: str | None) -> tuple[Path, Path]:
    """A fresh directory holding ``content`` under the file's own name (the name is stored with
    every record, and its suffix says how to read it); ``(directory, file)``."""
    directory = Path(tempfile.mkdtemp(prefix="infergate-remote-", dir=spill_parent or None))
    local = directory / file_name(uri)
    local.write_bytes(content)
    return directory, local


def _parse_partition(task: _Task, rows: Iterable[Any]) -> Iterator[tuple[int, int]]:
    import pyarrow.parquet as pq

    from pipeline.spark.parse import parse_file, parsed_layout

    layout = parsed_layout()
    ts_latest = datetime.fromisoformat(task.ts_latest) if task.ts_latest else None
    for row in rows:
        uri = _normal(row.path)
        order, sha = task.files[uri]
        directory, local = _local_copy(uri, bytes(row.content), task.spill_parent)
        part = Path(task.out_dir) / f"part-{order:06d}.parquet"
        written = 0
        try:
            with pq.ParquetWriter(str(part) + ".tmp", layout.arrow_schema, compression="zstd") as writer:
                batches = parse_file(
                    order, str(local), layout, ts_latest, task.memory_limit, sha, str(directory), shown_as=uri
                )
                for batch in batches:
                    writer.write_batch(batch)
                    written += batch.num_rows
            os.replace(str(part) + ".tmp", part)  # the driver reads only complete parts
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        yield order, written


def parse_files(
    spark: Any,
    files: Sequence[tuple[int, str, str]],
    out_dir: Path,
    ts_latest: datetime | None,
    memory_limit: str | None,
    spill_parent: Path,
) -> list[Path]:
    """Validate ``files`` (``(file_order, uri, sha256)``) on the executors; the Parquet parts,
    one per file with bytes, shaped like :func:`pipeline.spark.parse.parse_on_spark`'s rows."""
    files = _nonempty(files)
    if not files:
        return []
    task = _Task(
        {uri: (order, sha) for order, uri, sha in files},
        str(out_dir),
        str(spill_parent),
        ts_latest.isoformat() if ts_latest else None,
        memory_limit,
    )
    done = dict(_run_tasks(spark, [uri for _, uri, _ in files], functools.partial(_parse_partition, task), "parsing"))
    return _parts(out_dir, [order for order, _, _ in files], done)


def _parts(out_dir: Path, orders: Sequence[int], done: dict[int, int]) -> list[Path]:
    """The part of every file in ``orders``, checked: a file Spark did not hand to a task would
    otherwise pass as a file without lines."""
    parts = []
    for order in orders:
        part = out_dir / f"part-{order:06d}.parquet"
        if order not in done or not part.is_file():
            raise SparkEngineError(f"Spark wrote no output for file {order} in {out_dir}")
        parts.append(part)
    return parts


def _lines_partition(task: _Task, rows: Iterable[Any]) -> Iterator[tuple[int, int]]:
    from pipeline.ingest.staging import create_staging, stage_file
    from pipeline.spark.parse import task_connection

    for row in rows:
        uri = _normal(row.path)
        order, sha = task.files[uri]
        directory, local = _local_copy(uri, bytes(row.content), task.spill_parent)
        part = Path(task.out_dir) / f"part-{order:06d}.parquet"
        try:
            con = task_connection(task.memory_limit, temp_directory=directory)
            try:
                create_staging(con)
                stage_file(con, local, order, sha)
                shown = f"replace(stage_problem, {sql_literal(str(local))}, {sql_literal(uri)})"
                con.execute(
                    f"COPY (SELECT * REPLACE ({shown} AS stage_problem) FROM staged_lines ORDER BY line_no) "
                    f"TO {sql_literal(str(part) + '.tmp')} (FORMAT parquet, COMPRESSION zstd)"
                )
                count = con.execute("SELECT count(*) FROM staged_lines").fetchone()
            finally:
                con.close()
            os.replace(str(part) + ".tmp", part)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        yield order, int(count[0]) if count else 0


def stage_lines(
    spark: Any, files: Sequence[tuple[int, str, str]], out_dir: Path, memory_limit: str | None, spill_parent: Path
) -> list[Path]:
    """Stage every line of ``files`` on the executors (as ``staged_lines`` rows, one Parquet
    part per file), for the driver's dedup to quote; see :mod:`pipeline.spark.staging`."""
    files = _nonempty(files)
    if not files:
        return []
    task = _Task({uri: (order, sha) for order, uri, sha in files}, str(out_dir), str(spill_parent), None, memory_limit)
    lines = functools.partial(_lines_partition, task)
    done = dict(_run_tasks(spark, [uri for _, uri, _ in files], lines, "staging lines"))
    return _parts(out_dir, [order for order, _, _ in files], done)
