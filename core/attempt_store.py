"""Where stored attempts live: one Parquet file per run in the lake, read through a view.

Why (issue 14 item 3). Every accepted attempt used to be stored twice: in the database's
``attempts`` table and, after the run, in the lake file the analyst snapshot reads. The
table was the larger copy (DuckDB stores a day of attempts in ~1.7x the bytes of its zstd
Parquet file). Attempts are written once and never updated, so the lake file is enough:
since migration 025 a run writes its accepted attempts as ``<db stem>.lake/attempts/
run-NNNNNN.parquet`` inside its own transaction and lists the file in ``lake_files`` in that
transaction, so the file becomes part of the database exactly when the run commits
(``store_run_attempts``). A run that fails or is killed leaves an unlisted file, which no
reader follows and the next run removes.

How it is read. Each connection (``core.db.connect``) gets a TEMP view ``attempts`` that
shadows the table of that name: the rows still in the table (stored before migration 025,
or in a database without a file, such as replay's scratch database), the attempts the
current run has stored so far (the TEMP table ``run_attempts``), and the listed files. The
view keeps the table's columns and types; ``event_key`` and ``request_key`` (DuckDB
``hash()`` values, which a DuckDB upgrade changes) are not written to the files: the
``attempt_keys`` table holds them for every stored attempt, and the view reads NULL for
them in lake rows.

Queries that need only a few runs' attempts (dedup's stored twins, the rating scope) read
:func:`attempts_of_runs`, which opens only those runs' files.

Back up the lake directory with the database: the attempts of runs since migration 025 are
nowhere else.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import duckdb

from core.db import sql_identifier, sql_literal
from core.errors import BillingError

__all__ = [
    "ATTEMPTS_COMMENT",
    "RUN_ATTEMPTS",
    "STORED_TABLE",
    "AttemptFileMissing",
    "attempts_of_runs",
    "attempts_table",
    "database_file",
    "fsync_dir",
    "lake_dir",
    "lake_path",
    "listed_attempt_files",
    "prepare_run_attempts",
    "refresh_attempts_view",
    "remove_unlisted",
    "remove_unlisted_lake_files",
    "store_run_attempts",
    "write_parquet",
]

RUN_ATTEMPTS = "run_attempts"  # TEMP table: the attempts the current run has stored so far
ATTEMPTS_DIR = "attempts"
# columns of the attempts table that the files do not carry (attempt_keys holds them)
KEY_COLUMNS = ("event_key", "request_key")


class AttemptFileMissing(BillingError, RuntimeError):
    """A listed attempts file is not on disk: the database was copied without its lake."""

    default_hint = "copy or restore the database together with its .lake directory (docs/operations.md)"


def lake_dir(db_path: Path) -> Path:
    """``data/infergate.duckdb`` -> ``data/infergate.lake``."""
    db_path = Path(db_path)
    return db_path.with_name(f"{db_path.stem}.lake")


def database_file(con: duckdb.DuckDBPyConnection, database: str | None = None) -> Path | None:
    """The file of ``database`` (default: the current one); None for an in-memory database."""
    if database is None:
        row = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    else:
        row = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = ?", [database]).fetchone()
    if row is None or not row[0]:
        return None
    return Path(str(row[0])).resolve()


def _current(con: duckdb.DuckDBPyConnection) -> str:
    return str((con.execute("SELECT current_database()").fetchone() or ("",))[0])


# what the view attempts is (the analyst snapshot's view carries it as its comment)
ATTEMPTS_COMMENT = (
    "Accepted upstream attempts, one row per event_id (R1), validated and typed. Prompt and output text are "
    "never stored; only whether they were present and the recounted token numbers."
)
# the table holding the attempts stored before migration 025 (it renamed the table
# ``attempts``, so that older code fails on the database instead of writing to it)
STORED_TABLE = "attempts_before_lake"


def _stored_name(con: duckdb.DuckDBPyConnection, database: str) -> str | None:
    """The attempts table's name in ``database``: ``attempts_before_lake``, or ``attempts`` in a
    database not migrated yet (opened read-only); None without a table (a view named
    ``attempts``, as in the analyst snapshot, is not one)."""
    names = {
        str(n)
        for (n,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'main' "
            "AND table_name IN (?, 'attempts')",
            [database, STORED_TABLE],
        ).fetchall()
    }
    return STORED_TABLE if STORED_TABLE in names else ("attempts" if names else None)


def attempts_table(con: duckdb.DuckDBPyConnection, database: str | None = None) -> str:
    """The attempts *table* of ``database`` (default: the current one), qualified. Queries
    read the view ``attempts`` instead; this is for the few that write the table."""
    database = database or _current(con)
    return f"{sql_identifier(database)}.main.{_stored_name(con, database) or STORED_TABLE}"


def _table_columns(con: duckdb.DuckDBPyConnection, database: str) -> list[tuple[str, str]]:
    """The attempts table's columns; none when ``database`` has no such table."""
    name = _stored_name(con, database)
    if name is None:
        return []
    rows = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = ? "
        "AND schema_name = 'main' AND table_name = ? ORDER BY column_index",
        [database, name],
    ).fetchall()
    return [(str(c), str(t)) for c, t in rows]


