"""Rated rows stored once, in the run's lake file (migration 027, core/attempt_store.py): written
inside the run with the tombstones of the earlier rows it replaced, listed by its commit, read
back through the view ``rated_attempts`` (rows less tombstones); a database from before the
migration keeps its rated rows in the table and re-rates them there.

Prices (acct_plain, list, openai/gpt-5.5): input 7.5 USD and output 45 USD per 1M tokens, so
1,000 + 100 tokens cost 0.0075 + 0.0045 = 0.012 USD and 3,000 + 300 tokens 0.036 USD.
"""

from __future__ import annotations

from decimal import Decimal

import duckdb
import pytest

from core.attempt_store import (
    RATED,
    AttemptFileMissing,
    file_select,
    lake_dir,
    lake_path,
    stored_columns,
    write_parquet,
)
from core.db import connect
from pipeline import jobs, rated_summary, replay, snapshot
from tests.conftest import Billing, as_before_migration_027, built_once, record, usage


def rated_files(billing: Billing) -> list[tuple[int, str, str, int]]:
    return billing.query(
        "SELECT run_id, table_name, path, row_count FROM lake_files "
        "WHERE table_name IN ('rated_attempts', 'rated_replaced') ORDER BY 1, 2"
    )


def late_retry(billing: Billing) -> None:
    """Run 1 bills attempt a1 (0.012); run 2 brings its retry a2 (0.036), which R2 bills instead."""
    billing.log("requests-2026-11-20.jsonl", [record(event_id="a1", request_id="r", usage=usage(1000, 100))])
    billing.nightly("2026-11-20")
    late = record(event_id="a2", request_id="r", attempt=2, ts="2026-11-20T12:00:05Z", usage=usage(3000, 300))
    billing.log("requests-2026-11-21.jsonl", [late])
    billing.nightly("2026-11-21")


retried = built_once("retried", late_retry)


def one_record(billing: Billing) -> None:
    """Run 1 bills attempt a (the default record: 1,000 + 100 tokens)."""
    billing.log("requests-2026-11-20.jsonl", [record(event_id="a")])
    billing.nightly()


one_billed = built_once("one_billed", one_record)


def test_a_run_stores_its_rated_rows_only_in_its_lake_file(billing: Billing) -> None:
    billing.log("requests-2026-11-20.jsonl", [record(event_id="a", usage=usage(1000, 100))])
    billing.nightly()
    assert rated_files(billing) == [(1, "rated_attempts", "rated_attempts/run-000001.parquet", 1)]
    assert billing.one(f"SELECT count(*) FROM {RATED.table}") == 0  # no second copy in the database
    row = billing.rated("a")
    assert (row["outcome"], row["charge_total"], row["rated_run_id"]) == ("billed", Decimal("0.012"), 1)
    # the file itself holds the exact unit prices (as their decimal text, never a float) and no
    # charges: the view computes them from tokens x unit price (migration 039), exact DECIMAL(38,20)
    path = lake_dir(billing.settings.db_path) / "rated_attempts" / "run-000001.parquet"
    with duckdb.connect() as plain:
        assert plain.execute(f"SELECT unit_price_output, output_tokens FROM '{path}'").fetchone() == (
            "45.00000000000000",
            100,
        )
        columns = {c for (c, *_) in plain.execute(f"DESCRIBE SELECT * FROM '{path}'").fetchall()}
    assert not columns & {"charge_input_uncached", "charge_input_cached", "charge_output", "charge_total"}
    assert billing.one("SELECT typeof(charge_total), typeof(unit_price_output) FROM rated_attempts") == (
        "DECIMAL(38,20)",
        "DECIMAL(24,14)",
    )
    assert billing.one("SELECT unit_price_output FROM rated_attempts") == Decimal("45")


