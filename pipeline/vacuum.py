"""Deleting the rated files no view reads any more, once no published snapshot can either.

A re-rate replaces every rated row of the files of its days: reference data changed (a new
account in accounts.toml re-rates every open period), a price edit, ``rate --period``. Those
files are then *retired* (core/attempt_store.py: every row replaced, the views skip them) but
kept on disk, because the analyst snapshot published before the re-rate names them and an
analyst may have it open. So each re-rate of an open month leaves a whole copy of the month's
rated rows behind, and the lake grows with the number of reference changes, not with traffic.

``lake vacuum`` deletes a retired file when

- a publication of the analyst snapshot after the retiring run (``lake_exports``: every
  publication records when it committed and the last run it holds) is at least
  ``older_than`` old (default 24 hours): the snapshot that named the file was replaced then,
  and a session opened on it before is taken to be closed by now. Without such a publication
  (a run with ``--no-snapshot``, a publication that failed) the file is kept; and
- the published snapshot (``--snapshot``, else ``<db>.analyst.duckdb``) does not name it.

It also deletes the keys files runs merged into files of their own (migration 045,
``core.attempt_store.merge_key_files``, listed as ``attempt_keys_merged``): no view or snapshot
reads them; they are kept until now only for a backup that copied the database before the
merge and the lake after it.

It holds the run lock, so no run retires, lists or reads files meanwhile. The manifest rows
stay: ``lake_files`` still says which run wrote how many rows, and ``rated_hidden`` which run
replaced them (the audit trail); a retired file is never read again, so its absence is no
damage (the lake checks of core/attempt_store.py look at the files views read). Nothing is
written to the database: a crash between two deletions leaves files that a later vacuum
deletes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from core.attempt_store import MERGED_KEYS, RATED, database_file, fsync_dir, lake_dir, retired
from core.db import DatabaseMissing, connect, sql_literal, table_exists
from pipeline.lock import exclusive_run

DEFAULT_OLDER_THAN = timedelta(hours=24)


@dataclass(frozen=True)
class RetiredFile:
    """A rated file every row of which later runs replaced."""

    run_id: int  # the run that wrote it
    path: Path
    size: int  # bytes, as listed
    retired_by: int  # the run that replaced its last rows
    retired_at: datetime  # when that run finished (its ledger row's finished_at)
    on_disk: bool
    unnamed_since: datetime | None = None  # the first publication after it: no newer snapshot names it


@dataclass(frozen=True)
class VacuumReport:
    deleted: list[RetiredFile]
    kept_recent: list[RetiredFile]  # not yet older_than past the publication that dropped it
    kept_for_snapshot: list[RetiredFile]  # named by the published snapshot
    kept_unpublished: list[RetiredFile] = dataclasses.field(default_factory=list)  # no publication since
    # keys files a run merged into one of its own (migration 045): no view or snapshot reads them
    merged_keys: list[Path] = dataclasses.field(default_factory=list)

    @property
    def freed(self) -> int:
        return sum(f.size for f in self.deleted)


def retired_files(con: duckdb.DuckDBPyConnection) -> list[RetiredFile]:
    """Every retired rated file of ``con``'s database, oldest first, deleted ones included."""
    path = database_file(con)
    if path is None or not table_exists(con, str(RATED.hidden)):
        return []
    lake = lake_dir(path)
    rows = con.execute(
        f"""
        WITH retired_files AS (
            SELECT f.run_id, f.path, f.bytes, max(h.hidden_by_run) AS retired_by, max(r.finished_at) AS retired_at
            FROM lake_files f
            JOIN {RATED.hidden} h ON h.rated_run_id = f.run_id
            JOIN runs r ON r.run_id = h.hidden_by_run
            WHERE {retired(RATED, "f")}
            GROUP BY f.run_id, f.path, f.bytes
        )
        SELECT run_id, path, bytes, retired_by, retired_at,
               (SELECT min(e.exported_at) FROM lake_exports e WHERE e.through_run_id >= retired_by)
        FROM retired_files
        ORDER BY run_id
        """
    ).fetchall()
    return [
        RetiredFile(int(run), lake / str(p), int(size), int(by), at, (lake / str(p)).is_file(), published)
        for run, p, size, by, at, published in rows
    ]


