"""Ingest gateway log files into ``attempts`` (R1 dedup) and ``quarantine`` (R9).

DuckDB reads the files (``read_csv`` of whole lines, numbered WITH ORDINALITY, or
``read_parquet``); ``sql/parse.sql`` validates and types every line and ``sql/dedup.sql``
applies R1. Python only orchestrates, plus a line-by-line fallback reader for the rare file
DuckDB refuses (invalid UTF-8, a truncated or corrupt gzip/zstd stream, a lone CR, a line
holding our delimiter bytes \\x1e\\x1f, a line over 64 MiB), so one bad byte never stops the
good lines of a file. The fallback streams: it holds one line (at most 64 MiB of it) and one
batch of lines at a time, so its memory does not grow with the file.

Staging and parse.sql write TEMP tables only and run before the run's transaction; parse.sql
runs over slices of a few MiB of text, because DuckDB's JSON functions hold a whole vector's
parse trees outside the memory limit (see ``parse_staged``). Everything else is one
transaction (``apply_staged``, inside the job's).

Accounting per file: lines read = accepted + duplicates + quarantined (blank lines, i.e.
only spaces, tabs or CR, are not records and are not counted). A file that cannot be read at
all (a corrupt Parquet file) or stops being readable (a cut gzip or zstd stream) adds one
``parse_error`` entry for the unreadable rest, so it never vanishes from the accounting; a
zero-byte file of any kind is an empty log.

Hostile input, decided (see ``docs/hostile-input.md``): a line with lone UTF-16 surrogate
escapes (``"\\ud800"``) only inside ``messages``/``output_text`` is accepted, the lone halves
counted as U+FFFD (the texts are only counted, never stored); anywhere else it is a
``parse_error``. An id field (event_id, request_id, account_id, model) that carries an API
key is an ``invalid_record``; other text fields are stored with the key masked. A symbolic
link, a FIFO, a device or a directory named like a log file is never read (:func:`refusal`).
An object that repeats a key (any depth) is a ``parse_error``: parse.sql finds it set-based,
:func:`first_repeated_key` names it and checks the lines parse.sql cannot (over 1 MiB, or
deeply nested). R1 compares canonical content (parse.sql), not bytes.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
import re
import stat
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import IO, Any

import duckdb
import zstandard

from core import console
from core.db import insert_many, run_script, sql_text
from core.errors import BillingError, MissingInput
from core.faults import fault_point
from core.timing import step
from pipeline.redact import install_sql_macro, mask_secrets, safe_error_message

SUPPORTED_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".parquet")
# The fallback reader's bounds: DuckDB's own line limit, and how much it buffers per insert.
MAX_LINE_BYTES = 64 << 20
FALLBACK_BATCH_LINES = 50_000
FALLBACK_BATCH_BYTES = 32 << 20
EXCERPT_BYTES = 300
RECOUNT_CHUNK_ROWS = 2048  # rows per call of the recounter
# The R5 recount reads the staged lines it needs in fetches of at most this many lines and
# bytes of text: a night on which no upstream reported usage is recounted in bounded memory.
RECOUNT_FETCH_ROWS = 50_000
RECOUNT_FETCH_BYTES = 32 << 20
# parse.sql runs over slices of about this much text: DuckDB's JSON functions keep a whole
# vector's parse trees in memory per function, so bytes per statement bound memory.
PARSE_SLICE_BYTES = 8 << 20
VECTOR_LINES = 2048  # DuckDB's vector length: the lines whose parse trees are alive together
# Runs of short lines are parsed this many lines per statement: many row groups (122,880
# rows each), so the scan runs on every core; a refused statement is halved and retried.
LIGHT_SLICE_LINES = 2_000_000
# Lone UTF-16 surrogate escapes -> `replacement`, leaving valid pairs and escaped backslashes
# alone (pass 1 marks each lone escape with chr(1), pass 2 replaces the marked ones). Only
# applied to lines without chr(1). Used by parse.sql and by the R5 recount of repaired lines.
REPAIR_SURROGATES_MACRO = r"""
CREATE OR REPLACE TEMP MACRO repair_lone_surrogates(s, replacement) AS
replace(regexp_replace(
    regexp_replace(s,
        '(\\\\|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})|(\\u[dD][89a-fA-F][0-9a-fA-F]{2})',
        '\1' || chr(1) || '\2', 'g'),
    chr(1) || '\\u[dD][89a-fA-F][0-9a-fA-F]{2}', replacement, 'g'),
  chr(1), '')
