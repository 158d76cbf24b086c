"""What the driver keeps of a rating's rated rows: small results, computed where the rows are.

After a rating the driver needs, of the rows it wrote (``new_rated``), their statement-line
contributions (``sql/line_contributions.sql``, which ``sql/aggregate.sql`` adds to the lines),
the (account, period)s they touch, the held attempts per reason, the price versions they used,
their counts, their range of ``ts`` and their digest (``run_outputs``). Each is a query over
``rated_rows`` (:data:`SUMMARIES`), whose result is small (accounts x models, not attempts).

- On DuckDB (and a Spark rating loaded into the driver's DuckDB) the queries read
  ``new_rated`` (:func:`summarize`).
- When the executors write a Spark rating's rated rows (``pipeline/spark/bridge.py``
  ``publish_rated``), each task runs the same queries over the part it wrote, read back as
  the views read a lake file (:func:`file_part_queries`), and returns their rows as text;
  the driver casts them back to the queries' types and combines the parts' results by each
  summary's ``combine`` (sums, unions, min/max and XOR: exact, whatever the number of parts)
  without reading the parts (:func:`combine`). Decimals travel as text, which DuckDB casts back exactly.

The digest is ``bit_xor`` of :data:`ROW_DIGESTS` (the current version's) over the rows: the XOR
of the parts' XORs is the XOR over all rows, so the combined digest is the one the driver's scan
of the parts gives (``pipeline/jobs.py`` ``record_output_digests``; ``replay --verify`` compares
them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from core.db import sql_text

ROWS = "rated_rows"  # the name every summary query reads: the CTE this module binds

#: The columns of a rated row that digest version 2 hashes, in this order: every column of
#: ``rated_attempts`` but ``rated_run_id`` (as of migration 046; a column added later is left out,
#: so a recorded digest keeps verifying, as jobs.DIGESTED_LINE_COLUMNS does for the lines).
DIGESTED_RATED_COLUMNS = (
    "event_id",
    "request_id",
    "account_id",
    "attempt",
    "ts",
    "period",
    "usage_date",
    "model",
    "status",
    "outcome",
    "billable",
    "reason",
    "usage_source",
    "input_uncached_tokens",
    "input_cached_tokens",
    "output_tokens",
    "reasoning_tokens",
    "image_tokens",
    "price_version",
    "price_basis",
    "unit_price_input_uncached",
    "unit_price_input_cached",
    "unit_price_output",
    "charge_input_uncached",
    "charge_input_cached",
    "charge_output",
    "charge_total",
    "upstream_ref_cost",
    "upstream_cost_usd",
)


def _digested_text(column: str) -> str:
    value = f"epoch_us({column})" if column == "ts" else column  # an instant, whatever the session's zone
    return f"coalesce(CAST({value} AS VARCHAR), chr(0))"


#: The digest of one row ``r`` of a SELECT of rated rows, by ``run_outputs.digest_version``;
#: a run's digest is their ``bit_xor`` over its rows (order-independent). Version 1, recorded by
#: runs before migration 046 and still by the statement lines' digest (jobs.DIGEST): md5 of the
#: row's struct text (``{'event_id': evt_1, ...}``: every column's name and value, ~870 bytes a
#: row of the bench day). Version 2: md5 of the values of :data:`DIGESTED_RATED_COLUMNS` as text,
#: joined by U+001F, NULL spelled U+0000, ``ts`` as microseconds since the epoch (~340 bytes): the
#: same values, exact (decimals keep their scale), half the time (issue 14: v1 was ~10% of a
#: nightly's time at 1M attempts). ``replay --verify`` compares a run with the version it recorded.
ROW_DIGESTS = {
    1: "md5_number(CAST(r AS VARCHAR))",
    2: "md5_number(concat_ws(chr(31), " + ", ".join(_digested_text(c) for c in DIGESTED_RATED_COLUMNS) + "))",
}
RATED_DIGEST_VERSION = 2  # what a rating records now
TextRow = tuple[str | None, ...]


@dataclass(frozen=True)
class Summary:
    """One small result of the rated rows: ``query`` over ``rated_rows``, and ``combine``, a
    SELECT over ``parts`` (the parts' results, typed as ``query``'s) giving the result of the
    union of the parts. ``table``: the driver's TEMP table holding it after a rating."""

    table: str
    query: str
    combine: str


def _contributions() -> str:
    return sql_text("line_contributions.sql").strip().rstrip(";")


