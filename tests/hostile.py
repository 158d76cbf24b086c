"""Hostile log input for the fuzz tests and the soak: strategies and file writers.

A hostile line starts as a valid record and gets arbitrary JSON values in any field (wrong
types, integers beyond 2^64, NaN/Infinity, deep nesting, lone surrogates, API keys), then
possibly a byte-level injury (truncation, invalid UTF-8, NUL, a lone CR, our read_csv
delimiter \\x1e\\x1f). Hostile files are written in every kind, or injured as files (a cut
gzip stream, zero bytes, a corrupt Parquet body). Valid records are a fixed set, so a test
can bill them once alone and compare.
"""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import zstandard
from hypothesis import strategies as st

from pipeline.ingest import discover
from tests.conftest import record, usage

DAY = "2026-11-20"
FIELDS = (
    "event_id",
    "request_id",
    "attempt",
    "ts",
    "duration_ms",
    "account_id",
    "api_key_id",
    "group",
    "endpoint",
    "model",
    "provider",
    "status",
    "error_code",
    "stream",
    "finish_reason",
    "usage",
    "messages",
    "output_text",
    "upstream_cost_usd",
)
KEY = "sk-proj-HOSTILEKEY0123456789abcdef"
INJURIES = ("none", "none", "none", "truncate", "invalid_utf8", "nul", "lone_cr", "delimiter", "crlf", "bom")
DEEP = "\x00DEEP\x00"  # placeholder a line writer replaces with raw nesting


def valid_records() -> list[dict[str, Any]]:
    """Fixed valid records: retries, every account, both usage shapes, R5 estimates, CRLF-safe."""
    day = f"{DAY}T"
    out = [
        record(event_id="v-1", request_id="vr-1", ts=day + "01:00:00Z", usage=usage(1200, 300, cached=200)),
        record(event_id="v-2", request_id="vr-2", ts=day + "02:00:00+05:30", account_id="acct_discount"),
        record(
            event_id="v-3a",
            request_id="vr-3",
            attempt=1,
            ts=day + "03:00:00Z",
            status=503,
            finish_reason=None,
            usage=usage(500, 0),
        ),
        record(event_id="v-3b", request_id="vr-3", attempt=2, ts=day + "03:00:02Z", usage=usage(500, 80)),
        record(
            event_id="v-4",
            request_id="vr-4",
            ts=day + "04:00:00Z",
            account_id="acct_enterprise",
            model="deepseek-v4-flash",
            provider="deepseek",
            usage={
                "prompt_tokens": 900,
                "completion_tokens": 90,
                "total_tokens": 990,
                "prompt_cache_hit_tokens": 600,
                "prompt_cache_miss_tokens": 300,
            },
        ),
        record(
            event_id="v-5",
            request_id="vr-5",
            ts=day + "05:00:00Z",
            account_id="acct_partner",
            usage=None,
            messages=[{"role": "user", "content": "Count me \U0001f600 please"}],
            output_text="Counted \u00e9\u00e8 \U0001f680",
        ),
        record(event_id="v-6", request_id="vr-6", ts=day + "06:00:00Z", account_id="acct_override", status=499),
        record(event_id="v-7", request_id="vr-7", ts=day + "23:59:59.9999999Z", usage=usage(10, 1)),
        record(event_id="v-8", request_id="vr-8", ts=day + "08:00:00Z", status=429, error_code="rate_limit_exceeded"),
        record(
            event_id="v-9",
            request_id="vr-9",
            ts=day + "09:00:00Z",
            account_id="acct_ghost",
            usage=usage(100, 10, reasoning=5),
        ),
    ]
    return out


def _text() -> st.SearchStrategy[str]:
    # every code point, lone surrogates included (json.dumps writes them as \\udXXX escapes)
    return st.one_of(
        st.text(st.characters(codec=None, exclude_categories=()), max_size=12),
        st.sampled_from(("", " ", "sk-live-0123456789abcdefgh", "\ud800", "x\udfffy", "\ufeff", "NaN", "1e999")),
    )


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(2**64 - 2, 2**64 + 2),
    st.sampled_from((0, -1, 1, 10**12, 2**63, -(2**63) - 1, 10**400)),
    st.floats(allow_nan=True, allow_infinity=True),
    _text(),
    st.just(DEEP),
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text(), inner, max_size=3),
    max_leaves=6,
)


@dataclass(frozen=True)
class HostileLine:
    """One hostile line: the record, how it is serialized, and the byte injury after that."""

    fields: dict[str, Any]
    ascii_only: bool
    depth: int
    injury: str
    at: float

    def to_bytes(self) -> bytes:
        text = json.dumps(self.fields, ensure_ascii=self.ascii_only)
        text = text.replace(json.dumps(DEEP), "[" * self.depth + "]" * self.depth)
        data = text.encode("utf-8", "surrogatepass")  # a raw lone surrogate: invalid UTF-8
        cut = int(len(data) * self.at)
        injuries = {
            "none": data,
            "truncate": data[:cut],
            "invalid_utf8": data[:cut] + b"\xff\xfe" + data[cut:],
            "nul": data[:cut] + b"\x00" + data[cut:],
            "lone_cr": data[:cut] + b"\r" + data[cut:],
            "delimiter": data[:cut] + b"\x1e\x1f" + data[cut:],
            "crlf": data + b"\r",
            "bom": b"\xef\xbb\xbf" + data,
        }
        return injuries[self.injury]


