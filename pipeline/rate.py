"""Apply the rating rules (``sql/rate.sql``) to a scope of request groups, then aggregate.

Rating is always done for whole request groups (all attempts of an (account_id, request_id)),
because R2 chooses among them. A scope is made of whole runs (``scope_runs``: the requests
that got attempts in those runs) and of listed requests (``rating_scope``); the rated rows of
those groups are replaced, and the statement lines they contribute to are updated by the
difference (``sql/aggregate.sql``).

What a nightly reads is what its day can affect (docs/performance.md): its own run's
attempts (its lake file), the narrow ``request_key`` column of ``attempt_keys`` to find older
attempts of the same requests (rare: a retry after midnight, a late file), and only the runs
holding those older rows; their rated rows are looked up within their ts range (the footers
of other days' rated files skip them) less the tombstones, which every read of
``rated_attempts`` consults (a share of the rows that only late retries add to: a re-rate
retires whole files instead). Listed scopes (a re-rate of a period, a changed price table)
read what they list. A Spark nightly reads neither its requests nor the keys: its probe on
the cluster named the requests with earlier attempts (:func:`note_probed_scope`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from core.attempt_store import (
    RATED,
    RUN_ATTEMPTS,
    attempts_of_runs,
    listed_attempt_files,
    prepare_run_rows,
    rated_rows,
    refresh_lake_views,
    retired,
    stored_table,
)
from core.db import run_script, sql_text, table_exists
from core.faults import fault_point
from core.timing import step
from pipeline import rated_summary

_EXTEND = "INSERT INTO rating_scope SELECT DISTINCT account_id, request_id FROM "
NEW_RATED = "new_rated"  # the rows a rating wrote; rated_summary and the Spark bridge use this name
AFFECTED_PERIODS = "affected_periods"


def drop_temp(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Drop the TEMP table or view ``name`` if there is one (``new_rated`` is a table, or a
    view over the lake files a Spark rating published: DuckDB drops each only by its kind)."""
    row = con.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_catalog = 'temp' AND table_name = ?", [name]
    ).fetchone()
    if row is not None:
        con.execute(f"DROP {'VIEW' if row[0] == 'VIEW' else 'TABLE'} temp.main.{name}")


