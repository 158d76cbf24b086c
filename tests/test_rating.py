"""Rating rules R2-R8, each with amounts computed by hand in the test.

Public list prices per 1M tokens (pricing/tables/2026-11-01.toml):
openai/gpt-5.5 in 7.5 / out 45; deepseek-v4-flash in 0.14745 / out 0.2949.
"""

from __future__ import annotations

from core.money import D
from tests.conftest import Billing, record, usage


def test_cached_and_reasoning_tokens_are_never_double_counted(billing: Billing) -> None:
    # prompt 1000 of which 400 cached; completion 500 of which 300 reasoning (already inside)
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="e1", usage=usage(1000, 500, cached=400, reasoning=300)),
        ],
    )
    billing.nightly()
    r = billing.rated("e1")
    assert (r["input_uncached_tokens"], r["input_cached_tokens"], r["output_tokens"]) == (600, 400, 500)
    assert r["reasoning_tokens"] == 300
    # 600 x 7.5/1M = 0.0045 ; 400 x 7.5/1M (no cached price: input price) = 0.003 ; 500 x 45/1M = 0.0225
    assert r["charge_input_uncached"] == D("0.0045")
    assert r["charge_input_cached"] == D("0.003")
    assert r["charge_output"] == D("0.0225")
    assert r["charge_total"] == D("0.03")
    assert r["usage_source"] == "provider"


def test_image_tokens_are_a_part_of_completion(billing: Billing) -> None:
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="e1", model="openai/gpt-5.4-image-2", usage=usage(900, 4200, image=4160)),
        ],
    )
    billing.nightly()
    r = billing.rated("e1")
    assert (r["output_tokens"], r["image_tokens"]) == (4200, 4160)
    # 900 x 12/1M = 0.0108 ; 4200 x 22.5/1M = 0.0945
    assert r["charge_total"] == D("0.1053")


def test_deepseek_cache_hit_and_miss(billing: Billing) -> None:
    ds_usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 200,
        "total_tokens": 1200,
        "prompt_cache_hit_tokens": 600,
        "prompt_cache_miss_tokens": 400,
        "completion_tokens_details": {"reasoning_tokens": 150},
    }
    billing.log("requests-2026-11-20.jsonl", [record(event_id="e1", model="deepseek-v4-flash", usage=ds_usage)])
    billing.nightly()
    r = billing.rated("e1")
    assert (r["input_uncached_tokens"], r["input_cached_tokens"], r["output_tokens"]) == (400, 600, 200)
    # 400 x 0.14745/1M = 0.00005898 ; 600 x 0.14745/1M = 0.00008847 ; 200 x 0.2949/1M = 0.00005898
    assert r["charge_input_uncached"] == D("0.00005898")
    assert r["charge_input_cached"] == D("0.00008847")
    assert r["charge_output"] == D("0.00005898")


def test_retry_503_then_200_bills_only_the_success(billing: Billing) -> None:
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(
                event_id="a1",
                request_id="r",
                attempt=1,
                status=503,
                finish_reason=None,
                usage=usage(1000, 10),
                error_code="upstream_timeout",
            ),
            record(event_id="a2", request_id="r", attempt=2, ts="2026-11-20T12:00:05Z", usage=usage(1000, 100)),
        ],
    )
    billing.nightly()
    first, second = billing.rated("a1"), billing.rated("a2")
    assert (first["outcome"], first["reason"], first["charge_total"]) == ("not_billed", "upstream_error", D(0))
    # the failed attempt's usage is InferGate's cost: 1000 x 5/1M + 10 x 30/1M = 0.0053
    assert first["upstream_ref_cost"] == D("0.0053")
    assert (second["outcome"], second["reason"]) == ("billed", None)
    assert second["charge_total"] == D("0.012")  # 1000 x 7.5/1M + 100 x 45/1M