LINES = Summary(
    "new_rated_lines",
    _contributions(),
    "SELECT account_id, period, model, token_class, price_version, unit_price_per_1m, sum(quantity_tokens), "
    "sum(billed_requests), sum(override_requests), sum(amount_exact) FROM parts "
    "GROUP BY account_id, period, model, token_class, price_version, unit_price_per_1m",
)
PERIODS = Summary(
    "new_rated_periods",
    f"SELECT DISTINCT account_id, period FROM {ROWS}",
    "SELECT DISTINCT account_id, period FROM parts",
)
HELD = Summary(
    "new_rated_held",
    f"SELECT reason, count(*) AS attempts FROM {ROWS} WHERE outcome = 'held' GROUP BY reason",
    "SELECT reason, sum(attempts) FROM parts GROUP BY reason",
)
VERSIONS = Summary(
    "new_rated_versions",
    f"SELECT DISTINCT price_version FROM {ROWS} WHERE price_version IS NOT NULL",
    "SELECT DISTINCT price_version FROM parts",
)
TOTALS = Summary(  # one row
    "new_rated_totals",
    "SELECT count(*) AS attempts, count(*) FILTER (WHERE outcome = 'billed') AS billed, "
    f"count(*) FILTER (WHERE outcome = 'held') AS held, bit_xor({ROW_DIGESTS[RATED_DIGEST_VERSION]}) AS digest, "
    f"min(ts) AS ts_min, max(ts) AS ts_max FROM {ROWS} r",
    "SELECT coalesce(sum(attempts), 0), coalesce(sum(billed), 0), coalesce(sum(held), 0), bit_xor(digest), "
    "min(ts_min), max(ts_max) FROM parts",
)
SUMMARIES = (LINES, PERIODS, HELD, VERSIONS, TOTALS)


def _over(source: str, query: str) -> str:
    """``query`` with ``rated_rows`` bound to the rows of ``source`` (a table, view or subquery)."""
    return f"WITH {ROWS} AS (SELECT * FROM {source})\n{query}\n"


def rated_digest(con: duckdb.DuckDBPyConnection, run_id: int, version: int) -> str:
    """The digest of version ``version`` of the rated rows run ``run_id`` wrote, read back from
    ``rated_attempts`` (``replay --verify`` of a run that recorded another version than its
    re-execution: the re-executed rows, digested as the run digested its own)."""
    row = con.execute(
        f"SELECT CAST(coalesce(bit_xor({ROW_DIGESTS[version]}), 0) AS VARCHAR) FROM "
        "(SELECT * EXCLUDE (rated_run_id) FROM rated_attempts WHERE rated_run_id = $run) r",
        {"run": run_id},
    ).fetchone()
    assert row is not None
    return str(row[0])


def summarize(con: duckdb.DuckDBPyConnection, source: str) -> None:
    """Every summary's TEMP table from the rows of ``source`` (``new_rated``: one scan each)."""
    for summary in SUMMARIES:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {summary.table} AS {_over(source, summary.query)}")


def summarize_lines(con: duckdb.DuckDBPyConnection, source: str, table: str) -> None:
    """The TEMP table ``table`` of the line contributions of the rows of ``source``
    (``rated_removed``: the rows a rating replaced, which aggregate.sql subtracts)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {_over(source, LINES.query)}")


def part_queries(source: str) -> list[str]:
    """The summary queries as an executor's task runs them over the rows of ``source`` (the part
    it wrote), every column cast to text (exact: DuckDB casts decimals, HUGEINTs and
    TIMESTAMPTZs in UTC back to the same values); in :data:`SUMMARIES`' order."""
    return [f"SELECT CAST(COLUMNS(*) AS VARCHAR) FROM ({_over(source, s.query)})" for s in SUMMARIES]


def file_part_queries(con: duckdb.DuckDBPyConnection) -> list[str]:
    """:func:`part_queries` over the rated lake file a task wrote (``$written``: a run's file as
    :func:`core.attempt_store.typed_rows` makes it), read back as the views read a file
    (:func:`core.attempt_store.file_select`): the table's columns in order and types, with the
    values the layout of migration 039 leaves out (the charges) or stores as text (the unit
    prices) computed and cast back. The results, the digest included, are then those of the
    same rows in ``new_rated``."""
    from core.attempt_store import RATED, computed_from, file_select, stored_columns

    typed = file_select(RATED, stored_columns(con, RATED), computed_from(con, RATED) is not None)
    return part_queries(f"(SELECT * EXCLUDE (rated_run_id) FROM (SELECT {typed} FROM read_parquet($written) AS r))")


def combine(con: duckdb.DuckDBPyConnection, empty: str, parts: Sequence[Sequence[Sequence[TextRow]]]) -> None:
    """Every summary's TEMP table from the parts' results (``parts[i][j]``: part i's rows of
    ``SUMMARIES[j]``, as :func:`part_queries` gives them), typed as the query over ``empty`` (a
    SELECT of no rows in ``new_rated``'s columns) types them. Reads no rated row."""
    import pyarrow as pa  # only the Spark path has parts to combine

    for j, summary in enumerate(SUMMARIES):
        typed = f"SELECT * FROM ({_over(f'({empty})', summary.query)}) LIMIT 0"
        con.execute(f"CREATE OR REPLACE TEMP TABLE {summary.table} AS {typed}")
        columns = con.execute(f"DESCRIBE {summary.table}").fetchall()
        rows = [row for part in parts for row in part[j]]
        text = pa.table({f"c{i}": pa.array([row[i] for row in rows], pa.string()) for i in range(len(columns))})
        cast = ", ".join(f'CAST(c{i} AS {c[1]}) AS "{c[0]}"' for i, c in enumerate(columns))
        con.register("summary_text", text)
        try:
            con.execute(
                f"INSERT INTO {summary.table} WITH parts AS (SELECT {cast} FROM summary_text) {summary.combine}"
            )
        finally:
            con.unregister("summary_text")