def _ensure_scope(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE TEMP TABLE IF NOT EXISTS rating_scope (account_id VARCHAR, request_id VARCHAR)")
    con.execute("CREATE TEMP TABLE IF NOT EXISTS scope_runs (run_id BIGINT)")


def reset_scope(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE OR REPLACE TEMP TABLE rating_scope (account_id VARCHAR, request_id VARCHAR)")
    con.execute("CREATE OR REPLACE TEMP TABLE scope_runs (run_id BIGINT)")


def scope_open_periods(con: duckdb.DuckDBPyConnection) -> None:
    """After a reference change: requests with an attempt in a period that is not finalized
    (issued statements are never re-priced by an edit of the reference data), and every held
    attempt, whatever its period: only new reference data can release it (an unknown account
    that now exists, a model that now has a price), and then it is billed, as a prior-period
    adjustment if its period was already issued."""
    _ensure_scope(con)
    con.execute(_EXTEND + "attempts WHERE strftime(ts, '%Y-%m') NOT IN (SELECT period FROM finalized_periods)")
    con.execute(_EXTEND + "rated_attempts WHERE outcome = 'held'")


@dataclass(frozen=True)
class RateResult:
    """What a rating produced: its counts, and the names of the temp tables that hold its rows.

    The next stages read those tables through this object (``reference_state.record_used_versions``
    the price versions in ``versions_table``, ``jobs.record_output_digests`` the rated rows'
    count and digest in ``totals_table`` and the statement lines of ``periods_table``), not by
    names they would have to know; the tables live as long as the connection, until the next
    rating replaces them. The stages after the rating read the small results of
    :mod:`pipeline.rated_summary`, never ``rows_table`` itself (on the Spark path a view over
    the files the executors wrote, whose tasks computed those results).
    """

    requests: int
    attempts: int
    billed: int
    held: int
    periods: int
    rows_table: str = NEW_RATED  # the rated rows this rating wrote (as in rated_attempts, less rated_run_id)
    periods_table: str = AFFECTED_PERIODS  # (account_id, period) whose statement lines it changed
    versions_table: str = rated_summary.VERSIONS.table  # the price versions of rows_table (distinct, not NULL)
    totals_table: str = rated_summary.TOTALS.table  # rows_table's counts, digest and ts range (one row)


def scope_new_and_open(con: duckdb.DuckDBPyConnection, run_id: int) -> None:
    """Requests that got attempts in this run or in an ingest-only run not rated yet.

    Held attempts are not retried here: nothing but the reference data can release them, and
    a reference change re-rates them (:func:`scope_open_periods`).
    """
    _ensure_scope(con)
    con.execute("INSERT INTO scope_runs SELECT $run_id UNION SELECT run_id FROM unrated_runs", {"run_id": run_id})


def mark_unrated(con: duckdb.DuckDBPyConnection, run_id: int) -> None:
    """An ingest-only run: the next nightly rates its attempts."""
    con.execute(
        "INSERT INTO unrated_runs SELECT $run_id WHERE EXISTS (SELECT 1 FROM attempt_keys WHERE run_id = $run_id)",
        {"run_id": run_id},
    )


def scope_time_range(con: duckdb.DuckDBPyConnection, start: datetime | None, end: datetime | None) -> None:
    """Requests with any attempt in ``[start, end)`` (None: unbounded)."""
    _ensure_scope(con)
    con.execute(
        _EXTEND + "attempts WHERE ($start IS NULL OR ts >= $start) AND ($end IS NULL OR ts < $end)",
        {"start": start, "end": end},
    )


def _id_list(values: list[int]) -> str:
    """A literal list of run ids: a constant IN list is checked against each row group's
    min/max of run_id, so the scan skips every other run (a subquery would not be)."""
    return ", ".join(str(int(v)) for v in values) or "NULL"


def _bind_scoped_attempts(con: duckdb.DuckDBPyConnection, run_id: int) -> list[int]:
    """``scope_requests`` and the view ``scoped_attempts``: every attempt of every request in
    scope; the runs holding those attempts."""
    runs = [r for (r,) in con.execute("SELECT DISTINCT run_id FROM scope_runs ORDER BY 1").fetchall()]
    con.execute(
        "CREATE OR REPLACE TEMP TABLE scope_requests AS "
        "SELECT account_id, request_id, hash(account_id, request_id) AS request_key FROM ("
        f"  SELECT account_id, request_id FROM ({attempts_of_runs(con, runs)})"
        "   UNION"
        "   SELECT account_id, request_id FROM rating_scope"
        ")"
    )
    # the runs holding attempts of these requests: the scope's own runs, plus (rarely) the
    # runs of earlier attempts of the same requests, found by their keys
    holders = con.execute(
        "SELECT DISTINCT run_id FROM attempt_keys WHERE request_key IN (SELECT request_key FROM scope_requests) "
        "ORDER BY 1"
    ).fetchall()
    con.execute(
        "CREATE OR REPLACE TEMP VIEW scoped_attempts AS "
        f"SELECT a.* FROM ({attempts_of_runs(con, [r for (r,) in holders])}) a "
        "WHERE (a.account_id, a.request_id) IN (SELECT account_id, request_id FROM scope_requests)"
    )
    return [int(r) for (r,) in holders]


#: The TEMP table of the day's requests that earlier runs hold attempts of, filled by the Spark
#: staging's probe (pipeline/spark/history.py ``ProbeOutput.earlier``): account_id, request_id,
#: run_id (an earlier run), by_new (a record of the request that its task stores).
PROBED_EARLIER = "probed_earlier"


def earlier_requests_table(run_id: int) -> str:
    """The TEMP table of run ``run_id``'s requests that earlier runs hold attempts of (account_id,
    request_id, run_id), which :func:`note_probed_scope` made: named by the run, so that a
    rating of another run on the connection never takes it for its own."""
    return f"earlier_requests_of_run_{int(run_id)}"


def note_probed_scope(con: duckdb.DuckDBPyConnection, run_id: int) -> None:
    """After a Spark staging's probe (``probed_earlier``), while ``run_attempts`` holds the few
    records the driver stored (the special ones dedup found new): the run's requests that
    earlier runs hold attempts of. A request is the run's when a record of it is stored by a
    task (``by_new``) or by the driver. :func:`rate_scope` then takes the run's scope from
    this table and the run's own files, reading neither the day's requests nor the history's
    keys on the driver (issue 15). Without a probe (``probed_earlier``) the rating makes its
    scope table."""
    if not table_exists(con, PROBED_EARLIER, "temp"):
        return
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {earlier_requests_table(run_id)} AS "
        f"SELECT DISTINCT account_id, request_id, run_id FROM {PROBED_EARLIER} "
        "WHERE run_id <> $run AND (by_new OR (account_id, request_id) IN "
        f" (SELECT account_id, request_id FROM {RUN_ATTEMPTS}))",
        {"run": run_id},
    )


def _bind_probed_scope(con: duckdb.DuckDBPyConnection, run_id: int) -> list[Path] | None:
    """The run's scope without a scope table, when a Spark nightly's probe found it: the scope
    is this run alone (no ingest-only run to catch up, no listed request: a reference change
    lists the open periods' ones), its attempts are all in its listed lake files, and
    :func:`note_probed_scope` named the run's requests that earlier runs hold attempts of.
    Then every request of the run's files is in scope, and the only other attempts in scope
    are those requests' earlier ones, which go into ``earlier_attempts`` (read from their runs
    by the requests' text: a hash collision of the probe's finds nothing). Binds
    ``scoped_attempts`` (the run's files and ``earlier_attempts``); the run's files. None:
    not such a run (the scope table is made)."""
    table = earlier_requests_table(run_id)
    if not table_exists(con, table, "temp"):
        return None
    runs = con.execute("SELECT DISTINCT run_id FROM scope_runs").fetchall()
    if runs != [(run_id,)] or con.execute("SELECT count(*) FROM rating_scope").fetchone() != (0,):
        return None
    if table_exists(con, RUN_ATTEMPTS, "temp") and con.execute(
        f"SELECT count(*) FROM temp.main.{RUN_ATTEMPTS}"
    ).fetchone() != (0,):
        return None  # rows not in the files yet (an in-memory database keeps them in its table)
    # (none: a night whose records were all duplicates, whose scope is then empty: no task and
    # not the driver stored a record, so no request is the run's)
    files = listed_attempt_files(con, runs=[run_id])
    earlier = sorted(r for (r,) in con.execute(f"SELECT DISTINCT run_id FROM {table}").fetchall())
    con.execute(
        "CREATE OR REPLACE TEMP TABLE earlier_attempts AS "
        f"SELECT a.* FROM ({attempts_of_runs(con, earlier)}) a "
        f"WHERE (a.account_id, a.request_id) IN (SELECT account_id, request_id FROM {table})"
    )
    con.execute(
        "CREATE OR REPLACE TEMP VIEW scoped_attempts AS "
        f"SELECT * FROM ({attempts_of_runs(con, [run_id])}) UNION ALL BY NAME SELECT * FROM earlier_attempts"
    )
    return files


def own_attempt_files(con: duckdb.DuckDBPyConnection, run_id: int, holders: list[int]) -> list[Path]:
    """The run's listed attempts lake files when they hold every attempt in scope, else none.

    That is when the only run holding attempts of the scope's requests is this one (a nightly
    whose requests all began today: no ingest-only run to catch up, no reference change
    re-rating other runs' requests, no retry of an earlier day's request) and none of its
    attempts is still in the TEMP table (the Spark nightly lists its files before rating,
    ``pipeline/ingest/apply.py`` ``store_executor_attempts``). ``holders`` comes from
    ``attempt_keys``, which holds every stored attempt's request key: a hash collision only
    adds a run, which sends the rating back to the export of ``scoped_attempts``."""
    if holders != [run_id]:
        return []
    if table_exists(con, RUN_ATTEMPTS, "temp"):
        row = con.execute(f"SELECT count(*) FROM temp.main.{RUN_ATTEMPTS}").fetchone()
        if row is None or row[0]:
            return []
    return listed_attempt_files(con, runs=[run_id])


ISSUED_PRICES = "issued_prices"  # a logical input of rate.sql (R10: billed prices of issued periods)
_ISSUED_PRICE_COLUMNS = "event_id, price_basis, unit_price_input_uncached, unit_price_input_cached, unit_price_output"


def ensure_issued_prices(con: duckdb.DuckDBPyConnection) -> None:
    """An empty ``issued_prices`` unless a rating bound one: rate.sql reads it (a caller that
    runs rate.sql on attempts of its own, such as the engines-agree suite, prices them all
    from the reference data)."""
    con.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {ISSUED_PRICES} AS SELECT {_ISSUED_PRICE_COLUMNS} FROM rated_attempts LIMIT 0"
    )