def test_two_successful_attempts_bill_the_later_one(billing: Billing) -> None:
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="a1", request_id="r", attempt=1, usage=usage(1000, 100)),
            record(event_id="a2", request_id="r", attempt=2, ts="2026-11-20T12:00:09Z", usage=usage(2000, 200)),
        ],
    )
    billing.nightly()
    assert billing.rated("a1")["reason"] == "superseded_attempt"
    assert billing.rated("a2")["charge_total"] == D("0.024")  # 2000 x 7.5/1M + 200 x 45/1M
    assert billing.one("SELECT count(*) FROM rated_attempts WHERE outcome = 'billed'") == 1


def test_attempt_ties_break_on_later_ts_then_larger_event_id(billing: Billing) -> None:
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="b", request_id="r1", attempt=2, ts="2026-11-20T12:00:01Z"),
            record(event_id="a", request_id="r1", attempt=2, ts="2026-11-20T12:00:02Z"),
            record(event_id="x", request_id="r2", attempt=1, ts="2026-11-20T12:00:00Z"),
            record(event_id="y", request_id="r2", attempt=1, ts="2026-11-20T12:00:00Z"),
        ],
    )
    billing.nightly()
    assert billing.rated("a")["outcome"] == "billed"
    assert billing.rated("b")["reason"] == "superseded_attempt"
    assert billing.rated("y")["outcome"] == "billed"
    assert billing.rated("x")["reason"] == "superseded_attempt"


def test_a_ts_tie_goes_on_in_the_digits_past_the_microsecond(billing: Billing) -> None:
    """R2 "ties: later ts": ts is stored to the microsecond, the log may carry nanoseconds
    (Go's RFC3339Nano). 10:00:00.0000002Z is later than 10:00:00.0000001Z, so "t-a" is billed
    although "t-b" is the larger event_id; the same instant written with another offset
    compares by the same digits. (Conformance review finding.)"""
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="t-a", request_id="r1", ts="2026-11-20T10:00:00.0000002Z", usage=usage(1, 1)),
            record(event_id="t-b", request_id="r1", ts="2026-11-20T10:00:00.0000001Z", usage=usage(2, 2)),
            record(event_id="o-a", request_id="r2", ts="2026-11-20T11:00:00.00000000031+01:00", usage=usage(1, 1)),
            record(event_id="o-b", request_id="r2", ts="2026-11-20T10:00:00.0000000003Z", usage=usage(2, 2)),
            record(event_id="same-a", request_id="r3", ts="2026-11-20T10:00:00.1234567Z"),
            record(event_id="same-b", request_id="r3", ts="2026-11-20T10:00:00.12345670Z"),
        ],
    )
    billing.nightly()
    assert billing.rated("t-a")["outcome"] == "billed"
    assert billing.rated("t-a")["charge_total"] == D("0.0000525")  # 1 x 7.5/1M + 1 x 45/1M
    assert billing.rated("t-b")["reason"] == "superseded_attempt"
    assert billing.rated("o-a")["outcome"] == "billed"  # ...0000000031 past the second > ...0000000030
    assert billing.rated("o-b")["reason"] == "superseded_attempt"
    # equal to the last digit (a trailing zero is no later): the larger event_id
    assert billing.rated("same-b")["outcome"] == "billed"
    assert billing.rated("same-a")["reason"] == "superseded_attempt"


def test_all_attempts_failed_bills_nothing(billing: Billing) -> None:
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="a1", request_id="r", attempt=1, status=429, usage=None, finish_reason=None),
            record(event_id="a2", request_id="r", attempt=2, status=500, usage=usage(100, 5), finish_reason=None),
            record(event_id="a3", request_id="r", attempt=3, status=302, usage=None, finish_reason=None),
        ],
    )
    billing.nightly()
    reasons = [billing.rated(e)["reason"] for e in ("a1", "a2", "a3")]
    assert reasons == ["client_error", "upstream_error", "status_not_billable"]
    assert billing.one("SELECT count(*) FROM statement_lines") == 0