def test_a_replaced_row_is_hidden_by_a_tombstone_and_its_file_is_left_as_it_was(billing: Billing) -> None:
    first = record(event_id="a1", request_id="r", usage=usage(1000, 100))
    billing.log("requests-2026-11-20.jsonl", [first, record(event_id="x", usage=usage(1000, 100))])
    billing.nightly("2026-11-20")
    first_file = lake_dir(billing.settings.db_path) / "rated_attempts" / "run-000001.parquet"
    before = first_file.read_bytes()
    late = record(event_id="a2", request_id="r", attempt=2, ts="2026-11-20T12:00:05Z", usage=usage(3000, 300))
    billing.log("requests-2026-11-21.jsonl", [late])
    billing.nightly("2026-11-21")
    assert first_file.read_bytes() == before
    # run 2 re-rated the whole request: a1's new row and a2's, and a tombstone for a1's row of
    # run 1 (whose file, holding x too, is still read)
    assert rated_files(billing) == [
        (1, "rated_attempts", "rated_attempts/run-000001.parquet", 2),
        (2, "rated_attempts", "rated_attempts/run-000002.parquet", 2),
        (2, "rated_replaced", "rated_replaced/run-000002.parquet", 1),
    ]
    tombstones = lake_dir(billing.settings.db_path) / "rated_replaced" / "run-000002.parquet"
    with duckdb.connect() as plain:
        assert plain.execute(f"SELECT * FROM '{tombstones}'").fetchall() == [("a1", 1)]
    assert billing.one("SELECT count(*) FROM rated_replaced") == 0  # written to the file, not kept twice
    assert billing.query(
        "SELECT event_id, outcome, reason, charge_total, rated_run_id FROM rated_attempts ORDER BY 1"
    ) == [
        ("a1", "not_billed", "superseded_attempt", Decimal("0E-20"), 2),
        ("a2", "billed", None, Decimal("0.036"), 2),
        ("x", "billed", None, Decimal("0.012"), 1),
    ]
    assert billing.query("SELECT * FROM rated_hidden") == [(1, 1, 2)]  # 1 of its 2 rows: not retired
    assert billing.one("SELECT sum(amount_exact) FROM statement_lines") == Decimal("0.048")


def test_the_analyst_snapshot_reads_the_same_rated_rows(retried: Billing) -> None:
    billing = retried  # late_retry
    live = billing.query("SELECT * FROM rated_attempts ORDER BY event_id")
    with snapshot.open_snapshot(snapshot.publish_now(billing.settings.db_path)) as con:
        assert con.execute("SELECT * FROM rated_attempts ORDER BY event_id").fetchall() == live
        assert con.execute("SELECT sum(spend_exact_usd) FROM daily_usage").fetchone() == (Decimal("0.036"),)


def test_replay_verifies_runs_whose_rows_are_in_the_lake(retried: Billing) -> None:
    billing = retried  # late_retry
    assert replay.verify_run(billing.settings, 1).status == "MATCH"
    assert replay.verify_run(billing.settings, 2).status == "MATCH"


def test_an_older_version_cannot_write_rated_rows_the_lake_would_shadow(one_billed: Billing) -> None:
    billing = one_billed  # one_record
    with duckdb.connect(str(billing.settings.db_path), read_only=True) as plain:
        with pytest.raises(duckdb.CatalogException, match="rated_attempts does not exist"):
            plain.execute("SELECT count(*) FROM rated_attempts")


def test_a_missing_rated_file_is_refused_naming_the_lake(one_billed: Billing) -> None:
    billing = one_billed  # one_record
    (lake_dir(billing.settings.db_path) / "rated_attempts" / "run-000001.parquet").unlink()
    with pytest.raises(AttemptFileMissing, match=r"1 rated_attempts file\(s\) listed in the database are missing"):
        connect(billing.settings.db_path, read_only=True)