"""
# Whole lines through read_csv: a delimiter no valid JSON line contains (raw control bytes),
# no quoting. read_csv silently drops trailing delimiters, though ("x\x1e\x1f" reads as "x",
# a line of only "\x1e\x1f" as an empty one), so a file is first checked with
# nullstr='\n' (under which any delimiter is an error; it cannot read lines itself, as it
# skips empty lines and so breaks the numbering): a file with the bytes goes to the fallback.
# What the quarantine keeps of a JSON object record: re-serialized (so a key written with \u
# escapes is decoded and then masked), without messages/output_text, keys masked, and at most
# QUARANTINE_RECORD_CHARS of it (a record with a 20 MB id is kept as an excerpt; the source
# file stays the original). bounded_excerpt(s, n): s, or its first n characters and a note of
# the full length, which is longer than n, so a cut id never equals a real (bounded) one.
QUARANTINE_RECORD_CHARS = 4096
BOUNDED_EXCERPT_MACRO = """
CREATE OR REPLACE TEMP MACRO bounded_excerpt(s, n) AS
CASE WHEN length(s) > n THEN left(s, n) || ' ...[cut: ' || length(s) || ' characters]' ELSE s END
"""
REDACTED_RECORD_MACRO = f"""
CREATE OR REPLACE TEMP MACRO redacted_json_record(line) AS
bounded_excerpt(mask_secrets(CAST(json_merge_patch(line, '{{"messages": null, "output_text": null}}') AS VARCHAR)),
                {QUARANTINE_RECORD_CHARS})
"""
# The number of object keys in a *minified* JSON text (json() or a VARIANT written as JSON):
# after dropping escaped backslashes, then escaped quotes (left to right, so a run of
# backslashes pairs up as the JSON grammar reads it), every `"` left delimits a string, and
# a string followed by `:` is a key. Cheap (replace, not a regex), and exact for valid JSON.
# Without a backslash (nearly every line) there is nothing to drop: minified JSON has a `"`
# only as a delimiter then, so counting `":` alone is exact and skips four passes over m.
JSON_KEY_COUNT_MACRO = r"""
CREATE OR REPLACE TEMP MACRO json_key_count(m) AS
CASE WHEN contains(m, '\\')
     THEN (strlen(replace(replace(m, '\\', ''), '\"', ''))
           - strlen(replace(replace(replace(m, '\\', ''), '\"', ''), '":', ''))) // 2
     ELSE (strlen(m) - strlen(replace(m, '":', ''))) // 2 END