def _find_replaced(
    con: duckdb.DuckDBPyConnection, run_id: int, issued_from: str | None = None, probed: bool = False
) -> str | None:
    """The rated rows that this rating replaces, into ``rated_removed``; and ``issued_prices``:
    of those (or of the rows ``issued_from`` selects: replay's scratch database has no rated
    rows of its own, and reads the live database's), the attempts billed in a finalized
    period, with the prices they were billed at, which rate.sql keeps (R10: a late retry or a
    re-rate never reprices an issued statement).

    Only attempts stored before this run can have rated rows (``probed``: those are
    ``earlier_attempts``, :func:`_bind_probed_scope`). They are looked up by event_id
    within their ts range, which lets the scan skip the row groups of other days (and the
    lake files of other days: their footers' min/max of ts). Returns that condition on rated
    rows (None: no attempt stored before this run is in scope), which
    :func:`_remove_replaced` deletes by.
    """
    others = "earlier_attempts" if probed else "scoped_attempts"  # the probed scope's others are those
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE rerated AS SELECT event_id, ts FROM {others} WHERE run_id <> $run_id",
        {"run_id": run_id},
    )
    con.execute("CREATE OR REPLACE TEMP TABLE rated_removed AS SELECT * FROM rated_attempts LIMIT 0")
    low, high = con.execute("SELECT min(ts), max(ts) FROM rerated").fetchone() or (None, None)
    where = None if low is None else _rerated_rows(low, high)
    if where is not None:
        # only the rated files that can hold that range are opened (and the tombstones naming them)
        candidates = rated_rows(con, since=low, until=high + timedelta(microseconds=1))
        con.execute(f"INSERT INTO rated_removed SELECT * FROM ({candidates}) WHERE {where}")
    source = (
        "rated_removed" if issued_from is None else f"({issued_from}) WHERE event_id IN (SELECT event_id FROM rerated)"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {ISSUED_PRICES} AS SELECT {_ISSUED_PRICE_COLUMNS} FROM (SELECT * FROM {source}) "
        "WHERE outcome = 'billed' AND period IN (SELECT period FROM finalized_periods)"
    )
    return where