def test_a_database_from_before_the_migration_re_rates_its_table_rows(billing: Billing) -> None:
    first = record(event_id="a1", request_id="r", usage=usage(1000, 100))
    billing.log("requests-2026-11-20.jsonl", [first, record(event_id="h", account_id="acct_nobody")])
    billing.nightly("2026-11-20")
    as_before_migration_027(billing.settings.db_path)
    late = record(event_id="a2", request_id="r", attempt=2, ts="2026-11-20T12:00:05Z", usage=usage(3000, 300))
    billing.log("requests-2026-11-21.jsonl", [late])
    report = billing.nightly("2026-11-21")
    # the migration counted the held row of the table
    assert report.held_by_reason == {"unknown_account": 1}
    assert billing.query("SELECT * FROM held_changes") == [(1, "unknown_account", 1)]
    # a1's old row was in the table: removed there (and tombstoned for the analysts' copy)
    assert billing.query(f"SELECT event_id FROM {RATED.table}") == [("h",)]
    assert billing.query("SELECT event_id, outcome, rated_run_id FROM rated_attempts ORDER BY 1") == [
        ("a1", "not_billed", 2),
        ("a2", "billed", 2),
        ("h", "held", 1),
    ]
    assert billing.one("SELECT sum(amount_exact) FROM statement_lines") == Decimal("0.036")
    with snapshot.open_snapshot(snapshot.publish_now(billing.settings.db_path)) as con:
        assert con.execute("SELECT event_id, rated_run_id FROM rated_attempts ORDER BY 1").fetchall() == [
            ("a1", 2),
            ("a2", 2),
            ("h", 1),
        ]
    assert replay.verify_run(billing.settings, 2).status == "MATCH"
    # the analysts' copy of the table's rows (not the only copy) is exported again when it is lost
    legacy = lake_dir(billing.settings.db_path) / "rated_attempts" / "run-000001.parquet"
    legacy.unlink()
    with snapshot.open_snapshot(snapshot.publish_now(billing.settings.db_path)) as con:
        assert con.execute("SELECT event_id FROM rated_attempts ORDER BY 1").fetchall() == [("a1",), ("a2",), ("h",)]
    assert billing.query(f"SELECT * FROM read_parquet('{legacy}')") == billing.query(f"SELECT * FROM {RATED.table}")


def test_held_counts_follow_the_rated_rows_without_reading_them(billing: Billing) -> None:
    """The ledger's held counts are kept by difference (held_changes): a release subtracts."""
    billing.log(
        "requests-2026-11-20.jsonl",
        [record(event_id="n1", account_id="acct_new"), record(event_id="n2", account_id="acct_new"),
         record(event_id="m", model="openai/gpt-4.1-mini"), record(event_id="ok")],
    )  # fmt: skip
    first = billing.nightly()
    assert first.held_by_reason == {"unknown_account": 2, "unpriced_model": 1}
    text = billing.settings.accounts_file.read_text() + '\n[[accounts]]\nid = "acct_new"\nlegal_name = "New Co"\n'
    billing.settings.accounts_file.write_text(text)
    second = billing.nightly("2026-11-21", allow_empty=True)  # the new account releases n1 and n2
    assert second.held_by_reason == {"unpriced_model": 1}
    assert billing.query("SELECT run_id, reason, change FROM held_changes ORDER BY ALL") == [
        (1, "unknown_account", 2),
        (1, "unpriced_model", 1),
        (2, "unknown_account", -2),
    ]
    assert billing.query("SELECT reason, count(*) FROM rated_attempts WHERE outcome = 'held' GROUP BY 1") == [
        ("unpriced_model", 1)
    ]
    # n1 and n2 billed at 0.012 each, ok at 0.012
    assert billing.one("SELECT sum(charge_total) FROM rated_attempts WHERE outcome = 'billed'") == Decimal("0.036")