def test_client_error_with_usage_is_not_billed(billing: Billing) -> None:
    billing.log("requests-2026-11-20.jsonl", [record(event_id="e", status=400, usage=usage(500, 50))])
    billing.nightly()
    r = billing.rated("e")
    assert (r["outcome"], r["reason"], r["charge_total"]) == ("not_billed", "client_error", D(0))
    assert r["upstream_ref_cost"] == D("0.004")  # 500 x 5/1M + 50 x 30/1M


def test_client_closed_499_bills_the_partial_stream(billing: Billing) -> None:
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="e", status=499, finish_reason=None, stream=True, usage=usage(1000, 40)),
        ],
    )
    billing.nightly()
    r = billing.rated("e")
    assert (r["outcome"], r["charge_total"]) == ("billed", D("0.0093"))  # 0.0075 + 40 x 45/1M


def test_zero_output_cut_off_is_not_billed_whatever_the_status(billing: Billing) -> None:
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="z200", status=200, finish_reason=None, usage=usage(1000, 0)),
            record(event_id="z499", status=499, finish_reason=None, usage=usage(1000, 0)),
            record(event_id="stop0", status=200, finish_reason="stop", usage=usage(1000, 0)),
        ],
    )
    billing.nightly()
    assert billing.rated("z200")["reason"] == "no_output"
    assert billing.rated("z499")["reason"] == "no_output"
    # a completed answer with no output tokens was not cut off: its input is billed
    assert billing.rated("stop0")["charge_total"] == D("0.0075")


def test_month_boundary_is_half_open_in_utc(billing: Billing) -> None:
    billing.log(
        "requests-2026-11-30.jsonl",
        [
            record(event_id="last", ts="2026-11-30T23:59:59.999999Z"),
            record(event_id="first", ts="2026-12-01T00:00:00Z"),
            record(event_id="offset", ts="2026-11-30T23:30:00-08:00"),  # 07:30 UTC on Dec 1
            record(event_id="east", ts="2026-12-01T00:30:00+01:00"),  # 23:30 UTC on Nov 30
            record(event_id="nanos", ts="2026-11-30T23:59:59.9999999Z"),  # truncated, never rounded up
        ],
    )
    billing.nightly("2026-11-30")
    periods = {e: billing.rated(e)["period"] for e in ("last", "first", "offset", "east", "nanos")}
    assert periods == {
        "last": "2026-11",
        "first": "2026-12",
        "offset": "2026-12",
        "east": "2026-11",
        "nanos": "2026-11",
    }
    assert str(billing.rated("offset")["usage_date"]) == "2026-12-01"


def test_discount_group_multiplier_and_override(billing: Billing) -> None:
    u = usage(1_000_000, 1_000_000)  # one million of each: the charge is the unit price
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="disc", account_id="acct_discount", usage=u),
            record(event_id="ent", account_id="acct_enterprise", usage=u),
            record(event_id="part", account_id="acct_partner", usage=u),
            record(event_id="ovr", account_id="acct_override", usage=usage(1_000_000, 1_000_000, cached=400_000)),
            record(event_id="pre", account_id="acct_override", ts="2026-11-14T23:59:59Z", usage=u),
        ],
    )
    billing.nightly()
    # 12.5% discount: 7.5 x 0.875 = 6.5625 ; 45 x 0.875 = 39.375
    assert billing.rated("disc")["charge_total"] == D("45.9375")
    # enterprise x0.9: 6.75 + 40.5
    assert billing.rated("ent")["charge_total"] == D("47.25")
    # partner x1.1 and 5% discount: factor 1.045 -> 7.8375 + 47.025
    part = billing.rated("part")
    assert (part["unit_price_input_uncached"], part["unit_price_output"]) == (D("7.8375"), D("47.025"))
    assert part["charge_total"] == D("54.8625")
    # override from 2026-11-15 is final: 600k x 6/1M + 400k x 0.75/1M + 1M x 36/1M = 3.6 + 0.3 + 36
    ovr = billing.rated("ovr")
    assert (ovr["price_basis"], ovr["charge_total"]) == ("override", D("39.9"))
    # one second before the override: list price
    assert billing.rated("pre")["charge_total"] == D("52.5")


