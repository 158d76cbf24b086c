"""Where stored attempts and their rated rows live: one Parquet file per run in the lake, read
through views.

Why (issue 14 item 3). Every accepted attempt, and every rated row, used to be stored twice:
in the database's table and, after the run, in the lake file the analyst snapshot reads. The
table was the larger copy (DuckDB stores a day of attempts in ~1.7x the bytes of its zstd
Parquet file, and rated rows in ~2.2x). Both are written once per run, so the lake file is
enough: a run writes its accepted attempts (since migration 025) and its rated rows with their
tombstones (since migration 027) as ``<db stem>.lake/<table>/run-NNNNNN.parquet`` inside its
own transaction and lists each file in ``lake_files`` in that transaction, so the files become
part of the database exactly when the run commits (``store_run_rows``). A run that fails or is
killed leaves unlisted files, which no reader follows and the next run removes. On Spark a
run's rows of a table may be in several files (``part`` 1.. in ``lake_files``, written by the
executors' tasks: the attempts since migration 034, the rated rows since 037,
:func:`list_run_parts`); readers take every listed file of a run alike.

How it is read. Each connection (``core.db.connect``) gets TEMP views ``attempts`` and
``rated_attempts`` that stand for the tables of those names (renamed by the migrations): the
rows still in the table (stored before the migration, or in a database without a file, such
as replay's scratch database), the current run's rows so far (a TEMP table), and the listed
files. The views keep the table's columns and types.

- ``attempts``: ``event_key`` and ``request_key`` (DuckDB ``hash()`` values, which a DuckDB
  upgrade changes) are not written to the files: ``attempt_keys`` holds them for every stored
  attempt, and the view reads NULL for them in lake rows. Queries that need only a few runs'
  attempts (dedup's stored twins, the rating scope) read :func:`attempts_of_runs`.
- ``rated_attempts``: a rating replaces the rated rows of earlier runs (a late retry, a
  re-rate). Files are immutable, so a replaced row is hidden by a *tombstone* (its event_id
  and rated_run_id; run ids are never reused, so it names exactly one row version): the run
  records them in ``rated_replaced`` and writes them as ``rated_replaced/run-NNNNNN.parquet``
  with its rated rows. The view is the rows minus the tombstones (those in the files and those
  the current run has recorded so far).

- Values a row rebuilds exactly (since migration 039, files of runs from the rating_state key
  ``lake_values_on_read_from_run`` on; older files are read as they are): the rated files
  leave out the charges (``RATED_COMPUTED``: tokens x unit price, computed on read with
  rate.sql's casts) and hold the unit prices as decimal text (``stored_as``); the attempts
  files hold ``usage_json`` as a template of the row's counts and ``ts_text`` as its form
  when ts written in that form gives it back (``encoded``; the form since 2026-12-06). The views cast
  and decode back to the table's columns and types; :func:`check_computed` refuses a file
  that would read back otherwise.

Back up the lake directory with the database: the attempts and rated rows of runs since the
migrations are nowhere else.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ParamSpec, TypeVar

import duckdb

from core.db import active_snapshot, catalog_snapshot, sql_identifier, sql_literal, table_exists
from core.errors import BillingError

P = ParamSpec("P")
R = TypeVar("R")

__all__ = [
    "ATTEMPTS",
    "ATTEMPTS_COMMENT",
    "ATTEMPT_KEYS",
    "LAKE_VIEWS",
    "MERGED_KEYS",
    "RATED",
    "RATED_COMMENT",
    "RATED_COMPUTED",
    "RUN_ATTEMPTS",
    "RUN_LAKE_TABLES",
    "STORED_TABLE",
    "TOMBSTONES",
    "AttemptFileMissing",
    "ComputedColumnMismatch",
    "LakeTable",
    "attempts_of_runs",
    "attempts_table",
    "check_computed",
    "computed_from",
    "computed_mismatches",
    "database_file",
    "encode_columns",
    "file_columns",
    "file_select",
    "fold_stored_keys",
    "fsync_dir",
    "lake_dir",
    "lake_path",
    "list_run_parts",
    "listed_attempt_files",
    "listed_files",
    "merge_key_files",
    "open_lake_views",
    "prepare_run_rows",
    "rated_rows",
    "refresh_lake_views",
    "refuse_mismatches",
    "remove_unlisted",
    "remove_unlisted_lake_files",
    "store_run_rows",
    "stored_columns",
    "stored_table",
    "typed_rows",
    "write_parquet",
]


@dataclass(frozen=True)
class LakeTable:
    """One table whose rows a run writes once, as its own lake file."""

    view: str  # what queries read: the TEMP view of each connection (and the snapshot's view)
    table: str  # the database table behind it: rows stored before the migration, and the columns
    former: str  # the table's name before the migration renamed it (a database not migrated yet)
    run_table: str  # TEMP table: the rows the current run has stored so far
    run_column: str  # the column naming the run that stored a row
    marker: str  # rating_state key: the first run whose rows are in files only
    key_columns: tuple[str, ...] = ()  # table columns the files do not carry (NULL in the view)
    tombstones: str | None = None  # lake table of the rows later runs replaced
    hidden: str | None = None  # table counting, per file, the rows later runs replaced (retires files)
    order: str | None = None  # the order of a run's file's rows (None: as stored)
    # table columns the files leave out because each is a function of the row's other columns,
    # computed on read: (name, SQL over the file's row ``r``); files of runs from the
    # rating_state key ``computed_marker`` on (older files carry them, and are read as stored)
    computed: tuple[tuple[str, str], ...] = ()
    computed_marker: str | None = None
    # table columns those files store as another type that casts back exactly: (name, type)
    stored_as: tuple[tuple[str, str], ...] = ()
    # table columns those files store encoded as text, with the SQL encoding the row ``r``'s
    # value and the SQL decoding it (``r.<column>`` the stored text): (name, encode, decode).
    # The encoding stores a value its decoding would not give back exactly as it is (its text,
    # which the decoding keeps)
    encoded: tuple[tuple[str, str, str], ...] = ()
    # columns the encodings read, computed once a row before them: (name, SQL over ``r``)
    encoding_helpers: tuple[tuple[str, str], ...] = ()


# The usage object as the upstream sent it (usage_json, ~15 of an attempt's ~55 bytes in its
# file at 200k) repeats the row's token counts: since migration 039 the attempts files store
# it as a template, each count the row holds replaced by "?" after its key and the text
# prefixed with "#" (a JSON object starts with "{", so an unencoded value is never mistaken
# for one): '#{"prompt_tokens":?,"completion_tokens":?,"total_tokens":?}'. A file holds a
# handful of distinct templates, which dictionary-encode to ~0.3 B. A value the template would
# not give back byte for byte is stored as it is.
_USAGE_COUNTS = (
    ("prompt_tokens", "{r}prompt_tokens"),
    ("completion_tokens", "{r}completion_tokens"),
    ("total_tokens", "({r}prompt_tokens + {r}completion_tokens)"),
    ("cached_tokens", "{r}cached_tokens"),
    ("prompt_cache_hit_tokens", "{r}cached_tokens"),
    ("prompt_cache_miss_tokens", "({r}prompt_tokens - {r}cached_tokens)"),
    ("reasoning_tokens", "{r}reasoning_tokens"),
    ("image_tokens", "{r}image_tokens"),
)


def _usage_template(r: str) -> str:
    """SQL: the usage object of row ``r`` as its template ("#" + the text with every count of
    the row's after its key replaced by "?"), or as it is when its text holds ":?"; NULL for
    no usage.

    Exact: decoding replaces each '"key":?' by '"key":<count>', the inverse of the encoding's
    replacements (a replacement neither makes nor breaks another key's match: each starts at a
    quote and ends in the count's digits, or "?"), so a template gives back its text unless
    the text already held a '"key":?' of its own, which it cannot without holding ":?"."""
    original = f"CAST({r}usage_json AS VARCHAR)"
    text = original
    for key, value in _USAGE_COUNTS:
        number = f"coalesce(CAST({value.format(r=r)} AS VARCHAR), '#')"
        text = f"replace({text}, '\"{key}\":' || {number}, '\"{key}\":?')"
    return f"CASE WHEN contains({original}, ':?') THEN {original} ELSE '#' || {text} END"


def _usage_from_template(r: str) -> str:
    """SQL: row ``r``'s stored usage_json text decoded (a template filled with the row's counts,
    or the text as stored)."""
    text = f"substr({r}usage_json, 2)"
    for key, value in _USAGE_COUNTS:
        number = f"coalesce(CAST({value.format(r=r)} AS VARCHAR), '#')"
        text = f"replace({text}, '\"{key}\":?', '\"{key}\":' || {number})"
    return f"CASE WHEN starts_with({r}usage_json, '#') THEN {text} ELSE {r}usage_json END"


# ts_text, the instant as the log wrote it (~6 of a stored attempt's bytes at 200k), is ts
# written in its own offset nearly always: since 2026-12-06 the attempts files store such a
# text as its form, "#" + the date/time separator + the number of fraction digits (0-6) + the
# zone as written ("Z", "z" or "+hh:mm"/"-hh:mm"), e.g. "#T3Z" or "# 0+05:30", which a file
# holds a handful of (~0.2 B a row dictionary-encoded), and the views write the text again from
# ts and the form. A text the form would not give back byte for byte (more than six fraction
# digits: ts keeps microseconds) is stored as it is. No migration: an RFC 3339 text never
# starts with "#", so the texts of files written before read back as they are.
# (The Spark rating reads a run's attempts files as stored: R2's tie past the microsecond takes
# the digits after a "." and six digits, which a form has none of, as a text it encodes has.)
def _ts_from_form(r: str, form: str) -> str:
    """SQL: row ``r``'s ts written in the form ``form`` (the SQL of a form's text): the local
    date and time of its zone (from the instant's microseconds, whatever the session's zone),
    the separator, the first fraction digits, the zone as written. One strftime a row; NULL
    for a text that is not a form (the encoding's candidate of a text it then keeps)."""
    zone = f"substr({form}, 4)"
    minutes = (
        f"CASE WHEN strlen({zone}) = 1 THEN 0 ELSE CASE WHEN left({zone}, 1) = '-' THEN -1 ELSE 1 END"
        f" * (TRY_CAST(substr({zone}, 2, 2) AS BIGINT) * 60 + TRY_CAST(substr({zone}, 5, 2) AS BIGINT)) END"
    )
    local = f"strftime(make_timestamp(epoch_us({r}ts) + {minutes} * 60000000), '%Y-%m-%d %H:%M:%S.%f')"
    digits = f"TRY_CAST(substr({form}, 3, 1) AS INTEGER)"
    return (
        f"left({local}, 10) || substr({form}, 2, 1) || substr({local}, 12, 8)"
        f" || CASE WHEN {digits} > 0 THEN '.' || substr({local}, 21, {digits}) ELSE '' END || {zone}"
    )


TS_FORM = "ts_form_"  # the encoding's helper column: the form of the row's ts_text


def _ts_text_form(r: str) -> str:
    """SQL: the form of row ``r``'s ts_text, ``YYYY-MM-DD?HH:MM:SS[.digits]zone`` (parse.sql's
    check: 19 characters, the fraction, a zone of 1 ("Z"/"z") or 6 characters); NULL with more
    than six fraction digits (ts keeps microseconds)."""
    text = f"{r}ts_text"
    zone = f"CASE WHEN right({text}, 1) IN ('Z', 'z') THEN right({text}, 1) ELSE right({text}, 6) END"
    digits = f"CASE WHEN substr({text}, 20, 1) = '.' THEN strlen({text}) - 20 - strlen({zone}) ELSE 0 END"
    form = f"'#' || substr({text}, 11, 1) || CAST({digits} AS VARCHAR) || {zone}"
    return f"CASE WHEN {digits} BETWEEN 0 AND 6 THEN {form} END"


def _ts_form(r: str) -> str:
    """SQL: row ``r``'s ts_text as its form (the helper column :data:`TS_FORM`) when ts
    written in the form gives the text back exactly, else as it is."""
    form = f"{r}{TS_FORM}"
    return f"CASE WHEN {_ts_from_form(r, form)} = {r}ts_text THEN {form} ELSE {r}ts_text END"


def _ts_text_from_form(r: str) -> str:
    """SQL: row ``r``'s stored ts_text decoded (written from ts by its form, or as stored)."""
    text = f"{r}ts_text"
    return f"CASE WHEN starts_with({text}, '#') THEN {_ts_from_form(r, text)} ELSE {text} END"


ATTEMPTS = LakeTable(
    "attempts",
    "attempts_before_lake",
    "attempts",
    "run_attempts",
    "run_id",
    "attempts_in_lake_from_run",
    key_columns=("event_key", "request_key"),
    computed_marker="lake_values_on_read_from_run",
    encoded=(
        ("usage_json", _usage_template("r."), _usage_from_template("r.")),
        ("ts_text", _ts_form("r."), _ts_text_from_form("r.")),
    ),
    encoding_helpers=((TS_FORM, _ts_text_form("r.")),),
)
BOUNDS = "lake_file_bounds"  # what each rated file and tombstone file covers (migration 028)
TOMBSTONES = "rated_replaced"  # both the table of the current run's tombstones and their lake folder


def _class_charge(tokens: str, price: str) -> str:
    """rate.sql's charge of one token class (R6: tokens x unit price x 10^-6, exact, scale 20;
    0 for a row not billed), over a lake file's row ``r``."""
    return (
        f"CASE WHEN r.reason IS NULL THEN CAST(CAST(CAST(r.{tokens} AS DECIMAL(12,0)) "
        f"* CAST(r.{price} AS DECIMAL(24,14)) AS DECIMAL(36,14)) "
        "* CAST(0.000001 AS DECIMAL(7,6)) AS DECIMAL(38,20)) ELSE CAST(0 AS DECIMAL(38,20)) END"
    )


_CHARGES = (
    ("charge_input_uncached", _class_charge("input_uncached_tokens", "unit_price_input_uncached")),
    ("charge_input_cached", _class_charge("input_cached_tokens", "unit_price_input_cached")),
    ("charge_output", _class_charge("output_tokens", "unit_price_output")),
)
# The charges of a rated row are, by rate.sql's definition, its tokens x its unit prices (R6:
# no rounding per attempt), so since migration 039 the rated files leave them out and every
# read computes them again, exactly (DECIMAL, the same casts as rate.sql): the four 16-byte
# DECIMAL(38,20) columns were ~16 of the ~39 bytes of a rated row in its file (issue 14 item
# 3). A run checks before writing its file that every row's stored charges equal these
# (check_computed), so a change of rate.sql that broke the identity fails the run instead of
# changing what the files read back as.
RATED_COMPUTED = (
    *_CHARGES,
    ("charge_total", f"CAST({' + '.join(expr for _, expr in _CHARGES)} AS DECIMAL(38,20))"),
)


RATED = LakeTable(
    "rated_attempts",
    "rated_before_lake",
    "rated_attempts",
    "run_rated",
    "rated_run_id",
    "rated_in_lake_from_run",
    tombstones=TOMBSTONES,
    hidden="rated_hidden",
    # by time, as the attempts file is (the rating writes them request by request): ids and ts
    # then compress as in the attempts file (200k: 39 B a row where the rating's order gave 43)
    order="ts, event_id",
    computed=RATED_COMPUTED,
    computed_marker="lake_values_on_read_from_run",
    # the unit prices as their exact decimal text: a file's few distinct prices then
    # dictionary-encode (DuckDB writes a DECIMAL(24,14) as 16 plain bytes; 200k: 4.2 -> 1.9 B)
    stored_as=tuple(
        (c, "VARCHAR") for c in ("unit_price_input_uncached", "unit_price_input_cached", "unit_price_output")
    ),
)
LAKE_VIEWS = (ATTEMPTS, RATED)
# The lookup keys of every stored attempt (DuckDB hash() of event_id, and of account_id and
# request_id), with the run that stored it: what dedup and the rating scope probe before they
# open any attempts file (8 bytes a row each way). Since migration 045 a run writes its keys as
# its own files, as it writes its attempts: a Spark nightly's tasks write theirs (no key of a
# new attempt passes through the driver), and Spark probes the history by reading the files
# (pipeline/spark/history.py). Internal: the analyst snapshot leaves them out.
ATTEMPT_KEYS = LakeTable(
    "attempt_keys",
    "attempt_keys_before_lake",
    "attempt_keys",
    "run_attempt_keys",
    "run_id",
    "attempt_keys_in_lake_from_run",
)
# every lake table a run writes: the analysts' views, and the keys
RUN_LAKE_TABLES = (*LAKE_VIEWS, ATTEMPT_KEYS)
# A keys file holds the keys of any runs (each row names its run): the first run after
# migration 045 writes the table's keys into its own file, and merge_key_files writes the rows
# of several files as one. So rows of ATTEMPT_KEYS are found by their run_id column, never by
# the run that listed the file (_rows_of refuses ``runs`` for it).

# Size-tiered merging of the keys files (merge_key_files): every probe of attempt_keys opens
# every listed keys file, and each run adds one or more (a Spark nightly one per part), so
# without merging the probes' per-file cost would grow with the number of runs (a review
# measured 0.59 s a probe over 3,000 files of 300 keys, where one table took 0.004 s). A run
# merges KEY_FILES_FANOUT files of one size tier (rows within a factor of the fanout) into one,
# as often as a tier has that many; only files under KEY_FILE_MERGED_ROWS rows are merged, so
# one merge rewrites at most fanout x that many keys on the driver (8M, 128 MB), and a day of
# larger files (a 1M-attempt DuckDB nightly's, a large Spark night's parts) is never rewritten.
# The merged files stay on disk, listed as MERGED_KEYS (no view reads them), until `lake
# vacuum`: a backup that copies the database and then the lake finds every file it lists.
KEY_FILES_FANOUT = 8
KEY_FILE_MERGED_ROWS = 1_000_000
MERGED_KEYS = "attempt_keys_merged"
RUN_ATTEMPTS = ATTEMPTS.run_table
# the table holding the attempts stored before migration 025 (it renamed the table
# ``attempts``, so that older code fails on the database instead of writing to it)
STORED_TABLE = ATTEMPTS.table

# what the views are (the analyst snapshot's views carry it as their comment)
ATTEMPTS_COMMENT = (
    "Accepted upstream attempts, one row per event_id (R1), validated and typed. Prompt and output text are "
    "never stored; only whether they were present and the recounted token numbers."
)
RATED_COMMENT = (
    "Every attempt after the rating rules: billed (one per request), not_billed with its reason, or held "
    "(unknown_account, unpriced_model, usage_missing). Charges are exact, never rounded."
)


class AttemptFileMissing(BillingError, RuntimeError):
    """A listed lake file is not on disk: the database was copied without its lake."""

    default_hint = "copy or restore the database together with its .lake directory (docs/operations.md)"


def lake_dir(db_path: Path) -> Path:
    """``data/infergate.duckdb`` -> ``data/infergate.lake``."""
    db_path = Path(db_path)
    return db_path.with_name(f"{db_path.stem}.lake")


def database_file(con: duckdb.DuckDBPyConnection, database: str | None = None) -> Path | None:
    """The file of ``database`` (default: the current one); None for an in-memory database."""
    snapshot = active_snapshot(con)
    if snapshot is not None:
        found = snapshot.paths.get(database or snapshot.current, "")
        return Path(found).resolve() if found else None
    if database is None:
        row = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    else:
        row = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = ?", [database]).fetchone()
    if row is None or not row[0]:
        return None
    return Path(str(row[0])).resolve()


def _current(con: duckdb.DuckDBPyConnection) -> str:
    snapshot = active_snapshot(con)
    if snapshot is not None:
        return snapshot.current
    return str((con.execute("SELECT current_database()").fetchone() or ("",))[0])


def _stored_name(con: duckdb.DuckDBPyConnection, database: str, spec: LakeTable) -> str | None:
    """``spec``'s table in ``database``: its renamed table, or the former name in a database
    not migrated yet (opened read-only); None without a table (a view of that name, as in the
    analyst snapshot, is not one)."""
    snapshot = active_snapshot(con)
    if snapshot is not None:
        return next((n for n in (spec.table, spec.former) if (database, n) in snapshot.tables), None)
    names = {
        str(n)
        for (n,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'main' "
            "AND table_name IN (?, ?)",
            [database, spec.table, spec.former],
        ).fetchall()
    }
    return spec.table if spec.table in names else (spec.former if names else None)


def stored_table(con: duckdb.DuckDBPyConnection, spec: LakeTable, database: str | None = None) -> str:
    """``spec``'s *table* in ``database`` (default: the current one), qualified. Queries read
    the view instead; this is for the few that write the table."""
    database = database or _current(con)
    return f"{sql_identifier(database)}.main.{_stored_name(con, database, spec) or spec.table}"


def attempts_table(con: duckdb.DuckDBPyConnection, database: str | None = None) -> str:
    """The attempts *table* of ``database``, qualified (:func:`stored_table` of ``ATTEMPTS``)."""
    return stored_table(con, ATTEMPTS, database)


def stored_columns(
    con: duckdb.DuckDBPyConnection, spec: LakeTable, database: str | None = None
) -> list[tuple[str, str]]:
    """(name, type) of the columns of ``spec``'s table, in order; none when ``database``
    (default: the current one) has no such table."""
    database = database or _current(con)
    name = _stored_name(con, database, spec)
    if name is None:
        return []
    snapshot = active_snapshot(con)
    if snapshot is not None and (database, name) in snapshot.columns:
        return list(snapshot.columns[(database, name)])
    rows = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = ? "
        "AND schema_name = 'main' AND table_name = ? ORDER BY column_index",
        [database, name],
    ).fetchall()
    columns = [(str(c), str(t)) for c, t in rows]
    if snapshot is not None:
        snapshot.columns[(database, name)] = columns
    return list(columns)


