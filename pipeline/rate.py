"""Apply the rating rules (``sql/rate.sql``) to a scope of request groups, then aggregate.

Rating is always done for whole request groups (all attempts of an (account_id, request_id)),
because R2 chooses among them. A scope is a temp table ``rating_scope`` of such groups; the
rated rows of those groups are replaced, and the statement lines of every (account, period)
they touch (before or after) are recomputed. Nothing else is read or rewritten, so a nightly
run costs what its day costs, not what the history costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from pipeline.db import run_script, sql_text
from pipeline.faults import fault_point

_EXTEND = "INSERT INTO rating_scope SELECT DISTINCT account_id, request_id FROM "


def _ensure_scope(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE TEMP TABLE IF NOT EXISTS rating_scope (account_id VARCHAR, request_id VARCHAR)")


def reset_scope(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE OR REPLACE TEMP TABLE rating_scope (account_id VARCHAR, request_id VARCHAR)")


def scope_open_periods(con: duckdb.DuckDBPyConnection) -> None:
    """Requests with an attempt in a period that is not finalized (after a reference change:
    issued statements are never re-priced by an edit of the reference data)."""
    _ensure_scope(con)
    con.execute(_EXTEND + "attempts WHERE strftime(ts, '%Y-%m') NOT IN (SELECT period FROM finalized_periods)")


@dataclass(frozen=True)
class RateResult:
    requests: int
    attempts: int
    billed: int
    held: int
    periods: int


def scope_new_and_open(con: duckdb.DuckDBPyConnection, run_id: int) -> None:
    """Requests that got attempts in this run, plus every request not yet rated or still held."""
    _ensure_scope(con)
    con.execute(
        _EXTEND
        + """(
            SELECT account_id, request_id FROM attempts WHERE run_id = $run_id
            UNION ALL
            SELECT account_id, request_id FROM rated_attempts WHERE outcome = 'held'
            UNION ALL
            SELECT a.account_id, a.request_id FROM attempts a
            ANTI JOIN rated_attempts r ON r.event_id = a.event_id
        )""",
        {"run_id": run_id},
    )


def scope_time_range(con: duckdb.DuckDBPyConnection, start: datetime | None, end: datetime | None) -> None:
    """Requests with any attempt in ``[start, end)`` (None: unbounded)."""
    _ensure_scope(con)
    con.execute(
        _EXTEND + "attempts WHERE ($start IS NULL OR ts >= $start) AND ($end IS NULL OR ts < $end)",
        {"start": start, "end": end},
    )


def rate_scope(
    con: duckdb.DuckDBPyConnection, run_id: int, engine: str = "duckdb", spark_attempts: str | None = None
) -> RateResult:
    """Re-rate every request in ``rating_scope`` and refresh affected statement lines.

    ``engine="spark"`` runs the same rules (the Spark SQL generated from rate.sql) on Spark,
    reading the attempts from DuckDB or from the Parquet ``spark_attempts``; everything after
    ``new_rated`` is this function's DuckDB code for both engines.
    """
    con.execute("CREATE OR REPLACE TEMP TABLE rating_scope AS SELECT DISTINCT * FROM rating_scope")
    con.execute(
        "CREATE OR REPLACE TEMP VIEW scoped_attempts AS "
        "SELECT a.* FROM attempts a JOIN rating_scope s USING (account_id, request_id)"
    )
    if engine == "spark":
        from pipeline.spark.bridge import rate_on_spark  # the optional extra, imported only when asked for

        rate_on_spark(con, spark_attempts)
    else:
        con.execute("CREATE OR REPLACE TEMP TABLE new_rated AS " + sql_text("rate.sql"))
    fault_point("rate:after_new_rated")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE affected_periods AS "
        "SELECT account_id, period FROM rated_attempts JOIN rating_scope USING (account_id, request_id) "
        "UNION SELECT account_id, period FROM new_rated"
    )
    fault_point("rate:after_affected_periods")
    con.execute(
        "DELETE FROM rated_attempts WHERE (account_id, request_id) IN (SELECT account_id, request_id FROM rating_scope)"
    )
    fault_point("rate:after_delete")
    con.execute("INSERT INTO rated_attempts SELECT *, $run_id FROM new_rated", {"run_id": run_id})
    fault_point("rate:after_insert")
    run_script(con, "aggregate.sql")
    row = con.execute(
        "SELECT (SELECT count(*) FROM rating_scope), count(*), "
        "count(*) FILTER (WHERE outcome = 'billed'), count(*) FILTER (WHERE outcome = 'held'), "
        "(SELECT count(*) FROM affected_periods) FROM new_rated"
    ).fetchone()
    assert row is not None
    return RateResult(*row)