def test_unknown_model_and_unknown_account_are_held_not_billed(billing: Billing) -> None:
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="m", model="openai/gpt-4.1-mini"),
            record(event_id="a", account_id="acct_nobody"),
        ],
    )
    billing.nightly()
    assert (billing.rated("m")["outcome"], billing.rated("m")["reason"]) == ("held", "unpriced_model")
    assert (billing.rated("a")["outcome"], billing.rated("a")["reason"]) == ("held", "unknown_account")
    assert billing.one("SELECT count(*) FROM statement_lines") == 0


def test_held_unknown_account_is_billed_once_the_account_exists(billing: Billing) -> None:
    billing.log("requests-2026-11-20.jsonl", [record(event_id="a", account_id="acct_new")])
    billing.nightly()
    assert billing.rated("a")["reason"] == "unknown_account"
    text = billing.settings.accounts_file.read_text() + '\n[[accounts]]\nid = "acct_new"\nlegal_name = "New Co"\n'
    billing.settings.accounts_file.write_text(text)
    billing.nightly("2026-11-21", allow_empty=True)  # no files that day: the held attempt is retried
    assert billing.rated("a")["outcome"] == "billed"
    assert billing.rated("a")["charge_total"] == D("0.012")


def test_a_cut_off_attempt_without_usage_is_no_output_only_when_its_text_says_so(billing: Billing) -> None:
    """R3 zero-output insurance needs to know that nothing was produced: without usage, an empty
    output_text, or messages kept without output_text, says so (no_output). With neither text
    kept, nothing says so: the attempt is billable and held as usage_missing (R5), and as the
    request's highest billable attempt it supersedes the earlier one. (Conformance review.)"""
    cut = {"finish_reason": None, "usage": None}
    said = [{"role": "user", "content": "hi"}]
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="bare499", status=499, **cut),
            record(event_id="bare200", status=200, **cut),
            record(event_id="empty", status=499, output_text="", **cut),
            record(event_id="asked", status=499, messages=said, **cut),
            record(event_id="first", request_id="rr", attempt=1),
            record(event_id="second", request_id="rr", attempt=2, status=499, **cut),
        ],
    )
    billing.nightly()
    outcome = {e: (billing.rated(e)["outcome"], billing.rated(e)["reason"]) for e in
               ("bare499", "bare200", "empty", "asked", "first", "second")}  # fmt: skip
    assert outcome == {
        "bare499": ("held", "usage_missing"),
        "bare200": ("held", "usage_missing"),
        "empty": ("not_billed", "no_output"),
        "asked": ("not_billed", "no_output"),
        "first": ("not_billed", "superseded_attempt"),
        "second": ("held", "usage_missing"),
    }


def test_usage_missing_without_text_is_held(billing: Billing) -> None:
    billing.log("requests-2026-11-20.jsonl", [record(event_id="u", usage=None)])
    billing.nightly()
    assert (billing.rated("u")["outcome"], billing.rated("u")["reason"]) == ("held", "usage_missing")


def test_many_sub_cent_requests_round_once_per_line_half_up(billing: Billing) -> None:
    # 6 requests x 1000 input tokens x 7.5/1M = 6 x 0.0075 = 0.045 exactly: the line is 0.05
    # (rounding each request would give 0.06; a float sum or banker's rounding 0.04)
    billing.log("requests-2026-11-20.jsonl", [record(usage=usage(1000, 0)) for _ in range(6)])
    billing.nightly()
    line = billing.one("SELECT amount_exact, amount FROM statement_lines WHERE token_class = 'input_uncached'")
    assert line == (D("0.045"), D("0.05"))


def test_statement_total_is_the_sum_of_rounded_lines(billing: Billing) -> None:
    # input line 3 x 1000 x 7.5/1M = 0.0225 -> 0.02 ; output 3 x 111 x 45/1M = 0.014985 -> 0.01
    billing.log("requests-2026-11-20.jsonl", [record(usage=usage(1000, 111)) for _ in range(3)])
    billing.nightly()
    assert billing.one("SELECT usage_usd FROM account_period_totals") == D("0.03")
    assert billing.one("SELECT usage_exact FROM account_period_totals") == D("0.037485")