"""
# A failing check of parse.sql, as a struct that parse.sql's `worded` step turns into the
# {reason, field, message} of the quarantine: the message as written (finding), followed by
# describe_json(value) (finding_described), or by the line's ts, masked and cut, and a tail
# (finding_ts). Wording them in one place keeps mask_secrets at one call site instead of
# ~40: DuckDB compiles the regex of each call site whenever the statement is planned.
FINDING_MACROS = (
    "CREATE OR REPLACE TEMP MACRO finding(reason, field, message) AS "
    "{'reason': reason, 'field': CAST(field AS VARCHAR), 'message': message, "
    "'shows': CAST(NULL AS VARCHAR), 'value': CAST(NULL AS JSON), 'tail': CAST(NULL AS VARCHAR)}",
    "CREATE OR REPLACE TEMP MACRO finding_described(reason, field, message, value) AS "
    "{'reason': reason, 'field': CAST(field AS VARCHAR), 'message': message, "
    "'shows': 'value', 'value': CAST(value AS JSON), 'tail': CAST(NULL AS VARCHAR)}",
    "CREATE OR REPLACE TEMP MACRO finding_ts(reason, field, message, tail) AS "
    "{'reason': reason, 'field': CAST(field AS VARCHAR), 'message': message, "
    "'shows': 'ts', 'value': CAST(NULL AS JSON), 'tail': tail}",
)
# Strings (group 1; group 2 is the colon that makes one a key) and brackets of a JSON text.
# Scanned left to right over valid JSON, the string pattern always starts at a real string
# (outside strings JSON has no quote character), so what it calls a key is one.
_JSON_TOKEN = re.compile(r'("[^"\\]*(?:\\.[^"\\]*)*")\s*(:)?|[{}\[\]]')
READ_CSV_LINES = (
    "read_csv(?, columns={{'line': 'VARCHAR'}}, header=false, delim='\x1e\x1f', quote='', "
    "escape='', auto_detect=false, max_line_size=67108864, buffer_size=134217728, "
    "compression='{compression}'{extra})"
)
# (model, messages JSON text, output_text) of one attempt -> (input, output, tokenizer) or None
RecountRow = tuple[str, str | None, str | None]
Recounter = Callable[[list[RecountRow]], list[tuple[int, int, str] | None]]


class IngestError(BillingError, ValueError):
    """An input that cannot be ingested at all (unknown kind, missing file)."""


class InputMissing(IngestError, MissingInput):
    """The logs directory named on the command line does not exist: a usage error."""


@dataclass(frozen=True)
class FileResult:
    path: str
    sha256: str
    size_bytes: int
    lines_read: int
    accepted: int
    duplicates: int
    quarantined: int
    skipped: bool = False


def file_kind(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in SUPPORTED_SUFFIXES if name.endswith(s)), None)


def refusal(path: Path) -> str | None:
    """Why ``path`` is not read as a log file, or None for a regular file.

    A log file is read only as what it is: a symbolic link (``requests-X.jsonl ->
    /etc/passwd``) would put another file's content into the quarantine copies, and a FIFO or
    a device would block or never end. Looked at with ``lstat``, so a link is never followed.
    """
    name = re.sub(r"[\x00-\x1f\x7f]", "?", str(path))  # the message stays one line
    try:
        mode = os.lstat(path).st_mode
    except OSError as exc:
        return f"{name}: cannot be read ({exc.strerror})"
    if stat.S_ISLNK(mode):
        return f"{name}: is a symbolic link; refused, log files are read only as regular files"
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        return f"{name}: is {kind}; refused, log files are read only as regular files"
    return None


def discover(patterns: Sequence[str], refused: list[str] | None = None) -> list[Path]:
    """Expand files and globs; a named file of an unknown kind is an error, not a skip.

    A link or anything but a regular file (:func:`refusal`) is never read: with ``refused``
    given, its one-line reason is appended there and the other files go on (the caller
    reports it and fails the run's exit code); without, it is an :class:`IngestError`.
    """
    found: dict[str, Path] = {}

    def refuse(reason: str) -> None:
        if refused is None:
            raise IngestError(reason)
        refused.append(reason)

    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            for match in glob.glob(pattern, recursive=True):
                path = Path(match)
                if not file_kind(path):
                    continue
                if reason := refusal(path):
                    refuse(reason)
                    continue
                found[str(path.resolve())] = path
            continue
        path = Path(pattern)
        if not os.path.lexists(path):
            # exit 1, not 2: like a day without files for the nightly, a log that is not there is
            # missing input, not a mistyped command line
            raise IngestError(f"{pattern}: no such file", hint="check the path; quote globs so the shell leaves them")
        if not file_kind(path):
            raise IngestError(
                f"{pattern}: not a log file (expected {', '.join(SUPPORTED_SUFFIXES)})",
                hint="rename it with its format's suffix, or leave it out",
            )
        if reason := refusal(path):
            refuse(reason)
            continue
        found[str(path.resolve())] = path
    # R1 "first" within a batch: files in name order
    # (ties between equal names by absolute path, so the order never depends on the spelling)
    return sorted(found.values(), key=lambda p: (p.name, str(p.resolve())))


def source_name(path: Path) -> str:
    """The name stored with every record of a file (``attempts``/``quarantine.source_file``).

    The file name only, never the path as spelled: ``data/sample_logs/x.jsonl.gz``,
    ``./data/sample_logs/x.jsonl.gz`` and ``/srv/.../x.jsonl.gz`` are one input, which the
    stored ``source_sha256`` identifies. A stored path would make the rows depend on the
    directory a run was started from, and ``replay --verify`` (which re-reads the inputs by
    their recorded absolute paths) would report an untouched database as changed.
    """
    return path.resolve().name


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _create_staging(con: duckdb.DuckDBPyConnection) -> None:
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


def zstd_problem(path: Path) -> str | None:
    """Why a .zst file is not a complete zstd stream, or None when it is.

    Neither DuckDB nor python-zstandard reports a stream cut off inside a frame: both return
    what decoded (often nothing) and stop, so a truncated file would ingest as fewer lines
    than it had, with no trace. Walking the frame and block headers (RFC 8878) finds a cut
    or trailing junk without decompressing anything.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        while (pos := f.tell()) < size:
            magic = f.read(4)
            if len(magic) < 4:
                return f"zstd stream is truncated (frame header at byte {pos})"
            number = int.from_bytes(magic, "little")
            if 0x184D2A50 <= number <= 0x184D2A5F:  # skippable frame
                length = f.read(4)
                if len(length) < 4 or f.tell() + int.from_bytes(length, "little") > size:
                    return f"zstd stream is truncated (skippable frame at byte {pos})"
                f.seek(int.from_bytes(length, "little"), 1)
                continue
            if number != 0xFD2FB528:
                return f"not a zstd frame at byte {pos}"
            descriptor = f.read(1)
            if not descriptor:
                return f"zstd stream is truncated (frame header at byte {pos})"
            d = descriptor[0]
            single_segment = bool(d & 0x20)
            fcs = (1 if single_segment else 0, 2, 4, 8)[d >> 6]
            header = (0 if single_segment else 1) + (0, 1, 2, 4)[d & 3] + fcs
            f.seek(header, 1)
            while True:
                block = f.read(3)
                if len(block) < 3:
                    return f"zstd stream is truncated (block header at byte {f.tell() - len(block)})"
                value = int.from_bytes(block, "little")
                block_type, block_size = (value >> 1) & 3, value >> 3
                if block_type == 3:
                    return f"corrupt zstd block at byte {f.tell() - 3}"
                f.seek(1 if block_type == 1 else block_size, 1)  # RLE blocks hold one byte
                if value & 1:
                    break
            if d & 0x04:
                f.seek(4, 1)  # content checksum
            if f.tell() > size:
                return f"zstd stream is truncated (frame at byte {pos} ends past the end of the file)"
    return None


def _open_stream(raw: IO[bytes], kind: str | None) -> IO[bytes] | gzip.GzipFile:
    if kind == ".jsonl.gz":
        return gzip.GzipFile(fileobj=raw)
    if kind == ".jsonl.zst":
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)  # type: ignore[return-value]
    return raw


