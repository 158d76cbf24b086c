"""DuckDB and Spark rate the same attempts to the same rows, the same cents and the same digits.

Every fixture runs through the real jobs twice, once per engine, on separate databases; the
rated attempts and statement lines are then compared row for row, with every Decimal compared
by its text (so a lost trailing digit or scale shows). The fixtures hold a line total exactly
on a half cent, timestamps whose local month is not their UTC month, both price bases, group
multipliers and discounts, two price versions, retries and every reason code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from core.attempt_store import copy_database
from core.db import connect, sql_text
from pipeline.cli import cli
from pipeline.rate import ensure_issued_prices
from reports.finance import write_finance_summary
from tests.conftest import Billing, record, usage
from tests.spark.conftest import SAMPLE_DAYS, SAMPLE_LOGS, SKIP_REASON, SampleNights

pytest.importorskip("pyspark", reason=SKIP_REASON)

from pipeline.spark import SparkEngineError, bridge, rating  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
RATED = "SELECT * EXCLUDE (rated_run_id) FROM rated_attempts ORDER BY event_id"
LINES = "SELECT * FROM statement_lines ORDER BY ALL"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A group multiplier and a discount with every decimal they may have: unit prices with 14
# decimals and charges with 20, so a charge that lost scale on one engine would show.
ODD_ACCOUNT = """
[groups.odd]
multiplier = "1.0123"

