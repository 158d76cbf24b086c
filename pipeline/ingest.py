"""Ingest gateway log files into ``attempts`` (R1 dedup) and ``quarantine`` (R9).

DuckDB reads the files (``read_csv`` of whole lines, numbered WITH ORDINALITY, or
``read_parquet``); ``sql/parse.sql`` validates and types every line and ``sql/dedup.sql``
applies R1. Python only orchestrates, plus a line-by-line fallback reader for the rare file
DuckDB refuses (invalid UTF-8, a truncated gzip stream), so one bad byte never stops the
good lines of a file.

Accounting per file: lines read = accepted + duplicates + quarantined (blank lines are not
records and are not counted).
"""

from __future__ import annotations

import glob
import gzip
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import duckdb
import pyarrow as pa
import zstandard

from pipeline.db import insert_many, run_script, sql_text

SUPPORTED_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".parquet")
READ_CSV_LINES = (
    "read_csv(?, columns={{'line': 'VARCHAR'}}, header=false, delim='\x1e\x1f', quote='', "
    "escape='', auto_detect=false, max_line_size=67108864, buffer_size=134217728, "
    "compression='{compression}')"
)
# (model, messages JSON text, output_text) of one attempt -> (input, output, tokenizer) or None
RecountRow = tuple[str, str | None, str | None]
Recounter = Callable[[list[RecountRow]], list[tuple[int, int, str] | None]]


class IngestError(ValueError):
    """An input that cannot be ingested at all (unknown kind, missing file)."""


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


def discover(patterns: Sequence[str]) -> list[Path]:
    """Expand files and globs; a named file of an unknown kind is an error, not a skip."""
    found: dict[str, Path] = {}
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            for match in glob.glob(pattern, recursive=True):
                path = Path(match)
                if path.is_file() and file_kind(path):
                    found[str(path.resolve())] = path
            continue
        path = Path(pattern)
        if not path.is_file():
            raise IngestError(f"{pattern}: no such file")
        if not file_kind(path):
            raise IngestError(f"{pattern}: not a log file (expected {', '.join(SUPPORTED_SUFFIXES)})")
        found[str(path.resolve())] = path
    # R1 "first" within a batch: files in name order
    return sorted(found.values(), key=lambda p: (p.name, str(p)))


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
        reader = READ_CSV_LINES.format(compression=compression)
        source = f"SELECT ordinality AS line_no, line FROM {reader} WITH ORDINALITY"
    con.execute(
        f"INSERT INTO staged_lines SELECT ?, ?, ?, line_no, line, NULL FROM ({source})",
        [order, str(path), sha, str(path)],
    )


def _raw_lines(path: Path) -> Iterator[bytes]:
    kind = file_kind(path)
    with path.open("rb") as raw:
        stream: IO[bytes] | gzip.GzipFile
        if kind == ".jsonl.gz":
            stream = gzip.GzipFile(fileobj=raw)
        elif kind == ".jsonl.zst":
            stream = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        else:
            stream = raw
        buffer = b""
        # read1 hands over what has been decompressed so far, so the lines before a
        # truncation point are kept (read(n) would raise and lose them)
        read = getattr(stream, "read1", stream.read)
        while True:
            chunk = read(1 << 16)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            yield from lines
        if buffer:
            yield buffer


def _stage_with_python(con: duckdb.DuckDBPyConnection, path: Path, order: int, sha: str, why: str) -> None:
    """Line-by-line reader for files DuckDB refuses: each bad line becomes a parse_error."""
    line_nos: list[int] = []
    lines: list[str | None] = []
    problems: list[str | None] = []
    number = 0
    try:
        if file_kind(path) == ".parquet":
            raise ValueError(f"not a readable Parquet file ({why.splitlines()[0][:200]})")
        for number, raw in enumerate(_raw_lines(path), start=1):
            raw = raw.rstrip(b"\r")
            try:
                text: str | None = raw.decode("utf-8")
                problem = None
            except UnicodeDecodeError as exc:
                text = raw[:300].decode("utf-8", errors="replace")
                problem = f"line is not valid UTF-8 (byte {exc.start})"
            line_nos.append(number)
            lines.append(text if text and text.strip() else None)
            problems.append(problem)
    except (OSError, EOFError, zstandard.ZstdError, ValueError) as exc:
        line_nos.append(number + 1)
        lines.append(None)
        problems.append(f"file unreadable after line {number}: {str(exc).splitlines()[0][:200]}")
    table = pa.table(
        {
            "file_order": pa.array([order] * len(lines), pa.int32()),
            "source_file": pa.array([str(path)] * len(lines), pa.string()),
            "source_sha256": pa.array([sha] * len(lines), pa.string()),
            "line_no": pa.array(line_nos, pa.int64()),
            "line": pa.array(lines, pa.string()),
            "stage_problem": pa.array(problems, pa.string()),
        }
    )
    con.register("fallback_lines", table)
    try:
        con.execute("INSERT INTO staged_lines SELECT * FROM fallback_lines")
    finally:
        con.unregister("fallback_lines")


