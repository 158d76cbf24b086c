"""The O(day) nightly gives the answers a full recomputation gives (docs/performance.md).

A nightly reads its own run's attempts plus the stored attempts of the same requests (found
by lookup keys), replaces their rated rows, and moves the statement lines by the difference.
These tests spread requests over several runs (late retries, late duplicates, ingest-only
runs, reference changes) and check every result against the rules applied from scratch.
"""

from __future__ import annotations

from pipeline.db import connect
from tests.conftest import Billing, record, usage

# statement lines summed from all of rated_attempts: what the incremental update must equal
FULL_LINES = """
SELECT account_id, period, model, token_class, coalesce(price_version, 'none'), price_basis, unit_price_per_1m,
       CAST(sum(quantity) AS BIGINT), count(*), CAST(sum(amount) AS DECIMAL(38,20)),
       CAST(round(sum(amount), 2) AS DECIMAL(18,2))
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
GROUP BY ALL ORDER BY ALL
"""


def assert_consistent(billing: Billing) -> None:
    """Statement lines equal a full re-aggregation, and every attempt is rated exactly once."""
    assert billing.query("SELECT * FROM statement_lines ORDER BY ALL") == billing.query(FULL_LINES)
    assert billing.query(
        "SELECT count(*), count(DISTINCT event_id) FROM rated_attempts"
    ) == billing.query("SELECT count(*), count(*) FROM attempts")
    assert billing.one("SELECT count(*) FROM attempts ANTI JOIN rated_attempts USING (event_id)") == 0


def test_a_late_duplicate_and_a_late_conflict_are_found_in_the_history(billing: Billing) -> None:
    original = record(event_id="e", usage=usage(1000, 100))
    billing.log("requests-2026-11-20.jsonl", [original])
    billing.nightly("2026-11-20")
    billing.log("requests-2026-11-21.jsonl", [original, dict(original, status=500) | {"event_id": "e"}])
    report = billing.nightly("2026-11-21")
    assert (report.files[0].accepted, report.files[0].duplicates, report.files[0].quarantined) == (0, 1, 1)
    assert billing.one("SELECT count(*) FROM attempts WHERE event_id = 'e'") == 1
    assert_consistent(billing)


def test_lookup_keys_are_recomputed_when_duckdb_hashes_differently(billing: Billing) -> None:
    stored = record(event_id="k", usage=usage(1000, 100))
    billing.log("requests-2026-11-20.jsonl", [stored])
    billing.nightly("2026-11-20")
    con = connect(billing.settings.db_path)
    con.execute("UPDATE attempts SET event_key = 0, request_key = 0")  # as if hashed by another build
    con.execute("UPDATE rating_state SET value = 'another hash' WHERE key = 'lookup_key_hash'")
    con.close()
    connect(billing.settings.db_path).close()  # opening for writing recomputes them
    assert billing.one("SELECT count(*) FROM attempts WHERE event_key = hash(event_id)") == 1
    billing.log("requests-2026-11-21.jsonl", [record(), stored])
    report = billing.nightly("2026-11-21")
    assert (report.files[0].accepted, report.files[0].duplicates) == (1, 1)