def test_a_re_rate_retires_whole_files_instead_of_writing_a_tombstone_per_row(billing: Billing) -> None:
    billing.log("requests-2026-11-20.jsonl", [record(event_id="a", usage=usage(1000, 100))])
    billing.nightly("2026-11-20")
    billing.log(
        "requests-2026-11-21.jsonl",
        [record(event_id="b", ts="2026-11-21T08:00:00Z", usage=usage(3000, 300)),
         record(event_id="c1", request_id="late", ts="2026-11-21T09:00:00Z", usage=usage(1000, 100))],
    )  # fmt: skip
    billing.nightly("2026-11-21")
    # day 3 brings a retry of request "late": one of run 2's two rows is tombstoned, run 2's file still read
    retry = record(event_id="c2", request_id="late", attempt=2, ts="2026-11-21T09:00:05Z", usage=usage(1000, 100))
    billing.log("requests-2026-11-22.jsonl", [retry])
    billing.nightly("2026-11-22")
    assert billing.query("SELECT * FROM rated_hidden ORDER BY ALL") == [(2, 1, 3)]
    assert billing.query("SELECT event_id, rated_run_id FROM rated_replaced") == []  # in run 3's tombstone file
    # a re-rate of everything (`rate`): every row of runs 1-3 replaced, their files retired whole
    lines = billing.query("SELECT * FROM statement_lines ORDER BY ALL")
    report = jobs.run_rate(billing.settings, None, None)
    assert report.run_id == 4
    assert billing.query("SELECT * FROM rated_hidden ORDER BY ALL") == [(1, 1, 4), (2, 1, 3), (2, 1, 4), (3, 2, 4)]
    assert [row[:3] for row in rated_files(billing)] == [
        (1, "rated_attempts", "rated_attempts/run-000001.parquet"),
        (2, "rated_attempts", "rated_attempts/run-000002.parquet"),
        (3, "rated_attempts", "rated_attempts/run-000003.parquet"),
        (3, "rated_replaced", "rated_replaced/run-000003.parquet"),
        (4, "rated_attempts", "rated_attempts/run-000004.parquet"),
    ]  # run 4 wrote no tombstone: every row it replaced was in a file it retired
    with connect(billing.settings.db_path, read_only=True) as con:
        view = con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'rated_attempts'").fetchone()
        assert view is not None and "run-000004.parquet" in view[0] and "run-000001.parquet" not in view[0]
    # the same rows and cents: a, b, c2 billed (0.012 + 0.036 + 0.012), c1 superseded
    assert billing.query("SELECT event_id, outcome, rated_run_id FROM rated_attempts ORDER BY 1") == [
        ("a", "billed", 4),
        ("b", "billed", 4),
        ("c1", "not_billed", 4),
        ("c2", "billed", 4),
    ]
    assert billing.one("SELECT sum(charge_total) FROM rated_attempts") == Decimal("0.060")
    assert billing.query("SELECT * FROM statement_lines ORDER BY ALL") == lines
    with snapshot.open_snapshot(snapshot.publish_now(billing.settings.db_path)) as con:
        assert con.execute("SELECT event_id, rated_run_id FROM rated_attempts ORDER BY 1").fetchall() == [
            ("a", 4),
            ("b", 4),
            ("c1", 4),
            ("c2", 4),
        ]
    for run in (3, 4):
        assert replay.verify_run(billing.settings, run).status == "MATCH"


def test_the_recorded_digest_of_a_runs_rated_rows_is_the_digest_of_its_rows_in_the_view(retried: Billing) -> None:
    billing = retried  # late_retry
    digest = f"CAST(coalesce(bit_xor({rated_summary.ROW_DIGESTS[rated_summary.RATED_DIGEST_VERSION]}), 0) AS VARCHAR)"
    for run in (1, 2):
        recomputed = billing.one(
            f"SELECT count(*), {digest} FROM (SELECT * EXCLUDE (rated_run_id) FROM rated_attempts "
            f"WHERE rated_run_id = {run}) r"
        )
        if run == 1:  # run 1's row was replaced by run 2: recompute it from run 1's file (whose
            # charges are computed on read, migration 039)
            path = lake_dir(billing.settings.db_path) / "rated_attempts" / "run-000001.parquet"
            with connect(billing.settings.db_path, read_only=True) as con:
                select = file_select(RATED, stored_columns(con, RATED), computed=True)
            recomputed = billing.one(
                f"SELECT count(*), {digest} FROM (SELECT * EXCLUDE (rated_run_id) FROM "
                f"(SELECT {select} FROM '{path}' AS r)) r"
            )
        recorded = billing.one(
            "SELECT rows, digest FROM run_outputs WHERE run_id = ? AND name = 'rated_attempts'", [run]
        )
        assert recorded == recomputed and recorded[0] > 0