def _raw_lines(path: Path) -> Iterator[tuple[bytes, bool]]:
    """Physical lines, split on LF only, as ``(line, too_long)``.

    Never holds more than one line: a line over MAX_LINE_BYTES is yielded as its first
    EXCERPT_BYTES with ``too_long`` set, the rest skipped as it streams by. Only the new chunk
    is searched for LF, so a 50 MB line costs O(size), not O(size^2).
    """
    with path.open("rb") as raw:
        stream = _open_stream(raw, file_kind(path))
        # read1 hands over what has been decompressed so far, so the lines before a
        # truncation point are kept (read(n) would raise and lose them)
        read = getattr(stream, "read1", stream.read)
        parts: list[bytes] = []
        size = 0
        too_long = False
        while chunk := read(1 << 16):
            start = 0
            while True:
                end = chunk.find(b"\n", start)
                piece = chunk[start:] if end < 0 else chunk[start:end]
                if not too_long:
                    if size + len(piece) > MAX_LINE_BYTES:
                        too_long = True
                        parts = [(b"".join(parts) + piece[:EXCERPT_BYTES])[:EXCERPT_BYTES]]
                    elif piece:
                        parts.append(piece)
                        size += len(piece)
                if end < 0:
                    break
                yield b"".join(parts), too_long
                parts, size, too_long = [], 0, False
                start = end + 1
        if parts or too_long:
            yield b"".join(parts), too_long


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
        for number, (raw, too_long) in enumerate(_raw_lines(path), start=1):
            if raw.endswith(b"\r"):
                raw = raw.rstrip(b"\r")
            problem = None
            if too_long:
                problem = f"line is longer than {MAX_LINE_BYTES >> 20} MiB"
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
    try:
        _stage_with_duckdb(con, path, order, sha)  # autocommit: a failure inserts nothing
    except duckdb.Error as exc:
        _stage_with_python(con, path, order, sha, str(exc))


Slice = tuple[int, int, int]  # (file_order, first line_no, last line_no) of a run of staged lines


@dataclass(frozen=True)
class StagedBatch:
    """Files of one batch: new ones staged in order (their lines parsed into the TEMP table
    ``parsed``), already-ingested ones skipped."""

    staged: tuple[tuple[int, Path, str, int], ...]  # (file_order, path, sha256, size)
    skipped: tuple[FileResult, ...]


