"""The Parquet lake of the per-attempt tables: what the analyst snapshot reads them from.

Why. The analyst snapshot used to be a copy of the whole database, published after every
run: a cost that grew with history (72 s for 31 days at 1M attempts a day). The two tables
that grow by the day, ``attempts`` and ``rated_attempts``, are insert-only but for one case
(a run replaces the rated rows of earlier runs' attempts: a late retry, a re-rate), so each
run's rows can be written once, as immutable Parquet files beside the database, and the
snapshot can read them through views instead of copying them (``pipeline.snapshot``).

Since migrations 025 (attempts) and 027 (rated rows and tombstones) a run writes its own
files, inside its transaction, as the only copy of those rows (``core.attempt_store``); this
module exports only what is still in the tables: the rows stored before those migrations, and
tombstones recorded before 027.

Layout: ``<db stem>.lake/`` holds ``attempts/run-NNNNNN.parquet`` (the attempts the run
stored; a Spark nightly's tasks also write parts ``attempts/run-NNNNNN-part-NNNNNN.parquet``,
migration 034), ``rated_attempts/run-NNNNNN.parquet`` (the rated rows it wrote; a Spark
rating's tasks write them as parts ``-part-NNNNNN`` instead, migration 037) and
``rated_replaced/run-NNNNNN.parquet`` (tombstones: event_id and rated_run_id of the earlier
rated rows it replaced). A rated row is identified by (event_id, rated_run_id): run ids are
never reused, so a tombstone hides exactly the row version it names.

Guarantees. The manifest ``lake_files`` (migration 020) lists every file; readers follow it
only. :func:`export_pending` runs after a run's commit, under the run lock: it removes files
the manifest does not list (a publication killed half-way), writes the files of every run
after the last export (normally the one run just committed; after a crash before the
export, or on a database older than the lake, the runs since -- on an old database a
one-time export of its history), each to a temporary name, fsynced and renamed, then lists
them in one transaction. Since migration 027 a run writes its own tombstones file with its
rated rows, inside its transaction; tombstones recorded before (table ``rated_replaced``)
are moved to a file by the export, which empties the table in the manifest's transaction.
A rated file all of whose rows later runs replaced is *retired* (``rated_hidden``): it stays
listed and on disk (snapshots published before still read it) but the views leave it out.

The publication thus writes only what is still in the tables (nothing, on a database
migrated before its first run); history is read again only by the one-time export of an old
database, or when a listed copy is missing (a database restored without those copies): then
the copies are rebuilt from the database. If a later migration ever rewrites stored rows of
these tables, it must rebuild the lake too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from core.attempt_store import (
    LAKE_VIEWS,
    MERGED_KEYS,
    RATED,
    TOMBSTONES,
    LakeTable,
    computed_from,
    database_file,
    fsync_dir,
    lake_dir,
    lake_path,
    primary_files,
    remove_unlisted,
    retired,
    stored_columns,
    stored_table,
    write_parquet,
)
from core.db import sql_identifier, sql_literal, table_exists, transaction

__all__ = [
    "LAKE_TABLES",
    "TOMBSTONES",
    "LakeFiles",
    "database_path",
    "export_pending",
    "lake_dir",
    "view_sql",
]

# the lake's tables and the column naming the run that stored each row
LAKE_TABLES = {spec.view: spec.run_column for spec in LAKE_VIEWS}


def database_path(con: duckdb.DuckDBPyConnection) -> Path:
    """The file of ``con``'s current database (the lake lives beside it)."""
    path = database_file(con)
    if path is None:
        raise ValueError("the lake needs a database file (not an in-memory database)")
    return path


def export_pending(con: duckdb.DuckDBPyConnection, lake: Path) -> list[Path]:
    """Bring the lake up to date with the committed database; the files written.

    Call with no transaction open, while holding the run lock (nothing writes meanwhile).
    """
    lake.mkdir(parents=True, exist_ok=True)
    # retired rated files (every row re-rated later): no view reads them, `lake vacuum` may have
    # deleted them (pipeline/vacuum.py); they are never missing, and never re-exported
    is_retired = retired(RATED, "f") if table_exists(con, str(RATED.hidden)) else "false"
    # and keys files merged into another (migration 045): kept on disk until `lake vacuum`
    is_retired = f"({is_retired} OR f.table_name = {sql_literal(MERGED_KEYS)})"
    files = con.execute(f"SELECT path, {is_retired} FROM lake_files f").fetchall()
    listed = {p for p, gone in files if not gone}
    kept = {p for p, gone in files if gone}
    # the files holding the only copy of their rows (checked, or AttemptFileMissing)
    primary = {p.relative_to(lake).as_posix() for p in primary_files(con)}
    if any(not (lake / p).is_file() for p in listed):
        # the database was copied or restored without the copies the lake keeps of its tables:
        # export them again (the one-time export; the current rated rows need no tombstones)
        with transaction(con):
            con.execute(
                f"DELETE FROM lake_files f WHERE NOT list_contains($primary, path) AND NOT {is_retired}",
                {"primary": sorted(primary)},
            )
            con.execute("DELETE FROM lake_exports")
        listed = primary
    remove_unlisted(lake, listed | kept)
    # no export yet (a new database, or one older than the lake): every stored row is pending
    through = _optional(con, "SELECT max(through_run_id) FROM lake_exports")
    last = _optional(con, "SELECT max(run_id) FROM runs") or 0
    # (table, run, rows, query): a constant bound lets the zone maps on the run column skip
    # every older row group (a parameter or an OR would not be pushed into the scan)
    pending: list[tuple[str, int, int, str]] = []
    database = str((con.execute("SELECT current_database()").fetchone() or ("",))[0])
    for spec in LAKE_VIEWS:
        column = spec.run_column
        after = "" if through is None else f"WHERE {column} > {int(through)}"
        # the table's own rows (since migrations 025 and 027 a run writes its rows itself; a
        # plain "attempts" would name the connection's view over them)
        qualified = stored_table(con, spec, database)
        for run_id, rows in con.execute(
            f"SELECT {column}, count(*) FROM {qualified} {after} GROUP BY 1 ORDER BY 1"
        ).fetchall():
            pending.append((spec.view, run_id, rows, f"SELECT * FROM {qualified} WHERE {column} = {int(run_id)}"))
    for run_id, rows in con.execute(
        f"SELECT replaced_by_run, count(*) FROM {TOMBSTONES} GROUP BY 1 ORDER BY 1"
    ).fetchall():
        query = f"SELECT event_id, rated_run_id FROM {TOMBSTONES} WHERE replaced_by_run = {int(run_id)}"
        pending.append((TOMBSTONES, run_id, rows, query))
    if not pending and through is not None and last <= through:
        return []
    manifest = []
    for table, run_id, rows, query in pending:
        relative = lake_path(table, run_id)
        manifest.append((run_id, table, relative, rows, write_parquet(con, query, lake / relative)))
    for folder in {lake / table for table, *_ in pending} | {lake}:
        fsync_dir(folder)
    with transaction(con):
        for row in manifest:
            con.execute(
                "INSERT INTO lake_files (run_id, table_name, path, row_count, bytes, written_at) "
                "VALUES (?, ?, ?, ?, ?, now())",
                list(row),
            )
        con.execute(f"DELETE FROM {TOMBSTONES} WHERE replaced_by_run <= $last", {"last": last})
        con.execute("INSERT INTO lake_exports VALUES ($last, $files, now())", {"last": last, "files": len(manifest)})
    return [lake / relative for _, _, relative, _, _ in manifest]