def listed_files(
    con: duckdb.DuckDBPyConnection,
    spec: LakeTable,
    folder: str | None = None,
    database: str | None = None,
    runs: Iterable[int] | None = None,
) -> list[Path]:
    """Files of ``folder`` (default ``spec.view``; ``spec.tombstones`` for its tombstones)
    listed in ``database``'s manifest that hold the only copy of their rows (runs from
    ``spec.marker`` on), optionally only those of ``runs``; each checked to exist with the size
    the manifest recorded (a file restored from another run, or cut short by a partial copy, is
    refused here instead of being read)."""
    return [path for _, path in _listed(con, spec, folder or spec.view, database or _current(con), runs)]


def _listed(
    con: duckdb.DuckDBPyConnection, spec: LakeTable, folder: str, database: str, runs: Iterable[int] | None
) -> list[tuple[int, Path]]:
    """:func:`listed_files` with the run of each file: (run_id, path), in run order."""
    path = database_file(con, database)
    if path is None or not _has_lake(con, database):
        return []
    where = ""
    if runs is not None:
        where = f" AND f.run_id IN ({', '.join(str(int(r)) for r in runs) or 'NULL'})"
    if folder == spec.view and spec.hidden and table_exists(con, spec.hidden, database):
        where += f" AND NOT {retired(spec, 'f', sql_identifier(database))}"
    rows = con.execute(
        f"SELECT f.path, f.bytes, f.run_id FROM {sql_identifier(database)}.main.lake_files f, "
        f"{sql_identifier(database)}.main.rating_state s "
        f"WHERE f.table_name = $folder AND s.key = $marker AND f.run_id >= CAST(s.value AS BIGINT){where} "
        "ORDER BY f.run_id, f.path",
        {"folder": folder, "marker": spec.marker},
    ).fetchall()
    lake = lake_dir(path)
    files = [(int(run), lake / str(p), int(size)) for p, size, run in rows]
    missing = [p for _, p, _ in files if not p.is_file()]
    if missing:
        listed = con.execute(
            f"SELECT path FROM {sql_identifier(database)}.main.lake_files f WHERE f.table_name <> "
            f"{sql_literal(MERGED_KEYS)} AND NOT "
            + (
                retired(RATED, "f", sql_identifier(database))
                if table_exists(con, str(RATED.hidden), database)
                else "false"
            )
        ).fetchall()
        total = sum(not (lake / str(p)).is_file() for (p,) in listed)
        also = f" ({total} lake files in all)" if total > len(missing) else ""
        raise AttemptFileMissing(
            f"{len(missing)} {folder} file(s) listed in the database are missing{also}, first {missing[0]}: "
            f"the database was copied or restored without its lake directory; restore {lake} beside it "
            "(it holds the only copy of those rows)"
        )
    damaged = [(p, size) for _, p, size in files if p.stat().st_size != size]
    if damaged:
        first, size = damaged[0]
        raise AttemptFileMissing(
            f"{len(damaged)} {folder} file(s) differ from what the database listed, first {first} "
            f"({first.stat().st_size:,} bytes, listed with {size:,}): restore {lake} from the backup "
            "taken with this database (it holds the only copy of those rows)"
        )
    return [(run, p) for run, p, _ in files]


