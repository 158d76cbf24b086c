"""Opening the billing database: UTC session, no network, named migrations.

Every connection pins ``TimeZone = 'UTC'`` (SPEC E2: periods are UTC months and a session in
another zone would move records across a month boundary) and never installs or downloads
extensions at run time.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import duckdb

from core.errors import MissingInput
from core.faults import fault_point
from core.timing import started

# The SQL files and migrations stay where they always were, as data of the ``pipeline`` package
# (package-data in pyproject.toml; rules_hash() covers them by name and bytes). Reading them
# imports only the empty ``pipeline/__init__.py``, never pipeline's modules, so this module
# stays in the bottom layer (tests/test_import_layers.py).
_PACKAGE = "pipeline"


class DatabaseMissing(MissingInput):
    """A command that only reads the database was pointed at a file that does not exist.

    DuckDB's own error (``IO Error: Cannot open database ... database does not exist``) names
    neither the option nor how a database comes to exist; this one does (exit code 2).
    """

    @classmethod
    def at(cls, path: Path | str) -> DatabaseMissing:
        return cls(
            f"{path}: no such database",
            hint="check --db or INFERGATE_DB; a database is created by its first `nightly` or `ingest` run",
        )


def sql_text(name: str) -> str:
    """The text of a SQL file shipped in ``pipeline/sql/``."""
    return resources.files(_PACKAGE).joinpath("sql", name).read_text(encoding="utf-8")


def _migration_names() -> list[str]:
    folder = resources.files(_PACKAGE).joinpath("migrations")
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))


def _migration_text(name: str) -> str:
    return resources.files(_PACKAGE).joinpath("migrations", name).read_text(encoding="utf-8")


def _migrations() -> list[tuple[str, str]]:
    return [(name, _migration_text(name)) for name in _migration_names()]


def rules_hash() -> str:
    """sha256 over every shipped SQL file: identifies the rating rules a run used."""
    digest = hashlib.sha256()
    for folder in ("sql", "migrations"):
        root = resources.files(_PACKAGE).joinpath(folder)
        for name in sorted(p.name for p in root.iterdir() if p.name.endswith(".sql")):
            digest.update(name.encode())
            digest.update(root.joinpath(name).read_bytes())
    return digest.hexdigest()


def code_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("infergate-billing")
    except PackageNotFoundError:  # running from a source tree
        package = "0+source"
    return f"{package}+rules.{rules_hash()[:12]}"


def connect(
    path: Path | str,
    read_only: bool = False,
    memory_limit: str | None = None,
    documented: bool = True,
    run_tables: bool = False,
    lake_views: bool = True,
) -> duckdb.DuckDBPyConnection:
    """Open the database with the session settings billing depends on.

    ``documented=False`` (an in-memory scratch database only, such as replay's) migrates
    without the ~600 ``COMMENT ON`` statements: nobody browses its catalog, and they are
    two thirds of a fresh migration's ~0.4 s.

    ``memory_limit`` bounds DuckDB's buffer memory (e.g. ``2GB``; None: DuckDB's default of
    80% of RAM); beyond it, joins, sorts and TEMP tables spill to ``<db>.tmp/`` beside the
    database, so a day ten times larger than usual runs slower instead of running out of memory.
    ``INFERGATE_DUCKDB_THREADS`` bounds DuckDB's worker threads (default one per core): processes
    sharing a machine, such as the test suite's two workers on two cores, run faster with one each.
    ``run_tables``: for a run that stores rows of the lake tables (:func:`core.attempt_store.open_lake_views`).
    ``lake_views=False``: without the views ``attempts``, ``rated_attempts`` and ``attempt_keys``
    (their refresh is ~25 ms), for a reader of other tables only, such as ``replay --verify``
    comparing two runs' ledgers; :func:`core.attempt_store.refresh_lake_views` makes them later.
    """
    config: dict[str, str | bool | int | float | list[str]] = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
    if memory_limit:
        config["memory_limit"] = memory_limit
    threads = os.environ.get("INFERGATE_DUCKDB_THREADS", "").strip()
    if threads:  # DuckDB's worker threads (default: one per core), for a machine it shares
        if not threads.isdigit() or int(threads) < 1:
            raise ValueError(f"INFERGATE_DUCKDB_THREADS must be a whole number of threads >= 1, not {threads!r}")
        config["threads"] = int(threads)
    if not documented and str(path) != ":memory:":
        raise ValueError("only an in-memory scratch database is migrated without its comments")
    if read_only and str(path) != ":memory:" and not Path(path).is_file():
        raise DatabaseMissing.at(path)  # before mkdir: a reader must not create directories
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        config["temp_directory"] = str(Path(path).with_name(Path(path).name + ".tmp"))
    con = duckdb.connect(str(path), read_only=read_only, config=config)
    con.execute("SET TimeZone = 'UTC'")
    if not read_only:
        remove_stale_temp_files(con)
        migrate(con, documented=documented)
        check_lookup_keys(con)
    if not lake_views:
        return con
    from core.attempt_store import open_lake_views  # imports this module

    try:
        open_lake_views(con, run_tables=run_tables and not read_only)
    except BaseException:
        con.close()
        raise
    return con


def remove_stale_temp_files(con: duckdb.DuckDBPyConnection) -> list[Path]:
    """Delete spill files that a killed process left in DuckDB's temp directory.

    Under a memory limit DuckDB spills TEMP tables to ``<db>.tmp/duckdb_temp_<pid>_*``; the
    staged log lines are among them, so a spill file holds raw prompt text and raw API keys.
    DuckDB deletes them when a connection closes, but not after a SIGKILL, and not when the
    next process opens the database. A read-write connection holds DuckDB's exclusive file
    lock, so no other process can be using that directory: every file of another pid is a
    leftover, and is removed.
    """
    row = con.execute("SELECT current_setting('temp_directory')").fetchone()
    folder = Path(row[0]) if row and row[0] else None
    if folder is None or not folder.is_dir():
        return []
    mine = f"duckdb_temp_{os.getpid()}_"
    removed = []
    for item in folder.glob("duckdb_temp_*"):
        if item.is_file() and not item.name.startswith(mine):
            item.unlink(missing_ok=True)
            removed.append(item)
    return removed


_KEY_PROBE = "SELECT CAST(hash('infergate lookup key') AS VARCHAR)"


def check_lookup_keys(con: duckdb.DuckDBPyConnection) -> None:
    """Recompute the attempts' lookup keys if this DuckDB's ``hash()`` differs from the one
    that wrote them (migration 006): a stale key would let a duplicate event through dedup."""
    row = con.execute(_KEY_PROBE).fetchone()
    assert row is not None
    probe = str(row[0])
    stored = con.execute("SELECT value FROM rating_state WHERE key = 'lookup_key_hash'").fetchone()
    if stored is not None and stored[0] == probe:
        return
    with transaction(con):
        if stored is not None:
            from core.attempt_store import (  # imports this module
                ATTEMPT_KEYS,
                attempts_of_runs,
                attempts_table,
                stored_table,
            )

            con.execute(
                f"UPDATE {attempts_table(con)} "
                "SET event_key = hash(event_id), request_key = hash(account_id, request_id)"
            )
            # the attempts stored in the lake (migration 025): their keys live only in attempt_keys,
            # since migration 045 in its lake files, which are immutable: every key is computed
            # again into the table, the files are no longer listed (the next run removes them),
            # and the next run that stores attempts moves the table's keys into its own file
            keys = stored_table(con, ATTEMPT_KEYS)
            con.execute(f"DELETE FROM {keys}")
            con.execute(
                f"INSERT INTO {keys} SELECT hash(event_id), hash(account_id, request_id), run_id "
                f"FROM ({attempts_of_runs(con)})"
            )
            if table_exists(con, "lake_files"):
                con.execute("DELETE FROM lake_files WHERE table_name = ?", [ATTEMPT_KEYS.view])
        con.execute("INSERT OR REPLACE INTO rating_state VALUES ('lookup_key_hash', ?)", [probe])


#: Migrations renamed after a database may have applied them under the old name: applied once.
#: 034 was 033_lake_file_parts.sql on main for a few commits (layout 6's 033 was written beside it).
RENAMED_MIGRATIONS = {"034_lake_file_parts.sql": "033_lake_file_parts.sql"}


_COMMENT_ON = re.compile(r"(?:\s*--[^\n]*\n)*\s*COMMENT\s+ON\b", re.I)  # after any comment lines


def pending_migrations(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The names of the shipped migrations ``con``'s database has not recorded (all of them
    before its first run): a read-write open applies them, a reader sees the schema as it is.
    Names only: a listing checks this on every open, and reads no migration's text."""
    if not table_exists(con, "schema_migrations"):
        return _migration_names()
    done = {row[0] for row in con.execute("SELECT name FROM schema_migrations").fetchall()}
    done |= {new for new, old in RENAMED_MIGRATIONS.items() if old in done}
    return [name for name in _migration_names() if name not in done]