def test_replay_refuses_a_database_missing_a_rated_file(billing: Billing) -> None:
    """replay reads the attempts, not the rated rows; a damaged lake still fails the audit."""
    billing.log("requests-2026-11-20.jsonl", [record(event_id="a"), record(event_id="b", account_id="acct_nobody")])
    billing.nightly()
    missing = lake_dir(billing.settings.db_path) / "attempts" / "run-000001.parquet"
    rated = lake_dir(billing.settings.db_path) / "rated_attempts" / "run-000001.parquet"
    rated.unlink()
    with pytest.raises(AttemptFileMissing, match=r"1 rated_attempts file\(s\) listed in the database are missing"):
        replay.replay_period(billing.settings, "2026-11", billing.root / "replay")
    # with the attempts gone too, the message counts every missing lake file
    missing.unlink()
    with pytest.raises(AttemptFileMissing, match=r"1 attempts file\(s\) .* missing \(2 lake files in all\)"):
        connect(billing.settings.db_path, read_only=True)


def test_a_time_bounded_read_opens_only_the_files_that_can_hold_it(billing: Billing) -> None:
    """Migration 028: balances, credit drawdown and the replaced rows read their days only."""
    from datetime import UTC, datetime

    from core.attempt_store import rated_rows

    for day in ("2026-11-20", "2026-11-21", "2026-11-22"):
        rows = [record(event_id=f"a-{day}", ts=f"{day}T08:00:00Z"), record(event_id=f"b-{day}", ts=f"{day}T09:00:00Z")]
        billing.log(f"requests-{day}.jsonl", rows)
        billing.nightly(day)
    # run 4 retries day 1's request of b: a tombstone naming run 1's file
    request = billing.one("SELECT request_id FROM attempts WHERE event_id = 'b-2026-11-20'")
    retry = record(event_id="b2", request_id=request, ts="2026-11-20T09:00:05Z", attempt=2)
    billing.log("requests-2026-11-23.jsonl", [retry])
    billing.nightly("2026-11-23")
    assert billing.query("SELECT table_name, run_id FROM lake_file_bounds ORDER BY ALL") == [
        ("rated_attempts", 1),
        ("rated_attempts", 2),
        ("rated_attempts", 3),
        ("rated_attempts", 4),
        ("rated_replaced", 4),
    ]
    day2 = datetime(2026, 11, 21, tzinfo=UTC), datetime(2026, 11, 22, tzinfo=UTC)
    day1 = datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC)
    with connect(billing.settings.db_path, read_only=True) as con:
        sql = rated_rows(con, since=day2[0], until=day2[1])
        assert "rated_attempts/run-000002.parquet" in sql
        assert "run-000001" not in sql and "run-000003" not in sql and "rated_replaced/run-000004" not in sql
        bounded = sorted(con.execute(f"SELECT event_id, rated_run_id FROM ({sql})").fetchall())
        assert bounded == [("a-2026-11-21", 2), ("b-2026-11-21", 2)]
        # day 1: run 1's file with the tombstone file that names it, and run 4's rows of day 1
        sql = rated_rows(con, since=day1[0], until=day1[1])
        assert "rated_attempts/run-000001.parquet" in sql and "rated_replaced/run-000004.parquet" in sql
        bounded = sorted(con.execute(f"SELECT event_id, rated_run_id, outcome FROM ({sql})").fetchall())
        assert bounded == [
            ("a-2026-11-20", 1, "billed"),
            ("b-2026-11-20", 4, "not_billed"),
            ("b2", 4, "billed"),
        ]
        view = con.execute(
            "SELECT event_id, rated_run_id, outcome FROM rated_attempts WHERE ts >= $s AND ts < $u ORDER BY ALL",
            {"s": day1[0], "u": day1[1]},
        ).fetchall()
        assert view == bounded