def test_price_version_change_at_its_exact_instant(billing: Billing, tmp_path) -> None:
    prices = tmp_path / "prices"
    prices.mkdir()
    original = (billing.settings.prices_dir / "2026-11-01.toml").read_text()
    (prices / "2026-11-01.toml").write_text(original)
    newer = (
        original.replace('version = "2026-11-01"', 'version = "2026-11-20"')
        .replace("effective_from = 2026-11-01T00:00:00Z", "effective_from = 2026-11-20T00:00:00Z")
        .replace('upstream_output_per_1m = "30"', 'upstream_output_per_1m = "40"')
        .replace('list_output_per_1m = "45"', 'list_output_per_1m = "60"')
    )
    (prices / "2026-11-20.toml").write_text(newer)
    import dataclasses

    billing.settings = dataclasses.replace(billing.settings, prices_dir=prices)
    u = usage(0, 1_000_000)
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="before", ts="2026-11-19T23:59:59.999999Z", usage=u),
            record(event_id="at", ts="2026-11-20T00:00:00Z", usage=u),
        ],
    )
    billing.nightly()
    before, at = billing.rated("before"), billing.rated("at")
    assert (before["price_version"], before["charge_total"]) == ("2026-11-01", D("45"))
    assert (at["price_version"], at["charge_total"]) == ("2026-11-20", D("60"))


def test_499_without_usage_is_billed_from_recounted_text(billing: Billing) -> None:
    hello = [{"role": "user", "content": "Hello from InferGate."}]
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(
                event_id="est",
                status=499,
                finish_reason=None,
                stream=True,
                usage=None,
                messages=hello,
                output_text="Hello from InferGate.",
            ),
            record(event_id="ds", model="deepseek-v4-flash", usage=None, messages=hello, output_text=""),
            record(event_id="nomap", model="openai-compatible/unknown", usage=None, messages=hello),
        ],
    )
    billing.nightly()
    r = billing.rated("est")
    # o200k_base: "Hello from InferGate." is 5 tokens; chat prompt = 3 per message + 1 ("user")
    # + 5 + 3 reply priming = 12. Charge 12 x 7.5/1M + 5 x 45/1M = 0.00009 + 0.000225
    assert (r["usage_source"], r["input_uncached_tokens"], r["output_tokens"]) == ("estimated", 12, 5)
    assert r["charge_total"] == D("0.000315")
    # DeepSeek V4 chat encoding of one user turn: BOS 1 + User 1 + 5 + Assistant/think 2 = 9
    ds = billing.rated("ds")
    assert (ds["usage_source"], ds["input_uncached_tokens"], ds["output_tokens"]) == ("estimated", 9, 0)
    assert billing.rated("nomap")["reason"] == "unpriced_model"
    # text is counted, never stored
    assert "Hello from" not in str(billing.query("SELECT * FROM attempts"))


def test_offsets_other_than_rfc_3339s_are_bad_timestamps(billing: Billing) -> None:
    """RFC 3339 writes an offset as Z or +hh:mm; +hhmm and +hh (ISO 8601's other forms) are
    quarantined as bad_timestamp, as the README says, and -00:00 and a lowercase z are instants."""
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="hhmm", ts="2026-11-20T12:00:00+0100"),
            record(event_id="hh", ts="2026-11-20T12:00:00+01"),
            record(event_id="minus-zero", ts="2026-11-20T12:00:00-00:00"),
            record(event_id="small-z", ts="2026-11-20t12:00:00z"),
        ],
    )
    billing.nightly()
    assert billing.query("SELECT event_id, reason FROM quarantine ORDER BY event_id") == [
        ("hh", "bad_timestamp"),
        ("hhmm", "bad_timestamp"),
    ]
    assert billing.rated("minus-zero")["outcome"] == billing.rated("small-z")["outcome"] == "billed"


