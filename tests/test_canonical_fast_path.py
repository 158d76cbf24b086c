"""parse.sql's canonical form has a fast path (docs/performance.md, "Nightly vs. the bare scan"):
a line without a backslash whose keys are all ones it knows gets its canonical form written from
the fields json_transform read, instead of the JSON-to-VARIANT cast. R1 dedup compares
``content_sha256`` of that form with the ones stored by earlier runs, so the fast path must give
the very bytes of the cast, for every line.

Differential: the same lines through parse.sql with the fast path on and off
(``staging.CANONICAL_FAST_PATH``) must give the same ``parsed`` rows, and the same canonical
text (parse.sql run with the canonical text in place of its sha256). The lines are written by
:func:`line_text` with the spellings that could tell the two apart: key order, whitespace,
``\\u`` and ``\\/`` escapes, raw Unicode, numbers as 1, 1.0, 1e3, -0 and beyond 64 bits, nested
usage objects with unknown or repeated keys, empty objects and arrays.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.ingest import staging
from pipeline.ingest.files import file_sha256
from pipeline.sample_logs import generate_day
from tests.conftest import examples
from tests.hostile import hostile_lines, write_hostile_day

ROOT = Path(__file__).resolve().parents[1]
HASH = "sha256(coalesce(canonical_form,"  # parse.sql's content_sha256: the canonical form, hashed
FAST = "CASE WHEN recon_taken THEN recon"  # the fast path's canonical form, when taken


def _sql(edit: Callable[[str], str]) -> Callable[[str], str]:
    original = staging.sql_text

    def patched(name: str) -> str:
        text = original(name)
        if name == "parse.sql":
            edited = edit(text)
            assert edited != text, "parse.sql no longer has the text this test replaces"
            return edited
        return text

    return patched


def parse(con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch, *, fast: bool, mode: str = "rows") -> str:
    """parse_staged over the staged lines into a copy of ``parsed``; its name.

    mode ``rows``: parse.sql as it is; ``text``: content_sha256 holds the canonical text itself;
    ``marked``: the fast path's canonical form is the text 'fast path' (to count the lines that
    take it)."""
    with monkeypatch.context() as m:
        m.setattr(staging, "CANONICAL_FAST_PATH", fast)
        if mode == "text":
            m.setattr(staging, "sql_text", _sql(lambda s: s.replace(HASH, "(coalesce(canonical_form,")))
        elif mode == "marked":
            m.setattr(staging, "sql_text", _sql(lambda s: s.replace(FAST, "CASE WHEN recon_taken THEN 'fast path'")))
        staging.parse_staged(con)
    name = f"parsed_{'fast' if fast else 'slow'}_{mode}"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS FROM parsed")
    return name


def stage_lines(lines: list[str]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    staging.create_staging(con)
    con.executemany(
        "INSERT INTO staged_lines VALUES (0, 'generated.jsonl', 'sha', ?, ?, NULL)",
        [(i, line) for i, line in enumerate(lines, start=1)],
    )
    return con


def stage_files(paths: list[Path]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    staging.create_staging(con)
    for order, path in enumerate(paths):
        staging.stage_file(con, path, order, file_sha256(path))
    return con


def assert_same(con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """Both paths give the same rows and canonical texts; (lines, lines on the fast path)."""
    fast, slow = parse(con, monkeypatch, fast=True), parse(con, monkeypatch, fast=False)
    for a, b in ((fast, slow), (slow, fast)):
        extra = con.execute(f"FROM (FROM {a} EXCEPT ALL FROM {b}) LIMIT 3").fetchall()
        assert extra == [], f"rows of {a} not in {b}: {str(extra)[:600]}"
    fast_text, slow_text = (parse(con, monkeypatch, fast=f, mode="text") for f in (True, False))
    differ = con.execute(
        f"""SELECT s.line_no, s.content_sha256 AS variant, f.content_sha256 AS fast
            FROM {slow_text} s JOIN {fast_text} f USING (file_order, line_no)
            WHERE s.content_sha256 IS DISTINCT FROM f.content_sha256 LIMIT 3"""
    ).fetchall()
    assert differ == [], f"canonical texts differ: {differ}"
    # the texts are what is hashed (the edit above is the one intended)
    hashed = con.execute(
        f"""SELECT count(*) FROM {fast_text} t JOIN {fast} r USING (file_order, line_no)
            WHERE sha256(t.content_sha256) IS DISTINCT FROM r.content_sha256"""
    ).fetchone()
    assert hashed == (0,)
    marked = parse(con, monkeypatch, fast=True, mode="marked")
    row = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE content_sha256 = sha256('fast path')) FROM {marked}"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


# --------------------------------------------------------------------------- line writer

CHARS = [*"aZ09 -_:.,{}[]'\"\\/", "\x00", "\x01", "\x1f", "\x7f", "\u00e9", "\u4e2d", "\U0001f600", "\u2028", "\ufeff"]
strings = st.one_of(
    st.text(st.sampled_from(CHARS), max_size=8),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6),
    st.sampled_from(("", "NaN", "Infinity", "1e999", "null", "true", '{"a":1}', "sk-live-0123456789abcdefgh")),
)
NUMBERS = (
    "0", "1", "-1", "-0", "1.0", "-0.0", "1e3", "1E3", "1e+3", "1e-3", "10.50", "0.1",
    "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
    "18446744073709551615", "18446744073709551616", "1" + "0" * 30, "999999999999", "1000000000000",
)  # fmt: skip
numbers = st.one_of(
    st.sampled_from(NUMBERS),
    st.integers(-(2**66), 2**66).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)


class Raw(str):
    """A number, true/false/null, or any text written into the line as it is."""


scalars = st.one_of(strings, numbers.map(Raw), st.sampled_from((Raw("true"), Raw("false"), Raw("null"))))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.lists(st.tuples(strings, inner), max_size=3).map(dict),
    max_leaves=5,
)

TOP = ("event_id", "request_id", "attempt", "ts", "duration_ms", "account_id", "api_key_id", "group", "endpoint",
       "model", "provider", "status", "error_code", "stream", "finish_reason", "usage", "messages", "output_text",
       "upstream_cost_usd")  # fmt: skip
USAGE = ("prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details", "completion_tokens_details",
         "prompt_cache_hit_tokens", "prompt_cache_miss_tokens")  # fmt: skip
DETAILS = {
    "prompt_tokens_details": ("cached_tokens",),
    "completion_tokens_details": ("reasoning_tokens", "image_tokens"),
}


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    """A log record (SPEC section 1), mostly the common shape, with drawn deviations."""
    n = draw(st.integers(0, 10**6))
    rec: dict[str, Any] = {
        "event_id": f"evt-{n}",
        "request_id": f"req-{n}",
        "attempt": Raw(draw(st.sampled_from(("1", "2", "1", "1.0", "-0", "0")))),
        "ts": draw(st.sampled_from(("2026-11-20T12:00:00Z", "2026-11-20T12:00:00.123+01:00", "2026-11-20 12:00:00"))),
        "duration_ms": Raw(str(draw(st.integers(0, 50000)))),
        "account_id": "acct_plain",
        "api_key_id": "key_1",
        "group": "default",
        "endpoint": "/v1/chat/completions",
        "model": draw(st.sampled_from(("openai/gpt-5.5", "deepseek-v4-pro", "m\u00e9"))),
        "provider": "openai",
        "status": Raw(draw(st.sampled_from(("200", "503", "429", "499")))),
        "error_code": Raw("null"),
        "stream": Raw(draw(st.sampled_from(("true", "false")))),
        "finish_reason": draw(st.sampled_from(("stop", Raw("null")))),
    }
    usage: dict[str, Any] | Raw = Raw("null")
    if draw(st.booleans()):
        usage = {
            k: Raw(str(draw(st.integers(0, 5000))))
            for k in draw(st.lists(st.sampled_from(USAGE[:3] + USAGE[5:]), unique=True))
        }
        for name, keys in DETAILS.items():
            if draw(st.booleans()):
                usage[name] = {
                    k: Raw(str(draw(st.integers(0, 100)))) for k in draw(st.lists(st.sampled_from(keys), unique=True))
                }
    rec["usage"] = usage
    for key in draw(st.lists(st.sampled_from(TOP), max_size=3, unique=True)):  # dropped or any value
        if draw(st.booleans()):
            rec.pop(key, None)
        else:
            rec[key] = draw(values)
    if isinstance(rec.get("usage"), dict) and draw(st.integers(0, 3)) == 0:  # any value in usage
        target = rec["usage"]
        if draw(st.booleans()):
            target = target.setdefault(draw(st.sampled_from(list(DETAILS))), {})
            if not isinstance(target, dict):
                target = rec["usage"]
        target[draw(st.sampled_from((*USAGE, "cached_tokens", "reasoning_tokens", "event_id", "x")))] = draw(values)
    for _ in range(draw(st.integers(0, 3)) // 3):  # an unknown key, or a known one's other spelling
        rec[draw(st.one_of(strings, st.sampled_from(("Event_ID", "usage ", "x"))))] = draw(values)
    return rec


@st.composite
def line_text(draw: st.DrawFn) -> str:
    """One record as a JSON text, spelled in a drawn way."""
    rec = draw(records())
    ws = draw(st.sampled_from(("", "", " ", "\t", " \t ")))
    ascii_only = draw(st.booleans())
    escape_slash = draw(st.integers(0, 5)) == 0
    shuffle = random.Random(draw(st.integers(0, 2**32)))
    order = draw(st.sampled_from(("as_is", "as_is", "shuffled", "sorted", "reversed")))
    repeat = draw(st.integers(0, 9)) == 0  # a key written twice (at the root or in usage)

    def text(s: str) -> str:
        out = json.dumps(s, ensure_ascii=ascii_only)
        return out.replace("/", "\\/") if escape_slash else out

    def write(v: Any, depth: int) -> str:
        if isinstance(v, Raw):
            return str(v)
        if isinstance(v, str):
            return text(v)
        if isinstance(v, list):
            return "[" + ws + f"{ws},{ws}".join(write(x, depth + 1) for x in v) + ws + "]"
        items = list(v.items())
        if order == "shuffled":
            shuffle.shuffle(items)
        elif order == "sorted":
            items.sort()
        elif order == "reversed":
            items.reverse()
        if repeat and depth < 2 and items:
            items.append(items[shuffle.randrange(len(items))])
        members = [f"{text(k)}{ws}:{ws}{write(x, depth + 1)}" for k, x in items]
        return "{" + ws + f"{ws},{ws}".join(members) + ws + "}"

    return draw(st.sampled_from(("", " "))) + write(rec, 0)


# --------------------------------------------------------------------------- the tests

EDGES = [  # spellings named in the fast path's reasoning (parse.sql, `recon`), each once
    "{}",
    '{"usage":{}}',
    '{"usage":{"prompt_tokens_details":{},"completion_tokens_details":{}}}',
    '{"usage":{"prompt_tokens_details":[],"completion_tokens_details":null}}',
    '{"attempt":-0,"status":200.0,"duration_ms":1e3}',
    '{"attempt":9223372036854775807,"status":9223372036854775808,"duration_ms":-9223372036854775808}',
    '{"attempt":18446744073709551615,"status":-9223372036854775809}',
    r'{"model":"a/b\u007f \u00e9 \u2028 \ud83d\ude00","provider":"\/"}',  # JSON escapes
    '{"model":"a/b\x7f \u00e9 \u2028 \U0001f600"}',  # the same characters, raw
    '{"messages":null,"output_text":null,"usage":null,"error_code":null}',
    '{"messages":[],"output_text":""}',
    '{"finish_reason":null,"usage":{"finish_reason":"stop"}}',
    '{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":1}}',
    '{"Event_ID":"x","event_id":"x"}',
    '{"event_id" : "x" , "attempt" :1}',
    # the line's keys are counted on the line itself: blanks before one colon only, beside a
    # key the fast path does not know (counting `":` alone would miss the first and match)
    '{"x":1,"event_id" :"e"}',
    '{"x":1,"event_id"\t:"e"}',
    # strings starting with a colon, as values (in recon or not) and as keys
    '{"model":":x","event_id":":e"}',
    '{"model":":x","x":":y"}',
    '{":x":1,"event_id":"e"}',
    '{"event_id":" :e","model":"m"}',
]


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(line_text(), min_size=20, max_size=60))
def test_fast_path_gives_the_variants_bytes(lines: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Drawn spellings: both paths, the same rows and canonical text for every line."""
    plain = [json.dumps(r) for r in itertools.islice(generate_day(date(2026, 11, 20), 20, 7), 20)]
    con = stage_lines(plain + EDGES + lines)
    total, fast = assert_same(con, monkeypatch)
    assert total == len(plain) + len(EDGES) + len(lines)
    assert fast >= sum(1 for line in plain if '"messages"' not in line)  # the test exercises the fast path


def test_generated_day_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bench-like day: every line without prompt text takes the fast path, with the same bytes."""
    recs = list(
        itertools.islice(
            generate_day(date(2026, 12, 31), 3000, 20261231, [f"acct_b{i:05d}" for i in range(1, 51)]), 3000
        )
    )
    lines = [json.dumps(r) for r in recs]
    con = stage_lines(lines)
    total, fast = assert_same(con, monkeypatch)
    assert total == len(lines)
    assert fast == sum(1 for r in recs if "messages" not in r and "output_text" not in r)
    assert fast >= 0.95 * total


def test_sample_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    paths = sorted((ROOT / "data" / "sample_logs").glob("requests-*"))
    assert len(paths) >= 3
    total, fast = assert_same(stage_files(paths), monkeypatch)
    assert fast >= 0.95 * total


@settings(max_examples=examples(9), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=st.lists(hostile_lines(), min_size=5, max_size=30))
def test_hostile_day(
    drawn: list[Any], monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """docs/hostile-input.md's generator: both paths, the same rows (quarantine messages too)."""
    logs = tmp_path_factory.mktemp("hostile")
    total, fast = assert_same(stage_files(write_hostile_day(logs, drawn)), monkeypatch)
    assert fast > 0 and total > fast
