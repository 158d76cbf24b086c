"""The floor each nightly step stands on: what DuckDB alone needs for the same work on the same day.

Issue 14, item 1: "print each stage's time beside the floor it stands on, so the next
bottleneck is visible". A floor is the plainest query doing a step's essential work on the
benchmark's day, with the nightly's memory limit and threads, and nothing of billing's rules:
no validation messages, no quarantine, no crash safety. The ratio of a step's time to its
floor is what the step's own logic costs on top of the engine; the step with the largest
absolute gap is the next bottleneck. Floors run in a child process of their own
(``bench.py --floors``), after the empty-database nightly, reading its stored rows so that
they handle exactly the rows the nightly handled; inputs a step receives in memory are put in
memory first, untimed.

Not a test and not a target by itself: the targets stay in bench.py's ratio lines.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from core.db import sql_literal

# the top-level fields of a log line (SPEC section 1) and the usage fields parse.sql reads
LINE_PATHS = [
    "$.event_id",
    "$.request_id",
    "$.attempt",
    "$.ts",
    "$.duration_ms",
    "$.account_id",
    "$.api_key_id",
    "$.group",
    "$.endpoint",
    "$.model",
    "$.provider",
    "$.status",
    "$.error_code",
    "$.stream",
    "$.finish_reason",
    "$.upstream_cost_usd",
    "$.usage.prompt_tokens",
    "$.usage.completion_tokens",
    "$.usage.prompt_tokens_details.cached_tokens",
    "$.usage.completion_tokens_details.reasoning_tokens",
]


@dataclass(frozen=True)
class Floor:
    """One step's floor: the timing step it stands under, what it is, and its timed SQL."""

    step: str
    what: str
    sql: tuple[str, ...]  # the statements timed together


def line_reader(log: Path) -> str:
    """The reader staging uses for a ``.jsonl.gz`` file: its own ``READ_CSV_LINES``, on ``log``."""
    from pipeline.ingest.staging import READ_CSV_LINES

    return READ_CSV_LINES.format(compression="gzip", extra="").replace("?", sql_literal(str(log)), 1)


def floors(log: Path, scratch: Path | None = None) -> list[Floor]:
    """The floors, in the order of the nightly's steps (``log``: the day's gzipped file;
    ``scratch``: where a floor may write a file)."""
    paths = ", ".join(sql_literal(p) for p in LINE_PATHS)
    scratch = scratch or Path(tempfile.gettempdir())
    return [
        Floor(
            "stage - parse",
            "read the file's lines as text (staging's reader)",
            (f"SELECT count(line) FROM {line_reader(log)}",),
        ),
        Floor(
            "parse",
            f"one json_extract of {len(LINE_PATHS)} fields of every line (lines in memory)",
            (f"SELECT count(j) FROM (SELECT json_extract(line, [{paths}]) AS j FROM day_lines)",),
        ),
        Floor(
            "dedup",
            "group the day's attempts by event id with their content hash",
            ("SELECT count(*) FROM (SELECT hash(event_id) AS k, count(DISTINCT content_sha256) FROM day GROUP BY k)",),
        ),
        Floor(
            "store",
            "insert the stored attempts into a TEMP table (as the step: the run's file is written at its end)",
            ("CREATE TEMP TABLE floor_attempts AS SELECT * FROM day",),
        ),
        Floor(
            "rate",
            "the last attempt of each request, priced by one join on model",
            (
                "SELECT sum(coalesce(prompt_tokens, 0) * p.price) FROM ("
                "  SELECT *, row_number() OVER (PARTITION BY account_id, request_id ORDER BY attempt DESC) AS n"
                "  FROM day"
                ") d JOIN (SELECT DISTINCT model, CAST(1.25 AS DECIMAL(18,6)) AS price FROM day) p USING (model) "
                "WHERE n = 1",
            ),
        ),
        Floor(
            "replace_rated",
            "insert the rated rows into a TEMP table (as the step: the run's file is written at its end)",
            ("CREATE TEMP TABLE floor_rated AS SELECT * FROM rated",),
        ),
        Floor(
            "aggregate",
            "sum the rated rows per account, period and model",
            ("SELECT count(*) FROM (SELECT account_id, period, model, sum(charge_total) FROM rated GROUP BY ALL)",),
        ),
        Floor(
            "lake",
            "copy the stored attempts and the rated rows to zstd Parquet files",
            tuple(
                f"COPY (SELECT * FROM {table}) TO {sql_literal(str(Path(scratch) / f'floor-{table}.parquet'))} "
                "(FORMAT parquet, COMPRESSION zstd)"
                for table in ("day", "rated")
            ),
        ),
        Floor(
            "digests",
            "DuckDB's hash() per rated row, XOR-ed (not stable across versions, which a kept digest must be)",
            ("SELECT bit_xor(hash(r)) FROM (SELECT * FROM rated) r",),
        ),
    ]


def measure_floors(log: Path, db: Path, memory_limit: str) -> dict[str, float]:  # allow-float: seconds
    """Seconds of each floor (child side of ``bench.py --floors``)."""
    import duckdb

    from core.attempt_store import attempts_of_runs, rated_rows

    con = duckdb.connect(config={"memory_limit": memory_limit})
    found: dict[str, float] = {}  # allow-float: seconds
    with tempfile.TemporaryDirectory(prefix="floors-") as scratch:
        con.execute(f"ATTACH {sql_literal(str(db))} AS nightly (READ_ONLY)")
        # what the steps get in memory, put there untimed
        con.execute(f"CREATE TEMP TABLE day_lines AS SELECT line FROM {line_reader(log)}")
        # the attempts and rated rows: the run's lake files (core/attempt_store.py), not the tables
        con.execute(f"CREATE TEMP TABLE day AS {attempts_of_runs(con, database='nightly')}")
        con.execute(f"CREATE TEMP TABLE rated AS {rated_rows(con, 'nightly')}")
        for floor in floors(log, Path(scratch)):
            started = time.perf_counter()
            for statement in floor.sql:
                con.execute(statement).fetchall()
            found[floor.step] = time.perf_counter() - started
    con.close()
    return found


def report_lines(steps: dict[str, float], found: dict[str, float], log: Path) -> list[str]:  # allow-float: seconds
    """The table bench.py prints: each step of the nightly beside its floor."""
    nightly = dict(steps)
    if "stage" in nightly and "parse" in nightly:  # the stage step includes the parse step
        nightly["stage - parse"] = nightly["stage"] - nightly["parse"]
    lines = [
        "steps beside their floors (the plainest DuckDB query doing the step's work on the same day; "
        "gap = step - floor):",
        f"  {'step':<14} {'step s':>7} {'floor s':>8} {'x floor':>8} {'gap s':>6}  the floor",
    ]
    for floor in floors(log):
        if floor.step not in nightly or floor.step not in found:
            continue
        took, least = nightly[floor.step], found[floor.step]
        ratio = f"{took / least:.1f}" if least > 0 else "-"
        lines.append(f"  {floor.step:<14} {took:>7.3f} {least:>8.3f} {ratio:>8} {took - least:>6.3f}  {floor.what}")
    if "recount" in nightly:
        lines.append(
            f"  {'recount':<14} {nightly['recount']:>7.3f} {'':>8} {'':>8} {'':>6}  "
            "its floor is the tokenizers' rate: see the recount lines"
        )
    return lines


def main(log: Path, db: Path, memory_limit: str) -> None:
    print(json.dumps(measure_floors(log, db, memory_limit)))