def test_a_run_with_several_rated_parts_retires_them_together(billing: Billing) -> None:
    """A Spark nightly lists its rated rows as several parts (``rated_attempts/run-N-part-M``,
    written by its tasks). A later run hides rows by run (``rated_hidden``): a part is retired
    only when every row of the run is, never because the run's hidden rows outnumber one part's
    (a late retry hiding a1 would retire the part holding only y, and y's row would vanish)."""
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="a1", request_id="r", usage=usage(1000, 100)),
            record(event_id="x", request_id="rx", usage=usage(1000, 100)),
            record(event_id="y", request_id="ry", usage=usage(1000, 100)),
        ],
    )
    billing.nightly("2026-11-20")
    lake = lake_dir(billing.settings.db_path)
    whole = lake / "rated_attempts" / "run-000001.parquet"
    with connect(billing.settings.db_path) as con:  # run 1's rated rows as a Spark nightly lists them
        for part, where in ((1, "event_id <> 'y'"), (2, "event_id = 'y'")):
            target = lake / lake_path("rated_attempts", 1, part)
            size = write_parquet(con, f"SELECT * FROM '{whole}' WHERE {where} ORDER BY ts, event_id", target)
            con.execute(
                "INSERT INTO lake_files (run_id, table_name, path, row_count, bytes, written_at, part) "
                "VALUES (1, 'rated_attempts', ?, ?, ?, now(), ?)",
                [lake_path("rated_attempts", 1, part), 3 - part, size, part],
            )
        con.execute("DELETE FROM lake_files WHERE path = 'rated_attempts/run-000001.parquet'")
    whole.unlink()
    late = record(event_id="a2", request_id="r", attempt=2, ts="2026-11-20T12:00:05Z", usage=usage(3000, 300))
    billing.log("requests-2026-11-21.jsonl", [late])
    billing.nightly("2026-11-21")
    assert billing.query("SELECT * FROM rated_hidden") == [(1, 1, 2)]
    assert billing.query("SELECT event_id, rated_run_id FROM rated_attempts ORDER BY 1") == [
        ("a1", 2),
        ("a2", 2),
        ("x", 1),
        ("y", 1),
    ]
    assert billing.one("SELECT sum(amount_exact) FROM statement_lines") == Decimal("0.060")
    with snapshot.open_snapshot(snapshot.publish_now(billing.settings.db_path)) as con:
        assert con.execute("SELECT event_id FROM rated_attempts ORDER BY 1").fetchall() == [
            ("a1",),
            ("a2",),
            ("x",),
            ("y",),
        ]


# --- migration 039: the charges of a rated row computed on read, not stored in its file ---

CHARGES = ("charge_input_uncached", "charge_input_cached", "charge_output", "charge_total")