def _optional(con: duckdb.DuckDBPyConnection, query: str) -> int | None:
    row = con.execute(query).fetchone()
    return None if row is None or row[0] is None else int(row[0])


@dataclass(frozen=True)
class LakeFiles:
    """The listed files of one database, by table, as absolute paths.

    Read right after :func:`export_pending`, which has checked that every listed file exists
    (or rebuilt the lake), under the same run lock: not checked again here."""

    files: dict[str, list[Path]]
    # the files of migration 039's layout (computed columns left out, encoded ones encoded)
    computed: frozenset[Path] = frozenset()

    @classmethod
    def listed(cls, con: duckdb.DuckDBPyConnection, lake: Path) -> LakeFiles:
        files: dict[str, list[Path]] = {t: [] for t in (*LAKE_TABLES, TOMBSTONES)}
        computed = set()
        since = {spec.view: computed_from(con, spec) for spec in LAKE_VIEWS}
        # less the rated files retired whole by a later re-rate (core/attempt_store.py)
        rows = con.execute(
            f"SELECT table_name, path, run_id FROM lake_files f WHERE NOT {retired(RATED, 'f')} "
            f"AND table_name <> {sql_literal(MERGED_KEYS)} ORDER BY run_id, table_name"
        ).fetchall()
        for table, relative, run_id in rows:
            path = (lake / relative).resolve()
            files.setdefault(table, []).append(path)
            first = since.get(table)
            if first is not None and run_id >= first:
                computed.add(path)
        return cls(files, frozenset(computed))


def _parquet(paths: list[Path]) -> str:
    return "read_parquet([" + ", ".join(sql_literal(str(p)) for p in paths) + "], union_by_name = true)"


def _read(spec: LakeTable, column: str, present: set[str], computed: bool) -> str:
    """How a view reads ``column`` from a file row ``r``: as stored, computed or decoded (a file
    of migration 039's layout), or NULL (no file has it yet)."""
    on_read = {**dict(spec.computed), **{c: decode for c, _, decode in spec.encoded}}
    if computed and column in on_read:
        return on_read[column]
    return f"r.{sql_identifier(column)}" if column in present else "NULL"


def view_sql(con: duckdb.DuckDBPyConnection, table: str, lake_files: LakeFiles) -> str:
    """The SELECT of the analyst view standing for ``table``: its listed files, with the live
    table's columns in order and types (a column no file has yet reads as NULL), rated rows
    minus the tombstoned ones. With no file yet: no rows, the same columns."""
    spec = next(spec for spec in LAKE_VIEWS if spec.view == table)
    columns = stored_columns(con, spec)
    files = lake_files.files.get(table, [])
    if not files:
        select = ", ".join(f'CAST(NULL AS {t}) AS "{c}"' for c, t in columns)
        return f"SELECT {select} WHERE false"
    tombstones = lake_files.files.get(TOMBSTONES, [])
    hidden = ""
    if table == "rated_attempts" and tombstones:
        hidden = (
            f" WHERE NOT EXISTS (SELECT 1 FROM {_parquet(tombstones)} AS t "
            "WHERE t.event_id = r.event_id AND t.rated_run_id = r.rated_run_id)"
        )
    # the files of each layout: with the columns computed on read (before migration 039, or a
    # table without any) and without them (core/attempt_store.py, file_select)
    parts = []
    for computed in (False, True):
        group = [f for f in files if (f in lake_files.computed) == computed]
        if not group:
            continue
        present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {_parquet(group)}").fetchall()}
        select = ", ".join(
            f"CAST({_read(spec, c, present, computed)} AS {t}) AS {sql_identifier(c)}" for c, t in columns
        )
        parts.append(f"SELECT {select} FROM {_parquet(group)} AS r{hidden}")
    return " UNION ALL ".join(parts)