[[accounts]]
id = "acct_odd"
legal_name = "Odd Digits LLC"
group = "odd"
discount_pct = "12.34"
"""
HELLO = [{"role": "user", "content": "Hello from InferGate."}]


def deepseek_usage(hit: int, miss: int, completion: int, reasoning: int) -> dict[str, Any]:
    return {
        "prompt_tokens": hit + miss,
        "completion_tokens": completion,
        "total_tokens": hit + miss + completion,
        "prompt_cache_hit_tokens": hit,
        "prompt_cache_miss_tokens": miss,
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def fixture_records() -> list[dict[str, Any]]:
    """One record per rule edge; the comments say what each one pins down."""
    return [
        # R7: line totals exactly on a half cent: 43,000 x 45/1M = 1.935 (a float gives 1.93);
        # 3,750 x 12/1M = 0.045 (half-even would give 0.04). Each is alone on its line.
        record(event_id="half-1.935", model="openai/gpt-5.5-pro", usage=usage(43_000, 0)),
        record(event_id="half-0.045", model="openai/gpt-5.4-image-2", usage=usage(3_750, 0)),
        # R8: the local month is not the UTC month; the exact boundary; the last microsecond
        record(event_id="la-evening", ts="2026-11-30T23:30:00-08:00", usage=usage(1234, 567, cached=200)),
        record(event_id="india-morning", ts="2026-12-01T01:00:00+05:30", usage=usage(2345, 678)),
        record(event_id="boundary", ts="2026-12-01T00:00:00Z", usage=usage(100, 10)),
        record(event_id="last-micro", ts="2026-11-30T23:59:59.999999Z", usage=usage(100, 10)),
        # R6: group multiplier x discount (1.1 x 0.95), discount alone, multiplier alone,
        # an override before and at its start, a DeepSeek cache hit, a second price version
        record(
            event_id="partner",
            account_id="acct_partner",
            model="deepseek-v4-pro",
            usage=deepseek_usage(7_777, 3_333, 2_222, 1_111),
        ),
        record(
            event_id="discount", account_id="acct_discount", usage=usage(98_765, 4_321, cached=1_234, reasoning=999)
        ),
        record(
            event_id="enterprise",
            account_id="acct_enterprise",
            model="deepseek-v4-flash",
            usage=usage(55_555, 7_777, cached=11_111),
        ),
        record(
            event_id="override-before", account_id="acct_override", ts="2026-11-14T23:59:59Z", usage=usage(1000, 100)
        ),
        record(event_id="override-at", account_id="acct_override", ts="2026-11-15T00:00:00Z", usage=usage(1000, 100)),
        record(
            event_id="odd-flash",
            account_id="acct_odd",
            model="deepseek-v4-flash",
            usage=usage(987_654_321, 123_457, cached=13_579),
        ),
        record(event_id="odd-pro", account_id="acct_odd", model="deepseek-v4-pro", usage=usage(7, 3)),
        record(event_id="new-version", ts="2026-11-26T08:00:00+01:00", usage=usage(5_000, 5_000)),
        # R2: a retry; two attempts with the same number and ts (the larger event_id wins)
        record(
            event_id="retry-1",
            request_id="retry",
            attempt=1,
            status=502,
            error_code="upstream_error",
            usage=usage(900, 90),
        ),
        record(event_id="retry-2", request_id="retry", attempt=2, usage=usage(900, 95)),
        record(event_id="tie-a", request_id="tie", usage=usage(10, 1)),
        record(event_id="tie-b", request_id="tie", usage=usage(10, 2)),
        # the same microsecond: the later nanosecond wins over the larger event_id
        record(event_id="nano-a", request_id="nano", ts="2026-11-20T10:00:00.0000002Z", usage=usage(10, 1)),
        record(event_id="nano-b", request_id="nano", ts="2026-11-20T10:00:00.0000001Z", usage=usage(10, 2)),
        # R3: partial stream, client error with usage, redirect, zero-output cut-off
        record(event_id="partial-499", status=499, finish_reason=None, stream=True, usage=usage(500, 20)),
        record(event_id="client-429", status=429, error_code="rate_limit_exceeded", usage=usage(10, 0)),
        record(event_id="redirect", status=302, usage=None),
        record(event_id="cut-off", finish_reason=None, usage=usage(800, 0)),
        # cut off without usage: no output only where a kept text says so, else held
        record(event_id="cut-off-asked", status=499, finish_reason=None, usage=None, messages=HELLO),
        record(event_id="cut-off-bare", status=499, finish_reason=None, usage=None),
        # R5 and the held reasons
        record(event_id="estimated", usage=None, messages=HELLO, output_text="Hello from InferGate."),
        record(event_id="no-usage", usage=None),
        record(event_id="ghost", account_id="acct_ghost"),
        record(event_id="unpriced", model="openai/gpt-9"),
        record(event_id="upstream-cost", upstream_cost_usd="0.01234567890123456789"),
    ]


def with_second_price_version(billing: Billing) -> None:
    """A version from 2026-11-25 with other gpt-5.5 prices: the in-force join and its bounds."""
    prices = billing.root / "prices"
    prices.mkdir()
    original = (billing.settings.prices_dir / "2026-11-01.toml").read_text()
    (prices / "2026-11-01.toml").write_text(original)
    (prices / "2026-11-25.toml").write_text(
        original.replace('version = "2026-11-01"', 'version = "2026-11-25"')
        .replace("effective_from = 2026-11-01T00:00:00Z", "effective_from = 2026-11-25T00:00:00Z")
        .replace('upstream_input_per_1m = "5"', 'upstream_input_per_1m = "4.123456"')
        .replace('list_input_per_1m = "7.5"', 'list_input_per_1m = "6.185184"')
    )
    billing.settings = dataclasses.replace(billing.settings, prices_dir=prices)


def texts(rows: Sequence[Sequence[Any]]) -> list[tuple[str, ...]]:
    """Rows as text: Decimal keeps every digit of its scale, datetimes their instant."""
    return [tuple(exact(value) for value in row) for row in rows]


def exact(value: Any) -> str:
    if isinstance(value, Decimal):
        return f"Decimal:{value}"  # str keeps the scale: 1.93500000000000000000
    if isinstance(value, datetime):  # Spark collects naive datetimes in Python's local zone
        return f"instant:{(value.astimezone(UTC) - EPOCH) // timedelta(microseconds=1)}"
    return f"{type(value).__name__}:{value}"


def make_billing(root: Path, engine: str) -> Billing:
    billing = Billing(root)
    with_second_price_version(billing)
    with billing.settings.accounts_file.open("a", encoding="utf-8") as accounts:
        accounts.write(ODD_ACCOUNT)
    billing.settings = dataclasses.replace(billing.settings, engine=engine)
    return billing


@pytest.fixture(scope="module")
def fixture_dbs(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Billing]:
    records = fixture_records()
    dbs = {}
    for engine in ("duckdb", "spark"):
        billing = make_billing(tmp_path_factory.mktemp(f"fixture-{engine}"), engine)
        billing.log("requests-2026-11-30.jsonl", records)
        billing.nightly("2026-11-30")
        dbs[engine] = billing
    return dbs


@pytest.fixture(scope="module")
def sample_dbs(spark: Any, sample_nights: SampleNights, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Billing]:
    """The sample days on each engine; the DuckDB side is the session's (tests/spark/conftest.py),
    whose same three nightlies test_spark_kill.py's reference is built from."""
    billing = Billing(tmp_path_factory.mktemp("sample-spark"))
    billing.settings = dataclasses.replace(
        billing.settings, engine="spark", accounts_file=SAMPLE_LOGS.parent / "accounts.toml"
    )
    billing.logs = SAMPLE_LOGS
    for day in SAMPLE_DAYS:
        billing.nightly(day)
    return {"duckdb": sample_nights.duckdb, "spark": billing}