def varied_day(billing: Billing, day: str = "2026-11-20", prefix: str = "v") -> None:
    """Attempts of every account (list, discount, group multiplier, override prices), with
    cached, reasoning and odd token counts, billed and not billed, held."""
    accounts = ("acct_plain", "acct_discount", "acct_enterprise", "acct_partner", "acct_override", "acct_nobody")
    rows = []
    for i, account in enumerate(accounts):
        for j, (prompt, completion, cached) in enumerate(((1000, 100, 0), (12345, 6789, 1111), (7, 3, 7), (1, 0, 0))):
            rows.append(
                record(
                    event_id=f"{prefix}{i}-{j}",
                    account_id=account,
                    ts=f"{day}T1{j}:00:00Z",
                    status=500 if j == 3 else 200,
                    usage=usage(prompt, completion, cached, reasoning=completion // 2),
                )
            )
    billing.log(f"requests-{day}.jsonl", rows)
    billing.nightly(day)


varied = built_once("varied", varied_day)


def test_charges_read_back_exactly_as_the_rating_computed_them(varied: Billing) -> None:
    billing = varied  # varied_day
    path = lake_dir(billing.settings.db_path) / "rated_attempts" / "run-000001.parquet"
    with duckdb.connect() as plain:
        columns = {c for (c, *_) in plain.execute(f"DESCRIBE SELECT * FROM '{path}'").fetchall()}
    assert not columns & set(CHARGES)
    # the view's charges are tokens x unit price / 10^6 per class, exact (Python's Decimal)
    rows = billing.query(
        "SELECT outcome, input_uncached_tokens, input_cached_tokens, output_tokens, unit_price_input_uncached, "
        f"unit_price_input_cached, unit_price_output, {', '.join(CHARGES)} FROM rated_attempts ORDER BY event_id"
    )
    assert len(rows) == 24 and {r[0] for r in rows} == {"billed", "not_billed", "held"}
    for outcome, uncached, cached, output, p_uncached, p_cached, p_output, *charges in rows:
        assert all(isinstance(c, Decimal) for c in charges)
        if outcome == "billed":
            expected = [
                Decimal(t) * p / 1_000_000 for t, p in ((uncached, p_uncached), (cached, p_cached), (output, p_output))
            ]
        else:
            expected = [Decimal(0)] * 3
        assert charges == [*expected, sum(expected)]
    assert billing.one("SELECT sum(charge_total) FROM rated_attempts WHERE outcome = 'billed'") > 0
    # and they are what rate.sql computed: the run's recorded digest of its rated rows (made from
    # the rows the rating wrote, charges included) matches the rows read back from the file
    assert replay.verify_run(billing.settings, 1).status == "MATCH"


def test_a_run_refuses_to_write_rows_whose_charges_would_read_back_differently(varied: Billing) -> None:
    from core.attempt_store import ComputedColumnMismatch, check_computed

    billing = varied  # varied_day
    with connect(billing.settings.db_path, read_only=True) as con:
        check_computed(con, RATED, "SELECT * FROM rated_attempts")  # the stored rows pass
        with pytest.raises(ComputedColumnMismatch, match="1 rated_attempts row.s. would read back"):
            check_computed(
                con,
                RATED,
                "SELECT * REPLACE (CASE WHEN event_id = 'v0-0' THEN charge_output + 0.000001 ELSE charge_output END "
                "AS charge_output) FROM rated_attempts",
            )


def test_a_lake_written_before_migration_039_still_reads_and_later_runs_write_without_charges(
    varied: Billing,
) -> None:
    from tests.conftest import as_before_migration_039

    billing = varied  # varied_day
    query = "SELECT * FROM rated_attempts ORDER BY event_id, rated_run_id"
    attempts = "SELECT * EXCLUDE (event_key, request_key) FROM attempts ORDER BY event_id"
    before = billing.query(query)
    attempts_before = billing.query(attempts)
    as_before_migration_039(billing.settings.db_path)
    old_attempts = lake_dir(billing.settings.db_path) / "attempts" / "run-000001.parquet"
    with duckdb.connect() as plain:  # the usage objects as they are
        assert plain.execute(f"SELECT count(*) FROM '{old_attempts}' WHERE usage_json LIKE '#%'").fetchone() == (0,)
    first = lake_dir(billing.settings.db_path) / "rated_attempts" / "run-000001.parquet"
    with duckdb.connect() as plain:  # the old layout: the charges stored in the file
        assert plain.execute(f"SELECT sum(charge_total) FROM '{first}'").fetchone()[0] > 0  # type: ignore[index]
    old_bytes = first.read_bytes()
    assert billing.query(query) == before  # read-only: not migrated, every file read as stored
    assert billing.query(attempts) == attempts_before
    # opening for writing migrates (039: files from the next run on leave the charges out) and
    # rewrites nothing
    connect(billing.settings.db_path).close()
    assert billing.one("SELECT value FROM rating_state WHERE key = 'lake_values_on_read_from_run'") == "2"
    assert billing.query(query) == before
    assert first.read_bytes() == old_bytes
    # a late retry re-rates a request of run 1 into run 2's file (new layout), a tombstone hides
    # the old row in run 1's file (old layout); both layouts are read together
    billing.log(
        "requests-2026-11-21.jsonl",
        [record(event_id="late", request_id="req-late", ts="2026-11-20T23:00:00Z", usage=usage(3000, 300))],
    )
    billing.nightly("2026-11-21")
    second = lake_dir(billing.settings.db_path) / "rated_attempts" / "run-000002.parquet"
    with duckdb.connect() as plain:
        columns = {c for (c, *_) in plain.execute(f"DESCRIBE SELECT * FROM '{second}'").fetchall()}
    assert not columns & set(CHARGES)
    assert billing.rated("late")["charge_total"] == Decimal("0.036")
    after = billing.query(query)
    assert [r for r in after if r[0] != "late"] == before
    attempts_after = billing.query(attempts)
    assert [r for r in attempts_after if r[0] != "late"] == attempts_before
    new_attempts = lake_dir(billing.settings.db_path) / "attempts" / "run-000002.parquet"
    with duckdb.connect() as plain:  # run 2's usage object as a template
        assert plain.execute(f"SELECT usage_json LIKE '#%' FROM '{new_attempts}'").fetchall() == [(True,)]
    for run in (1, 2):
        assert replay.verify_run(billing.settings, run).status == "MATCH"
    # the analyst snapshot's view reads both layouts alike
    with snapshot.open_snapshot(snapshot.publish_now(billing.settings.db_path)) as con:
        assert con.execute(query).fetchall() == after
        assert con.execute(attempts).fetchall() == attempts_after


def test_usage_objects_read_back_byte_for_byte_from_their_templates(billing: Billing) -> None:
    """The attempts files keep each usage object as a template of the row's counts (migration
    039); the view gives back the object exactly as ingested, whatever its shape."""
    import json

    deepseek = {
        "prompt_tokens": 5597,
        "completion_tokens": 93,
        "total_tokens": 5690,
        "prompt_cache_hit_tokens": 2798,
        "prompt_cache_miss_tokens": 2799,
        "completion_tokens_details": {"reasoning_tokens": 74},
    }
    shapes = {
        "openai": usage(3662, 1199, 3584, reasoning=12, image=3),
        "deepseek": deepseek,
        "extra": {**usage(10, 1000), "vendor_units": 1000, "note": 'a "prompt_tokens":10 inside a string'},
        "prefix": usage(1, 10),  # prompt 1 is a prefix of 10: only whole key:value pairs are templated
    }
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id=name, model="deepseek/deepseek-v4" if name == "deepseek" else "openai/gpt-5.5", usage=u)
            for name, u in shapes.items()
        ],
    )
    billing.nightly()
    stored = dict(billing.query("SELECT event_id, CAST(usage_json AS VARCHAR) FROM attempts"))
    assert stored == {name: json.dumps(u, separators=(",", ":")) for name, u in shapes.items()}
    assert billing.one("SELECT typeof(usage_json) FROM attempts LIMIT 1") == "JSON"
    path = lake_dir(billing.settings.db_path) / "attempts" / "run-000001.parquet"
    with duckdb.connect() as plain:
        in_file = dict(plain.execute(f"SELECT event_id, usage_json FROM '{path}'").fetchall())
    assert in_file["openai"] == (
        '#{"prompt_tokens":?,"completion_tokens":?,"total_tokens":?,"prompt_tokens_details":{"cached_tokens":?},'
        '"completion_tokens_details":{"reasoning_tokens":?,"image_tokens":?}}'
    )
    assert all(in_file[name].startswith("#") for name in shapes)
    # unknown fields and strings stay in the template as they were
    assert '"vendor_units":1000,"note":"a \\"prompt_tokens\\":10 inside a string"}' in in_file["extra"]
    assert replay.verify_run(billing.settings, 1).status == "MATCH"


def test_a_value_its_template_would_not_give_back_is_stored_as_it_is() -> None:
    from core.attempt_store import ATTEMPTS, encode_columns

    rows = (
        "SELECT * FROM (VALUES ('{\"prompt_tokens\":1}', 1), ('{\"prompt_tokens\":?}', 1), (NULL, NULL)) "
        "AS t(usage_json, prompt_tokens)"
    )
    fields = "NULL::BIGINT AS completion_tokens, NULL::BIGINT AS cached_tokens, NULL::BIGINT AS reasoning_tokens"
    query = f"SELECT *, {fields}, NULL::BIGINT AS image_tokens, NULL AS ts_text, NULL::TIMESTAMPTZ AS ts FROM ({rows})"
    with duckdb.connect() as con:
        assert con.execute(f"SELECT usage_json FROM ({encode_columns(ATTEMPTS, query)})").fetchall() == [
            ('#{"prompt_tokens":?}',),
            ('{"prompt_tokens":?}',),  # would decode to {"prompt_tokens":1}: kept as it was
            (None,),
        ]