def retired(spec: LakeTable, alias: str, database: str | None = None) -> str:
    """SQL: whether the file ``alias`` (a row of lake_files) of ``spec``'s folder is retired,
    every one of its run's rows replaced by later runs (counted per run in ``spec.hidden``).

    The count is the run's, so it is compared with the rows of all the run's files of the folder
    (a Spark nightly writes its rated rows as several parts): the files of a run retire together,
    never one part because the run's hidden rows outnumber that part's."""
    assert spec.hidden is not None
    table = f"{database}.main.{spec.hidden}" if database else spec.hidden
    files = f"{database}.main.lake_files" if database else "lake_files"
    return (
        f"({alias}.table_name = {sql_literal(spec.view)} AND "
        f"(SELECT sum(g.row_count) FROM {files} g WHERE g.table_name = {alias}.table_name "
        f"AND g.run_id = {alias}.run_id) <= "
        f"coalesce((SELECT sum(h.hidden_rows) FROM {table} h WHERE h.rated_run_id = {alias}.run_id), 0))"
    )


def listed_attempt_files(
    con: duckdb.DuckDBPyConnection, database: str | None = None, runs: Iterable[int] | None = None
) -> list[Path]:
    """:func:`listed_files` of the attempts."""
    return listed_files(con, ATTEMPTS, database=database, runs=runs)


