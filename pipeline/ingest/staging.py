"""Staging a batch of files into TEMP tables and parsing them (sql/parse.sql) in bounded
slices, before the run's transaction: DuckDB's read_csv/read_parquet first, a streaming
Python reader for the files DuckDB refuses.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TypeVar

import duckdb
import zstandard

from core import console
from core.db import sql_text
from core.faults import fault_point
from core.timing import step
from pipeline.ingest import files  # MAX_LINE_BYTES read at call time (tests lower it)
from pipeline.ingest.files import (
    FileResult,
    file_kind,
    file_sha256,
    raw_lines,
    source_name,
    starts_with_bom,
    zstd_problem,
)
from pipeline.ingest.macros import (
    BOUNDED_EXCERPT_MACRO,
    CANONICAL_MEMBER_MACRO,
    EXCERPT_BYTES,
    FINDING_MACROS,
    JSON_EXTENSION_MACROS,
    JSON_KEY_COUNT_MACRO,
    REDACTED_RECORD_MACRO,
    REPAIR_SURROGATES_MACRO,
)
from pipeline.ingest.repeated_keys import check_repeated_keys
from pipeline.redact import install_sql_macro, safe_error_message

# The fallback reader buffers at most this many lines, or bytes of them, per insert.
FALLBACK_BATCH_LINES = 50_000
FALLBACK_BATCH_BYTES = 32 << 20
# parse.sql runs over slices of about this much text: DuckDB's JSON functions keep a whole
# vector's parse trees in memory per function, so bytes per statement bound memory.
PARSE_SLICE_BYTES = 8 << 20
VECTOR_LINES = 2048  # DuckDB's vector length: the lines whose parse trees are alive together
# Runs of short lines are parsed this many lines per statement: many row groups (122,880
# rows each), so the scan runs on every core; a refused statement is halved and retried.
LIGHT_SLICE_LINES = 2_000_000
# parse.sql builds the canonical form of a common line from its extracted fields instead of
# the JSON-to-VARIANT cast (same bytes, docs/performance.md); read at call time, so the
# differential test (tests/test_canonical_fast_path.py) can run parse.sql without it.
CANONICAL_FAST_PATH = True
READ_CSV_LINES = (
    "read_csv(?, columns={{'line': 'VARCHAR'}}, header=false, delim='\x1e\x1f', quote='', "
    "escape='', auto_detect=false, max_line_size=67108864, buffer_size=134217728, "
    "compression='{compression}'{extra})"
)


def create_staging(con: duckdb.DuckDBPyConnection) -> None:
    """The empty TEMP table ``staged_lines`` that :func:`stage_file` fills (one batch's lines)."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE staged_lines (file_order INTEGER, source_file VARCHAR, "
        "source_sha256 VARCHAR, line_no BIGINT, line VARCHAR, stage_problem VARCHAR)"
    )


def _stage_with_duckdb(con: duckdb.DuckDBPyConnection, path: Path, order: int, sha: str) -> None:
    kind = file_kind(path)
    if kind == ".parquet":
        source = (
            "SELECT file_row_number + 1 AS line_no, CAST(json_merge_patch(to_json(p), "
            "'{\"file_row_number\": null}') AS VARCHAR) AS line "
            "FROM read_parquet(?, file_row_number=true) p"
        )
    else:
        compression = {".jsonl.gz": "gzip", ".jsonl.zst": "zstd"}.get(kind or "", "none")
        check = READ_CSV_LINES.format(compression=compression, extra=", nullstr='\n'")
        con.execute(f"SELECT count(*) FROM {check}", [str(path)])  # raises if a delimiter is there
        reader = READ_CSV_LINES.format(compression=compression, extra="")
        source = f"SELECT ordinality AS line_no, line FROM {reader} WITH ORDINALITY"
    con.execute(
        f"INSERT INTO staged_lines SELECT ?, ?, ?, line_no, line, NULL FROM ({source})",
        [order, source_name(path), sha, str(path)],
    )


