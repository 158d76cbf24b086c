"""A deterministic generator of realistic gateway logs (``infergate.request_log.v1``).

The same seed gives the same bytes. The sample exercises every rating rule and reason code:
retries, failed statuses with usage, 499 partial streams, zero-output cut-offs, cached and
reasoning and image tokens in both usage shapes, attempts without usage (recount), unknown
accounts, unpriced models, offsets that cross the month in UTC, the exact month boundary,
late records, exact and conflicting duplicates, and malformed lines of every kind.
The benchmark uses :func:`generate_day` with a large ``requests`` count.
"""

from __future__ import annotations

import gzip
import io
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

ACCOUNTS = ("acct_acme", "acct_globex", "acct_initech", "acct_umbrella", "acct_hooli")
OPENAI_MODELS = ("openai/gpt-5.5-pro", "openai/gpt-5.5", "openai/gpt-5.4-image-2")
DEEPSEEK_MODELS = ("deepseek-v4-flash", "deepseek-v4-pro")
MODEL_WEIGHTS = {
    "openai/gpt-5.5": 40,
    "deepseek-v4-flash": 25,
    "deepseek-v4-pro": 15,
    "openai/gpt-5.5-pro": 12,
    "openai/gpt-5.4-image-2": 8,
}
OFFSETS = ("Z", "Z", "Z", "+01:00", "-08:00", "+05:30", "-05:00")
PROMPTS = (
    "Summarize the attached quarterly report in five bullet points.",
    "Translate to German: The invoice is due within thirty days.",
    "Write a Python function that parses RFC 3339 timestamps with offsets.",
    "Explain the difference between cached and uncached input tokens.",
    "¿Cuál es la capital de Australia? Responde en una frase.",
    "Draft a polite reply declining the meeting on Friday 🙂",
)


@dataclass
class Gen:
    """Random source and counters for one generated day."""

    rng: random.Random
    day: date
    seq: int = 0

    def next_id(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}_{self.day.strftime('%Y%m%d')}_{self.seq:07d}"


def _ts(instant: datetime, offset: str) -> str:
    """RFC 3339 text of ``instant`` written in the given offset."""
    if offset == "Z":
        return instant.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    sign = 1 if offset[0] == "+" else -1
    hours, minutes = int(offset[1:3]), int(offset[4:6])
    local = instant + sign * timedelta(hours=hours, minutes=minutes)
    return local.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + offset