def listed_attempt_files(
    con: duckdb.DuckDBPyConnection, database: str | None = None, runs: Iterable[int] | None = None
) -> list[Path]:
    """Attempts files listed in ``database``'s manifest that hold the only copy (migration 025
    on), optionally only those of ``runs``; each checked to exist with the size the manifest
    recorded (a file restored from another run, or cut short by a partial copy, is refused
    here instead of being read as attempts)."""
    database = database or _current(con)
    path = database_file(con, database)
    if path is None or not _has_marker(con, database):
        return []
    where = ""
    if runs is not None:
        where = f" AND f.run_id IN ({', '.join(str(int(r)) for r in runs) or 'NULL'})"
    rows = con.execute(
        f"SELECT f.path, f.bytes FROM {sql_identifier(database)}.main.lake_files f, "
        f"{sql_identifier(database)}.main.rating_state s "
        "WHERE f.table_name = 'attempts' AND s.key = 'attempts_in_lake_from_run' "
        f"AND f.run_id >= CAST(s.value AS BIGINT){where} ORDER BY f.run_id"
    ).fetchall()
    lake = lake_dir(path)
    files = [(lake / str(p), int(size)) for p, size in rows]
    missing = [p for p, _ in files if not p.is_file()]
    if missing:
        raise AttemptFileMissing(
            f"{len(missing)} attempts file(s) listed in the database are missing, first {missing[0]}: "
            f"the database was copied or restored without its lake directory; restore {lake} beside it "
            "(it holds the only copy of those attempts)"
        )
    damaged = [(p, size) for p, size in files if p.stat().st_size != size]
    if damaged:
        first, size = damaged[0]
        raise AttemptFileMissing(
            f"{len(damaged)} attempts file(s) differ from what the database listed, first {first} "
            f"({first.stat().st_size:,} bytes, listed with {size:,}): restore {lake} from the backup "
            "taken with this database (it holds the only copy of those attempts)"
        )
    return [p for p, _ in files]


def _has_marker(con: duckdb.DuckDBPyConnection, database: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'main' "
        "AND table_name IN ('lake_files', 'rating_state', 'attempt_keys')",
        [database],
    ).fetchone()
    return bool(row and row[0] == 3)


def attempts_of_runs(
    con: duckdb.DuckDBPyConnection, runs: Iterable[int] | None = None, database: str | None = None
) -> str:
    """A SELECT of the stored attempts (of ``runs`` only, when given), with the table's
    columns: the table's rows, the current run's (when ``database`` is the current one) and
    the listed files. Build it again after a run lists a new file."""
    current = _current(con)
    database = database or current
    run_list = None if runs is None else sorted({int(r) for r in runs})
    in_runs = "" if run_list is None else f" WHERE run_id IN ({', '.join(map(str, run_list)) or 'NULL'})"
    columns = _table_columns(con, database)
    names = ", ".join(f'"{c}"' for c, _ in columns)
    parts = [f"SELECT {names} FROM {attempts_table(con, database)}{in_runs}"]
    if database == current and _has_run_table(con):
        parts.append(f"SELECT {names} FROM temp.main.{RUN_ATTEMPTS}{in_runs}")
    files = listed_attempt_files(con, database, run_list)
    if files:
        paths = ", ".join(sql_literal(str(p)) for p in files)
        cast = ", ".join(
            f'CAST(NULL AS {t}) AS "{c}"' if c in KEY_COLUMNS else f'CAST("{c}" AS {t}) AS "{c}"' for c, t in columns
        )
        parts.append(f"SELECT {cast} FROM read_parquet([{paths}]){in_runs}")
    return " UNION ALL ".join(parts)


def _has_run_table(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'temp' AND table_name = ?", [RUN_ATTEMPTS]
    ).fetchone()
    return bool(row and row[0])


