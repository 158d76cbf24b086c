"""Other gateways' logs: converted samples ingest and rate end to end with hand-checked charges.

The samples in data/imports/ are converted with the real CLI command, the outputs go through
the real nightly job (ingest + rate) with the test accounts of tests/conftest.py, and every
charge below was computed by hand from the list prices of pricing/tables/2026-11-01.toml
(gpt-5.5 7.5/45, gpt-5.5-pro 45/270, gpt-5.4-image-2 12/22.5, deepseek-v4-flash
0.14745/0.2949, deepseek-v4-pro 0.6525/1.305 per 1M; no cached price, so cached input costs
the input price).
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from core.money import D
from pipeline.cli import cli
from pipeline.importers import litellm, openrouter
from pipeline.importers._common import Rejected, cost_text, count, model_id, timestamp
from pipeline.redact import SECRET_PATTERN
from tests.conftest import Billing

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "imports"
LITELLM_FILES = [SAMPLES / "litellm_spendlogs.csv", SAMPLES / "litellm_spendlogs.json"]
OPENROUTER_FILES = [SAMPLES / "openrouter_generations.jsonl"]


def run_import(gateway: str, files: list[Path], out: Path, account: str, *extra: str) -> Any:
    args = ["import", "--from", gateway, *map(str, files), "--out", str(out), "--account", account, *extra]
    return CliRunner().invoke(cli, args)


def rejected(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted((out / "rejected").glob("*.jsonl")) for line in path.open()]


def records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted(out.glob("*.jsonl.gz")) for line in gzip.open(path, "rt")]


@pytest.fixture
def imported(billing: Billing) -> Billing:
    """LiteLLM samples as acct_plain (list prices), OpenRouter as acct_discount (12.5 % off)."""
    for gateway, files, account in (
        ("litellm", LITELLM_FILES, "acct_plain"),
        ("openrouter", OPENROUTER_FILES, "acct_discount"),
    ):
        result = run_import(gateway, files, billing.logs, account, "--max-quarantine-rate", "1")
        assert result.exit_code == 0, result.output
    for day in ("2026-11-20", "2026-11-21"):
        report = billing.nightly(day)
        assert report.quarantined == 0, report
    return billing


def test_litellm_samples_rate_with_hand_checked_charges(imported: Billing) -> None:
    # gpt-5.5, prompt 1200 (200 cached) + 300 out: 1000 x 7.5/1M + 200 x 7.5/1M + 300 x 45/1M
    r = imported.rated("litellm:chatcmpl-CxR8a1Lq0v9GkE2sWm5nTq7Y")
    assert (r["input_uncached_tokens"], r["input_cached_tokens"], r["output_tokens"], r["reasoning_tokens"]) == (
        1000,
        200,
        300,
        100,
    )
    assert (r["charge_input_uncached"], r["charge_input_cached"], r["charge_output"]) == (
        D("0.0075"),
        D("0.0015"),
        D("0.0135"),
    )
    assert r["charge_total"] == D("0.0225") and r["upstream_cost_usd"] == D("0.01425")
    # deepseek-v4-flash via DeepSeek's prompt_cache_hit_tokens: 2000 + 8000 cached at 0.14745, 2000 at 0.2949
    r = imported.rated("litellm:e3b7c1d2-5a4f-4e8b-9c0d-1f2a3b4c5d6e")
    assert (r["model"], r["input_uncached_tokens"], r["input_cached_tokens"]) == ("deepseek-v4-flash", 2000, 8000)
    assert r["charge_total"] == D("0.0002949") + D("0.0011796") + D("0.0005898")
    # a 429 failure: client_error, nothing billed
    r = imported.rated("litellm:chatcmpl-429-7f3e2d1c")
    assert (r["status"], r["outcome"], r["reason"], r["charge_total"]) == (429, "not_billed", "client_error", 0)
    # gpt-5.5-pro (dated snapshot name), one millisecond before midnight UTC: 500 x 45/1M + 1000 x 270/1M
    r = imported.rated("litellm:chatcmpl-Pro9dK2mX0")
    assert (r["model"], str(r["usage_date"]), r["charge_total"]) == ("openai/gpt-5.5-pro", "2026-11-20", D("0.2925"))
    # JSON export, next day: gpt-5.5 2000 (1500 cached) + 500 out = 0.015 + 0.0225
    assert imported.rated("litellm:chatcmpl-J1a2b3c4d5")["charge_total"] == D("0.0375")
    # gpt-5.4-image-2, 1200 of 1290 output tokens are image tokens (inside, not on top): 300 x 12/1M + 1290 x 22.5/1M
    r = imported.rated("litellm:chatcmpl-J3img")
    assert (r["output_tokens"], r["image_tokens"], r["charge_total"]) == (1290, 1200, D("0.032625"))
    # the float 1.2345678901234568e-05 kept as its decimal text, cut to the pipeline's 20 decimals
    assert r["upstream_cost_usd"] == D("0.00001234567890123457")
    total = imported.one("SELECT sum(charge_total) FROM rated_attempts WHERE account_id = 'acct_plain'")
    assert total == D("0.3871893")


def test_openrouter_samples_rate_with_hand_checked_charges(imported: Billing) -> None:
    # acct_discount: 12.5 % off. gpt-5.5 4000 prompt (3000 cached) + 600 out (256 reasoning inside):
    # 4000 x 6.5625/1M = 0.02625 ; 600 x 39.375/1M = 0.023625
    r = imported.rated("openrouter:gen-1764000191-Qm8rT2vX9kLp3NsA")
    assert (r["input_uncached_tokens"], r["input_cached_tokens"], r["output_tokens"], r["reasoning_tokens"]) == (
        1000,
        3000,
        600,
        256,
    )
    assert r["charge_total"] == D("0.049875") and r["upstream_cost_usd"] == D("0.0215")
    # cancelled -> 499, billed for what was generated: 900 x 0.5709375/1M + 150 x 1.141875/1M
    r = imported.rated("openrouter:gen-1764003600-Hd7fW1cZ5bYq2RuE")
    assert (r["status"], r["outcome"], r["model"]) == (499, "billed", "deepseek-v4-pro")
    assert r["charge_total"] == D("0.00051384375") + D("0.00017128125")
    # finish_reason error -> 502 upstream_error, not billed; its usage stays InferGate's cost
    r = imported.rated("openrouter:gen-1764007200-Xe4gK8pL0mQw6TzB")
    assert (r["status"], r["reason"], r["charge_total"], r["input_uncached_tokens"]) == (502, "upstream_error", 0, 1000)
    total = imported.one("SELECT sum(charge_total) FROM rated_attempts WHERE account_id = 'acct_discount'")
    assert total == D("0.050560125")


def test_rejected_rows_carry_file_row_field_and_reason(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_import("litellm", LITELLM_FILES, out, "acct_plain", "--max-quarantine-rate", "1").exit_code == 0
    assert run_import("openrouter", OPENROUTER_FILES, out, "acct_plain", "--max-quarantine-rate", "1").exit_code == 0
    got = {(Path(r["file"]).name, r["row"], r["field"], r["reason"]) for r in rejected(out)}
    assert got == {
        ("litellm_spendlogs.csv", 4, "call_type", "unsupported_call"),  # an embedding
        ("litellm_spendlogs.csv", 5, "model_group", "unmapped_model"),  # claude-sonnet-4-5
        ("litellm_spendlogs.json", 2, "metadata.error_information.error_code", "status_unknown"),
        ("litellm_spendlogs.json", 4, "startTime", "bad_timestamp"),
        ("openrouter_generations.jsonl", 4, "native_tokens_prompt", "usage_missing"),
        ("openrouter_generations.jsonl", 5, "(row)", "parse_error"),  # a truncated line
        ("openrouter_generations.jsonl", 6, "model", "unmapped_model"),
        ("openrouter_generations.jsonl", 7, "created_at", "bad_timestamp"),  # no offset
    }
    for entry in rejected(out):
        assert entry["message"].startswith(f"{entry['file']}: row {entry['row']}: ")
        assert "\n" not in entry["message"]
    # rows read = converted + rejected, per file
    assert len(records(out)) == (6 - 2) + (4 - 2) + (7 - 4)


def test_rejections_above_the_threshold_exit_1_and_still_write(tmp_path: Path) -> None:
    result = run_import("openrouter", OPENROUTER_FILES, tmp_path, "acct_plain")
    assert result.exit_code == 1
    assert "4 of 7 rows rejected, above --max-quarantine-rate 0.02" in result.output
    assert "openrouter_generations.jsonl: read 7 = converted 3 + rejected 4" in result.output
    assert len(records(tmp_path)) == 3


def test_no_raw_key_in_any_output(tmp_path: Path) -> None:
    raw_key = "sk-live-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
    assert raw_key in (SAMPLES / "litellm_spendlogs.csv").read_text()  # the sample does carry one
    source = tmp_path / "keys.jsonl"
    source.write_text(
        json.dumps({"request_id": "r-sk-abcdefghijklmnop", "call_type": "completion", "api_key": ""})
        + "\n"
        + json.dumps(
            {
                "request_id": "r2",
                "call_type": "completion",
                "api_key": "",
                "model": "gpt-5.5",
                "startTime": "2026-11-20T10:00:00Z",
                "custom_llm_provider": "Bearer abcdefghijklmnopqrstu",
                "prompt_tokens": 1,
                "completion_tokens": 1,
            }
        )
        + "\n"
    )
    out = tmp_path / "out"
    run_import("litellm", [*LITELLM_FILES, source], out, "acct_plain", "--max-quarantine-rate", "1")
    written = "".join(
        gzip.open(p, "rt").read() if p.name.endswith(".gz") else p.read_text() for p in out.rglob("*") if p.is_file()
    )
    assert not re.search(SECRET_PATTERN, written)
    # the raw key became the sha256 LiteLLM itself would have stored
    ids = {r["api_key_id"] for r in records(out)}
    assert "litellm:7c00678b7249c2bd668c3fb0532c60e351d914dd691bfe0878b78a5a30f0b4fd" in ids
    assert {(r["row"], r["field"]) for r in rejected(out) if r["file"] == str(source)} == {
        (1, "request_id"),
        (2, "custom_llm_provider"),
    }


def test_conversion_is_deterministic_and_reimport_only_duplicates(billing: Billing, tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        run_import("litellm", LITELLM_FILES, out, "acct_plain", "--max-quarantine-rate", "1")
    assert [p.read_bytes() for p in sorted(first.glob("*.gz"))] == [p.read_bytes() for p in sorted(second.glob("*.gz"))]
    # the same rows exported again later (JSON Lines, newest first) are duplicates, not new requests
    run_import("litellm", LITELLM_FILES, billing.logs, "acct_plain", "--max-quarantine-rate", "1")
    assert billing.nightly("2026-11-21").files[0].accepted == 2
    again = tmp_path / "again.jsonl"
    again.write_text("".join(json.dumps(r) + "\n" for r in reversed(json.loads(LITELLM_FILES[1].read_text()))))
    run_import("litellm", [again], billing.logs, "acct_plain", "--max-quarantine-rate", "1")
    report = billing.nightly("2026-11-21")
    fresh = [f for f in report.files if not f.skipped]
    assert [(f.accepted, f.duplicates, f.quarantined) for f in fresh] == [(0, 2, 0)]
    assert billing.one("SELECT count(*) FROM rated_attempts WHERE usage_date = '2026-11-21'") == 2


def test_what_the_source_lacks_is_marked() -> None:
    row = next(r for _, r in openrouter.read_rows(OPENROUTER_FILES[0]) if isinstance(r, dict))
    record = openrouter.convert(row, "acct_plain")
    assert record["attempt"] == 1 and record["api_key_id"] == "openrouter:unknown"
    assert record["imported_from"] == {"gateway": "openrouter", "lacks": ["attempt", "api_key_id", "status"]}
    rows = [r for _, r in litellm.read_rows(LITELLM_FILES[0]) if isinstance(r, dict)]
    record = litellm.convert(rows[1], "acct_plain")
    assert "finish_reason" not in record and "stream" not in record
    assert record["imported_from"]["lacks"] == ["attempt", "stream", "finish_reason"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpt-5.5", "openai/gpt-5.5"),
        ("openai/gpt-5.5-pro", "openai/gpt-5.5-pro"),
        ("azure/GPT-5.5-2026-08-07", "openai/gpt-5.5"),
        ("deepseek/deepseek-v4-flash", "deepseek-v4-flash"),
        ("openrouter/openai/gpt-5.4-image-2", "openai/gpt-5.4-image-2"),
    ],
)
def test_model_names_map_to_infergate_ids(name: str, expected: str) -> None:
    assert model_id(name, "model") == expected


@pytest.mark.parametrize("name", ["gpt-5", "gpt-5.5-mini", "claude-sonnet-4-5", "deepseek-chat"])
def test_other_models_are_rejected(name: str) -> None:
    with pytest.raises(Rejected) as info:
        model_id(name, "model")
    assert info.value.reason == "unmapped_model"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0.0", "0"), ("1.2e-05", "0.000012"), (D("0.0215"), "0.0215"), (3, "3"), ("", None), (None, None)],
)
def test_costs_become_plain_decimal_strings(value: Any, expected: str | None) -> None:
    assert cost_text(value, "spend") == expected


@pytest.mark.parametrize("value", ["-0.1", "abc", "nan"])
def test_bad_costs_are_rejected(value: str) -> None:
    with pytest.raises(Rejected):
        cost_text(value, "spend")


@pytest.mark.parametrize("value", ["12.5", "-1", True, D("12.0"), D("12.5"), "1e3", 10**12])
def test_token_counts_must_be_integers(value: Any) -> None:
    with pytest.raises(Rejected) as info:
        count(value, "prompt_tokens")
    assert (info.value.field, info.value.reason) == ("prompt_tokens", "invalid_record")


def test_csv_digits_and_json_integers_are_counts() -> None:
    assert (count("1200", "prompt_tokens"), count(1200, "prompt_tokens")) == (1200, 1200)


@pytest.mark.parametrize(
    ("value", "naive_is_utc", "expected"),
    [
        ("2026-11-20 09:15:02.431", True, "2026-11-20T09:15:02.431000+00:00"),  # Prisma: UTC, no offset
        ("2026-11-30T23:30:00-08:00", False, "2026-11-30T23:30:00-08:00"),  # the offset is kept (E2)
        ("2026-11-20T10:00:00Z", False, "2026-11-20T10:00:00+00:00"),
    ],
)
def test_timestamps_carry_an_offset(value: str, naive_is_utc: bool, expected: str) -> None:
    assert timestamp(value, "ts", naive_is_utc=naive_is_utc) == expected


def litellm_row(**fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "request_id": "r1",
        "call_type": "acompletion",
        "api_key": "",
        "model": "gpt-5.5",
        "startTime": "2026-11-20 10:00:00",
        "prompt_tokens": 10,
        "completion_tokens": 5,
    }
    row.update(fields)
    return row


@pytest.mark.parametrize(
    ("error_code", "status", "code"),
    [("429", 429, "rate_limit_exceeded"), (503, 503, "upstream_error"), ("400", 400, "invalid_request")],
)
def test_litellm_failures_take_their_http_status(error_code: Any, status: int, code: str) -> None:
    metadata = {"status": "failure", "error_information": {"error_code": error_code}}
    record = litellm.convert(litellm_row(status="failure", metadata=metadata), "acct_plain")
    assert (record["status"], record["error_code"]) == (status, code)


def test_litellm_rows_without_status_are_successes_and_bad_counts_are_rejected() -> None:
    assert litellm.convert(litellm_row(), "acct_plain")["status"] == 200
    with pytest.raises(Rejected) as info:
        litellm.convert(litellm_row(completion_tokens="5.5"), "acct_plain")
    assert info.value.field == "completion_tokens"


def test_empty_exports_have_no_rows_and_a_bom_is_not_data(tmp_path: Path) -> None:
    (tmp_path / "empty.json").write_text("")
    assert list(litellm.read_rows(tmp_path / "empty.json")) == []
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + LITELLM_FILES[0].read_bytes())
    rows = [row for _, row in litellm.read_rows(bom)]
    assert isinstance(rows[0], dict) and rows[0]["request_id"] == "chatcmpl-CxR8a1Lq0v9GkE2sWm5nTq7Y"


def test_a_date_alone_is_not_a_timestamp() -> None:
    with pytest.raises(Rejected) as info:
        timestamp("2026-11-20", "startTime", naive_is_utc=True)
    assert info.value.reason == "bad_timestamp"