def _usage(g: Gen, model: str, completion: int | None = None) -> dict[str, Any]:
    rng = g.rng
    prompt = rng.randint(120, 6000)
    completion = rng.randint(20, 1800) if completion is None else completion
    cached = rng.choice((0, 0, prompt // 2, prompt - prompt % 128)) if prompt > 1024 else 0
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if model.startswith("deepseek"):
        usage["prompt_cache_hit_tokens"] = cached
        usage["prompt_cache_miss_tokens"] = prompt - cached
        if model.endswith("pro") and completion:
            usage["completion_tokens_details"] = {"reasoning_tokens": rng.randint(0, completion)}
        return usage
    usage["prompt_tokens_details"] = {"cached_tokens": cached}
    details: dict[str, int] = {}
    if model.endswith("-pro") and completion:
        details["reasoning_tokens"] = rng.randint(completion // 3, completion)
    if "image" in model and completion:
        details["image_tokens"] = rng.randint(0, completion)
    if details:
        usage["completion_tokens_details"] = details
    return usage


def _attempt(
    g: Gen, request_id: str, account: str, model: str, number: int, instant: datetime, status: int = 200, **fields: Any
) -> dict[str, Any]:
    rng = g.rng
    provider = "deepseek" if model.startswith("deepseek") else rng.choice(("openai", "openai", "azure"))
    record: dict[str, Any] = {
        "event_id": g.next_id("evt"),
        "request_id": request_id,
        "attempt": number,
        "ts": _ts(instant, rng.choice(OFFSETS)),
        "duration_ms": rng.randint(150, 45000),
        "account_id": account,
        "api_key_id": f"key_{account[5:]}_{rng.randint(1, 3)}",
        "group": "default",
        "endpoint": "/v1/chat/completions",
        "model": model,
        "provider": provider,
        "status": status,
        "error_code": {
            200: None,
            499: "client_closed",
            503: "upstream_timeout",
            429: "rate_limit_exceeded",
            500: "internal_error",
            400: "invalid_request",
            401: "invalid_api_key",
        }.get(status),
        "stream": rng.random() < 0.4,
        "finish_reason": "stop" if status == 200 else None,
        "usage": _usage(g, model) if status == 200 else None,
    }
    if status == 200 and rng.random() < 0.08:
        record["finish_reason"] = rng.choice(("length", "tool_calls", "content_filter"))
    record.update(fields)
    return record


def _pick_model(rng: random.Random) -> str:
    models = list(MODEL_WEIGHTS)
    return rng.choices(models, weights=[MODEL_WEIGHTS[m] for m in models])[0]


def _request(g: Gen, instant: datetime, accounts: Sequence[str] = ACCOUNTS) -> list[dict[str, Any]]:
    """One client request: its attempts, drawn from a realistic scenario mix."""
    rng = g.rng
    account = rng.choice(accounts)
    if account == "acct_acme" and rng.random() < 0.5:
        model = "openai/gpt-5.5-pro"  # Acme runs premium reasoning and crosses its spend limit
    else:
        model = _pick_model(rng)
    rid = g.next_id("req")
    later = instant + timedelta(seconds=rng.randint(1, 20))
    roll = rng.random()
    if roll < 0.70:
        return [_attempt(g, rid, account, model, 1, instant)]
    if roll < 0.78:  # upstream failed (sometimes after reporting usage), retry succeeded
        usage = _usage(g, model) if rng.random() < 0.5 else None
        return [
            _attempt(g, rid, account, model, 1, instant, 503, usage=usage),
            _attempt(g, rid, account, model, 2, later),
        ]
    if roll < 0.81:  # two successful attempts: only the later one is billed
        return [_attempt(g, rid, account, model, 1, instant), _attempt(g, rid, account, model, 2, later)]
    if roll < 0.84:  # every attempt failed
        return [
            _attempt(g, rid, account, model, 1, instant, 429),
            _attempt(g, rid, account, model, 2, later, 500, usage=_usage(g, model)),
        ]
    if roll < 0.87:  # client error, usage present: InferGate's cost, never the customer's
        return [_attempt(g, rid, account, model, 1, instant, rng.choice((400, 401, 403)), usage=_usage(g, model))]
    if roll < 0.91:  # client closed a stream: billed for what was generated
        return [
            _attempt(
                g,
                rid,
                account,
                model,
                1,
                instant,
                499,
                stream=True,
                usage=_usage(g, model, completion=rng.randint(1, 400)),
            )
        ]
    if roll < 0.93:  # cut off before any output: zero-output insurance
        return [
            _attempt(
                g,
                rid,
                account,
                model,
                1,
                instant,
                rng.choice((200, 499)),
                finish_reason=None,
                usage=_usage(g, model, completion=0),
            )
        ]
    if roll < 0.96:  # no usage from the upstream, text kept for recount (R5)
        return [
            _attempt(
                g,
                rid,
                account,
                model,
                1,
                instant,
                rng.choice((200, 499)),
                usage=None,
                finish_reason=None,
                stream=True,
                messages=[
                    {"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": rng.choice(PROMPTS)},
                ],
                output_text="Here is a short answer, cut off mid-",
            )
        ]
    if roll < 0.97:  # no usage and no text: held as usage_missing
        return [_attempt(g, rid, account, model, 1, instant, usage=None)]
    if roll < 0.98:  # a redirect is not billable
        return [_attempt(g, rid, account, model, 1, instant, 302, usage=None)]
    return [_attempt(g, rid, account, model, 1, instant)]


def generate_day(day: date, requests: int, seed: int, accounts: Sequence[str] = ACCOUNTS) -> Iterator[dict[str, Any]]:
    """Realistic attempts for one UTC day, in time order (no deliberate defects).

    ``accounts``: the account ids requests are spread over (the benchmark passes 1,000); the
    default is the five accounts of the committed sample, whose bytes must not change.
    """
    g = Gen(random.Random(f"{seed}-{day.isoformat()}"), day)
    for instant in _request_instants(g, requests):
        yield from _request(g, instant, accounts)


def _request_instants(g: Gen, requests: int) -> Iterator[datetime]:
    """When each of a day's ``requests`` arrives: evenly spread, jittered within its share."""
    start = datetime(g.day.year, g.day.month, g.day.day, tzinfo=UTC)
    step = 86400 / max(requests, 1)  # allow-float: spacing of synthetic timestamps, not money
    for index in range(requests):
        yield start + timedelta(seconds=index * step + g.rng.random() * step)


CHAT_WORDS = (
    "the invoice usage tokens price model request gateway account billing statement "
    "nightly ingest replay auditor finance period cached reasoning output input upstream "
    "rate limit retry attempt stream DuckDB Parquet JSON schema decimal rounding cents"
).split()
CHAT_EXTRAS = (
    "数据",
    "計費",
    "トークン",
    "счёт",
    "فاتورة",
    "😀",
    "naïve",
    "def f(x):\n    return x * 2\n",
    '{"a": [1, 2, 3]}',
    "\n\n",
    "    ",
)


def chat_text(rng: random.Random, low: int, high: int) -> str:
    """A sentence-ish string of ``low``..``high`` words, some of them non-English or code."""
    words = [
        rng.choice(CHAT_EXTRAS) if rng.random() < 0.08 else rng.choice(CHAT_WORDS)
        for _ in range(rng.randint(low, high))
    ]
    return " ".join(words).capitalize() + "."


def chat_messages(rng: random.Random) -> list[dict[str, str]]:
    """A system prompt and one to three user turns (with the assistant's replies between)."""
    messages = [{"role": "system", "content": chat_text(rng, 5, 30)}]
    for turn in range(rng.randint(1, 3)):
        if turn:
            messages.append({"role": "assistant", "content": chat_text(rng, 10, 80)})
        messages.append({"role": "user", "content": chat_text(rng, 5, 120)})
    return messages


def generate_recount_day(
    day: date, requests: int, seed: int, accounts: Sequence[str] = ACCOUNTS
) -> Iterator[dict[str, Any]]:
    """A day on which no upstream reported usage: every attempt must be recounted (R5).

    One successful attempt per request, with its ``messages`` and ``output_text`` and no
    ``usage``, over the same models and accounts as :func:`generate_day`. The benchmark
    uses it to measure the recount at scale (about 260 input and 110 output tokens each).
    """
    g = Gen(random.Random(f"recount-{seed}-{day.isoformat()}"), day)
    rng = g.rng
    for instant in _request_instants(g, requests):
        yield _attempt(
            g,
            g.next_id("req"),
            rng.choice(accounts),
            _pick_model(rng),
            1,
            instant,
            usage=None,
            messages=chat_messages(rng),
            output_text=chat_text(rng, 20, 150),
        )


def _special_records(g: Gen, day: date) -> list[dict[str, Any]]:
    """Hand-placed records that exercise the edges SPEC.md names."""
    specials: list[dict[str, Any]] = []
    if day == date(2026, 11, 29):
        specials.append(
            _attempt(g, g.next_id("req"), "acct_ghost", "openai/gpt-5.5", 1, datetime(2026, 11, 29, 9, tzinfo=UTC))
        )  # unknown account
        specials.append(
            _attempt(
                g, g.next_id("req"), "acct_globex", "openai/gpt-4.1-mini", 1, datetime(2026, 11, 29, 10, tzinfo=UTC)
            )
        )  # unpriced model
        img = _attempt(
            g, g.next_id("req"), "acct_hooli", "openai/gpt-5.4-image-2", 1, datetime(2026, 11, 29, 11, tzinfo=UTC)
        )
        img["usage"] = {
            "prompt_tokens": 900,
            "completion_tokens": 4200,
            "total_tokens": 5100,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"image_tokens": 4160, "reasoning_tokens": 0},
        }
        specials.append(img)
    if day == date(2026, 11, 30):
        # 23:30 at -08:00 is 07:30 UTC on Dec 1: billed in December
        rec = _attempt(
            g, g.next_id("req"), "acct_initech", "openai/gpt-5.5", 1, datetime(2026, 12, 1, 7, 30, tzinfo=UTC)
        )
        rec["ts"] = "2026-11-30T23:30:00-08:00"
        specials.append(rec)
        last = _attempt(
            g,
            g.next_id("req"),
            "acct_globex",
            "deepseek-v4-pro",
            1,
            datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=UTC),
        )
        last["ts"] = "2026-11-30T23:59:59.999999Z"  # the last microsecond of November
        specials.append(last)
    if day == date(2026, 12, 1):
        first = _attempt(g, g.next_id("req"), "acct_globex", "deepseek-v4-pro", 1, datetime(2026, 12, 1, tzinfo=UTC))
        first["ts"] = "2026-12-01T00:00:00.000Z"  # exactly the start of December
        specials.append(first)
        for hour in (14, 18, 22):  # late records for November, arriving in December's file
            late = _attempt(
                g, g.next_id("req"), "acct_umbrella", "openai/gpt-5.5", 1, datetime(2026, 11, 30, hour, tzinfo=UTC)
            )
            specials.append(late)
    return specials


def _defects(g: Gen, victim: dict[str, Any]) -> list[str]:
    """Malformed lines and duplicates, one of each kind the quarantine must handle."""
    naive = dict(victim, event_id=g.next_id("evt"), ts=victim["ts"][:19])
    no_model = {k: v for k, v in victim.items() if k != "model"} | {"event_id": g.next_id("evt")}
    string_count = dict(victim, event_id=g.next_id("evt"), attempt="2")
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 10,
        "total_tokens": 110,
        "prompt_tokens_details": {"cached_tokens": 150},
    }
    bad_usage = dict(victim, event_id=g.next_id("evt"), usage=usage)
    conflict = dict(victim, status=500)  # same event_id, different content
    leaked = dict(
        victim, event_id=g.next_id("evt"), api_key_id=12345, error_code="auth failed for sk-live-4f9a8b7c6d5e4f3a2b1c"
    )
    lines = [json.dumps(r) for r in (naive, no_model, string_count, bad_usage, conflict, leaked)]
    lines.append(json.dumps(victim))  # an exact duplicate: counted, changes nothing
    lines.append(json.dumps(victim)[:57])  # a line cut off mid-write
    return lines