def _rerated_rows(low: datetime, high: datetime) -> str:
    return (
        f"ts >= TIMESTAMPTZ '{low.isoformat()}' AND ts <= TIMESTAMPTZ '{high.isoformat()}' "
        "AND event_id IN (SELECT event_id FROM rerated)"
    )


def _remove_replaced(con: duckdb.DuckDBPyConnection, run_id: int, where: str | None) -> None:
    """Remove the rated rows in ``rated_removed`` (:func:`_find_replaced`), which this rating
    replaces.

    A replaced row is removed from where it is: from the table (rows rated before migration
    027) and from the run's own rows. Rows of earlier runs' lake files (immutable) are counted
    per file in ``rated_hidden``: a file all of whose rows are now replaced (a re-rate of its
    period) is retired whole, and the views stop reading it; a row of a file still read gets a
    tombstone in ``rated_replaced``, which the view ``rated_attempts`` reads at once and the
    run writes with its rated rows (``core.attempt_store``). So tombstones pile up only for
    the few rows a late retry moves, not for every row a re-rate replaces.
    """
    if where is None:  # nothing stored before this run is rated again
        return
    params = {"run_id": run_id, "marker": RATED.marker}
    hidden = con.execute(
        "INSERT INTO rated_hidden SELECT rated_run_id, count(*), $run_id FROM rated_removed "
        "WHERE rated_run_id IN (SELECT run_id FROM lake_files WHERE table_name = 'rated_attempts' "
        " AND run_id >= (SELECT CAST(value AS BIGINT) FROM rating_state WHERE key = $marker)) "
        "GROUP BY 1 ORDER BY 1",
        params,
    ).fetchone()
    # a tombstone for every other earlier row: in a file still read, or a copy the analysts'
    # lake keeps of a row of the table (pipeline/lake.py)
    con.execute(
        "INSERT INTO rated_replaced SELECT event_id, rated_run_id, $run_id FROM rated_removed "
        "WHERE rated_run_id <> $run_id AND rated_run_id NOT IN ("
        f" SELECT f.run_id FROM lake_files f WHERE {retired(RATED, 'f')})",
        {"run_id": run_id},
    )
    for table in (stored_table(con, RATED), f"temp.main.{RATED.run_table}"):
        con.execute(f"DELETE FROM {table} WHERE {where}")
    if hidden and hidden[0]:
        refresh_lake_views(con, [RATED])  # the view's file list (and its guard) count rated_hidden