def primary_files(con: duckdb.DuckDBPyConnection, database: str | None = None) -> list[Path]:
    """Every listed file holding the only copy of its rows (checked as :func:`listed_files`)."""
    found = []
    for spec in RUN_LAKE_TABLES:
        found += listed_files(con, spec, database=database)
        if spec.tombstones:
            found += listed_files(con, spec, spec.tombstones, database=database)
    return found


def _has_lake(con: duckdb.DuckDBPyConnection, database: str) -> bool:
    # a database of migration 025 on: its manifest, state and keys (renamed by migration 045)
    keys = (ATTEMPT_KEYS.former, ATTEMPT_KEYS.table)
    snapshot = active_snapshot(con)
    if snapshot is not None:
        return all((database, t) in snapshot.tables for t in ("lake_files", "rating_state")) and any(
            (database, t) in snapshot.tables for t in keys
        )
    row = con.execute(
        "SELECT count(*) FILTER (WHERE table_name IN ('lake_files', 'rating_state')), "
        "count(*) FILTER (WHERE table_name IN (?, ?)) FROM duckdb_tables() "
        "WHERE database_name = ? AND schema_name = 'main'",
        [*keys, database],
    ).fetchone()
    return bool(row and row[0] == 2 and row[1] >= 1)


def parquet_source(files: Sequence[Path]) -> str:
    """``read_parquet([...])`` of exactly ``files`` (a list, never a glob: a name is only itself)."""
    return "read_parquet([" + ", ".join(sql_literal(str(p)) for p in files) + "])"