def snapshot_names(snapshot_path: Path | None) -> str:
    """The SQL of the published snapshot's views (the lake files they read, by absolute path);
    empty when there is no snapshot."""
    if snapshot_path is None or not snapshot_path.is_file():
        return ""
    con = duckdb.connect(str(snapshot_path), read_only=True)
    try:
        return "\n".join(
            str(sql) for (sql,) in con.execute("SELECT sql FROM duckdb_views() WHERE NOT internal").fetchall()
        )
    finally:
        con.close()


def vacuum(
    db_path: Path,
    snapshot_path: Path | None,
    older_than: timedelta = DEFAULT_OLDER_THAN,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
) -> VacuumReport:
    """Delete the retired rated files no view or published snapshot reads (see the module doc),
    under the database's run lock (a run going on is refused, as two runs are)."""
    if not Path(db_path).is_file():  # before the lock, which would create its directory
        raise DatabaseMissing.at(Path(db_path))
    with exclusive_run(db_path, "lake vacuum"):
        con = connect(db_path, read_only=True)
        try:
            candidates = [f for f in retired_files(con) if f.on_disk]
            merged_keys = [p for p in merged_key_files(con) if p.is_file()]
        finally:
            con.close()
        cutoff = (now or datetime.now(UTC)) - older_than
        named = snapshot_names(snapshot_path)
        deleted, recent, in_snapshot, unpublished = [], [], [], []
        for file in candidates:
            if file.unnamed_since is None:
                unpublished.append(file)
            elif file.unnamed_since > cutoff:
                recent.append(file)
            elif sql_literal(str(file.path)) in named:  # as the views name it (a quote doubled)
                in_snapshot.append(file)
            else:
                deleted.append(file)
        if not dry_run:
            for file in deleted:
                file.path.unlink()
            for merged in merged_keys:
                merged.unlink()
            for folder in {f.path.parent for f in deleted} | {p.parent for p in merged_keys}:
                fsync_dir(folder)
    return VacuumReport(deleted, recent, in_snapshot, unpublished, merged_keys)


def merged_key_files(con: duckdb.DuckDBPyConnection) -> list[Path]:
    """The keys files runs merged into files of their own (core/attempt_store.py
    ``merge_key_files``), deleted ones included: no view reads them, and the analyst snapshot
    has no keys, so only a backup taken across the merge (the database copied before it, the
    lake after) still needs them."""
    path = database_file(con)
    if path is None or not table_exists(con, "lake_files"):
        return []
    lake = lake_dir(path)
    rows = con.execute("SELECT path FROM lake_files WHERE table_name = ? ORDER BY run_id, part", [MERGED_KEYS])
    return [lake / str(p) for (p,) in rows.fetchall()]


@dataclass(frozen=True)
class FolderStatus:
    """One lake folder: the files views read, and (rated rows) the retired ones."""

    folder: str
    files: int
    size: int
    retired_on_disk: int = 0
    retired_size: int = 0
    retired_deleted: int = 0


def lake_status(con: duckdb.DuckDBPyConnection) -> list[FolderStatus]:
    """What the lake holds, per folder (``lake status``)."""
    if not table_exists(con, "lake_files"):
        return []
    gone = {f.path for f in retired_files(con)}
    path = database_file(con)
    lake = lake_dir(path) if path is not None else Path()
    totals: dict[str, list[int]] = {}
    for folder, relative, size in con.execute(
        "SELECT table_name, path, bytes FROM lake_files ORDER BY 1, 2"
    ).fetchall():
        entry = totals.setdefault(str(folder), [0, 0])
        if lake / str(relative) not in gone:
            entry[0] += 1
            entry[1] += int(size)
    retired_list = retired_files(con)
    status = []
    for folder, (files, size) in totals.items():
        if folder == RATED.view:
            on_disk = [f for f in retired_list if f.on_disk]
            status.append(
                FolderStatus(
                    folder, files, size, len(on_disk), sum(f.size for f in on_disk), len(retired_list) - len(on_disk)
                )
            )
        else:
            status.append(FolderStatus(folder, files, size))
    return status