def test_fixture_covers_every_outcome_and_reason(fixture_dbs: dict[str, Billing]) -> None:
    reasons = {
        r for (r,) in fixture_dbs["duckdb"].query("SELECT DISTINCT coalesce(reason, 'billed') FROM rated_attempts")
    }
    assert reasons == {
        "billed",
        "superseded_attempt",
        "client_error",
        "upstream_error",
        "status_not_billable",
        "no_output",
        "unknown_account",
        "unpriced_model",
        "usage_missing",
    }


def test_the_nanosecond_tie_and_the_bare_cut_off_are_rated_by_the_rules(fixture_dbs: dict[str, Billing]) -> None:
    """The two edges the conformance review found, as the rules say (and, below, alike on both)."""
    for billing in fixture_dbs.values():
        assert billing.rated("nano-a")["outcome"] == "billed"
        assert billing.rated("nano-b")["reason"] == "superseded_attempt"
        assert billing.rated("cut-off-asked")["reason"] == "no_output"
        assert (billing.rated("cut-off-bare")["outcome"], billing.rated("cut-off-bare")["reason"]) == (
            "held",
            "usage_missing",
        )


@pytest.mark.parametrize("query", [RATED, LINES], ids=["rated_attempts", "statement_lines"])
def test_fixture_engines_agree_row_for_row(fixture_dbs: dict[str, Billing], query: str) -> None:
    duck, spark = (texts(fixture_dbs[e].query(query)) for e in ("duckdb", "spark"))
    assert len(duck) > 20
    assert spark == duck


def test_half_cent_lines_round_half_up_on_both_engines(fixture_dbs: dict[str, Billing]) -> None:
    query = (
        "SELECT model, amount_exact, amount FROM statement_lines WHERE account_id = 'acct_plain' "
        "AND token_class = 'input_uncached' AND model IN ('openai/gpt-5.5-pro', 'openai/gpt-5.4-image-2') "
        "ORDER BY model"
    )
    for engine in ("duckdb", "spark"):
        assert fixture_dbs[engine].query(query) == [
            ("openai/gpt-5.4-image-2", Decimal("0.045"), Decimal("0.05")),
            ("openai/gpt-5.5-pro", Decimal("1.935"), Decimal("1.94")),
        ], engine


def test_periods_and_days_are_utc_on_both_engines(fixture_dbs: dict[str, Billing]) -> None:
    expected = {
        "la-evening": ("2026-12", "2026-12-01"),  # local Nov 30, 07:30Z Dec 1
        "india-morning": ("2026-11", "2026-11-30"),  # local Dec 1, 19:30Z Nov 30
        "boundary": ("2026-12", "2026-12-01"),
        "last-micro": ("2026-11", "2026-11-30"),
    }
    for engine in ("duckdb", "spark"):
        billing = fixture_dbs[engine]
        got = {e: (billing.rated(e)["period"], billing.rated(e)["usage_date"].isoformat()) for e in expected}
        assert got == expected, engine


