"""Opening the billing database: UTC session, no network, named migrations.

Every connection pins ``TimeZone = 'UTC'`` (SPEC E2: periods are UTC months and a session in
another zone would move records across a month boundary) and never installs or downloads
extensions at run time.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import duckdb

from pipeline.faults import fault_point

DEFAULT_DB = Path("data/infergate.duckdb")
_PACKAGE = "pipeline"


def sql_text(name: str) -> str:
    """The text of a SQL file shipped in ``pipeline/sql/``."""
    return resources.files(_PACKAGE).joinpath("sql", name).read_text(encoding="utf-8")


def _migrations() -> list[tuple[str, str]]:
    folder = resources.files(_PACKAGE).joinpath("migrations")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name, folder.joinpath(name).read_text(encoding="utf-8")) for name in names]


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


def connect(path: Path | str, read_only: bool = False, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """Open the database with the session settings billing depends on."""
    config: dict[str, str | bool | int | float | list[str]] = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
    if memory_limit:
        config["memory_limit"] = memory_limit
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only, config=config)
    con.execute("SET TimeZone = 'UTC'")
    if not read_only:
        remove_stale_temp_files(con)
        migrate(con)
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


def migrate(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Apply the named migrations not yet recorded, all of them in one transaction.

    One transaction, not one per file: an upgrade across several migrations is as atomic as
    a run, so a crash never leaves a schema that no released version of the code expects.
    """
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " name VARCHAR PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    done = {row[0] for row in con.execute("SELECT name FROM schema_migrations").fetchall()}
    pending = [(name, text) for name, text in _migrations() if name not in done]
    if not pending:
        return []
    con.execute("BEGIN TRANSACTION")
    try:
        for name, text in pending:
            con.execute(text)
            con.execute("INSERT INTO schema_migrations (name) VALUES (?)", [name])
        fault_point("migration:before_commit")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return [name for name, _ in pending]


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All or nothing: a crash or error inside leaves the database as it was before."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def run_script(con: duckdb.DuckDBPyConnection, name: str, params: dict[str, object] | None = None) -> None:
    """Run a multi-statement SQL file from ``pipeline/sql/``, statement by statement.

    Statements end with ``;`` at the end of a line; named ``$parameters`` are passed to the
    statements that use them.
    """
    for statement in _statements(sql_text(name)):
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


def insert_many(con: duckdb.DuckDBPyConnection, statement: str, rows: Sequence[Sequence[object]]) -> None:
    """``executemany`` that accepts an empty list (DuckDB refuses one)."""
    if rows:
        con.executemany(statement, rows)
