"""``pipeline/rated_summary.py``: the small results of a rating's rated rows, per part and combined.

A Spark rating's tasks run the summary queries over the parts they write, return the results as
text, and the driver combines them without reading the parts (``pipeline/spark/bridge.py``
``publish_rated``). Here (no Spark) a day's rated rows are split into parts as a split may fall,
each part summarized by a DuckDB of its own as a task does, and the combination must equal the
queries over the whole (the DuckDB path's ``summarize``), value for value as text, and the
digest of the rows (count and XOR of each row's md5) as written out here in Python.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from core.attempt_store import RATED, stored_table, typed_rows
from core.db import connect, sql_literal
from pipeline import rated_summary
from pipeline.rated_summary import DIGESTED_RATED_COLUMNS, SUMMARIES, TextRow
from pipeline.spark.parse import task_connection
from tests.conftest import Billing, record, usage

DAY = "2026-11-20"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _as_digested(value: object) -> str:
    """A value as digest version 2 spells it (DuckDB's text of it; written here in Python)."""
    if value is None:
        return "\x00"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")  # all its scale's digits, never an exponent
    if isinstance(value, datetime):
        return str((value - EPOCH) // timedelta(microseconds=1))  # ts: microseconds since the epoch
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def digest_by_hand(con: duckdb.DuckDBPyConnection, table: str) -> tuple[int, str]:
    """Count and digest (version 2, run_outputs.digest_version) of ``table``'s rows, computed
    in Python: XOR over the rows of md5 (read as a little-endian 128-bit number, as DuckDB's
    md5_number) of every column's value, in the table's order, joined by U+001F."""
    rows = con.execute(f"SELECT * FROM {table}").fetchall()
    digest = 0
    for row in rows:
        text = "\x1f".join(_as_digested(v) for v in row)
        digest ^= int.from_bytes(hashlib.md5(text.encode()).digest(), "little")
    return len(rows), str(digest)


def rated_day(billing: Billing) -> None:
    """A day rated on DuckDB with every kind of row: several accounts (one priced by its
    override), models, cached tokens, retries (not billed), held (unknown account, unpriced
    model), two periods (a late record of October)."""
    items: list[dict[str, Any]] = []
    accounts = ("acct_plain", "acct_discount", "acct_enterprise", "acct_partner", "acct_override")
    for i in range(60):
        items.append(
            record(
                event_id=f"e{i}",
                request_id=f"r{i // 2}",
                attempt=i % 2 + 1,
                status=200 if i % 2 else 500,
                account_id=accounts[i % 5],
                model=("openai/gpt-5.5", "openai/gpt-5.5-mini")[i % 3 % 2] if i % 7 else "openai/gpt-5.5",
                ts=f"{DAY}T{i % 24:02d}:{i:02d}:00Z",
                usage=usage(1000 + 37 * i, 10 + i, cached=(i % 4) * 100),
            )
        )
    items += [
        record(event_id="held", account_id="acct_nobody"),
        record(event_id="unpriced", model="no/such-model"),
        record(event_id="october", request_id="late", ts="2026-10-31T23:59:59Z"),
    ]
    billing.log(f"requests-{DAY}.jsonl", items)
    billing.nightly(DAY)


def texts(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str | None, ...]]:
    """The rows of ``table`` as text, sorted (a Decimal's trailing digits show)."""
    rows = con.execute(f"SELECT CAST(COLUMNS(*) AS VARCHAR) FROM {table}").fetchall()
    return sorted(rows, key=lambda row: tuple("" if v is None else v for v in row))


def described(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    return [(name, kind) for name, kind, *_ in con.execute(f"DESCRIBE {table}").fetchall()]


def part_results(queries: list[str], path: Path, tmp_path: Path) -> list[list[TextRow]]:
    """What a task returns for the part ``path``: the summary queries (as the bridge makes them,
    :func:`rated_summary.file_part_queries`) over the file it wrote, run by a DuckDB of its own
    (the tasks' settings)."""
    con = task_connection(temp_directory=tmp_path)
    try:
        return [con.execute(q.replace("$written", sql_literal(str(path)))).fetchall() for q in queries]
    finally:
        con.close()


@pytest.mark.parametrize("parts", [1, 2, 3, 7])
def test_the_parts_results_combine_to_the_queries_over_the_whole(billing: Billing, tmp_path: Path, parts: int) -> None:
    rated_day(billing)
    con = connect(billing.settings.db_path)
    try:
        con.execute("CREATE TEMP TABLE new_rated AS SELECT * EXCLUDE (rated_run_id) FROM rated_attempts")
        assert con.execute("SELECT count(DISTINCT outcome), count(DISTINCT period) FROM new_rated").fetchone() == (
            3,
            2,
        )
        assert con.execute("SELECT count(*) FROM new_rated WHERE price_basis = 'override'").fetchone() != (0,)
        rated_summary.summarize(con, "new_rated")  # the DuckDB path
        whole = {s.table: texts(con, s.table) for s in SUMMARIES}
        types = {s.table: described(con, s.table) for s in SUMMARIES}
        assert whole[rated_summary.LINES.table] and whole[rated_summary.HELD.table]
        # the columns version 2 digests are the table's, in its order (but the run id)
        assert tuple(c for (c, *_) in con.execute("DESCRIBE new_rated").fetchall()) == DIGESTED_RATED_COLUMNS
        (rows, digest) = digest_by_hand(con, "new_rated")
        assert texts(con, rated_summary.TOTALS.table)[0][0] == str(rows)
        assert con.execute(
            f"SELECT CAST(coalesce(digest, 0) AS VARCHAR) FROM {rated_summary.TOTALS.table}"
        ).fetchone() == (digest,)
        # the parts as the tasks write them, in the lake files' layout (typed_rows: rated_run_id
        # included, since migration 039 no charges and the unit prices as text; rows in no
        # useful order, and with several parts one of them empty), each summarized on its own
        queries = rated_summary.file_part_queries(con)
        results = []
        for k in range(parts + (parts > 1)):
            path = tmp_path / f"part-{k}.parquet"
            rows = typed_rows(con, RATED, 1, f"SELECT * FROM rated_attempts WHERE hash(event_id) % {parts} = {k}")
            con.execute(f"COPY ({rows} ORDER BY ts DESC) TO {sql_literal(str(path))} (FORMAT parquet)")
            results.append(part_results(queries, path, tmp_path))
        in_file = dict(described(con, f"SELECT * FROM read_parquet({sql_literal(str(path))})"))
        assert "charge_total" not in in_file and in_file["unit_price_output"] == "VARCHAR"
        empty = f"SELECT * EXCLUDE (rated_run_id) FROM {stored_table(con, RATED)} LIMIT 0"  # as the bridge types them
        rated_summary.combine(con, empty, results)
        assert {s.table: texts(con, s.table) for s in SUMMARIES} == whole
        # the same types whichever way the tables were made (aggregate.sql and the digest read them)
        assert {s.table: described(con, s.table) for s in SUMMARIES} == types
    finally:
        con.close()