class _FallbackBatch:
    """Lines of one file on their way into ``staged_lines``, inserted a batch at a time."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, order: int, sha: str) -> None:
        self.con, self.path, self.order, self.sha = con, path, order, sha
        self.line_nos: list[int] = []
        self.lines: list[str | None] = []
        self.problems: list[str | None] = []
        self.size = 0

    def add(self, line_no: int, line: str | None, problem: str | None) -> None:
        self.line_nos.append(line_no)
        self.lines.append(line)
        self.problems.append(problem)
        self.size += len(line or "")
        if len(self.lines) >= FALLBACK_BATCH_LINES or self.size >= FALLBACK_BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.lines:
            return
        import pyarrow as pa  # not on every CLI start (issue 14)

        n = len(self.lines)
        table = pa.table(
            {
                "file_order": pa.array([self.order] * n, pa.int32()),
                "source_file": pa.array([source_name(self.path)] * n, pa.string()),
                "source_sha256": pa.array([self.sha] * n, pa.string()),
                "line_no": pa.array(self.line_nos, pa.int64()),
                "line": pa.array(self.lines, pa.string()),
                "stage_problem": pa.array(self.problems, pa.string()),
            }
        )
        self.con.register("fallback_lines", table)
        try:
            self.con.execute("INSERT INTO staged_lines SELECT * FROM fallback_lines")
        finally:
            self.con.unregister("fallback_lines")
        self.line_nos, self.lines, self.problems, self.size = [], [], [], 0


def _stage_with_python(
    con: duckdb.DuckDBPyConnection, path: Path, order: int, sha: str, why: str, broken_end: str | None = None
) -> None:
    """Line-by-line reader for files DuckDB refuses: each bad line becomes a parse_error.

    Lines keep their text (blank-line detection is parse.sql's, the same for both readers);
    a line that is not UTF-8 or is too long keeps only an excerpt, for the quarantine copy.
    ``broken_end``: the stream is known to stop early (a cut zstd frame); after the lines
    that could be read, the unreadable rest is one more entry.
    """
    batch = _FallbackBatch(con, path, order, sha)
    number = 0
    try:
        if file_kind(path) == ".parquet":
            raise ValueError(f"not a readable Parquet file ({why})")
        for number, (raw, too_long) in enumerate(raw_lines(path), start=1):
            if raw.endswith(b"\r"):
                raw = raw.rstrip(b"\r")
            problem = None
            if too_long:
                problem = f"line is longer than {files.MAX_LINE_BYTES >> 20} MiB"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                text = raw[:EXCERPT_BYTES].decode("utf-8", errors="replace")
                problem = problem or f"line is not valid UTF-8 (byte {exc.start})"
            batch.add(number, text or None, problem)
        if broken_end:
            raise ValueError(broken_end)
    except (OSError, EOFError, zstandard.ZstdError, zlib.error, ValueError) as exc:
        batch.add(number + 1, None, f"file unreadable after line {number}: {safe_error_message(exc, 200)}")
    batch.flush()


def stage_file(con: duckdb.DuckDBPyConnection, path: Path, order: int, sha: str) -> None:
    """Stage one file's lines; fall back to the Python reader if DuckDB refuses the file.

    Runs outside the run's transaction (staging only touches TEMP tables): a DuckDB error
    aborts the enclosing transaction, and the fallback must be able to run after one.
    A zero-byte file of any kind is an empty log (0 lines), not an unreadable one: a zero-byte
    Parquet file is what a writer leaves when it dies before writing anything, and all
    zero-byte files share one sha256, so the kinds could not be told apart later anyway.
    """
    if path.stat().st_size == 0:
        return
    if file_kind(path) == ".jsonl.zst" and (problem := zstd_problem(path)):
        _stage_with_python(con, path, order, sha, problem, broken_end=problem)
        return
    if file_kind(path) != ".parquet" and starts_with_bom(path):
        _stage_with_python(con, path, order, sha, "starts with a byte-order mark")
        return
    try:
        _stage_with_duckdb(con, path, order, sha)  # autocommit: a failure inserts nothing
    except duckdb.Error as exc:
        _stage_with_python(con, path, order, sha, str(exc))


Slice = tuple[int, int, int]  # (file_order, first line_no, last line_no) of a run of staged lines


@dataclass(frozen=True)
class StagedBatch:
    """Files of one batch: new ones staged in order (their lines parsed into the TEMP table
    ``parsed``), already-ingested ones skipped."""

    staged: tuple[tuple[int, Path | str, str, int], ...]  # (file_order, path or URI, sha256, size)
    skipped: tuple[FileResult, ...]
    # R5 counted while staging (the Spark executors): TEMP ``staged_recounts`` holds the counts,
    # and staged_lines only the lines dedup may quote
    recounted: bool = False
    # ``stored_keys``/``stored_twins`` already bound for this batch's ``parsed`` (the Spark path
    # binds them to find the files dedup must quote): the probe of every stored key is not
    # repeated. Valid only on the same connection, under the same run lock, with ``parsed``
    # unchanged since: what pipeline/jobs.py's run does between staging and applying
    twins_bound: bool = False
    # The Spark path's parsed parts (pipeline/spark/staging.py): ``parsed`` then holds only the
    # rows dedup must look at (quarantined lines and records whose event_id repeats, is stored,
    # or resolves a quarantine entry); every other valid row of the parts is new, and is stored
    # from them (pipeline/ingest/apply.py). ``lines``: each file's parsed rows, as the tasks
    # counted them. ``close`` removes the parts: call it once the run's transaction has ended.
    parts: tuple[Path, ...] = ()
    lines: dict[int, int] | None = None
    # each file's duplicates that Spark's probe decided (of stored records, and a batch's
    # repeats after their first; pipeline/spark/history.py), which the driver never loads: the
    # ``duplicate`` verdicts ``parsed`` does not hold
    duplicates: dict[int, int] | None = None
    close: Callable[[], None] = field(default=lambda: None, compare=False)
    # Spark tasks writing the stored attempts of each part by a query (pipeline/ingest/apply.py
    # ``store_executor_attempts``): the files, complete, with their rows
    store: Callable[[str], list[tuple[Path, int]]] | None = field(default=None, compare=False)


Span = tuple[int, int, int, int]  # (first file_order, its first line_no, last file_order, its last line_no)


def _line_slices(con: duckdb.DuckDBPyConnection, max_bytes: int) -> list[Span]:
    """Runs of consecutive staged lines, in file order, each parsed by one statement.

    What must be bounded is the text of one vector (DuckDB's JSON functions hold a whole
    vector's parse trees outside the memory limit), not of one statement. Lines are taken in
    blocks of a vector's length (``VECTOR_LINES``) along the whole batch, across file ends: a
    line's place in the batch is its number plus the last line numbers of the files before it
    (every reader numbers a file's lines 1..n without gaps, which the bound relies on: with
    gaps a vector could straddle more than two blocks). A *light* block
    holds at most half of ``max_bytes`` of text, so any vector of the scan (which may straddle
    two blocks) holds at most ``max_bytes``. Runs of light blocks are parsed together, in
    statements large enough for DuckDB to scan their row groups on every core, and a run goes
    on into the next file: planning parse.sql costs ~0.5 s a statement, which one statement
    per file paid again for every file of a day split into many. A *heavy* block (long lines)
    is cut into slices of about ``max_bytes`` of text, each within one file, parsed on its own.
    """
    blocks = con.execute(
        f"""
        WITH files AS (SELECT file_order, max(line_no) AS lines FROM staged_lines GROUP BY file_order),
        offsets AS (
            SELECT file_order, coalesce(sum(lines) OVER (ORDER BY file_order ROWS BETWEEN UNBOUNDED PRECEDING
                                                         AND 1 PRECEDING), 0) AS offset_lines
            FROM files
        )
        SELECT (o.offset_lines + s.line_no - 1) // {VECTOR_LINES} AS block, s.file_order, min(s.line_no),
               max(s.line_no), sum(strlen(coalesce(s.line, '')) + 1) AS bytes
        FROM staged_lines s JOIN offsets o USING (file_order)
        GROUP BY ALL
        ORDER BY 1, 2
        """
    ).fetchall()
    by_block: dict[int, list[tuple[int, int, int, int]]] = {}
    for block, f, lo, hi, size in blocks:
        by_block.setdefault(int(block), []).append((int(f), int(lo), int(hi), int(size)))
    slices: list[Span] = []
    run: list[int] | None = None  # [first file, first line, last file, last line, lines] of the light run
    for pieces in by_block.values():
        lines = sum(hi - lo + 1 for _, lo, hi, _ in pieces)
        if sum(size for *_, size in pieces) <= max_bytes // 2:
            first, last = pieces[0], pieces[-1]
            if run is not None and run[4] + lines <= LIGHT_SLICE_LINES:
                run[2], run[3], run[4] = last[0], last[2], run[4] + lines
                continue
            if run is not None:
                slices.append((run[0], run[1], run[2], run[3]))
            run = [first[0], first[1], last[0], last[2], lines]
            continue
        if run is not None:
            slices.append((run[0], run[1], run[2], run[3]))
            run = None
        for f, lo, hi, _ in pieces:
            slices += _heavy_slices(con, f, lo, hi, max_bytes)
    if run is not None:
        slices.append((run[0], run[1], run[2], run[3]))
    return slices


def _heavy_slices(con: duckdb.DuckDBPyConnection, f: int, first: int, last: int, max_bytes: int) -> list[Span]:
    """Lines ``first``..``last`` of file ``f`` cut into runs of about ``max_bytes`` of text (at least one line each)."""
    sizes = con.execute(
        f"SELECT line_no, strlen(coalesce(line, '')) + 1 FROM staged_lines "
        f"WHERE file_order = {f} AND line_no BETWEEN {first} AND {last} ORDER BY line_no"
    ).fetchall()
    slices: list[Span] = []
    lo, hi, total = -1, -1, 0  # the slice being filled (lo < 0: none yet)
    for line_no, size in sizes:
        if lo >= 0 and total + size > max_bytes:
            slices.append((f, lo, f, hi))
            lo, total = -1, 0
        if lo < 0:
            lo = int(line_no)
        hi, total = int(line_no), total + int(size)
    if lo >= 0:
        slices.append((f, lo, f, hi))
    return slices


def _span_filter(piece: Span) -> str:
    """The staged lines of ``piece``: a range of files, the first and last one cut at a line."""
    f_lo, lo, f_hi, hi = piece
    if f_lo == f_hi:
        return f"file_order = {f_lo} AND line_no BETWEEN {lo} AND {hi}"
    return (
        f"file_order BETWEEN {f_lo} AND {f_hi} AND (file_order > {f_lo} OR line_no >= {lo}) "
        f"AND (file_order < {f_hi} OR line_no <= {hi})"
    )


def _parse_slice(con: duckdb.DuckDBPyConnection, piece: Span, parse: str) -> None:
    """parse.sql over one slice; halve it when it does not fit the memory limit.

    DuckDB's JSON functions hold the parse trees of a whole vector (2048 lines) at once, per
    function, outside the spillable buffer pool, so what bounds memory is the bytes of text
    per statement, not the number of lines. A slice over several files is split at the file
    ends first. A single line that alone does not fit is quarantined as a parse_error naming
    the limit, instead of failing the run.
    """
    f_lo, lo, f_hi, hi = piece
    con.execute(f"CREATE OR REPLACE TEMP VIEW parse_input AS SELECT * FROM staged_lines WHERE {_span_filter(piece)}")
    try:
        _insert_parsed(con, parse)  # autocommit: a failure inserts nothing
        return
    except duckdb.OutOfMemoryException:
        pass
    if f_lo != f_hi:
        ends = dict(
            con.execute(
                "SELECT file_order, max(line_no) FROM staged_lines WHERE file_order BETWEEN ? AND ? GROUP BY 1",
                [f_lo, f_hi],
            ).fetchall()
        )
        for f in sorted(ends):
            _parse_slice(con, (f, lo if f == f_lo else 1, f, hi if f == f_hi else int(ends[f])), parse)
        return
    if lo < hi:
        middle = (lo + hi) // 2
        _parse_slice(con, (f_lo, lo, f_lo, middle), parse)
        _parse_slice(con, (f_lo, middle + 1, f_lo, hi), parse)
        return
    size = con.execute("SELECT strlen(line) FROM parse_input").fetchone()
    megabytes = (size[0] if size and size[0] else 0) / (1 << 20)
    con.execute(
        "UPDATE staged_lines SET stage_problem = ? WHERE file_order = ? AND line_no = ?",
        [f"line of {megabytes:.1f} MiB does not fit the memory limit to be validated (raise --memory-limit)", f_lo, lo],
    )
    _insert_parsed(con, parse)


def _parsed_exists(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE temporary AND schema_name = 'main' AND table_name = 'parsed'"
    ).fetchone()
    return bool(row and row[0])


def _insert_parsed(con: duckdb.DuckDBPyConnection, parse: str) -> None:
    """parse.sql over ``parse_input`` into ``parsed``; the first slice creates the table."""
    if _parsed_exists(con):
        con.execute("INSERT INTO parsed " + parse)
    else:
        con.execute("CREATE TEMP TABLE parsed AS " + parse)


def parse_staged(
    con: duckdb.DuckDBPyConnection, slice_bytes: int = PARSE_SLICE_BYTES, ts_latest: datetime | None = None
) -> None:
    """Validate and type every staged line (parse.sql) into the TEMP table ``parsed``.

    Runs outside the run's transaction, like staging (it only writes TEMP tables), so that a
    statement refused for memory can be retried on a smaller slice instead of aborting the run.
    ``ts_latest``: a ``ts`` at or after this instant is in the future (``bad_timestamp``);
    it comes from the run's recorded inputs (:func:`latest_plausible_ts`), never from the
    clock at parse time, so a replay re-executes the same verdicts. None: no upper bound.
    """
    latest = "CAST(NULL AS TIMESTAMPTZ)"
    if ts_latest is not None:
        latest = f"TIMESTAMPTZ '{ts_latest.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S')}+00'"
    install_sql_macro(con)  # mask_secrets, describe_json: ingest needs no prepared connection
    con.execute(f"CREATE OR REPLACE TEMP MACRO ts_latest() AS {latest}")
    con.execute(REPAIR_SURROGATES_MACRO)
    con.execute(BOUNDED_EXCERPT_MACRO)
    con.execute(REDACTED_RECORD_MACRO)
    con.execute(JSON_KEY_COUNT_MACRO)
    con.execute(CANONICAL_MEMBER_MACRO)
    con.execute(f"CREATE OR REPLACE TEMP MACRO canonical_fast_path() AS {str(CANONICAL_FAST_PATH).upper()}")
    for macro in (*JSON_EXTENSION_MACROS, *FINDING_MACROS):
        con.execute(macro)
    parse = sql_text("parse.sql")
    # The first slice creates ``parsed`` (planning parse.sql is most of a small run's parse
    # step: it is planned once per slice, not once more for an empty table up front).
    con.execute("DROP TABLE IF EXISTS temp.parsed")
    for piece in _line_slices(con, slice_bytes):
        _parse_slice(con, piece, parse)
    if not _parsed_exists(con):  # no line staged (zero-byte files): the empty table
        con.execute("CREATE OR REPLACE TEMP VIEW parse_input AS SELECT * FROM staged_lines WHERE false")
        con.execute("CREATE TEMP TABLE parsed AS " + parse + "\nLIMIT 0")
    check_repeated_keys(con)


def latest_plausible_ts(run_day: date | None, started: date | None) -> datetime | None:
    """The first instant a record of this run can no longer carry: 00:00Z two days after the
    later of the run's ``--date`` and the UTC day it started (README: a day of clock skew and
    of offsets past the day's end; anything later is in the future). None when neither is known."""
    days = [d for d in (run_day, started) if d is not None]
    if not days:
        return None
    return datetime.combine(max(days) + timedelta(days=2), time(0, 0), tzinfo=UTC)


P = TypeVar("P", Path, str)  # a local path, or a URI the Spark executors read


def select_new_files(
    con: duckdb.DuckDBPyConnection, paths: Sequence[Path]
) -> tuple[list[tuple[int, Path, str, int]], list[FileResult]]:
    """Hash every file: ``(file_order, path, sha256, size)`` of those to stage, and results for
    the skipped ones (ingested before with the same bytes, or repeated within the batch).

    ``file_order`` is the file's place in ``paths`` (1-based), skipped files included, whichever
    engine then stages the rest.
    """
    return select_new(con, [(path, file_sha256(path), path.stat().st_size) for path in paths])


def select_new(
    con: duckdb.DuckDBPyConnection, hashed: Sequence[tuple[P, str, int]]
) -> tuple[list[tuple[int, P, str, int]], list[FileResult]]:
    """:func:`select_new_files` for files hashed elsewhere (``(path or URI, sha256, size)``, in
    batch order): the Spark executors hash the files of a ``--logs`` URI."""
    staged: list[tuple[int, P, str, int]] = []
    skipped: list[FileResult] = []
    seen: set[str] = set()
    for order, (path, sha, size) in enumerate(hashed, start=1):
        known = con.execute(
            "SELECT lines_read, accepted, duplicates, quarantined FROM ingested_files WHERE sha256 = ?",
            [sha],
        ).fetchone()
        if known or sha in seen:
            read, accepted, duplicates, quarantined = known or (0, 0, 0, 0)
            skipped.append(FileResult(str(path), sha, size, read, accepted, duplicates, quarantined, skipped=True))
            continue
        seen.add(sha)
        staged.append((order, path, sha, size))
    return staged, skipped


def stage_files(
    con: duckdb.DuckDBPyConnection,
    paths: Sequence[Path],
    on_file: Callable[[Path], None] | None = None,
    ts_latest: datetime | None = None,
) -> StagedBatch:
    """Hash every file, skip those already ingested (same bytes), stage and parse the rest.

    Everything here writes TEMP tables only and runs outside the run's transaction.
    """
    create_staging(con)
    staged, skipped = select_new_files(con, paths)
    with console.current().progress("ingest files", len(staged)) as advance:
        for order, path, sha, _size in staged:
            stage_file(con, path, order, sha)
            fault_point("staged_file")
            if on_file:
                on_file(path)
            advance(1)
    with step("parse", after="after_parse"):
        if staged:
            parse_staged(con, ts_latest=ts_latest)
    return StagedBatch(tuple(staged), tuple(skipped))