@st.composite
def hostile_lines(draw: st.DrawFn, n: int = 0) -> HostileLine:
    """A record with arbitrary JSON values in some fields, some fields dropped or added."""
    base = record(event_id=f"junk-{n}-{draw(st.integers(0, 10**6))}", request_id=f"junk-req-{n}", ts=f"{DAY}T10:00:00Z")
    chosen = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=4, unique=True))
    for name in chosen:
        if draw(st.integers(0, 5)) == 0:
            base.pop(name, None)
        else:
            base[name] = draw(json_values)
    for _ in range(draw(st.integers(0, 2))):
        base[draw(_text())] = draw(json_values)
    injury = draw(st.sampled_from(INJURIES))
    return HostileLine(base, draw(st.booleans()), draw(st.sampled_from((1, 50, 5000))), injury, draw(st.floats(0, 1)))


def is_blank(line: bytes) -> bool:
    """The pipeline's rule: only spaces, tabs and CR is not a record."""
    return line.strip(b" \t\r") == b""


def non_blank_lines(data: bytes) -> int:
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return sum(1 for line in lines if not is_blank(line))


def write_lines(path: Path, lines: list[bytes]) -> bytes:
    """Write raw lines in the kind the name says; returns the uncompressed bytes."""
    data = b"".join(line + b"\n" for line in lines)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(data, mtime=0))
    elif path.name.endswith(".zst"):
        path.write_bytes(zstandard.ZstdCompressor().compress(data))
    else:
        path.write_bytes(data)
    return data


def json_line(value: dict[str, Any], crlf: bool = False) -> bytes:
    return json.dumps(value).encode() + (b"\r" if crlf else b"")


def finite(value: Any) -> bool:
    return not (isinstance(value, float) and (math.isnan(value) or math.isinf(value)))


def write_hostile_day(logs: Path, drawn: list[HostileLine]) -> list[Path]:
    """Seven files of a hostile day, in every kind, the drawn lines among the valid records and
    fixed hostile lines (a future ts, an API key as an id, a repeated key, deep nesting, a lone
    surrogate, a BOM, CRLF, a line over 1 MiB), a cut gzip stream, an unreadable Parquet file,
    a zero-byte file; returned in the batch's order."""
    valid = [json_line(r) for r in valid_records()]
    fixed = [
        json_line(record(event_id="future", ts="2026-11-23T00:00:00Z")),  # past TS_LATEST
        json_line(record(event_id=KEY, request_id="r-key")),  # an API key as an id
        b'{"event_id": "twice", "event_id": "again", "request_id": "r"}',  # a repeated key
        json_line(record(event_id="deep", messages=[{"role": "user", "content": "x"}])).replace(
            b'"x"', b"[" * 3000 + b"]" * 3000
        ),
        json_line(record(event_id="surrogate", output_text="cut \ud83d")),  # a lone half, escaped
        json_line(record(event_id="usage", usage=usage(10, 5, cached=2, reasoning=1))),
        b"\xef\xbb\xbf" + json_line(record(event_id="bom")),
        json_line(record(event_id="crlf")) + b"\r",
        b"not json",
        b" \t\r",  # blank: not a record
        json_line(record(event_id="big", output_text="y" * (1 << 20 | 7))),  # over 1 MiB
    ]
    hostile = [line.to_bytes() for line in drawn]
    write_lines(logs / f"requests-{DAY}-a.jsonl", valid[:4] + hostile[::2] + fixed)
    write_lines(logs / f"requests-{DAY}-b.jsonl.gz", hostile[1::2] + valid[4:])
    write_lines(logs / f"requests-{DAY}-c.jsonl.zst", [json_line(record(event_id=f"z{i}")) for i in range(20)])
    whole = gzip.compress(b"".join(json_line(record(event_id=f"g{i}")) + b"\n" for i in range(40)), mtime=0)
    (logs / f"requests-{DAY}-d.jsonl.gz").write_bytes(whole[: len(whole) * 2 // 3])  # a cut stream
    (logs / f"requests-{DAY}-e.parquet").write_bytes(b"PAR1" + b"\x00" * 64 + b"PAR1")  # unreadable
    (logs / f"requests-{DAY}-f.jsonl.zst").write_bytes(b"")
    good = logs / f"requests-{DAY}-g.parquet"
    source = _write_jsonl(logs / "parquet-source.json", [record(event_id=f"p{i}") for i in range(5)])
    duckdb.sql(f"COPY (SELECT * FROM read_json('{source}', format='newline_delimited')) TO '{good}' (FORMAT parquet)")
    paths = discover([str(logs / "requests-*")])
    assert len(paths) == 7
    return paths


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path