def _line_slices(con: duckdb.DuckDBPyConnection, max_bytes: int) -> list[Slice]:
    """Runs of consecutive lines of one file, each parsed by one statement.

    What must be bounded is the text of one vector (DuckDB's JSON functions hold a whole
    vector's parse trees outside the memory limit), not of one statement. Lines are taken in
    blocks of a vector's length (``VECTOR_LINES``): a *light* block holds at most half of
    ``max_bytes`` of text, so any vector of the scan (which may straddle two blocks) holds at
    most ``max_bytes``; runs of light blocks are parsed together, in statements large enough
    for DuckDB to scan their row groups on every core. A *heavy* block (long lines) is cut
    into slices of about ``max_bytes`` of text each, each parsed on its own.
    """
    blocks = con.execute(
        f"""
        SELECT file_order, line_no // {VECTOR_LINES} AS block, min(line_no), max(line_no),
               sum(strlen(coalesce(line, '')) + 1) AS bytes
        FROM staged_lines
        GROUP BY ALL
        ORDER BY 1, 2
        """
    ).fetchall()
    slices: list[Slice] = []
    run: list[int] | None = None  # [file_order, lo, hi, lines] of the light run being extended
    for f, block, lo, hi, size in blocks:
        if size <= max_bytes // 2:
            if run is not None and run[0] == f and run[3] + (hi - lo + 1) <= LIGHT_SLICE_LINES:
                run[2], run[3] = int(hi), run[3] + int(hi - lo + 1)
                continue
            if run is not None:
                slices.append((run[0], run[1], run[2]))
            run = [int(f), int(lo), int(hi), int(hi - lo + 1)]
            continue
        if run is not None:
            slices.append((run[0], run[1], run[2]))
            run = None
        slices += _heavy_block_slices(con, int(f), int(block), max_bytes)
    if run is not None:
        slices.append((run[0], run[1], run[2]))
    return slices


def _heavy_block_slices(con: duckdb.DuckDBPyConnection, f: int, block: int, max_bytes: int) -> list[Slice]:
    """One block of long lines cut into runs of about ``max_bytes`` of text (at least one line each)."""
    sizes = con.execute(
        f"SELECT line_no, strlen(coalesce(line, '')) + 1 FROM staged_lines "
        f"WHERE file_order = {f} AND line_no // {VECTOR_LINES} = {block} ORDER BY line_no"
    ).fetchall()
    slices: list[Slice] = []
    lo, hi, total = -1, -1, 0  # the slice being filled (lo < 0: none yet)
    for line_no, size in sizes:
        if lo >= 0 and total + size > max_bytes:
            slices.append((f, lo, hi))
            lo, total = -1, 0
        if lo < 0:
            lo = int(line_no)
        hi, total = int(line_no), total + int(size)
    if lo >= 0:
        slices.append((f, lo, hi))
    return slices


