"""The Parquet exchange directories of ``--engine spark``, and removing what a killed run left.

A step that hands data between DuckDB and Spark (the parsed rows of a nightly, the rating
scope and its rated rows) gets a fresh directory under ``$INFERGATE_SPARK_WORKDIR`` (else the
system temp dir), removed when the step ends. A SIGKILL skips that removal, and the directory
may hold what must not stay on disk: the parsed rows carry text fields before
``mask_secrets`` (keys in them are masked only when stored), and the tasks' DuckDB spills
(raw lines: prompts and keys). So directories are named after their
database, and every run on a database, whichever engine, removes the ones left before it:
runs on one database never overlap (the run lock), so any found at a run's start is a
leftover. Other databases may share the parent directory. No pyspark here: every run imports
this module.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

WORKDIR_ENV = "INFERGATE_SPARK_WORKDIR"


def _parent() -> Path:
    return Path(os.environ.get(WORKDIR_ENV) or tempfile.gettempdir()).resolve()


def spark_uri(path: Path) -> str:
    """``path`` as a ``file:`` URI for Spark: a bare path would be read on the cluster's
    ``fs.defaultFS`` (hdfs://...), not where DuckDB wrote it. Not percent-encoded, unlike
    ``Path.as_uri()``: Hadoop takes ``%20`` literally and would write beside the directory."""
    return "file://" + ("" if path.resolve().as_posix().startswith("/") else "/") + path.resolve().as_posix()


def _prefix(db_path: Path | None) -> str:
    if db_path is None:  # an in-memory database: nothing outlives its process to resume
        return f"infergate-spark-memory{os.getpid()}-"
    return f"infergate-spark-{hashlib.sha256(str(Path(db_path).resolve()).encode()).hexdigest()[:16]}-"


#: The exchange directories this process has open: not leftovers. A nightly keeps the parsed
#: parts of its batch from staging until its transaction ends (pipeline/spark/staging.py),
#: while later steps of the same run open directories of their own. A killed run's
#: directories are not in it (the set dies with the process), so the next run removes them.
_live: set[Path] = set()


def remove_leftovers(db_path: Path | None) -> list[Path]:
    """Remove the exchange directories of ``db_path``'s earlier runs; call under its run lock.

    A directory that cannot be removed is an error: it may hold prompt text or keys.
    """
    parent = _parent()
    if not parent.is_dir():
        return []
    removed = []
    for leftover in parent.glob(_prefix(db_path) + "*"):
        if leftover in _live:
            continue
        shutil.rmtree(leftover)
        removed.append(leftover)
    return removed


#: How long removing an exchange directory is retried: a task Spark cancelled (another task
#: failed, or a speculative copy lost) may still be writing into it until its Python worker is
#: killed (``spark.python.task.killTimeout``, 2 s by default).
SETTLE_SECONDS = 10.0


@contextmanager
def exchange_directory(db_path: Path | None) -> Iterator[Path]:
    """A fresh directory for one step's exchange, removed afterwards (see the module doc)."""
    remove_leftovers(db_path)
    work = Path(tempfile.mkdtemp(prefix=_prefix(db_path), dir=_parent()))
    _live.add(work)
    try:
        yield work
    finally:
        try:
            remove_settled(work)
        finally:
            _live.discard(work)


def remove_settled(path: Path, wait: float = SETTLE_SECONDS) -> None:  # allow-float: seconds
    """``rmtree(path)``, retried while files still appear in it (see :data:`SETTLE_SECONDS`).
    Once the directory is gone a late task cannot recreate it: its writes fail instead. A
    directory that cannot be removed in time is an error, as in :func:`remove_leftovers`."""
    deadline = time.monotonic() + wait
    while True:
        try:
            shutil.rmtree(path)
            return
        except OSError:  # a file appeared (directory not empty) or vanished (renamed) meanwhile
            if not os.path.lexists(path):
                return
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