def refresh_attempts_view(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)create this connection's TEMP view ``attempts`` over every stored attempt.

    Called when a connection opens and when a run lists its file; a rollback restores the
    view the transaction started with. The file list is fixed in the view: if another
    connection lists a file meanwhile, reading the view fails (``stale attempts view``)
    instead of leaving that run's attempts out; call this again to see them."""
    current = _current(con)
    if not _table_columns(con, current):
        return  # not a billing database (yet)
    select = attempts_of_runs(con)
    if _has_marker(con, current):
        listed = f"(SELECT count(*) FROM {sql_identifier(current)}.main.lake_files WHERE table_name = 'attempts')"
        row = con.execute(f"SELECT {listed}").fetchone()
        count = int(row[0]) if row else 0
        guard = (
            f"CASE WHEN {listed} = {count} THEN TRUE ELSE error('stale attempts view: a run listed new "
            "attempts files after this connection read the manifest; call "
            "core.attempt_store.refresh_attempts_view(con) or reconnect') END"
        )
        select = f"SELECT * FROM ({select}) WHERE {guard}"
    con.execute(f"CREATE OR REPLACE TEMP VIEW attempts AS {select}")


def prepare_run_attempts(con: duckdb.DuckDBPyConnection) -> None:
    """Create the TEMP table ``run_attempts`` a run stores its attempts in (see the module doc)."""
    if not _has_run_table(con):
        con.execute(f"CREATE TEMP TABLE {RUN_ATTEMPTS} AS SELECT * FROM {attempts_table(con)} LIMIT 0")
        refresh_attempts_view(con)


def lake_path(table: str, run_id: int) -> str:
    """Where a run's file of a lake table lives, relative to the lake: ``attempts/run-000042.parquet``."""
    return f"{table}/run-{run_id:06d}.parquet"


def store_run_attempts(con: duckdb.DuckDBPyConnection, run_id: int) -> Path | None:
    """Move the run's attempts from ``run_attempts`` into their lake file, listed in the
    manifest. Call inside the run's transaction, as its last write before the ledger row.

    Without a database file (an in-memory database) they go into the attempts table."""
    if not _has_run_table(con):
        return None
    row = con.execute(f"SELECT count(*) FROM {RUN_ATTEMPTS}").fetchone()
    rows = int(row[0]) if row else 0
    if rows == 0:
        return None
    path = database_file(con)
    if path is None:
        con.execute(f"INSERT INTO {attempts_table(con)} SELECT * FROM {RUN_ATTEMPTS}")
        con.execute(f"DELETE FROM {RUN_ATTEMPTS}")  # the view reads both: nothing to refresh
        return None
    relative = lake_path(ATTEMPTS_DIR, run_id)
    target = lake_dir(path) / relative
    # in the order stored (the files' line order, about ts order): measured on a 200k day,
    # 77 B an attempt, where sorting by account and request gave 82 B and cost a sort
    size = write_parquet(con, f"SELECT * EXCLUDE ({', '.join(KEY_COLUMNS)}) FROM {RUN_ATTEMPTS}", target)
    fsync_dir(target.parent)
    con.execute(
        "INSERT INTO lake_files VALUES ($run, 'attempts', $path, $rows, $bytes, now())",
        {"run": run_id, "path": relative, "rows": rows, "bytes": size},
    )
    con.execute(f"DELETE FROM {RUN_ATTEMPTS}")
    refresh_attempts_view(con)
    return target


def write_parquet(con: duckdb.DuckDBPyConnection, query: str, target: Path) -> int:
    """``query``'s rows as a zstd Parquet file at ``target`` (its size): written under a
    temporary name, fsynced, renamed, so that ``target`` is never a half-written file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    con.execute(f"COPY ({query}) TO {sql_literal(str(tmp))} (FORMAT parquet, COMPRESSION zstd)")
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    return target.stat().st_size


def fsync_dir(path: Path) -> None:
    """Make the names written in directory ``path`` durable (after renames into it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_unlisted(lake: Path, listed: set[str]) -> list[Path]:
    """Delete the files under ``lake`` that ``listed`` (manifest paths) does not name: left by
    a run or a publication that failed or was killed after writing them."""
    removed = []
    for path in sorted(lake.rglob("*")) if lake.is_dir() else []:
        if path.is_file() and path.relative_to(lake).as_posix() not in listed:
            path.unlink()
            removed.append(path)
    return removed


def remove_unlisted_lake_files(con: duckdb.DuckDBPyConnection) -> list[Path]:
    """:func:`remove_unlisted` against the committed manifest. Call under the run lock,
    before the run writes."""
    path = database_file(con)
    if path is None:
        return []
    return remove_unlisted(lake_dir(path), {str(p) for (p,) in con.execute("SELECT path FROM lake_files").fetchall()})


def copy_database(source: Path, target: Path) -> Path:
    """Copy a closed database file together with its lake (which holds its attempts since
    migration 025): what a backup or a scratch copy must take. Returns ``target``."""
    source, target = Path(source), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    if lake_dir(target).exists():
        shutil.rmtree(lake_dir(target))
    if lake_dir(source).is_dir():
        shutil.copytree(lake_dir(source), lake_dir(target))
    return target