def test_raw_outputs_agree_digit_for_digit_before_loading(
    fixture_dbs: dict[str, Billing], spark: Any, tmp_path: Path
) -> None:
    """rate.sql on DuckDB vs rate.spark.sql on Spark, compared before DuckDB casts Spark's Parquet."""
    con = connect(fixture_dbs["duckdb"].settings.db_path)
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE rating_scope AS SELECT DISTINCT account_id, request_id FROM attempts")
        con.execute(
            "CREATE OR REPLACE TEMP VIEW scoped_attempts AS "
            "SELECT a.* FROM attempts a JOIN rating_scope s USING (account_id, request_id)"
        )
        ensure_issued_prices(con)  # nothing issued: every attempt priced from the reference data
        cursor = con.execute(f"SELECT * FROM ({sql_text('rate.sql')}) ORDER BY event_id")
        duck_rows = cursor.fetchall()
        names = [d[0] for d in cursor.description]
        inputs = bridge.export_inputs(con, tmp_path, None)
    finally:
        con.close()
    rated = rating.rate(spark, inputs)
    assert rated.columns == names
    for column, spark_type in rating.MONEY_COLUMNS.items():
        assert rated.schema[column].dataType.simpleString() == spark_type
    spark_rows = [tuple(row) for row in rated.orderBy("event_id").collect()]
    assert texts(spark_rows) == texts(duck_rows)


def test_sample_logs_agree_and_spark_reproduces_the_golden_csv(sample_dbs: dict[str, Billing], tmp_path: Path) -> None:
    for query in (RATED, LINES):
        assert texts(sample_dbs["spark"].query(query)) == texts(sample_dbs["duckdb"].query(query))
    # the finance CSVs of both databases (drafts: nothing is finalized here) are byte-identical
    for period in ("2026-11", "2026-12"):
        produced = []
        for engine in ("spark", "duckdb"):
            con = connect(sample_dbs[engine].settings.db_path, read_only=True)
            try:
                produced.append(write_finance_summary(con, period, tmp_path / engine).read_bytes())
            finally:
                con.close()
        assert produced[0] == produced[1] and produced[0].count(b"\n") > 1


def cli_db(fixture_dbs: dict[str, Billing], tmp_path: Path) -> tuple[Billing, list[str]]:
    """A copy of the DuckDB-rated fixture database and the CLI's global options for it."""
    billing = fixture_dbs["duckdb"]
    copy = tmp_path / "copy.duckdb"
    copy_database(billing.settings.db_path, copy)
    clone = Billing(tmp_path / "clone")
    clone.settings = dataclasses.replace(billing.settings, db_path=copy)
    options = [
        "--db",
        str(copy),
        "--accounts",
        str(billing.settings.accounts_file),
        "--prices",
        str(billing.settings.prices_dir),
    ]
    return clone, options


def test_cli_rate_engine_spark_rerates_to_the_same_rows(fixture_dbs: dict[str, Billing], tmp_path: Path) -> None:
    clone, options = cli_db(fixture_dbs, tmp_path)
    before = [clone.query(RATED), clone.query(LINES)]
    result = CliRunner().invoke(cli, [*options, "rate", "--engine", "spark"])
    assert result.exit_code == 0, result.output
    assert "rated 31 attempts" in result.output  # every fixture record
    assert texts(clone.query(RATED)) == texts(before[0])
    assert texts(clone.query(LINES)) == texts(before[1])
    empty = CliRunner().invoke(cli, [*options, "rate", "--engine", "spark", "--period", "2027-01"])
    assert empty.exit_code == 0, empty.output
    assert "rated 0 attempts" in empty.output


def test_cli_rate_reads_attempts_from_a_parquet_uri(fixture_dbs: dict[str, Billing], tmp_path: Path) -> None:
    clone, options = cli_db(fixture_dbs, tmp_path)
    before = clone.query(RATED)
    lake = tmp_path / "lake" / "attempts"
    lake.mkdir(parents=True)
    con = connect(clone.settings.db_path)
    try:  # a data lake's copy of attempts: several files, every column of the table
        for part, where in (
            ("a", "ts < TIMESTAMPTZ '2026-11-25 00:00:00Z'"),
            ("b", "ts >= TIMESTAMPTZ '2026-11-25 00:00:00Z'"),
        ):
            con.execute(f"COPY (SELECT * FROM attempts WHERE {where}) TO '{lake}/part-{part}.parquet'")
    finally:
        con.close()
    result = CliRunner().invoke(cli, [*options, "rate", "--engine", "spark", "--spark-attempts", str(lake)])
    assert result.exit_code == 0, result.output
    # every row was rated again, by this run, from the lake's attempts
    last = clone.one("SELECT max(run_id) FROM runs")
    assert clone.query("SELECT DISTINCT rated_run_id FROM rated_attempts") == [(last,)]
    assert texts(clone.query(RATED)) == texts(before)


