"""The O(day) nightly gives the answers a full recomputation gives (docs/performance.md).

A nightly reads its own run's attempts plus the stored attempts of the same requests (found
by lookup keys), replaces their rated rows, and moves the statement lines by the difference.
These tests spread requests over several runs (late retries, late duplicates, ingest-only
runs, reference changes) and check every result against the rules applied from scratch.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.attempt_store import lake_dir
from core.db import connect
from pipeline import jobs
from tests.conftest import Billing, examples, record, usage

SLOW = settings(max_examples=examples(10), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# statement lines summed from all of rated_attempts: what the incremental update must equal
FULL_LINES = """
SELECT account_id, period, model, token_class, coalesce(price_version, 'none'),
       CASE WHEN count(*) FILTER (WHERE price_basis = 'override') = 0 THEN 'list'
            WHEN count(*) FILTER (WHERE price_basis = 'override') = count(*) THEN 'override'
            ELSE 'list+override' END,
       unit_price_per_1m, CAST(sum(quantity) AS BIGINT), count(*), CAST(sum(amount) AS DECIMAL(38,20)),
       CAST(round(sum(amount), 2) AS DECIMAL(18,2)), count(*) FILTER (WHERE price_basis = 'override')
FROM (
    SELECT account_id, period, model, price_version, price_basis, 'input_uncached' AS token_class,
           unit_price_input_uncached AS unit_price_per_1m, input_uncached_tokens AS quantity,
           charge_input_uncached AS amount
    FROM rated_attempts WHERE outcome = 'billed'
    UNION ALL
    SELECT account_id, period, model, price_version, price_basis, 'input_cached', unit_price_input_cached,
           input_cached_tokens, charge_input_cached
    FROM rated_attempts WHERE outcome = 'billed'
    UNION ALL
    SELECT account_id, period, model, price_version, price_basis, 'output', unit_price_output, output_tokens,
           charge_output
    FROM rated_attempts WHERE outcome = 'billed'
) c
WHERE quantity > 0
GROUP BY account_id, period, model, token_class, coalesce(price_version, 'none'), unit_price_per_1m
ORDER BY ALL
"""


def assert_consistent(billing: Billing) -> None:
    """Statement lines equal a full re-aggregation, and every attempt is rated exactly once."""
    assert billing.query("SELECT * FROM statement_lines ORDER BY ALL") == billing.query(FULL_LINES)
    assert billing.query("SELECT count(*), count(DISTINCT event_id) FROM rated_attempts") == billing.query(
        "SELECT count(*), count(*) FROM attempts"
    )
    assert billing.one("SELECT count(*) FROM attempts ANTI JOIN rated_attempts USING (event_id)") == 0


def test_a_retry_that_arrives_in_a_later_run_moves_the_bill(billing: Billing) -> None:
    billing.log("requests-2026-11-20.jsonl", [record(event_id="a1", request_id="r", usage=usage(1000, 100))])
    billing.nightly("2026-11-20")
    first = billing.one("SELECT sum(amount_exact) FROM statement_lines")
    # attempt 2 of the same request, written to the next day's file: it is the one billed now
    late = record(event_id="a2", request_id="r", attempt=2, ts="2026-11-20T12:00:05Z", usage=usage(3000, 300))
    billing.log("requests-2026-11-21.jsonl", [late])
    billing.nightly("2026-11-21")
    assert billing.rated("a1")["reason"] == "superseded_attempt"
    assert billing.rated("a2")["outcome"] == "billed"
    assert billing.one("SELECT sum(amount_exact) FROM statement_lines") == 3 * first
    assert billing.one("SELECT sum(billed_requests) FROM statement_lines WHERE token_class = 'output'") == 1
    assert_consistent(billing)


def test_a_late_duplicate_and_a_late_conflict_are_found_in_the_history(billing: Billing) -> None:
    original = record(event_id="e", usage=usage(1000, 100))
    billing.log("requests-2026-11-20.jsonl", [original])
    billing.nightly("2026-11-20")
    billing.log("requests-2026-11-21.jsonl", [original, dict(original, status=500) | {"event_id": "e"}])
    report = billing.nightly("2026-11-21")
    assert (report.files[0].accepted, report.files[0].duplicates, report.files[0].quarantined) == (0, 1, 1)
    assert billing.one("SELECT count(*) FROM attempts WHERE event_id = 'e'") == 1
    assert_consistent(billing)


def test_an_ingest_only_run_is_rated_by_the_next_nightly(billing: Billing) -> None:
    early = billing.log("early/requests-2026-11-19.jsonl", [record(event_id="i", request_id="q")])
    jobs.run_ingest(billing.settings, [str(early)])
    assert billing.one("SELECT count(*) FROM unrated_runs") == 1
    billing.log("requests-2026-11-20.jsonl", [record(event_id="n", request_id="q", attempt=2)])
    billing.nightly("2026-11-20")
    assert billing.rated("i")["reason"] == "superseded_attempt"
    assert billing.rated("n")["outcome"] == "billed"
    assert billing.one("SELECT count(*) FROM unrated_runs") == 0
    assert_consistent(billing)


def test_lookup_keys_are_recomputed_when_duckdb_hashes_differently(billing: Billing) -> None:
    stored = record(event_id="k", usage=usage(1000, 100))
    billing.log("requests-2026-11-20.jsonl", [stored])
    billing.nightly("2026-11-20")
    lake = lake_dir(billing.settings.db_path)
    con = connect(billing.settings.db_path)
    [(relative,)] = con.execute("SELECT path FROM lake_files WHERE table_name = 'attempt_keys'").fetchall()
    old_file = lake / relative
    # the run's keys file as if hashed by another build (migration 045: the keys are lake files)
    con.execute(
        f"COPY (SELECT 0::UBIGINT AS event_key, 0::UBIGINT AS request_key, run_id FROM read_parquet('{old_file}')) "
        f"TO '{old_file}.new' (FORMAT parquet)"
    )
    os.replace(f"{old_file}.new", old_file)
    con.execute("UPDATE lake_files SET bytes = ? WHERE path = ?", [old_file.stat().st_size, relative])
    con.execute("UPDATE rating_state SET value = 'another hash' WHERE key = 'lookup_key_hash'")
    con.close()
    connect(billing.settings.db_path).close()  # opening for writing recomputes them, into the table
    assert billing.one("SELECT count(*) FROM attempt_keys WHERE event_key = hash('k')") == 1
    assert billing.one("SELECT count(*) FROM attempt_keys") == 1  # the file with the old keys is no longer read
    billing.log("requests-2026-11-21.jsonl", [record(), stored])
    report = billing.nightly("2026-11-21")
    assert (report.files[0].accepted, report.files[0].duplicates) == (1, 1)
    # the next run moved the recomputed key into its own file and removed the old one
    assert not old_file.exists()
    assert billing.one("SELECT count(*) FROM attempt_keys_before_lake") == 0
    assert billing.one("SELECT list(run_id ORDER BY run_id) FROM attempt_keys") == [1, 2]
    assert billing.one("SELECT list(run_id) FROM lake_files WHERE table_name = 'attempt_keys'") == [2]


@st.composite
def nights(draw: st.DrawFn) -> list[list[dict[str, Any]]]:
    """Records of a few requests spread over three nights: retries and duplicates arrive late."""
    pool: list[dict[str, Any]] = []
    for r in range(draw(st.integers(1, 6))):
        account = draw(st.sampled_from(("acct_plain", "acct_enterprise", "acct_override", "acct_ghost")))
        for a in range(1, draw(st.integers(1, 3)) + 1):
            pool.append(
                record(
                    event_id=f"e-{uuid.uuid4()}",
                    request_id=f"r{r}",
                    attempt=a,
                    account_id=account,
                    status=draw(st.sampled_from((200, 200, 499, 503))),
                    ts=draw(st.sampled_from(("2026-11-20T10:00:00Z", "2026-11-30T23:59:59Z", "2026-12-01T00:00:00Z"))),
                    usage=usage(draw(st.integers(0, 20_000)), draw(st.integers(0, 2_000))),
                )
            )
    nights: list[list[dict[str, Any]]] = [[], [], []]
    for item in pool:
        nights[draw(st.integers(0, 2))].append(item)
        if draw(st.integers(0, 5)) == 0:  # the same record again, in a later night
            nights[draw(st.integers(0, 2))].append(item)
    return nights


@SLOW
@given(batches=nights())
def test_nights_in_any_split_equal_one_night_of_everything(tmp_path: Path, batches) -> None:
    split = Billing(tmp_path / uuid.uuid4().hex)
    for night, items in enumerate(batches):
        if items:
            split.log(f"requests-2026-12-0{night + 1}.jsonl", items)
        split.nightly(f"2026-12-0{night + 1}", allow_empty=True)  # a night without records is fine here
        assert_consistent(split)
    whole = Billing(tmp_path / uuid.uuid4().hex)
    firsts = {item["event_id"]: item for items in batches for item in items}
    whole.log("requests-2026-12-01.jsonl", list(firsts.values()))
    whole.nightly("2026-12-01")
    query = "SELECT * EXCLUDE (rated_run_id) FROM rated_attempts ORDER BY ALL"
    assert split.query(query) == whole.query(query)
    assert split.query("SELECT * FROM statement_lines ORDER BY ALL") == whole.query(
        "SELECT * FROM statement_lines ORDER BY ALL"
    )