def rate_scope(
    con: duckdb.DuckDBPyConnection,
    run_id: int,
    engine: str = "duckdb",
    spark_attempts: str | None = None,
    issued_from: str | None = None,
    memory_limit: str | None = None,
) -> RateResult:
    """Re-rate every request in scope and update the statement lines by the difference.

    ``engine="spark"`` runs the same rules (the Spark SQL generated from rate.sql) on Spark,
    reading the attempts from DuckDB or from the Parquet ``spark_attempts``; everything after
    ``new_rated`` is this function's DuckDB code for both engines. ``issued_from``: a SELECT
    of rated rows whose prices billed in finalized periods are kept (:func:`_find_replaced`),
    instead of the rows this rating replaces. ``memory_limit``: each Spark task's DuckDB's
    when the executors write the rated rows (None: 2GB).
    """
    _ensure_scope(con)
    run_rated = prepare_run_rows(con, RATED)  # stored as the run's lake file before it commits
    requests: int | None = None  # counted by Spark for a probed scope, else scope_requests's rows
    with step("scope_attempts"):
        # a Spark nightly's usual scope, which its probe found (no scope table on the driver)
        probed = _bind_probed_scope(con, run_id) if engine == "spark" and spark_attempts is None else None
        holders = _bind_scoped_attempts(con, run_id) if probed is None else []  # (read by the scope table's path)
        replaced = _find_replaced(con, run_id, issued_from, probed is not None)
    with step("rate", after="rate:after_new_rated"):
        if engine == "spark":
            from pipeline.spark.bridge import rate_on_spark  # the optional extra, imported only when asked for

            if probed is None:
                # the bridge hands Spark the request groups of rating_scope: all of them, runs included
                con.execute(
                    "CREATE OR REPLACE TEMP TABLE rating_scope AS SELECT account_id, request_id FROM scope_requests"
                )
                # the run's own lake file(s) when they are the scope (a nightly's usual case), else an
                # export of scoped_attempts; a --spark-attempts dataset wins over both
                files = own_attempt_files(con, run_id, holders) if spark_attempts is None else []
                # the executors write the run's rated rows as its lake files, listed by this
                # transaction, and new_rated is a view over them (a database file; else loaded)
                # (and their tasks computed the small results the driver needs of them: rated_summary)
                published, _ = rate_on_spark(con, spark_attempts, files, run_id, memory_limit)
            else:  # every request of the run's files is in scope, with earlier_attempts beside them
                published, requests = rate_on_spark(con, None, probed, run_id, memory_limit, earlier="earlier_attempts")
        else:
            drop_temp(con, NEW_RATED)
            con.execute(f"CREATE TEMP TABLE {NEW_RATED} AS " + sql_text("rate.sql"))
            published = False
    if not published:  # the rows are the driver's: the queries the tasks run per part read them here
        with step("summaries"):
            rated_summary.summarize(con, NEW_RATED)
    with step("replace_rated", after="rate:after_insert"):
        _remove_replaced(con, run_id, replaced)
        fault_point("rate:after_delete")
        if not published:  # else the rows are in the run's listed files already
            con.execute(f"INSERT INTO {run_rated} SELECT *, $run_id FROM {NEW_RATED}", {"run_id": run_id})
    # from here on the rated rows are read through their summaries (rated_summary), the rows
    # they replaced (rated_removed: read from stored rows) as they are
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {AFFECTED_PERIODS} AS SELECT account_id, period FROM rated_removed "
        f"UNION SELECT account_id, period FROM {rated_summary.PERIODS.table}"
    )
    # the held attempts per reason, kept by difference (the ledger reads them every night)
    con.execute(
        "INSERT INTO held_changes SELECT $run_id, reason, sum(change) FROM ("
        f" SELECT reason, attempts AS change FROM {rated_summary.HELD.table}"
        " UNION ALL SELECT reason, -1 FROM rated_removed WHERE outcome = 'held'"
        ") GROUP BY reason HAVING sum(change) <> 0 ORDER BY reason",
        {"run_id": run_id},
    )
    fault_point("rate:after_affected_periods")
    with step("aggregate"):
        # the replaced rows' contributions, by the query that gave new_rated's (new_rated_lines)
        rated_summary.summarize_lines(con, "rated_removed", "removed_lines")
        run_script(con, "aggregate.sql")
    con.execute("DELETE FROM unrated_runs WHERE run_id IN (SELECT run_id FROM scope_runs)")
    counted = "(SELECT count(*) FROM scope_requests)" if requests is None else str(int(requests))
    row = con.execute(
        f"SELECT {counted}, attempts, billed, held, "
        f"(SELECT count(*) FROM {AFFECTED_PERIODS}) FROM {rated_summary.TOTALS.table}"
    ).fetchone()
    assert row is not None
    return RateResult(*row)
