"""R5 inside ingest: fetch the texts of usage-less billable attempts in bounded runs and hand
them to the recounter (the tokenizers live in pipeline.recount); the texts are counted,
never stored.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import duckdb

from core import console
from core.db import insert_many
from core.timing import step
from pipeline.ingest.repeated_keys import nesting_depth

if TYPE_CHECKING:  # a type only: staging imports this module's neighbours at run time
    from pipeline.ingest.staging import Slice

RECOUNT_CHUNK_ROWS = 2048  # rows per call of the recounter
# The R5 recount reads the staged lines it needs in fetches of at most this many lines and
# bytes of text: a night on which no upstream reported usage is recounted in bounded memory.
RECOUNT_FETCH_ROWS = 50_000
RECOUNT_FETCH_BYTES = 32 << 20
# R5's candidates among valid records (columns of parse.sql's output): no usage, would be
# billable, some text to count. Ingest recounts those whose dedup verdict is ``new``; the
# Spark executors count every candidate before dedup and ship the counts, not the texts
# (:func:`recount_candidates_by_line`, :func:`recount_from_staged`).
RECOUNT_CANDIDATE = (
    "NOT has_usage AND (status BETWEEN 200 AND 299 OR status = 499) AND (has_messages OR output_text_chars IS NOT NULL)"
)
# (model, messages JSON text, output_text) of one attempt -> (input, output, tokenizer) or None
RecountRow = tuple[str, str | None, str | None]
Recounter = Callable[[list[RecountRow]], list[tuple[int, int, str] | None]]


RECOUNTS_TABLE = (
    "CREATE OR REPLACE TEMP TABLE recounts (event_id VARCHAR, est_input_tokens BIGINT, "
    "est_output_tokens BIGINT, est_tokenizer VARCHAR)"
)


def recount_new_attempts(con: duckdb.DuckDBPyConnection, recounter: Recounter) -> None:
    """R5: count tokens of would-be-billable attempts that came without usage.

    Only the texts of those attempts are read, in fetches of at most ``RECOUNT_FETCH_ROWS``
    lines and ``RECOUNT_FETCH_BYTES`` of text (:func:`fetch_runs`), so the texts of a
    night on which no upstream reported usage are never in memory together. They are taken
    out of the staged line by Python's json (:func:`_texts`), not DuckDB's: DuckDB
    re-serializing a 50 MB messages array asks for over 512 MiB at once, inside the run's
    transaction. The counts are kept, the texts are dropped.
    """
    con.execute(RECOUNTS_TABLE)
    # the attempts to count: new, would be billable, without usage, with some text
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE recount_wanted AS
        SELECT d.file_order, d.line_no, d.event_id, d.model, strlen(coalesce(s.line, '')) + 1 AS bytes
        FROM deduped d JOIN staged_lines s USING (file_order, line_no)
        WHERE d.verdict = 'new' AND """
        + RECOUNT_CANDIDATE
    )
    _count_wanted(con, recounter)


def recount_candidates_by_line(con: duckdb.DuckDBPyConnection, recounter: Recounter) -> None:
    """R5 before dedup, as a Spark task runs it over one file: every candidate of ``parsed``
    counted, in the same bounded fetches and by the same code, into ``recounts`` keyed by its
    line number as text (one file: a line is unique; an event_id may repeat)."""
    con.execute(RECOUNTS_TABLE)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE recount_wanted AS
        SELECT p.file_order, p.line_no, CAST(p.line_no AS VARCHAR) AS event_id, p.model,
               strlen(coalesce(s.line, '')) + 1 AS bytes
        FROM parsed p JOIN staged_lines s USING (file_order, line_no)
        WHERE p.problem IS NULL AND {RECOUNT_CANDIDATE}
        """
    )
    _count_wanted(con, recounter)


def recount_from_staged(con: duckdb.DuckDBPyConnection) -> None:
    """R5 with counts made before dedup (TEMP ``staged_recounts``: file_order, line_no and the
    counts, from the Spark executors): those of the attempts dedup found new, as
    :func:`recount_new_attempts` would have counted them."""
    con.execute(RECOUNTS_TABLE)
    con.execute(
        """
        INSERT INTO recounts
        SELECT d.event_id, r.est_input_tokens, r.est_output_tokens, r.est_tokenizer
        FROM deduped d JOIN staged_recounts r USING (file_order, line_no)
        WHERE d.verdict = 'new'
        """
    )


def _count_wanted(con: duckdb.DuckDBPyConnection, recounter: Recounter) -> None:
    fetches = fetch_runs(con, RECOUNT_FETCH_ROWS, RECOUNT_FETCH_BYTES)
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


def fetch_runs(
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


def _first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose repeated keys keep their first value, as DuckDB's JSON paths do.

    Only a safeguard: a line that repeats a key is a parse_error and never recounted.
    """
    result: dict[str, Any] = {}
    for key, value in pairs:
        result.setdefault(key, value)
    return result


# Deeper than this, a record's texts are unreadable for the recount (the attempt is held as
# usage_missing). A fixed bound: whether Python's json gives up (RecursionError) depends on how
# deep the caller's stack already is, which differs between the CLI, replay and a Spark task.
MAX_TEXT_NESTING = 512


def _texts(line: str) -> tuple[str | None, str | None] | None:
    """(messages as JSON text, output_text) of a staged line, or None if Python cannot read it.

    Python's json reads lone surrogates (the recount counts them as U+FFFD, as parse.sql
    repairs them) and NaN; hostile nesting or a 5000-digit number make it give up, and the
    attempt is then held as usage_missing like any other unreadable messages.
    """
    # (the depth never exceeds the number of opening brackets, which str.count finds at C speed:
    # the token scan, ~33 us a 470-byte line, runs only for a line that could be too deep)
    if line.count("[") + line.count("{") > MAX_TEXT_NESTING and nesting_depth(line) > MAX_TEXT_NESTING:
        return None
    try:
        record = json.loads(line, object_pairs_hook=_first_wins)
        messages = record.get("messages")
        output = record.get("output_text")
        return (None if messages is None else json.dumps(messages), output if isinstance(output, str) else None)
    except (ValueError, RecursionError, AttributeError):
        return None


def default_recounter(timed: bool = True) -> Recounter:
    """The R5 recounter: the offline tokenizers, row by row where a batch has a bad row.

    A row whose messages cannot be read, or whose model has no tokenizer mapped, gets None:
    its usage cannot be established and the attempt is held as ``usage_missing``.
    """

    def as_tuple(count: Any) -> tuple[int, int, str] | None:
        return None if count is None else (count.input_tokens, count.output_tokens, count.tokenizer)

    def recount(rows: list[RecountRow]) -> list[tuple[int, int, str] | None]:
        from pipeline.recount import RecountError, count_many  # the tokenizers: only when a line needs them

        with step("tokenize") if timed else contextlib.nullcontext():
            try:
                return [as_tuple(c) for c in count_many(rows)]
            except RecountError:
                results: list[tuple[int, int, str] | None] = []
                for row in rows:
                    try:
                        results.append(as_tuple(count_many([row])[0]))
                    except RecountError:
                        results.append(None)
                return results

    return recount


def no_recount(rows: list[RecountRow]) -> list[tuple[int, int, str] | None]:
    """The recounter used when no tokenizer is wired in: every such attempt is held."""
    return [None] * len(rows)