# acct_override's output override from 2026-11-15 is 45/1M: the list price of openai/gpt-5.5
OVR = "acct_override"
EQUAL_OVERRIDE_TOML = """
[[accounts]]
id = "acct_override"
legal_name = "Override Ltd"

[[accounts.overrides]]
model = "openai/gpt-5.5"
effective_from = 2026-11-15T00:00:00Z
input_per_1m = "6"
output_per_1m = "45"
"""


def test_an_override_equal_to_the_list_price_shares_the_line(billing: Billing) -> None:
    """A statement line is one (model, class, version, unit price), whatever priced it (R7:
    summed exactly, rounded once). Output 1000 x 45/1M = 0.045 before the override and 0.045
    after: one line of 0.09 (two lines rounded apart would print 0.05 + 0.05)."""
    billing.settings.accounts_file.write_text(EQUAL_OVERRIDE_TOML, encoding="utf-8")
    u = usage(1000, 1000)
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="list", request_id="r-list", account_id=OVR, ts="2026-11-10T12:00:00Z", usage=u),
            record(event_id="ovr", request_id="r-ovr", account_id=OVR, ts="2026-11-16T12:00:00Z", usage=u),
        ],
    )
    billing.nightly()
    assert billing.rated("list")["price_basis"] == "list" and billing.rated("ovr")["price_basis"] == "override"
    lines = billing.query(
        "SELECT token_class, unit_price_per_1m, price_basis, quantity_tokens, billed_requests, "
        "override_requests, amount_exact, amount FROM statement_lines ORDER BY token_class, unit_price_per_1m"
    )
    assert lines == [
        # input: 1000 x 6/1M = 0.006 -> 0.01 and 1000 x 7.5/1M = 0.0075 -> 0.01 (two prices, two lines)
        ("input_uncached", D("6"), "override", 1000, 1, 1, D("0.006"), D("0.01")),
        ("input_uncached", D("7.5"), "list", 1000, 1, 0, D("0.0075"), D("0.01")),
        ("output", D("45"), "list+override", 2000, 2, 1, D("0.09"), D("0.09")),
    ]
    assert billing.one("SELECT usage_usd FROM account_period_totals") == D("0.11")

    # attempt 2 of r-ovr, started before the override: it is billed instead, at the list price,
    # and the line's basis follows its requests exactly (kept by difference)
    billing.log(
        "requests-2026-11-21.jsonl",
        [record(event_id="ovr-2", request_id="r-ovr", attempt=2, account_id=OVR, ts="2026-11-14T12:00:00Z", usage=u)],
    )
    billing.nightly("2026-11-21")
    assert billing.query(
        "SELECT token_class, unit_price_per_1m, price_basis, billed_requests, override_requests, amount "
        "FROM statement_lines ORDER BY token_class, unit_price_per_1m"
    ) == [
        ("input_uncached", D("7.5"), "list", 2, 0, D("0.02")),  # 2 x 0.0075 = 0.015 -> 0.02
        ("output", D("45"), "list", 2, 0, D("0.09")),
    ]


def test_a_group_multiplier_over_a_thousand_is_refused_on_load(tmp_path) -> None:
    """The audit's case: multiplier 10000 loaded, then failed the nightly of every account in
    rate.sql's DECIMAL(12,8) price factor; now the accounts file is refused, naming the field."""
    import pytest

    from pipeline.accounts import AccountsError, load_accounts

    path = tmp_path / "accounts.toml"
    text = '[groups.huge]\nmultiplier = "{}"\n[[accounts]]\nid = "a"\nlegal_name = "A"\ngroup = "huge"\n'
    path.write_text(text.format("1000"), encoding="utf-8")
    assert load_accounts(path).groups["huge"].multiplier == D("1000")
    path.write_text(text.format("1000.0001"), encoding="utf-8")
    with pytest.raises(AccountsError, match=r"groups.*huge.*multiplier.*outside \[0.0001, 1000\]"):
        load_accounts(path)