def day_lines(day: date, requests: int, seed: int) -> list[str]:
    """The JSON lines of one sample day: realistic traffic, the edge cases, the defects."""
    good = list(generate_day(day, requests, seed))
    g = Gen(random.Random(f"{seed}-{day.isoformat()}-specials"), day, seq=10_000_000)
    good += _special_records(g, day)
    lines = [json.dumps(r) for r in good]
    rng = random.Random(f"{seed}-{day.isoformat()}-positions")
    victim_index = rng.randrange(len(good) // 2)
    for line in _defects(g, good[victim_index]):  # after the original, so the original stands
        lines.insert(rng.randint(victim_index + 1, len(lines)), line)
    return lines


def write_gzip(path: Path, lines: list[str]) -> None:
    data = ("\n".join(lines) + "\n").encode()
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(data)


def write_zstd(path: Path, lines: list[str]) -> None:
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(zstandard.ZstdCompressor(level=9).compress(data))


PARQUET_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("request_id", pa.string()),
        ("attempt", pa.int64()),
        ("ts", pa.string()),
        ("duration_ms", pa.int64()),
        ("account_id", pa.string()),
        ("api_key_id", pa.string()),
        ("group", pa.string()),
        ("endpoint", pa.string()),
        ("model", pa.string()),
        ("provider", pa.string()),
        ("status", pa.int64()),
        ("error_code", pa.string()),
        ("stream", pa.bool_()),
        ("finish_reason", pa.string()),
        (
            "usage",
            pa.struct(
                [
                    ("prompt_tokens", pa.int64()),
                    ("completion_tokens", pa.int64()),
                    ("total_tokens", pa.int64()),
                    ("prompt_tokens_details", pa.struct([("cached_tokens", pa.int64())])),
                    (
                        "completion_tokens_details",
                        pa.struct([("reasoning_tokens", pa.int64()), ("image_tokens", pa.int64())]),
                    ),
                    ("prompt_cache_hit_tokens", pa.int64()),
                    ("prompt_cache_miss_tokens", pa.int64()),
                ]
            ),
        ),
    ]
)