def test_attempts_with_wrong_types_are_refused_not_cast(fixture_dbs: dict[str, Billing], tmp_path: Path) -> None:
    """E2/E5: a naive ts or string token counts in a Parquet input stop the run with one line."""
    clone, options = cli_db(fixture_dbs, tmp_path)
    before = clone.query(RATED)
    con = connect(clone.settings.db_path)
    try:
        con.execute(
            f"COPY (SELECT * REPLACE (CAST(ts AS TIMESTAMP) AS ts) FROM attempts) TO '{tmp_path}/naive.parquet'"
        )
        con.execute(
            f"COPY (SELECT * REPLACE (CAST(prompt_tokens AS VARCHAR) AS prompt_tokens) FROM attempts) "
            f"TO '{tmp_path}/strings.parquet'"
        )
    finally:
        con.close()
    for name, message in (("naive", "column ts is timestamp_ntz"), ("strings", "column prompt_tokens is string")):
        result = CliRunner().invoke(
            cli, [*options, "rate", "--engine", "spark", "--spark-attempts", str(tmp_path / f"{name}.parquet")]
        )
        assert result.exit_code == 1
        assert message in result.output
    assert clone.query(RATED) == before  # the failed run changed nothing


def test_replay_verify_re_executes_spark_run_nights_on_duckdb_to_the_same_digests(
    sample_dbs: dict[str, Billing],
) -> None:
    """An auditor re-executes history with the embedded engine: the nights run with
    ``--engine spark`` (validation on the executors, rating on Spark) must reproduce, run by
    run, the digests and the live tables they recorded."""
    from pipeline.replay import verify_run

    billing = sample_dbs["spark"]
    last = billing.one("SELECT max(run_id) FROM runs WHERE status = 'succeeded'")
    report = verify_run(billing.settings, last)
    assert report.status == "MATCH", report.differences
    assert len([s for s in report.steps if s.startswith("run ")]) == len(SAMPLE_DAYS)


def test_a_missing_spark_output_is_an_error_not_an_empty_rating(tmp_path: Path) -> None:
    """Spark's rated rows are read back only when Spark committed them (``_SUCCESS``): an output
    written elsewhere (a cluster's default file system) must fail the run, not rate nothing."""
    con = connect(tmp_path / "billing.duckdb")
    try:
        (tmp_path / "rated").mkdir()
        with pytest.raises(SparkEngineError, match="no committed output"):
            bridge.load_rated(con, tmp_path / "rated")
        (tmp_path / "rated" / "_SUCCESS").write_bytes(b"")
        bridge.load_rated(con, tmp_path / "rated")  # committed, no part file: an empty scope
        assert con.execute("SELECT count(*) FROM new_rated").fetchone() == (0,)
    finally:
        con.close()


def test_exchange_uris_reach_a_directory_with_a_space_and_a_relative_workdir(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spark writes where DuckDB reads: ``Path.as_uri()`` percent-encodes a space, which Hadoop
    takes literally (it wrote beside the directory); a relative INFERGATE_SPARK_WORKDIR is made
    absolute before it becomes a URI."""
    from pipeline.spark.exchange import exchange_directory, spark_uri

    target = tmp_path / "with space é" / "rated"
    spark.range(3).write.parquet(spark_uri(target))
    assert (target / "_SUCCESS").is_file() and list(target.glob("*.parquet"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INFERGATE_SPARK_WORKDIR", "relative exchange")
    (tmp_path / "relative exchange").mkdir()
    with exchange_directory(tmp_path / "billing.duckdb") as work:
        assert work.is_absolute() and spark_uri(work).startswith("file:///")
