"""The analyst snapshot: a read-only database file for analysts, published after every run.

Why a separate file. DuckDB locks a database file for the process that writes it: while a
nightly run holds it, no other process can open it, not even read-only; and a reader that
keeps it open (an analyst's ``duckdb -readonly`` session) makes the next nightly run fail to
open it. So analysts never open the live file. After each run commits, the run (still
holding the run lock) publishes ``<db>.analyst.duckdb`` beside it, in time proportional to
what the run stored, not to history (issue 14 item 2):

1. the Parquet lake (``pipeline.lake``) gets the files of the runs not in it yet (normally
   the run just committed);
2. a fresh temporary file is ``ATTACH``-ed with ``STORAGE_VERSION 'v1.5.0'``; ``COPY FROM
   DATABASE ... (SCHEMA)`` creates every table, view and comment in it; every table but
   ``attempts`` and ``rated_attempts`` gets its rows (they are small); those two become
   views over the lake's Parquet files (absolute paths), with the same columns, types and
   comments;
3. ``DETACH`` (a checkpoint: no WAL is left), fsync, mark it read-only (0444), rename it
   over the previous snapshot. Readers that have the old snapshot open keep reading the old
   file; new readers get the new one; a crash leaves the previous snapshot intact.

The views name the lake files by absolute path: a database directory moved elsewhere needs
``infergate-billing snapshot`` to re-point them.

The v1.5.0 storage format is what the newest DuckDB command-line client on PyPI
(``duckdb-cli`` 1.5.x) reads; a file written in DuckDB 2.0's own format (storage version 69)
it refuses. DuckDB 2.0 reads both.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from core.attempt_store import ATTEMPT_KEYS, ATTEMPTS, ATTEMPTS_COMMENT, RATED, RATED_COMMENT
from core.db import DatabaseMissing, connect, sql_identifier, sql_literal
from core.errors import BillingError
from pipeline import lake
from pipeline.lock import exclusive_run

__all__ = [
    "STORAGE_VERSION",
    "LiveDatabaseBusyError",
    "SnapshotMissingError",
    "default_snapshot_path",
    "open_for_query",
    "open_snapshot",
    "publish",
    "publish_now",
]

STORAGE_VERSION = "v1.5.0"
_ALIAS = "analyst_snapshot"


class SnapshotMissingError(BillingError, FileNotFoundError):
    """No analyst snapshot has been published at the expected path yet."""


class LiveDatabaseBusyError(BillingError, RuntimeError):
    """The live database is held by a running job (DuckDB's file lock)."""


# the database table behind a lake view (migrations 025 and 027 renamed them), and the view's comment
VIEW_OF = {ATTEMPTS.table: ATTEMPTS.view, RATED.table: RATED.view}
VIEW_COMMENTS = {ATTEMPTS.view: ATTEMPTS_COMMENT, RATED.view: RATED_COMMENT}
# tables analysts do not get: lookup keys as large as the history (copying them would make
# every publication O(history)), whose hash values mean nothing outside this DuckDB build
INTERNAL_TABLES = (ATTEMPT_KEYS.former, ATTEMPT_KEYS.table)


def default_snapshot_path(db_path: Path) -> Path:
    """``data/infergate.duckdb`` -> ``data/infergate.analyst.duckdb``."""
    db_path = Path(db_path)
    return db_path.with_name(f"{db_path.stem}.analyst.duckdb")


def _remove(path: Path) -> None:
    for stale in (path, path.with_name(path.name + ".wal")):
        if stale.exists():
            stale.chmod(0o644)
            stale.unlink()


def publish(con: duckdb.DuckDBPyConnection, target: Path) -> Path:
    """Publish the committed content of ``con``'s database at ``target``, atomically.

    Call with no transaction open, while holding the run lock (so nothing changes meanwhile).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lake_path = lake.lake_dir(lake.database_path(con))
    lake.export_pending(con, lake_path)
    files = lake.LakeFiles.listed(con, lake_path)
    tmp = target.with_name(f".{target.name}.tmp")
    _remove(tmp)
    row = con.execute("SELECT current_database()").fetchone()
    assert row is not None
    source = str(row[0])
    con.execute(f"ATTACH ? AS {_ALIAS} (STORAGE_VERSION '{STORAGE_VERSION}')", [str(tmp)])
    try:
        con.execute(f"COPY FROM DATABASE {sql_identifier(source)} TO {_ALIAS} (SCHEMA)")
        con.execute("BEGIN TRANSACTION")
        try:
            _fill(con, source, files)
        except BaseException:
            con.execute("ROLLBACK")  # else DETACH fails on the aborted transaction and hides why
            raise
        con.execute("COMMIT")
    finally:
        con.execute(f"DETACH {_ALIAS}")
    try:
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        tmp.chmod(0o444)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            _remove(tmp)
    return target


def _fill(con: duckdb.DuckDBPyConnection, source: str, files: lake.LakeFiles) -> None:
    """Rows of the small tables; the lake tables replaced by views over their files."""
    tables = con.execute(
        "SELECT schema_name, table_name, comment FROM duckdb_tables() WHERE database_name = ? ORDER BY ALL", [source]
    ).fetchall()
    for schema, table, comment in tables:
        name = f"{sql_identifier(schema)}.{sql_identifier(table)}"
        lake_table = VIEW_OF.get(table, table)
        if schema == "main" and lake_table in lake.LAKE_TABLES:
            con.execute(f"DROP TABLE {_ALIAS}.{name}")
            view = f"{_ALIAS}.{sql_identifier(schema)}.{sql_identifier(lake_table)}"
            con.execute(f"CREATE VIEW {view} AS {lake.view_sql(con, lake_table, files)}")
            comment = VIEW_COMMENTS.get(lake_table, comment)
            if comment:
                con.execute(f"COMMENT ON VIEW {view} IS {sql_literal(comment)}")
            for column, text in con.execute(
                "SELECT column_name, comment FROM duckdb_columns() WHERE database_name = ? AND schema_name = ? "
                "AND table_name = ? AND comment IS NOT NULL ORDER BY column_index",
                [source, schema, table],
            ).fetchall():
                con.execute(f"COMMENT ON COLUMN {view}.{sql_identifier(column)} IS {sql_literal(text)}")
        elif schema == "main" and table in INTERNAL_TABLES:
            con.execute(f"DROP TABLE {_ALIAS}.{name}")
        else:
            con.execute(f"INSERT INTO {_ALIAS}.{name} SELECT * FROM {sql_identifier(source)}.{name}")


def open_snapshot(path: Path) -> duckdb.DuckDBPyConnection:
    """Open a published snapshot read-only (UTC session, no extension downloads)."""
    path = Path(path)
    if not path.is_file():
        raise SnapshotMissingError(
            f"no analyst snapshot at {path}",
            hint="one is published after every run (nightly, ingest, rate); publish it now with "
            "`infergate-billing snapshot`, or add --live to query the database itself",
        )
    return connect(path, read_only=True)


def publish_now(db_path: Path, target: Path | None = None, memory_limit: str | None = None) -> Path:
    """Publish a snapshot outside a run (e.g. after a manual fix): under the run lock, so no
    job writes meanwhile; refused at once (ConcurrentRunError) while one runs. ``memory_limit``
    as for a run (without one, copying a large database takes most of the RAM)."""
    target = target or default_snapshot_path(db_path)
    if not Path(db_path).is_file():
        raise DatabaseMissing.at(db_path)
    with exclusive_run(Path(db_path), "snapshot"):
        con = connect(db_path, memory_limit=memory_limit)
        try:
            return publish(con, target)
        finally:
            con.close()


def open_for_query(db_path: Path, snapshot_path: Path | None, live: bool = False) -> duckdb.DuckDBPyConnection:
    """A read-only connection for ad-hoc queries: the snapshot, or with ``live`` the database.

    Opening the live file read-only fails while a job writes it, and a reader that stays open
    makes the next job fail: keep such sessions short.
    """
    if not live:
        target = snapshot_path or default_snapshot_path(db_path)
        if not Path(target).is_file() and not Path(db_path).is_file():
            raise DatabaseMissing.at(db_path)  # no snapshot because there is no database at all
        return open_snapshot(target)
    if not Path(db_path).is_file():
        raise DatabaseMissing.at(db_path)
    try:
        return connect(db_path, read_only=True)
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            raise
        raise LiveDatabaseBusyError(
            f"database {db_path} is being written by a running job; query the analyst snapshot "
            "instead (drop --live), or retry when the job has finished"
        ) from None
