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


def remove_leftovers(db_path: Path | None) -> list[Path]:
    """Remove the exchange directories of ``db_path``'s earlier runs; call under its run lock.

    A directory that cannot be removed is an error: it may hold prompt text or keys.
    """
    parent = _parent()
    if not parent.is_dir():
        return []
    removed = []
    for leftover in parent.glob(_prefix(db_path) + "*"):
        shutil.rmtree(leftover)
        removed.append(leftover)
    return removed


@contextmanager
def exchange_directory(db_path: Path | None) -> Iterator[Path]:
    """A fresh directory for one step's exchange, removed afterwards (see the module doc)."""
    remove_leftovers(db_path)
    with tempfile.TemporaryDirectory(prefix=_prefix(db_path), dir=_parent()) as tmp:
        yield Path(tmp)