def _parse_slice(con: duckdb.DuckDBPyConnection, piece: Slice, parse: str) -> None:
    """parse.sql over one slice; halve it when it does not fit the memory limit.

    DuckDB's JSON functions hold the parse trees of a whole vector (2048 lines) at once, per
    function, outside the spillable buffer pool, so what bounds memory is the bytes of text
    per statement, not the number of lines. A single line that alone does not fit is
    quarantined as a parse_error naming the limit, instead of failing the run.
    """
    f, lo, hi = piece
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW parse_input AS SELECT * FROM staged_lines "
        f"WHERE file_order = {f} AND line_no BETWEEN {lo} AND {hi}"
    )
    try:
        _insert_parsed(con, parse)  # autocommit: a failure inserts nothing
        return
    except duckdb.OutOfMemoryException:
        pass
    if lo < hi:
        middle = (lo + hi) // 2
        _parse_slice(con, (f, lo, middle), parse)
        _parse_slice(con, (f, middle + 1, hi), parse)
        return
    size = con.execute("SELECT strlen(line) FROM parse_input").fetchone()
    megabytes = (size[0] if size and size[0] else 0) / (1 << 20)
    con.execute(
        "UPDATE staged_lines SET stage_problem = ? WHERE file_order = ? AND line_no = ?",
        [f"line of {megabytes:.1f} MiB does not fit the memory limit to be validated (raise --memory-limit)", f, lo],
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
    for macro in FINDING_MACROS:
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
    _check_repeated_keys(con)


def latest_plausible_ts(run_day: date | None, started: date | None) -> datetime | None:
    """The first instant a record of this run can no longer carry: 00:00Z two days after the
    later of the run's ``--date`` and the UTC day it started (README: a day of clock skew and
    of offsets past the day's end; anything later is in the future). None when neither is known."""
    days = [d for d in (run_day, started) if d is not None]
    if not days:
        return None
    return datetime.combine(max(days) + timedelta(days=2), time(0, 0), tzinfo=UTC)


def stage_files(
    con: duckdb.DuckDBPyConnection,
    paths: Sequence[Path],
    on_file: Callable[[Path], None] | None = None,
    ts_latest: datetime | None = None,
) -> StagedBatch:
    """Hash every file, skip those already ingested (same bytes), stage and parse the rest.

    Everything here writes TEMP tables only and runs outside the run's transaction.
    """
    _create_staging(con)
    staged: list[tuple[int, Path, str, int]] = []
    skipped: list[FileResult] = []
    seen: set[str] = set()
    with console.current().progress("ingest files", len(paths)) as advance:
        for order, path in enumerate(paths, start=1):
            sha = file_sha256(path)
            size = path.stat().st_size
            known = con.execute(
                "SELECT lines_read, accepted, duplicates, quarantined FROM ingested_files WHERE sha256 = ?",
                [sha],
            ).fetchone()
            if known or sha in seen:
                read, accepted, duplicates, quarantined = known or (0, 0, 0, 0)
                skipped.append(FileResult(str(path), sha, size, read, accepted, duplicates, quarantined, skipped=True))
                advance(1)
                continue
            seen.add(sha)
            stage_file(con, path, order, sha)
            fault_point("staged_file")
            staged.append((order, path, sha, size))
            if on_file:
                on_file(path)
            advance(1)
    with step("parse", after="after_parse"):
        if staged:
            parse_staged(con, ts_latest=ts_latest)
    return StagedBatch(tuple(staged), tuple(skipped))


def _recount_new_attempts(con: duckdb.DuckDBPyConnection, recounter: Recounter) -> None:
    """R5: count tokens of would-be-billable attempts that came without usage.

    Only the texts of those attempts are read, in fetches of at most ``RECOUNT_FETCH_ROWS``
    lines and ``RECOUNT_FETCH_BYTES`` of text (:func:`_recount_fetches`), so the texts of a
    night on which no upstream reported usage are never in memory together. They are taken
    out of the staged line by Python's json (:func:`_texts`), not DuckDB's: DuckDB
    re-serializing a 50 MB messages array asks for over 512 MiB at once, inside the run's
    transaction. The counts are kept, the texts are dropped.
    """
    con.execute(
        "CREATE OR REPLACE TEMP TABLE recounts (event_id VARCHAR, est_input_tokens BIGINT, "
        "est_output_tokens BIGINT, est_tokenizer VARCHAR)"
    )
    # the attempts to count: new, would be billable, without usage, with some text
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE recount_wanted AS
        SELECT d.file_order, d.line_no, d.event_id, d.model, strlen(coalesce(s.line, '')) + 1 AS bytes
        FROM deduped d JOIN staged_lines s USING (file_order, line_no)
        WHERE d.verdict = 'new' AND NOT d.has_usage AND (d.status BETWEEN 200 AND 299 OR d.status = 499)
          AND (d.has_messages OR d.output_text_chars IS NOT NULL)
        """
    )
    fetches = _recount_fetches(con, RECOUNT_FETCH_ROWS, RECOUNT_FETCH_BYTES)
    with console.current().progress("recount tokens", len(fetches)) as advance:
        for f, lo, hi in fetches:
            _recount_fetch(con, recounter, f, lo, hi)
            advance(1)


def _recount_fetch(con: duckdb.DuckDBPyConnection, recounter: Recounter, f: int, lo: int, hi: int) -> None:
    """Count the tokens of one fetch of wanted lines (file ``f``, lines ``lo``..``hi``)."""
    rows = con.execute(
        """
        SELECT w.event_id, w.model, s.line
        FROM recount_wanted w JOIN staged_lines s USING (file_order, line_no)
        WHERE w.file_order = $f AND w.line_no BETWEEN $lo AND $hi
          AND s.file_order = $f AND s.line_no BETWEEN $lo AND $hi
        ORDER BY w.event_id
        """,
        {"f": f, "lo": lo, "hi": hi},
    ).fetchall()
    results: list[tuple[str, int, int, str]] = []
    for start in range(0, len(rows), RECOUNT_CHUNK_ROWS):
        chunk = rows[start : start + RECOUNT_CHUNK_ROWS]
        readable = [(e, model, texts) for e, model, line in chunk if (texts := _texts(line)) is not None]
        if not readable:
            continue
        counts = recounter([(model, *texts) for _, model, texts in readable])
        results += [(event_id, c[0], c[1], c[2]) for (event_id, *_), c in zip(readable, counts, strict=True) if c]
    del rows
    insert_many(con, "INSERT INTO recounts VALUES (?, ?, ?, ?)", results)


def _recount_fetches(
    con: duckdb.DuckDBPyConnection, max_rows: int, max_bytes: int, table: str = "recount_wanted"
) -> list[Slice]:
    """Runs of one file's wanted lines (TEMP ``table``: file_order, line_no, bytes) to read together.

    A run holds at most ``max_rows`` lines, and lines that start within one ``max_bytes``
    stretch of the wanted text: at most ``max_bytes`` plus its last line (a longer line is
    read with few others). Computed in SQL, so a day of millions of recounts never lists its
    lines in Python.
    """
    rows = con.execute(
        f"""
        WITH numbered AS (
            SELECT file_order, line_no,
                   (row_number() OVER w - 1) // $max_rows AS row_run,
                   coalesce(sum(bytes) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                       // $max_bytes AS byte_run
            FROM {table}
            WINDOW w AS (PARTITION BY file_order ORDER BY line_no)
        )
        SELECT file_order, min(line_no) AS lo, max(line_no) AS hi
        FROM numbered
        GROUP BY file_order, row_run, byte_run
        ORDER BY file_order, lo
        """,
        {"max_rows": max_rows, "max_bytes": max_bytes},
    ).fetchall()
    return [(int(f), int(lo), int(hi)) for f, lo, hi in rows]


def first_repeated_key(line: str) -> tuple[str, str] | None:
    """(path of the object, key) of the first key that an object of ``line`` repeats, or None.

    ``line`` must be valid JSON (parse.sql decided that). Keys are compared decoded, so
    ``"a"`` and ``"\\u0061"`` are the same key. Iterative, one pass over the text, memory
    bounded by the line: used for the lines parse.sql cannot check (over 1 MiB or deeply
    nested) and to name the key parse.sql found repeated. The path names objects by their
    keys and array elements by ``[]`` (e.g. ``messages[]``; ``""`` is the top level).
    """
    stack: list[tuple[set[str] | None, str]] = []  # (keys seen; None for an array, path)
    pending = ""  # the last key read in the innermost object: the name of a container value
    for token in _JSON_TOKEN.finditer(line):
        text, colon = token.group(1), token.group(2)
        if text is not None:
            if colon is None or not stack or stack[-1][0] is None:
                continue
            try:
                key = json.loads(text, strict=False)
            except ValueError:
                key = text
            keys, path = stack[-1]
            assert keys is not None
            if key in keys:
                return path, key
            keys.add(key)
            pending = key
            continue
        bracket = token.group(0)
        if bracket in "{[":
            if not stack:
                path = ""
            elif stack[-1][0] is None:
                path = stack[-1][1] + "[]"
            else:
                path = f"{stack[-1][1]}.{pending}" if stack[-1][1] else pending
            stack.append((set() if bracket == "{" else None, path))
        elif stack:
            stack.pop()
    return None


def repeated_key_problem(found: tuple[str, str] | None) -> tuple[str | None, str]:
    """(field, message) of the parse_error for a line whose object repeats a key.

    Keys under ``messages``/``output_text`` are prompt or output text a client chose: only
    the field is named. Elsewhere the key and its path, escaped to one line, masked, cut.
    """
    if found is None:  # parse.sql saw fewer keys after reading than written; not located
        return None, "line is not a record: an object repeats a key"
    path, key = found
    top = path.split(".")[0].split("[")[0]
    if top in ("messages", "output_text"):
        return top, f"line is not a record: an object inside {top} repeats a key (not shown: it is prompt text)"
    shown = mask_secrets(json.dumps(key, ensure_ascii=False))[:80]
    where = f" in {mask_secrets(path)[:80]}" if path else ""
    field = mask_secrets(f"{path}.{key}" if path else key)[:120]
    return field, f"line is not a record: repeated key {shown}{where} (JSON readers differ on which value counts)"


def _check_repeated_keys(con: duckdb.DuckDBPyConnection) -> None:
    """Name the repeated key of lines parse.sql found one in; check the lines it could not.

    Lines are read in fetches of bounded size (as for the recount), one staged line at a time
    in Python; a found repeat turns the line into a parse_error whatever else it had.
    """
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE key_suspects AS
        SELECT p.file_order, p.line_no, strlen(coalesce(s.line, '')) + 1 AS bytes
        FROM parsed p JOIN staged_lines s USING (file_order, line_no)
        WHERE p.key_check IS NOT NULL
        """
    )
    findings: list[tuple[int, int, str | None, str]] = []
    for f, lo, hi in _recount_fetches(con, RECOUNT_FETCH_ROWS, RECOUNT_FETCH_BYTES, "key_suspects"):
        rows = con.execute(
            """
            SELECT p.line_no, p.key_check, s.line
            FROM parsed p JOIN staged_lines s USING (file_order, line_no)
            WHERE p.file_order = $f AND p.line_no BETWEEN $lo AND $hi AND p.key_check IS NOT NULL
              AND s.file_order = $f AND s.line_no BETWEEN $lo AND $hi
            """,
            {"f": f, "lo": lo, "hi": hi},
        ).fetchall()
        for line_no, check, line in rows:
            found = first_repeated_key(line)
            if found is not None or check == "repeated":
                findings.append((f, int(line_no), *repeated_key_problem(found)))
        del rows
    if not findings:  # the usual case: nothing to update (and no UPDATE to plan)
        return
    con.execute(
        "CREATE OR REPLACE TEMP TABLE key_findings "
        "(file_order INTEGER, line_no BIGINT, field VARCHAR, message VARCHAR)"
    )
    insert_many(con, "INSERT INTO key_findings VALUES (?, ?, ?, ?)", findings)
    con.execute(
        """
        UPDATE parsed SET
            problem = {'reason': 'parse_error', 'field': k.field, 'message': k.message},
            redacted_record = redacted_json_record(CASE WHEN parsed.surrogates_replaced
                THEN repair_lone_surrogates(s.line, '\\\\ufffd') ELSE s.line END)
        FROM key_findings k, staged_lines s
        WHERE parsed.file_order = k.file_order AND parsed.line_no = k.line_no
          AND s.file_order = k.file_order AND s.line_no = k.line_no
        """
    )


def _first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose repeated keys keep their first value, as DuckDB's JSON paths do.

    Only a safeguard: a line that repeats a key is a parse_error and never recounted.
    """
    result: dict[str, Any] = {}
    for key, value in pairs:
        result.setdefault(key, value)
    return result


def _texts(line: str) -> tuple[str | None, str | None] | None:
    """(messages as JSON text, output_text) of a staged line, or None if Python cannot read it.

    Python's json reads lone surrogates (the recount counts them as U+FFFD, as parse.sql
    repairs them) and NaN; hostile nesting or a 5000-digit number make it give up, and the
    attempt is then held as usage_missing like any other unreadable messages.
    """
    try:
        record = json.loads(line, object_pairs_hook=_first_wins)
        messages = record.get("messages")
        output = record.get("output_text")
        return (None if messages is None else json.dumps(messages), output if isinstance(output, str) else None)
    except (ValueError, RecursionError, AttributeError):
        return None


def no_recount(rows: list[RecountRow]) -> list[tuple[int, int, str] | None]:
    """The recounter used when no tokenizer is wired in: every such attempt is held."""
    return [None] * len(rows)


def apply_staged(
    con: duckdb.DuckDBPyConnection, batch: StagedBatch, run_id: int, recounter: Recounter = no_recount
) -> list[FileResult]:
    """Dedup and store the staged, parsed batch. Call inside the run's transaction."""
    if not batch.staged:
        return list(batch.skipped)
    with step("dedup", after="after_dedup"):
        con.execute("CREATE OR REPLACE TEMP TABLE deduped AS " + sql_text("dedup.sql"))
    with step("recount", after="after_recount"):
        _recount_new_attempts(con, recounter)
    with step("store"):
        run_script(con, "store_batch.sql", {"run_id": run_id})
    results = _file_results(con, batch)
    insert_many(
        con,
        "INSERT INTO ingested_files VALUES (?, ?, ?, ?, ?, ?, ?, ?, now())",
        [
            (r.sha256, Path(r.path).name, r.path, run_id, r.lines_read, r.accepted, r.duplicates, r.quarantined)
            for r in results
            if not r.skipped
        ],
    )
    return results + list(batch.skipped)


def _file_results(con: duckdb.DuckDBPyConnection, batch: StagedBatch) -> list[FileResult]:
    counts = {
        row[0]: row[1:]
        for row in con.execute(
            """
            SELECT p.file_order,
                   count(*) AS lines_read,
                   count(*) FILTER (WHERE d.verdict = 'new') AS accepted,
                   count(*) FILTER (WHERE d.verdict = 'duplicate') AS duplicates,
                   count(*) FILTER (WHERE p.problem IS NOT NULL OR d.verdict = 'duplicate_conflict') AS quarantined
            FROM parsed p
            LEFT JOIN deduped d USING (file_order, line_no)
            GROUP BY p.file_order
            """
        ).fetchall()
    }
    results = []
    for order, path, sha, size in batch.staged:
        lines, accepted, duplicates, quarantined = counts.get(order, (0, 0, 0, 0))
        results.append(FileResult(str(path), sha, size, lines, accepted, duplicates, quarantined))
    return results