def migrate(con: duckdb.DuckDBPyConnection, documented: bool = True) -> list[str]:
    """Apply the named migrations not yet recorded, all of them in one transaction.

    One transaction, not one per file: an upgrade across several migrations is as atomic as
    a run, so a crash never leaves a schema that no released version of the code expects.
    ``documented=False``: leave out the ``COMMENT ON`` statements (see :func:`connect`).
    """
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " name VARCHAR PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    pending = [(name, _migration_text(name)) for name in pending_migrations(con)]
    if not pending:
        return []
    con.execute("BEGIN TRANSACTION")
    try:
        for name, text in pending:
            if documented:
                con.execute(text)
            else:
                kept = [s.query for s in duckdb.extract_statements(text) if not _COMMENT_ON.match(s.query)]
                con.execute(";\n".join(kept))
            con.execute("INSERT INTO schema_migrations (name) VALUES (?)", [name])
        fault_point("migration:before_commit")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return [name for name, _ in pending]


@contextmanager
def transaction(
    con: duckdb.DuckDBPyConnection,
    *,
    before_commit: str | None = None,
    after_commit: str | None = None,
    timed: str | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """All or nothing: a crash or error inside leaves the database as it was before.

    ``before_commit`` / ``after_commit`` name the fault injection points passed once the block
    has ended without an error, just before and just after the COMMIT (``core.faults``);
    ``timed`` names the step the COMMIT is timed as (``core.timing``).
    """
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
        if before_commit is not None:
            fault_point(before_commit)
    except BaseException:
        con.execute("ROLLBACK")
        raise
    committed = started(timed) if timed is not None else None
    con.execute("COMMIT")
    if committed is not None:
        committed()
    if after_commit is not None:
        fault_point(after_commit)


_WHEN = re.compile(r"^-- when (\w+)\b", re.M)


def run_script(
    con: duckdb.DuckDBPyConnection,
    name: str,
    params: dict[str, object] | None = None,
    when: dict[str, bool] | None = None,
) -> None:
    """Run a multi-statement SQL file from ``pipeline/sql/``, statement by statement.

    Statements end with ``;`` at the end of a line; named ``$parameters`` are passed to the
    statements that use them. A statement with a line ``-- when NAME`` runs only when
    ``when[NAME]`` is true: the caller knows it would change nothing (e.g. no line to
    quarantine), and planning it can cost more than a small run's whole work (each
    ``mask_secrets`` call site compiles its regex, ~10 ms). Its fault point is passed either
    way, so the points keep their numbers.
    """
    for statement in _statements(sql_text(name)):
        condition = _WHEN.search(statement)
        if condition is None or (when or {})[condition.group(1)]:
            used = {k: v for k, v in (params or {}).items() if f"${k}" in statement}
            con.execute(statement, used or None)
        fault_point(f"sql:{name}")


def _statements(text: str) -> list[str]:
    parts, current = [], []
    for line in text.splitlines():
        current.append(line)
        if line.rstrip().endswith(";") and not line.lstrip().startswith("--"):
            parts.append("\n".join(current).rstrip().rstrip(";"))
            current = []
    tail = "\n".join(current).strip()
    if tail and not all(text.strip().startswith("--") or not text.strip() for text in current):
        parts.append(tail)
    return [p for p in parts if p.strip()]


@dataclass(frozen=True)
class CatalogSnapshot:
    """The tables (schema ``main`` of every attached database, ``temp`` included) and the
    databases' files, read once, and the columns of the tables looked up so far. A catalog
    query costs about 1 ms however little it asks, and building the lake views asked ~50 of
    them (a refresh took ~41 ms, ~28 with the snapshot; five refreshes a nightly and one a
    connection; issue 14): inside :func:`catalog_snapshot` they are answered from here."""

    current: str
    tables: frozenset[tuple[str, str]]  # (database, table)
    columns: dict[tuple[str, str], list[tuple[str, str]]]  # filled by the lake's lookups as they ask
    paths: dict[str, str]  # database -> its file ('' in memory)


_SNAPSHOTS: dict[int, CatalogSnapshot] = {}


@contextmanager
def catalog_snapshot(
    con: duckdb.DuckDBPyConnection, columns: dict[tuple[str, str], list[tuple[str, str]]] | None = None
) -> Iterator[CatalogSnapshot]:
    """Answer :func:`table_exists` and the lake's catalog lookups for ``con`` from one reading
    of its catalog until the block ends. Only for blocks that create or drop no table (views
    may be created: they are not tables); nested blocks share the outer snapshot. ``columns``:
    tables' columns an earlier snapshot looked up, still so (only tables were created since)."""
    if id(con) in _SNAPSHOTS:
        yield _SNAPSHOTS[id(con)]
        return
    tables = con.execute("SELECT database_name, table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()
    current = con.execute("SELECT current_database()").fetchone()
    paths = con.execute("SELECT database_name, coalesce(path, '') FROM duckdb_databases()").fetchall()
    snapshot = CatalogSnapshot(
        current=str(current[0]) if current else "",
        tables=frozenset((str(d), str(t)) for d, t in tables),
        columns=dict(columns or {}),
        paths={str(d): str(p) for d, p in paths},
    )
    _SNAPSHOTS[id(con)] = snapshot
    try:
        yield snapshot
    finally:
        del _SNAPSHOTS[id(con)]


def active_snapshot(con: duckdb.DuckDBPyConnection) -> CatalogSnapshot | None:
    """The :func:`catalog_snapshot` open for ``con``, if any."""
    return _SNAPSHOTS.get(id(con))


def table_exists(con: duckdb.DuckDBPyConnection, table: str, database: str | None = None) -> bool:
    """Whether ``database`` (default: the current one; ``temp`` for TEMP tables) has the table
    ``main.<table>``: code that also opens databases not migrated that far asks first."""
    snapshot = _SNAPSHOTS.get(id(con))
    if snapshot is not None:
        return (database or snapshot.current, table) in snapshot.tables
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = coalesce(?, current_database()) "
        "AND schema_name = 'main' AND table_name = ?",
        [database, table],
    ).fetchone()
    return bool(row and row[0])


def column_exists(con: duckdb.DuckDBPyConnection, table: str, column: str, database: str | None = None) -> bool:
    """Whether ``database`` (default: the current one) has ``main.<table>.<column>``: a database
    read without migrating it (replay's ``live``) may predate the migration that added it."""
    row = con.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE database_name = coalesce(?, current_database()) "
        "AND schema_name = 'main' AND table_name = ? AND column_name = ?",
        [database, table, column],
    ).fetchone()
    return bool(row and row[0])