def _reads_catalog_once(function: Callable[P, R]) -> Callable[P, R]:
    """Run ``function`` (whose first argument is the connection, and which creates no table)
    inside a :func:`core.db.catalog_snapshot`: its catalog lookups cost one reading."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        con = args[0]
        assert isinstance(con, duckdb.DuckDBPyConnection)
        with catalog_snapshot(con):
            return function(*args, **kwargs)

    return wrapper


@_reads_catalog_once
def _rows_of(
    con: duckdb.DuckDBPyConnection,
    spec: LakeTable,
    runs: Iterable[int] | None,
    database: str | None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> str:
    """A SELECT of ``spec``'s stored rows (of ``runs`` only, when given; with ``since <= ts <
    until`` only, when either is given), with the table's columns: the table's rows, the
    current run's (when ``database`` is the current one) and the listed files, less the
    tombstoned rows. Build it again after a run lists a new file.

    With a time range, only the files that can hold it are opened (``lake_file_bounds``,
    migration 028), and only the tombstone files naming their runs."""
    current = _current(con)
    database = database or current
    assert runs is None or spec is not ATTEMPT_KEYS, "a keys file may hold any run's keys: filter by run_id"
    run_list = None if runs is None else sorted({int(r) for r in runs})
    # a constant IN list is checked against each row group's min/max of the run column
    in_list = "" if run_list is None else f"{spec.run_column} IN ({', '.join(map(str, run_list)) or 'NULL'})"
    if since is not None or until is not None:
        in_time = " AND ".join(
            f"ts {op} TIMESTAMPTZ {sql_literal(bound.isoformat())}"
            for op, bound in ((">=", since), ("<", until))
            if bound is not None
        )
        in_list = f"{in_list} AND {in_time}" if in_list else in_time
    in_runs = f" WHERE {in_list}" if in_list else ""
    columns = stored_columns(con, spec, database)
    names = ", ".join(f'"{c}"' for c, _ in columns)
    parts = [f"SELECT {names} FROM {stored_table(con, spec, database)}{in_runs}"]
    if database == current and table_exists(con, spec.run_table, "temp"):
        parts.append(f"SELECT {names} FROM temp.main.{spec.run_table}{in_runs}")
    listed = _listed(con, spec, spec.view, database, run_list)
    if since is not None or until is not None:
        outside = _outside(con, database, spec.view, since, until)
        listed = [(run, path) for run, path in listed if run not in outside]
    if listed:
        where = [f"r.{in_list}"] if in_list else []
        if spec.tombstones:
            where.append(
                f"NOT EXISTS (SELECT 1 FROM ({_tombstones(con, spec, database, [run for run, _ in listed])}) AS t "
                "WHERE t.event_id = r.event_id AND t.rated_run_id = r.rated_run_id)"
            )
        condition = f" WHERE {' AND '.join(where)}" if where else ""
        # files of runs before the marker carry the computed columns; the later ones do not
        first = computed_from(con, spec, database)
        for layout_computed in (False, True):
            files = [p for run, p in listed if (first is not None and run >= first) == layout_computed]
            if files:
                select = file_select(spec, columns, computed=layout_computed)
                parts.append(f"SELECT {select} FROM {parquet_source(files)} AS r{condition}")
    return " UNION ALL ".join(parts)


def computed_from(con: duckdb.DuckDBPyConnection, spec: LakeTable, database: str | None = None) -> int | None:
    """The first run whose files of ``spec`` leave out ``spec.computed`` (they are computed on
    read); None when no file does (no such columns, or a database before migration 039)."""
    if not (spec.computed or spec.stored_as or spec.encoded) or spec.computed_marker is None:
        return None
    database = database or _current(con)
    if not table_exists(con, "rating_state", database):
        return None
    row = con.execute(
        f"SELECT CAST(value AS BIGINT) FROM {sql_identifier(database)}.main.rating_state WHERE key = ?",
        [spec.computed_marker],
    ).fetchone()
    return None if row is None else int(row[0])


def file_columns(con: duckdb.DuckDBPyConnection, spec: LakeTable, database: str | None = None) -> list[tuple[str, str]]:
    """(name, type) of the columns a run writes to its files of ``spec`` now, in order: the
    table's, less the keys and (from migration 039 on) the columns computed on read, and those
    of ``spec.stored_as`` in their file type."""
    left_out = set(spec.key_columns)
    stored_as: dict[str, str] = {}
    if computed_from(con, spec, database) is not None:
        left_out |= {c for c, _ in spec.computed}
        stored_as = dict(spec.stored_as)
    return [(c, stored_as.get(c, t)) for c, t in stored_columns(con, spec, database) if c not in left_out]


def file_select(spec: LakeTable, columns: Sequence[tuple[str, str]], computed: bool) -> str:
    """The select list reading the table's ``columns`` (in order, cast to their types) from a
    lake file's row ``r``: the keys NULL, and with ``computed`` (a file written without them)
    the computed columns computed from the row."""
    exprs = {**dict(spec.computed), **{c: decode for c, _, decode in spec.encoded}} if computed else {}
    return ", ".join(
        f"CAST(NULL AS {t}) AS {sql_identifier(c)}"
        if c in spec.key_columns
        else f"CAST({exprs[c]} AS {t}) AS {sql_identifier(c)}"
        if c in exprs
        else f"CAST(r.{sql_identifier(c)} AS {t}) AS {sql_identifier(c)}"
        for c, t in columns
    )


def encode_columns(spec: LakeTable, query: str) -> str:
    """``query``'s rows with ``spec.encoded``'s columns encoded as the files of migration 039's
    layout store them (each encoding gives back its value exactly when decoded, or keeps the
    value's text as it is)."""
    if not spec.encoded:
        return query
    encoded = ", ".join(f"{encode} AS {c}" for c, encode, _ in spec.encoded)
    if not spec.encoding_helpers:
        return f"SELECT r.* REPLACE ({encoded}) FROM ({query}) AS r"
    helpers = ", ".join(f"{sql} AS {name}" for name, sql in spec.encoding_helpers)
    names = ", ".join(name for name, _ in spec.encoding_helpers)
    prepared = f"SELECT r.*, {helpers} FROM ({query}) AS r"
    return f"SELECT r.* EXCLUDE ({names}) REPLACE ({encoded}) FROM ({prepared}) AS r"


class ComputedColumnMismatch(BillingError, RuntimeError):
    """Rows whose stored value of a column computed on read differs from what a read computes."""

    default_hint = "the rating rules and core/attempt_store.py's computed columns disagree: a bug to report"


def computed_mismatches(con: duckdb.DuckDBPyConnection, spec: LakeTable, query: str) -> str | None:
    """The SELECT of ``(count, first event_id)`` of ``query``'s rows (with the table's columns)
    that a file leaving out ``spec.computed`` would read back differently: a stored value of a
    computed column other than what a read computes, exactly (NULLs alike), or a value of
    ``spec.stored_as`` that does not cast back to itself. None when ``spec`` has neither. Plain
    SQL over ``query``: a Spark task's DuckDB runs it over the part it is given."""
    if not spec.computed and not spec.stored_as:
        return None
    types = dict(stored_columns(con, spec))
    differ = " OR ".join(
        [f"r.{sql_identifier(c)} IS DISTINCT FROM ({e})" for c, e in spec.computed]
        + [
            f"r.{sql_identifier(c)} IS DISTINCT FROM CAST(CAST(r.{sql_identifier(c)} AS {t}) AS {types[c]})"
            for c, t in spec.stored_as
        ]
    )
    return f"SELECT count(*), min(r.event_id) FROM ({query}) AS r WHERE {differ}"


def refuse_mismatches(spec: LakeTable, count: int, first: str | None) -> None:
    """Raise :class:`ComputedColumnMismatch` when ``count`` rows (the first ``first``) would read
    back differently (:func:`computed_mismatches`)."""
    if count:
        raise ComputedColumnMismatch(
            f"{count} {spec.view} row(s) would read back from a lake file differently (first event_id "
            f"{first}): {', '.join(c for c, _ in spec.computed)} other than their tokens x unit prices, or "
            f"{', '.join(c for c, _ in spec.stored_as)} not exact as text; not written"
        )


def check_computed(con: duckdb.DuckDBPyConnection, spec: LakeTable, query: str) -> None:
    """Refuse to write ``query``'s rows (with the table's columns) into files that leave out
    ``spec.computed`` unless every row's stored value of each equals what a read computes,
    exactly (NULLs alike), and each value of ``spec.stored_as`` casts back to itself: the file
    then reads back as the rows were rated."""
    mismatches = computed_mismatches(con, spec, query)
    if mismatches is None:
        return
    row = con.execute(mismatches).fetchone()
    if row:
        refuse_mismatches(spec, int(row[0]), row[1])


def _tombstones(con: duckdb.DuckDBPyConnection, spec: LakeTable, database: str, read: list[int]) -> str:
    """(event_id, rated_run_id) of the rows of ``spec``'s files that later runs replaced: the
    listed tombstone files (those that can name a run of ``read``, the files being read), and
    the ones recorded and not yet written (the current run's)."""
    assert spec.tombstones is not None
    parts = [f"SELECT event_id, rated_run_id FROM {sql_identifier(database)}.main.{spec.tombstones}"]
    ranges = _run_ranges(con, database, spec.tombstones)
    files = [
        path
        for run, path in _listed(con, spec, spec.tombstones, database, None)
        if run not in ranges or any(ranges[run][0] <= r <= ranges[run][1] for r in read)
    ]
    if files:
        parts.append(f"SELECT event_id, rated_run_id FROM {parquet_source(files)}")
    return " UNION ALL ".join(parts)


def _outside(
    con: duckdb.DuckDBPyConnection, database: str, folder: str, since: datetime | None, until: datetime | None
) -> set[int]:
    """Runs whose file of ``folder`` is known to hold no row with ``since <= ts < until``."""
    if not table_exists(con, BOUNDS, database):
        return set()
    rows = con.execute(
        f"SELECT run_id FROM {sql_identifier(database)}.main.{BOUNDS} WHERE table_name = $folder "
        "AND (($until IS NOT NULL AND ts_min >= $until) OR ($since IS NOT NULL AND ts_max < $since))",
        {"folder": folder, "since": since, "until": until},
    ).fetchall()
    return {int(r) for (r,) in rows}


def _run_ranges(con: duckdb.DuckDBPyConnection, database: str, folder: str) -> dict[int, tuple[int, int]]:
    """For each file of ``folder`` with known bounds: the range of rated runs it names."""
    if not table_exists(con, BOUNDS, database):
        return {}
    rows = con.execute(
        f"SELECT run_id, rated_run_min, rated_run_max FROM {sql_identifier(database)}.main.{BOUNDS} "
        "WHERE table_name = ? AND rated_run_min IS NOT NULL",
        [folder],
    ).fetchall()
    return {int(run): (int(low), int(high)) for run, low, high in rows}


def attempts_of_runs(
    con: duckdb.DuckDBPyConnection, runs: Iterable[int] | None = None, database: str | None = None
) -> str:
    """A SELECT of the stored attempts (of ``runs`` only, when given): see :func:`_rows_of`."""
    return _rows_of(con, ATTEMPTS, runs, database)


def rated_rows(
    con: duckdb.DuckDBPyConnection,
    database: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> str:
    """A SELECT of the current rated rows of ``database`` (what its view ``rated_attempts`` is),
    only those with ``since <= ts < until`` when either is given: then only the files that can
    hold them are opened, which a nightly's reads of its days need (O(day), not a footer per
    file of history)."""
    return _rows_of(con, RATED, None, database, since, until)


@_reads_catalog_once
def refresh_lake_views(con: duckdb.DuckDBPyConnection, views: Sequence[LakeTable] = RUN_LAKE_TABLES) -> None:
    """(Re)create this connection's TEMP views ``attempts``, ``rated_attempts`` and
    ``attempt_keys`` (those of ``views``: a run that changed one table's rows refreshes only
    its view, each view reads its own table, run table and files).

    Called when a connection opens (:func:`open_lake_views`) and when a run creates its run
    table or lists its files; a rollback restores the views the transaction started with. The
    file list is fixed in a view: if another connection lists a file meanwhile, reading the view
    fails (``stale ... view``) instead of leaving that run's rows out; call this again to see
    them. (The guard is a filter: a read whose own filter keeps no row of the old list sees no
    error, so a connection that lists files refreshes at once, never "later, if read".)"""
    current = _current(con)
    for spec in views:
        if not stored_columns(con, spec, current):
            continue  # not a billing database (yet), or not migrated this far
        select = _rows_of(con, spec, None, None)
        if _has_lake(con, current):
            folders = ", ".join(sql_literal(f) for f in (spec.view, spec.tombstones) if f)
            # the files listed, by number and by a sum of their paths' hashes: a merge of keys
            # files (merge_key_files) may leave their number as it was
            listed = (
                f"(SELECT count(*) || ':' || coalesce(sum(hash(path)), 0) "
                f"FROM {sql_identifier(current)}.main.lake_files WHERE table_name IN ({folders}) "
                f"AND run_id >= (SELECT CAST(value AS BIGINT) FROM {sql_identifier(current)}.main.rating_state "
                f"WHERE key = {sql_literal(spec.marker)}))"
            )
            if spec.hidden and table_exists(con, spec.hidden, current):  # retiring a file keeps the number
                listed = f"({listed} || ':' || (SELECT count(*) FROM {sql_identifier(current)}.main.{spec.hidden}))"
            row = con.execute(f"SELECT {listed}").fetchone()
            fingerprint = sql_literal(str(row[0]) if row else "")
            guard = (
                f"CASE WHEN {listed} = {fingerprint} THEN TRUE ELSE error('stale {spec.view} view: a run listed new "
                "lake files after this connection read the manifest; call "
                "core.attempt_store.refresh_lake_views(con) or reconnect') END"
            )
            select = f"SELECT * FROM ({select}) WHERE {guard}"
        con.execute(f"CREATE OR REPLACE TEMP VIEW {spec.view} AS {select}")


def prepare_run_rows(con: duckdb.DuckDBPyConnection, spec: LakeTable) -> str:
    """Create the TEMP table a run stores ``spec``'s rows in (see the module doc), and refresh
    its view; its name."""
    if not table_exists(con, spec.run_table, "temp"):
        _create_run_table(con, spec, stored_table(con, spec))
        refresh_lake_views(con, [spec])
    return f"temp.main.{spec.run_table}"


def _create_run_table(con: duckdb.DuckDBPyConnection, spec: LakeTable, stored: str) -> None:
    """``spec``'s TEMP run table, empty, with the columns of its stored table ``stored``."""
    con.execute(f"CREATE TEMP TABLE {spec.run_table} AS SELECT * FROM {stored} LIMIT 0")


def open_lake_views(con: duckdb.DuckDBPyConnection, run_tables: bool = False) -> None:
    """A connection's views, as it opens (:func:`core.db.connect`). ``run_tables``: for a run
    that stores rows of the lake tables (a nightly, an ingest, a re-rate), their TEMP tables first, so
    that one refresh covers what :func:`prepare_run_rows` would refresh view by view: a view's
    refresh costs ~5-15 ms, paid on every small run (docs/performance.md, "Small runs"). What
    to create is read in one catalog snapshot (a dozen catalog queries of ~1 ms otherwise);
    the tables are created after it, and the refresh's own snapshot, which must see them,
    starts from the stored tables' columns just read (creating TEMP tables changes none)."""
    columns: dict[tuple[str, str], list[tuple[str, str]]] = {}
    if run_tables:
        with catalog_snapshot(con) as snapshot:
            columns = snapshot.columns
            wanted = []
            if database_file(con) is not None:
                current = _current(con)
                wanted = [
                    (spec, stored_table(con, spec, current))
                    for spec in RUN_LAKE_TABLES
                    if stored_columns(con, spec, current) and not table_exists(con, spec.run_table, "temp")
                ]
        for spec, stored in wanted:
            _create_run_table(con, spec, stored)
    with catalog_snapshot(con, columns):
        refresh_lake_views(con)


def fold_stored_keys(con: duckdb.DuckDBPyConnection) -> int:
    """Move the keys still in the table (stored before migration 045, or recomputed after a
    DuckDB upgrade changed ``hash()``) into the current run's keys, so that they are written
    with its keys file (:func:`store_run_rows`) and the history is files only, which Spark
    reads: once after the upgrade, O(history) that one time. Call inside the run's transaction,
    after :func:`prepare_run_rows` of ``ATTEMPT_KEYS``; the rows moved (none without a database
    file, whose keys stay in the table)."""
    if database_file(con) is None:
        return 0
    table = stored_table(con, ATTEMPT_KEYS)
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    moved = int(row[0]) if row else 0
    if moved:
        con.execute(f"INSERT INTO {ATTEMPT_KEYS.run_table} SELECT * FROM {table}")
        con.execute(f"DELETE FROM {table}")
    return moved


def _size_tier(rows: int, fanout: int) -> int:
    tier = 0
    while rows >= fanout:
        rows //= fanout
        tier += 1
    return tier


def merge_key_files(
    con: duckdb.DuckDBPyConnection,
    run_id: int,
    fanout: int = KEY_FILES_FANOUT,
    merged_rows: int = KEY_FILE_MERGED_ROWS,
) -> list[Path]:
    """Merge ``fanout`` keys files of one size tier, each below ``merged_rows`` rows, into one
    file listed as a part of this run (their rows keep their runs), until no tier has that many;
    the files written. The merged files are listed as ``MERGED_KEYS`` from then on: no view
    reads them, and they stay on disk until ``lake vacuum``. Call inside the run's
    transaction, after its own keys files are listed: a run that fails leaves the new file
    unlisted and the old ones listed."""
    path = database_file(con)
    if path is None or not _has_lake(con, _current(con)):
        return []
    written = []
    while True:
        files = con.execute(
            "SELECT f.path, f.row_count FROM lake_files f, rating_state s WHERE f.table_name = $folder "
            "AND s.key = $marker AND f.run_id >= CAST(s.value AS BIGINT) AND f.row_count < $below "
            "ORDER BY f.run_id, f.part",
            {"folder": ATTEMPT_KEYS.view, "marker": ATTEMPT_KEYS.marker, "below": merged_rows},
        ).fetchall()
        tiers: dict[int, list[tuple[str, int]]] = {}
        for relative, rows in files:
            tiers.setdefault(_size_tier(int(rows), fanout), []).append((str(relative), int(rows)))
        full = [tier for tier in sorted(tiers) if len(tiers[tier]) >= fanout]
        if not full:
            break
        group = tiers[full[0]][:fanout]  # the oldest: a merge's size stays bounded
        lake = lake_dir(path)
        part = con.execute(
            "SELECT coalesce(max(part), 0) + 1 FROM lake_files WHERE table_name = ? AND run_id = ?",
            [ATTEMPT_KEYS.view, run_id],
        ).fetchone()
        assert part is not None
        relative = lake_path(ATTEMPT_KEYS.view, run_id, int(part[0]))
        target = lake / relative
        source = parquet_source([lake / p for p, _ in group])
        size = write_parquet(con, f"SELECT * FROM {source} ORDER BY run_id", target)
        fsync_dir(target.parent)
        merged = "table_name = $folder AND list_contains($paths, path)"
        names = {"folder": ATTEMPT_KEYS.view, "paths": [p for p, _ in group]}
        con.execute(
            f"INSERT INTO lake_files SELECT * REPLACE ('{MERGED_KEYS}' AS table_name) FROM lake_files WHERE {merged}",
            names,
        )
        con.execute(f"DELETE FROM lake_files WHERE {merged}", names)
        _list(con, ATTEMPT_KEYS.view, run_id, int(part[0]), relative, sum(n for _, n in group), size)
        written.append(target)
    if written:
        refresh_lake_views(con, [ATTEMPT_KEYS])
    return written


def lake_path(table: str, run_id: int, part: int = 0) -> str:
    """Where a run's file of a lake table lives, relative to the lake: ``attempts/run-000042.parquet``
    (part 0, the file the run's driver writes), ``attempts/run-000042-part-000003.parquet``
    (a file a Spark task wrote, migration 034)."""
    return f"{table}/run-{run_id:06d}" + (f"-part-{part:06d}" if part else "") + ".parquet"


def _has_run_rows(con: duckdb.DuckDBPyConnection, spec: LakeTable, run_id: int) -> bool:
    """Whether run ``run_id`` has rows of ``spec`` in its run table, or tombstones to write."""
    kept = [f"EXISTS (SELECT 1 FROM {spec.run_table})"]
    if spec.tombstones:
        kept.append(f"EXISTS (SELECT 1 FROM {spec.tombstones} WHERE replaced_by_run = {int(run_id)})")
    row = con.execute("SELECT " + " OR ".join(kept)).fetchone()
    return bool(row and row[0])


def store_run_rows(
    con: duckdb.DuckDBPyConnection, spec: LakeTable, run_id: int, extra: str | None = None
) -> list[Path]:
    """Move the run's rows of ``spec`` from its TEMP table (and its tombstones from their
    table) into their lake files, listed in the manifest; the files written. Call inside the
    run's transaction, after its last write of those rows and before the ledger row.
    ``extra``: a query of more of the run's rows, written first into the same file without
    passing through the TEMP table (the table's columns by name, ``run_id`` left out: it is
    ``run_id``); a run passes it once, before any other call for ``spec`` (one file a run).

    Without a database file (an in-memory database) the rows go into the table."""
    if not table_exists(con, spec.run_table, "temp"):
        return []
    path = database_file(con)
    if path is None:
        assert extra is None, "rows outside the TEMP table need a database file"
        con.execute(f"INSERT INTO {stored_table(con, spec)} SELECT * FROM {spec.run_table}")
        con.execute(f"DELETE FROM {spec.run_table}")  # the view reads both: nothing to refresh
        return []
    if extra is None and not _has_run_rows(con, spec, run_id):
        # no row and no tombstone this run (an ingest's rated rows, an empty day; a run opens
        # its run tables whether it fills them or not): no file, and the view is as it was
        return []
    # attempts in the order stored (the files' line order, about ts order; rated rows by ts,
    # spec.order): measured on a 200k day, 77 B an attempt, where sorting by account and
    # request gave 82 B and cost a sort
    left_out = list(spec.key_columns)
    since = computed_from(con, spec)
    if since is not None:
        assert run_id >= since, f"run {run_id} writes a file of the layout of migration 039's runs from {since}"
        check_computed(con, spec, f"SELECT * FROM {spec.run_table}")
        left_out += [c for c, _ in spec.computed]
    keys = f" EXCLUDE ({', '.join(left_out)})" if left_out else ""
    if since is not None and spec.stored_as:
        keys += " REPLACE (" + ", ".join(f"CAST({c} AS {t}) AS {c}" for c, t in spec.stored_as) + ")"
    query = f"SELECT *{keys} FROM {spec.run_table}"
    if since is not None:
        query = encode_columns(spec, query)
    if extra is not None:  # in the table's columns and types, as the TEMP table's rows are
        query = f"{typed_rows(con, spec, run_id, extra)} UNION ALL {query}"
    if spec.order:
        query = f"SELECT * FROM ({query}) ORDER BY {spec.order}"
    written = [_write_listed(con, spec.view, run_id, query)]
    bounds = table_exists(con, BOUNDS)
    if spec.tombstones and bounds and written[0] is not None:
        con.execute(
            f"INSERT INTO {BOUNDS} (table_name, run_id, ts_min, ts_max) "
            f"SELECT $folder, $run, min(ts), max(ts) FROM {spec.run_table}",
            {"folder": spec.view, "run": run_id},
        )
    con.execute(f"DELETE FROM {spec.run_table}")
    if spec.tombstones:
        mine = f"FROM {spec.tombstones} WHERE replaced_by_run = {int(run_id)}"
        tombstones = f"SELECT event_id, rated_run_id {mine} ORDER BY rated_run_id, event_id"
        written.append(_write_listed(con, spec.tombstones, run_id, tombstones))
        if bounds and written[-1] is not None:
            con.execute(
                f"INSERT INTO {BOUNDS} (table_name, run_id, rated_run_min, rated_run_max) "
                f"SELECT $folder, $run, min(rated_run_id), max(rated_run_id) {mine}",
                {"folder": spec.tombstones, "run": run_id},
            )
        con.execute(f"DELETE {mine}")
    refresh_lake_views(con, [spec])
    return [p for p in written if p is not None]


def typed_rows(con: duckdb.DuckDBPyConnection, spec: LakeTable, run_id: int, query: str) -> str:
    """A SELECT of ``query``'s rows as ``spec``'s files hold them: the table's columns by name,
    in order, each cast to its type, the keys and the columns computed on read left out
    (:func:`file_columns`), the run column ``run_id``."""
    typed = ", ".join(
        f"CAST({int(run_id) if c == spec.run_column else f'e.{sql_identifier(c)}'} AS {t}) AS {sql_identifier(c)}"
        for c, t in file_columns(con, spec)
    )
    typed_query = f"SELECT {typed} FROM ({query}) AS e"
    return encode_columns(spec, typed_query) if computed_from(con, spec) is not None else typed_query


def _write_listed(con: duckdb.DuckDBPyConnection, folder: str, run_id: int, query: str) -> Path | None:
    """``query``'s rows as the run's file of ``folder``, listed in the manifest (none if no rows)."""
    row = con.execute(f"SELECT count(*) FROM ({query})").fetchone()
    rows = int(row[0]) if row else 0
    if rows == 0:
        return None
    path = database_file(con)
    assert path is not None
    relative = lake_path(folder, run_id)
    target = lake_dir(path) / relative
    size = write_parquet(con, query, target)
    fsync_dir(target.parent)
    _list(con, folder, run_id, 0, relative, rows, size)
    return target


def _list(
    con: duckdb.DuckDBPyConnection, folder: str, run_id: int, part: int, relative: str, rows: int, size: int
) -> None:
    """A row of the manifest (part 0 without naming the column: a database before migration 034)."""
    columns, values = (
        "run_id, table_name, path, row_count, bytes, written_at",
        "$run, $folder, $path, $rows, $bytes, now()",
    )
    params: dict[str, object] = {"run": run_id, "folder": folder, "path": relative, "rows": rows, "bytes": size}
    if part:
        columns, values, params = f"{columns}, part", f"{values}, $part", {**params, "part": part}
    con.execute(f"INSERT INTO lake_files ({columns}) VALUES ({values})", params)


def list_run_parts(
    con: duckdb.DuckDBPyConnection, spec: LakeTable, run_id: int, parts: Sequence[tuple[Path, int]]
) -> list[Path]:
    """Move complete Parquet files (``(path, rows)``: written elsewhere, e.g. by Spark tasks into
    the exchange directory, in the table's columns and types) into the lake as the run's parts
    1.. of ``spec`` and list them in the manifest; the files listed. Call inside the run's
    transaction: a run that fails or is killed leaves them unlisted, and the next run removes
    them (:func:`remove_unlisted_lake_files`). A file without rows is left where it is.

    A rename when the file is on the lake's file system; else a copy under a temporary name,
    fsynced and renamed (the target is never a half-written file)."""
    path = database_file(con)
    assert path is not None, "parts are files of a database's lake"
    lake = lake_dir(path)
    listed = []
    for part, (source, rows) in enumerate([p for p in parts if p[1]], start=1):
        relative = lake_path(spec.view, run_id, part)
        target = lake / relative
        make_durable_dirs(target.parent)
        try:
            os.replace(source, target)
        except OSError:  # another file system
            tmp = target.with_name(f".{target.name}.tmp")
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        with open(target, "rb") as handle:  # the task's writes durable before the commit lists them
            os.fsync(handle.fileno())
        _list(con, spec.view, run_id, part, relative, rows, target.stat().st_size)
        listed.append(target)
    if listed:
        fsync_dir(listed[0].parent)
        refresh_lake_views(con, [spec])
    return listed


# How lake files are written (issue 14 item 3). Parquet 2's encodings (delta-coded integers and
# timestamps, delta-length strings): on a 200k day's files, 59.5 -> 54.9 B a row of attempts and
# 42.8 -> 42.2 of rated rows, at no measurable cost; the values are the same, and DuckDB,
# polars and Spark read them with their built-in readers (the Spark rating of a nightly reads
# the run's attempts files). Not taken: zstd level 9 (-0.1 B an attempt, -1.5 B a rated row,
# +1.5 s per 1M rows), and short forms of values a row can rebuild (the charges from tokens x
# unit price, the usage object from the counts: -45 B an attempt): a reader of the files with
# its built-in reader would see them, not the values, and the charge would have a second
# definition beside rate.sql's (docs/performance.md).
PARQUET_OPTIONS = "FORMAT parquet, COMPRESSION zstd, PARQUET_VERSION v2"


def write_parquet(con: duckdb.DuckDBPyConnection, query: str, target: Path) -> int:
    """``query``'s rows as a zstd Parquet file at ``target`` (its size): written under a
    temporary name, fsynced, renamed, so that ``target`` is never a half-written file."""
    make_durable_dirs(target.parent)
    tmp = target.with_name(f".{target.name}.tmp")
    con.execute(f"COPY ({query}) TO {sql_literal(str(tmp))} ({PARQUET_OPTIONS})")
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    return target.stat().st_size


def make_durable_dirs(folder: Path) -> None:
    """Create ``folder`` and its missing parents, each new name made durable (its parent
    fsynced): a lake folder that a power loss could drop would take the listed files with it."""
    missing = [f for f in (folder, *folder.parents) if not f.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    for created in reversed(missing):  # a new folder's name is durable once its parent is fsynced
        fsync_dir(created.parent)


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
