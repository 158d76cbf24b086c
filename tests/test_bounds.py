"""Issue 20 items 10 and 13: no single record can stop billing or be billed on an impossible
number or instant.

Bounds (README "Decisions where the spec is silent"): token counts 0-999,999,999 per attempt
(``usage_inconsistent``), ``upstream_cost_usd`` below 10^9 (``invalid_record``), ``attempt`` and
``duration_ms`` within BIGINT, ``status`` 100-599; ``ts`` within RFC 3339's ranges, not before
2000 and not after 00:00Z two days after the later of the run's ``--date`` and its start day.
Amounts are computed by hand: gpt-5.5 lists at $7.50 input and $45 output per 1M tokens, its
upstream reference prices are $5 and $30.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.db import connect
from core.money import D
from pipeline import replay
from reports.margin import margin_totals
from tests.conftest import Billing, examples, record, usage

GOOD_CHARGE = D("0.012")  # the default record: 1000 x 7.5 / 1M + 100 x 45 / 1M


def quarantined(billing: Billing) -> dict[str, tuple[str, str | None, str]]:
    return {
        str(e): (reason, field, message)
        for e, reason, field, message in billing.query("SELECT event_id, reason, field, message FROM quarantine")
    }


def test_five_trillion_output_tokens_are_quarantined_not_billed(billing: Billing) -> None:
    huge = 5_555_555_555_555  # beyond rate.sql's DECIMAL(12,0) tokens: not a count (5,555,555,555 is billed)
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="good"),
            record(event_id="huge", usage=usage(1000, huge)),
            record(event_id="huge-500", status=500, usage=usage(huge, 10)),  # failed the run before
            record(event_id="max", usage=usage(0, 999_999_999_999)),
            record(event_id="max-500", status=500, usage=usage(999_999_999_999, 999_999_999_999)),
            record(event_id="2^31", usage=usage(2**31, 0)),
        ],
    )
    report = billing.nightly()
    assert (report.lines_read, report.quarantined) == (6, 2)
    q = quarantined(billing)
    assert q["huge"][:2] == ("usage_inconsistent", "usage.completion_tokens")
    assert "usage.completion_tokens" in q["huge"][2] and "0-999999999999" in q["huge"][2]
    assert q["huge-500"][:2] == ("usage_inconsistent", "usage.prompt_tokens")
    assert billing.rated("good")["charge_total"] == GOOD_CHARGE
    # the largest count accepted: 999,999,999,999 x 45 / 1M, exact
    assert billing.rated("max")["charge_total"] == D("44999999.999955")
    # a 500 is not billed; its upstream reference cost is 999,999,999,999 x (5 + 30) / 1M
    failed = billing.rated("max-500")
    assert (failed["outcome"], failed["charge_total"]) == ("not_billed", D("0"))
    assert failed["upstream_ref_cost"] == D("34999999.999965")
    # an int32 overflow is no concern: 2,147,483,648 x 7.50 / 1M
    assert billing.rated("2^31")["charge_total"] == D("16106.12736")


def test_a_huge_upstream_cost_is_quarantined_and_the_largest_accepted_sums_in_margin(billing: Billing) -> None:
    largest = "999999999.99999999999999999999"
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="a", upstream_cost_usd=largest),
            record(event_id="b", upstream_cost_usd=largest),
            record(event_id="c", upstream_cost_usd="1000000000"),
            record(event_id="d", upstream_cost_usd="9" * 18),
        ],
    )
    billing.nightly()
    q = quarantined(billing)
    assert set(q) == {"c", "d"}
    assert all(v[:2] == ("invalid_record", "upstream_cost_usd") and "upstream_cost_usd" in v[2] for v in q.values())
    con = connect(billing.settings.db_path, read_only=True)
    try:
        totals = margin_totals(con, "2026-11")
    finally:
        con.close()
    assert totals["reported_cost_attempts"] == 2
    assert totals["reported_upstream_cost_usd"] == D("1999999999.99999999999999999998")


def _today() -> datetime:
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


@pytest.mark.parametrize(
    "ts",
    [
        "2026-11-20T12:00:00+99:99",  # moved the request by 100 h
        "2026-11-20T12:00:00+24:00",
        "2026-11-20T12:00:00-24:00",
        "2026-11-20T12:00:00+05:60",
        "2026-11-20T24:00:00Z",  # rolled into the next day
        "2026-11-30T23:59:60Z",  # leap second: refused (README)
        "2026-11-20T12:60:00Z",
        "2026-11-31T12:00:00Z",
        "2026-13-01T12:00:00Z",
        "9999-12-31T12:00:00Z",  # billed into 9999-12 before
        "1970-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
    ],
)
def test_impossible_timestamps_are_bad_timestamp(billing: Billing, ts: str) -> None:
    billing.log("requests-2026-11-20.jsonl", [record(event_id="good"), record(event_id="bad", ts=ts)])
    report = billing.nightly()
    assert (report.lines_read, report.quarantined) == (2, 1)
    reason, field, message = quarantined(billing)["bad"]
    assert (reason, field) == ("bad_timestamp", "ts")
    assert message.startswith(f"field ts: {ts} ")
    assert billing.rated("good")["charge_total"] == GOOD_CHARGE


def test_the_edges_of_rfc_3339_are_accepted(billing: Billing) -> None:
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="east", ts="2026-11-21T11:00:00+23:59"),  # 2026-11-20T11:01Z
            record(event_id="west", ts="2026-11-19T12:00:00-23:59"),  # 2026-11-20T11:59Z
            record(event_id="last", ts="2026-11-30T23:59:59.999999Z"),
            record(event_id="y2k", ts="2000-01-01T00:00:00Z"),
        ],
    )
    assert billing.nightly().quarantined == 0
    assert str(billing.rated("east")["ts"].astimezone(UTC)) == "2026-11-20 11:01:00+00:00"
    assert str(billing.rated("west")["ts"].astimezone(UTC)) == "2026-11-20 11:59:00+00:00"
    assert billing.rated("last")["period"] == "2026-11"
    # before the first price version: held, as SPEC R6 says, not a bad timestamp
    assert (billing.rated("y2k")["outcome"], billing.rated("y2k")["reason"]) == ("held", "unpriced_model")


def test_a_ts_after_the_run_date_is_in_the_future(billing: Billing, monkeypatch: pytest.MonkeyPatch) -> None:
    today = _today()
    soon = (today + timedelta(days=1, hours=12)).strftime("%Y-%m-%dT%H:%M:%SZ")  # clock skew: accepted
    later = (today + timedelta(days=3, hours=12)).strftime("%Y-%m-%dT%H:%M:%SZ")
    billing.log("requests-2026-11-20.jsonl", [record(event_id="soon", ts=soon), record(event_id="later", ts=later)])
    billing.nightly()
    assert set(quarantined(billing)) == {"later"}
    reason, _, message = quarantined(billing)["later"]
    assert reason == "bad_timestamp" and "is in the future" in message
    assert billing.rated("soon")["outcome"] == "billed"
    # the bound comes from the run's recorded date, not from the clock of whoever verifies it
    args = json.loads(billing.one("SELECT args FROM runs WHERE command = 'nightly'"))
    assert args["as_of"] == datetime.now(UTC).date().isoformat() or args["as_of"] == today.date().isoformat()

    class Past(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return datetime(2026, 11, 1, tzinfo=UTC)

    monkeypatch.setattr("pipeline.jobs.datetime", Past)
    result = replay.verify_run(billing.settings, billing.one("SELECT max(run_id) FROM runs"))
    assert result.status == "MATCH", result.steps


def test_a_nightly_date_later_than_today_extends_the_bound(billing: Billing) -> None:
    billing.log(
        "requests-2031-01-10.jsonl",
        [record(event_id="ok", ts="2031-01-11T23:59:59Z"), record(event_id="late", ts="2031-01-12T00:00:00Z")],
    )
    billing.nightly("2031-01-10")
    assert set(quarantined(billing)) == {"late"}


NUMERIC_FIELDS = ("attempt", "duration_ms", "status", "upstream_cost_usd")
USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")
values = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([0, 1, 999_999_999, 10**9, 5_555_555_555, 10**12, 2**63 - 1, 2**63, 2**64, -(2**63)]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["1e400", "0.0000000000000000000001", "999999999.9", "1000000000", "-1", "١٢"]),
    st.booleans(),
    st.none(),
)


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    top=st.dictionaries(st.sampled_from(NUMERIC_FIELDS), values, max_size=3),
    counts=st.dictionaries(st.sampled_from(USAGE_FIELDS), values, max_size=3),
    cached=st.one_of(st.none(), values),
)
def test_no_single_line_can_fail_a_run(
    tmp_path_factory: pytest.TempPathFactory, top: dict[str, Any], counts: dict[str, Any], cached: Any
) -> None:
    billing = Billing(tmp_path_factory.mktemp("bounds"))
    use = {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100, **counts}
    if cached is not None:
        use["prompt_tokens_details"] = {"cached_tokens": cached}
    odd = record(event_id="odd", usage=use)
    odd.update(top)
    text = json.dumps(odd)  # Python writes integers of any size exactly
    billing.log("requests-2026-11-20.jsonl", [record(event_id="good"), text])
    report = billing.nightly()  # must not raise, whatever the numbers
    assert report.lines_read == 2
    assert billing.rated("good")["charge_total"] == GOOD_CHARGE
    q = quarantined(billing)
    if "odd" in q:
        reason, field, message = q["odd"]
        assert reason in ("invalid_record", "usage_inconsistent") and field
        assert message.startswith(f"field {field}: ")
    else:
        assert billing.one("SELECT count(*) FROM attempts WHERE event_id = 'odd'") == 1
        assert report.quarantined == 0


def test_ingest_records_the_day_it_ran(tmp_path: Path) -> None:
    from pipeline import jobs

    billing = Billing(tmp_path)
    path = billing.log("a.jsonl", [record(event_id="x", ts="9999-01-01T00:00:00Z")])
    report = jobs.run_ingest(billing.settings, [str(path)])
    assert report.quarantined == 1
    args = json.loads(billing.one("SELECT args FROM runs"))
    assert len(args["as_of"]) == 10