def sql_literal(text: str) -> str:
    """``text`` as a SQL string literal, for statements that take no parameters (COPY ... TO,
    COMMENT ON, a view's body)."""
    return "'" + text.replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def insert_many(con: duckdb.DuckDBPyConnection, statement: str, rows: Sequence[Sequence[object]]) -> None:
    """``executemany`` for ``INSERT INTO t [(columns)] VALUES (?, ...)``; accepts no rows.

    DuckDB runs ``executemany`` one statement per row (about 0.3 ms each: 9 s for the 26,000
    recounts of a 1M-attempt day), so from ``BULK_ROWS`` rows on the rows go in as one Arrow
    table instead, with the same implicit casts to the target columns. Arrow keeps Python
    ints, strings and Decimals exact (a Decimal column becomes decimal128 of the scale its
    values need).
    """
    if not rows:
        return
    match = _INSERT_VALUES.fullmatch(statement.strip())
    if len(rows) < BULK_ROWS or match is None:
        con.executemany(statement, rows)
        return
    import pyarrow as pa

    width = len(rows[0])
    try:
        table = pa.table({f"c{i}": pa.array([row[i] for row in rows]) for i in range(width)})
    except (pa.ArrowException, ValueError, TypeError):  # values Arrow cannot type (mixed kinds)
        con.executemany(statement, rows)
        return
    values = iter(f"c{i}" for i in range(width))
    select = re.sub(r"\?", lambda _: next(values), match["values"])
    con.register("insert_many_rows", table)
    try:
        con.execute(f"INSERT INTO {match['target']} SELECT {select} FROM insert_many_rows")
    finally:
        con.unregister("insert_many_rows")


BULK_ROWS = 64
_INSERT_VALUES = re.compile(r"INSERT INTO (?P<target>[\w.]+(?:\s*\([\w\s,]+\))?)\s+VALUES\s*\((?P<values>.*)\)", re.S)