def stage_file(con: duckdb.DuckDBPyConnection, path: Path, order: int, sha: str) -> None:
    """Stage one file's lines; fall back to the Python reader if DuckDB refuses the file.

    Runs outside the run's transaction (staging only touches TEMP tables): a DuckDB error
    aborts the enclosing transaction, and the fallback must be able to run after one.
    """
    try:
        _stage_with_duckdb(con, path, order, sha)  # autocommit: a failure inserts nothing
    except duckdb.Error as exc:
        _stage_with_python(con, path, order, sha, str(exc))


@dataclass(frozen=True)
class StagedBatch:
    """Files of one batch: new ones staged in order, already-ingested ones skipped."""

    staged: tuple[tuple[int, Path, str, int], ...]  # (file_order, path, sha256, size)
    skipped: tuple[FileResult, ...]


def stage_files(
    con: duckdb.DuckDBPyConnection, paths: Sequence[Path], on_file: Callable[[Path], None] | None = None
) -> StagedBatch:
    """Hash every file, skip those already ingested (same bytes), stage the rest."""
    _create_staging(con)
    staged: list[tuple[int, Path, str, int]] = []
    skipped: list[FileResult] = []
    seen: set[str] = set()
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
            continue
        seen.add(sha)
        stage_file(con, path, order, sha)
        staged.append((order, path, sha, size))
        if on_file:
            on_file(path)
    return StagedBatch(tuple(staged), tuple(skipped))


def _recount_new_attempts(con: duckdb.DuckDBPyConnection, recounter: Recounter) -> None:
    """R5: count tokens of would-be-billable attempts that came without usage.

    Only the texts of those attempts are read (from the staged lines); the counts are kept,
    the texts are dropped.
    """
    con.execute(
        "CREATE OR REPLACE TEMP TABLE recounts (event_id VARCHAR, est_input_tokens BIGINT, "
        "est_output_tokens BIGINT, est_tokenizer VARCHAR)"
    )
    rows = con.execute(
        """
        SELECT d.event_id, d.model,
               CAST(json_extract(s.line, '$.messages') AS VARCHAR),
               json_extract_string(s.line, '$.output_text')
        FROM deduped d JOIN staged_lines s USING (file_order, line_no)
        WHERE d.verdict = 'new' AND NOT d.has_usage
          AND (d.status BETWEEN 200 AND 299 OR d.status = 499)
          AND (d.has_messages OR d.output_text_chars IS NOT NULL)
        ORDER BY d.event_id
        """
    ).fetchall()
    if not rows:
        return
    counts = recounter([(model, messages, output) for _, model, messages, output in rows])
    results = [(event_id, c[0], c[1], c[2]) for (event_id, *_), c in zip(rows, counts, strict=True) if c is not None]
    if results:
        insert_many(con, "INSERT INTO recounts VALUES (?, ?, ?, ?)", results)


def no_recount(rows: list[RecountRow]) -> list[tuple[int, int, str] | None]:
    """The recounter used when no tokenizer is wired in: every such attempt is held."""
    return [None] * len(rows)


def apply_staged(
    con: duckdb.DuckDBPyConnection, batch: StagedBatch, run_id: int, recounter: Recounter = no_recount
) -> list[FileResult]:
    """Validate, dedup and store the staged batch. Call inside the run's transaction."""
    if not batch.staged:
        return list(batch.skipped)
    con.execute("CREATE OR REPLACE TEMP TABLE parsed AS " + sql_text("parse.sql"))
    con.execute("CREATE OR REPLACE TEMP TABLE deduped AS " + sql_text("dedup.sql"))
    _recount_new_attempts(con, recounter)
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