def write_parquet(path: Path, records: list[dict[str, Any]]) -> None:
    table = pa.Table.from_pylist(records, schema=PARQUET_SCHEMA)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    path.write_bytes(sink.getvalue())


def write_sample_logs(out_dir: Path, seed: int = 20261129, requests_per_day: int = 500) -> list[Path]:
    """The committed sample: three days across the November/December boundary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    day1, day2, day3 = date(2026, 11, 29), date(2026, 11, 30), date(2026, 12, 1)
    path = out_dir / f"requests-{day1}.jsonl.gz"
    write_gzip(path, day_lines(day1, requests_per_day, seed))
    written.append(path)
    path = out_dir / f"requests-{day2}.jsonl.zst"
    write_zstd(path, day_lines(day2, requests_per_day, seed))
    written.append(path)
    path = out_dir / f"requests-{day3}.jsonl.gz"
    write_gzip(path, day_lines(day3, requests_per_day, seed))
    written.append(path)
    # a second gateway region writes Parquet; its records are clean
    eu = [r for r in generate_day(day3, requests_per_day // 4, seed + 1) if "messages" not in r]
    for record in eu:
        record["event_id"] = "eu-" + record["event_id"]
        record["request_id"] = "eu-" + record["request_id"]
    path = out_dir / f"requests-{day3}-eu.parquet"
    write_parquet(path, eu)
    written.append(path)
    return written
