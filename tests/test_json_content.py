"""What a JSON record *is* (SPEC section 1 and R1), whatever its spelling.

- An object that repeats a key, at any depth, is not a record: which value wins differs
  between JSON readers, so the line is a ``parse_error`` naming the key, never billed, even
  when both values are equal.
- Two lines with the same event_id and the same parsed content (keys in another order, other
  whitespace, ``\\u`` escapes, in any field, including fields no rule reads) are one record
  (R1 duplicate), in one batch or across runs, in either order; any real difference in any
  field (a value, a type: 1 vs 1.0 vs "1", null vs absent, array order) is a conflict.

Lines here are written by :func:`dump`, a JSON writer that can reorder keys, indent, escape
string characters and repeat a key, so each line says exactly what is being tested.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import ingest, replay
from tests.conftest import Billing, edit_stored_attempts, examples, record, usage
from tests.hostile import DAY, write_lines

Path_ = tuple[str | int, ...]  # keys and array indexes from the record's root to an object
SLOW = settings(max_examples=examples(10), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def dump(
    value: Any,
    *,
    reverse: bool = False,
    space: str = "",
    escape: str = "",
    repeat: tuple[Path_, str, Any, bool] | None = None,
    _at: Path_ = (),
) -> str:
    """JSON text of ``value``: keys reversed, ``space`` around separators, characters in
    ``escape`` written as ``\\uXXXX`` (in keys and values), and ``repeat = (path, key, value,
    first)`` adding a second member ``key`` to the object at ``path`` (before its others if
    ``first``)."""

    def char(c: str) -> str:
        if c not in escape:
            return json.dumps(c)[1:-1]
        units = c.encode("utf-16-be")  # a character beyond U+FFFF is a surrogate pair
        return "".join(f"\\u{int.from_bytes(units[i : i + 2], 'big'):04x}" for i in range(0, len(units), 2))

    def text(s: str) -> str:
        return '"' + "".join(char(c) for c in s) + '"'

    def inner(v: Any, at: Path_) -> str:
        return dump(v, reverse=reverse, space=space, escape=escape, repeat=repeat, _at=at)

    if isinstance(value, dict):
        items = list(value.items())[::-1] if reverse else list(value.items())
        members = [f"{text(k)}{space}:{space}{inner(v, (*_at, k))}" for k, v in items]
        if repeat is not None and repeat[0] == _at:
            extra = f"{text(repeat[1])}{space}:{space}{json.dumps(repeat[2])}"
            members = [extra, *members] if repeat[3] else [*members, extra]
        return "{" + f",{space}".join(members) + "}"
    if isinstance(value, list):
        return "[" + f",{space}".join(inner(v, (*_at, i)) for i, v in enumerate(value)) + "]"
    if isinstance(value, str):
        return text(value)
    return json.dumps(value)


def rich(event_id: str, **fields: Any) -> dict[str, Any]:
    """A billable record with text, nesting and fields no rule reads."""
    defaults: dict[str, Any] = {
        "usage": usage(1000, 100, cached=200, reasoning=40),
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "café ☕ naïve \U0001f600"},
        ],
        "output_text": "d'accord: «oui»",
        "client": {"sdk": "py", "retries": [1, 2.5, {"why": "timeout", "n": None}], "tags": []},
    }
    return record(event_id=event_id, **(defaults | fields))


def quarantine(billing: Billing) -> list[tuple[Any, ...]]:
    return billing.query("SELECT source_line, reason, field, message FROM quarantine ORDER BY source_file, source_line")


def nightly(billing: Billing, files: dict[str, list[str]], day: str = DAY) -> list[Any]:
    for name, lines in files.items():
        write_lines(billing.logs / name, [line.encode() for line in lines])
    report = billing.nightly(day)
    for f in report.files:
        assert f.lines_read == f.accepted + f.duplicates + f.quarantined
    return [f for f in report.files if not f.skipped]


# --- two nightlies for the cases that each hold files of their own ----------------------------
# A one-record nightly costs about 0.7 CPU-s, most of it fixed. The parametrized cases below
# each write files of their own (a first night's, and for the later-run cases a second night's)
# around an event_id no other case uses, and assert only on what their files' lines became
# (counts, quarantine entries, attempts, their event's rated rows). R1 dedup goes by event_id,
# so no case's verdict depends on another's lines: two nightlies (DAY, then DAY_2) read them
# all, in the ``nights`` fixture.

DAY_2 = "2026-11-21"
NIGHT_1: dict[str, list[str]] = {}  # file name -> its lines, read by the nightly of DAY
NIGHT_2: dict[str, list[str]] = {}  # and by the nightly of DAY_2, after it


def batched(night: dict[str, list[str]], name: str, lines: list[str]) -> str:
    name = f"requests-{DAY if night is NIGHT_1 else DAY_2}-{name}"
    assert name not in NIGHT_1 and name not in NIGHT_2, name
    night[name] = lines
    return name


@dataclass(frozen=True)
class Nights:
    files: dict[str, Any]  # file name -> its FileResult, of either night
    quarantined: list[tuple[str, tuple[Any, ...]]]  # (file name, what quarantine() gives), in its order
    attempts: list[tuple[str, str]]  # (file name, event_id)
    rated_after_first: dict[str, list[dict[str, Any]]]  # event_id -> its rated rows but rated_run_id
    rated_after_second: dict[str, list[dict[str, Any]]]

    def file(self, name: str) -> Any:
        assert name in self.files, name
        return self.files[name]

    def quarantine(self, *names: str) -> list[tuple[Any, ...]]:
        """What :func:`quarantine` gives, for these files' lines only."""
        return [row for name, row in self.quarantined if name in names]

    def attempt_ids(self, *names: str) -> list[tuple[str]]:
        return [(event_id,) for name, event_id in self.attempts if name in names]


def _rated_by_event(billing: Billing) -> dict[str, list[dict[str, Any]]]:
    rated = billing.records("SELECT * EXCLUDE (rated_run_id) FROM rated_attempts")
    rows: dict[str, list[dict[str, Any]]] = {}
    for row in rated:
        rows.setdefault(row["event_id"], []).append(row)
    return rows


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> Nights:
    billing = Billing(tmp_path_factory.mktemp("nights"))
    files = {Path(f.path).name: f for f in nightly(billing, NIGHT_1)}
    rated_after_first = _rated_by_event(billing)
    files |= {Path(f.path).name: f for f in nightly(billing, NIGHT_2, day=DAY_2)}
    assert sorted(files) == sorted([*NIGHT_1, *NIGHT_2])
    quarantined = [
        (Path(source_file).name, tuple(row))
        for source_file, *row in billing.query(
            "SELECT source_file, source_line, reason, field, message FROM quarantine ORDER BY source_file, source_line"
        )
    ]
    attempts = [(Path(f).name, e) for f, e in billing.query("SELECT source_file, event_id FROM attempts")]
    return Nights(files, quarantined, attempts, rated_after_first, _rated_by_event(billing))


# --- repeated keys ----------------------------------------------------------------------------

REPEATS = [
    # (object path, key, the repeated value, field named, text the message must hold)
    ((), "status", 503, "status", 'repeated key "status"'),
    ((), "event_id", "other", "event_id", 'repeated key "event_id"'),
    (("usage",), "prompt_tokens", 1, "usage.prompt_tokens", 'repeated key "prompt_tokens" in usage'),
    (
        ("usage", "prompt_tokens_details"),
        "cached_tokens",
        0,
        "usage.prompt_tokens_details.cached_tokens",
        'repeated key "cached_tokens" in usage.prompt_tokens_details',
    ),
    (
        ("usage", "completion_tokens_details"),
        "reasoning_tokens",
        0,
        "usage.completion_tokens_details.reasoning_tokens",
        'repeated key "reasoning_tokens"',
    ),
    (("client", "retries", 2), "why", "x", "client.retries[].why", 'repeated key "why" in client.retries[]'),
    (("messages", 1), "role", "system", "messages", "inside messages repeats a key"),
]


def _repeated_key(i: int, same_value: bool) -> str:
    path, key, value, _, _ = REPEATS[i]
    original = rich(f"twice-{i}-{same_value}")
    if same_value:  # the same value again: still not a record (SPEC section 1)
        value = original
        for step in (*path, key):
            value = value[step]
    line = dump(original, repeat=(path, key, value, False))
    return batched(NIGHT_1, f"repeat-{i}-{same_value}.jsonl", [line, json.dumps(rich(f"fine-{i}-{same_value}"))])


REPEATED_KEYS = {(i, same): _repeated_key(i, same) for i in range(len(REPEATS)) for same in (False, True)}


@pytest.mark.parametrize(("path", "key", "value", "field", "says"), REPEATS)
@pytest.mark.parametrize("same_value", [False, True])
def test_a_repeated_key_at_any_depth_is_a_parse_error_naming_it(
    nights: Nights, path: Path_, key: str, value: Any, field: str, says: str, same_value: bool
) -> None:
    i = REPEATS.index((path, key, value, field, says))
    name = REPEATED_KEYS[(i, same_value)]
    f = nights.file(name)
    assert (f.lines_read, f.accepted, f.quarantined) == (2, 1, 1)
    [(source_line, reason, got_field, message)] = nights.quarantine(name)
    assert (source_line, reason, got_field) == (1, "parse_error", field)
    assert says in message and "\n" not in message
    assert "café" not in message and "be brief" not in message  # prompt text is never quoted
    assert nights.attempt_ids(name) == [(f"fine-{i}-{same_value}",)]


# "st\u0061tus" is "status": compared decoded, not as written
RESPELLED_KEY = batched(
    NIGHT_1, "respelled-key.jsonl", [json.dumps(record(event_id="esc"))[:-1] + ', "st\\u0061tus": 503}']
)


def test_a_key_repeated_under_another_spelling_is_a_repeat(nights: Nights) -> None:
    nights.file(RESPELLED_KEY)
    [(_, reason, field, message)] = nights.quarantine(RESPELLED_KEY)
    assert (reason, field) == ("parse_error", "status") and 'repeated key "status"' in message


def _equal_keys_elsewhere() -> str:
    # "role" in every message, "n" at two depths, a key spelled like a repeat inside a string
    rec = rich("ok", n=1, note='{"status": 1, "status": 2}')
    rec["client"]["n"] = 2
    return batched(NIGHT_1, "equal-keys.jsonl", [dump(rec, space=" ")])


EQUAL_KEYS_ELSEWHERE = _equal_keys_elsewhere()


def test_equal_keys_in_different_objects_are_not_a_repeat(nights: Nights) -> None:
    nights.file(EQUAL_KEYS_ELSEWHERE)
    [rated] = nights.rated_after_first["ok"]
    assert nights.quarantine(EQUAL_KEYS_ELSEWHERE) == [] and rated["outcome"] == "billed"


def test_repeats_in_long_and_deeply_nested_lines_are_found_without_sql(billing: Billing) -> None:
    # over 1 MiB, and over 10,000 brackets: parse.sql leaves these to the Python check
    long = rich("long", output_text="x" * (1 << 20))
    deep = rich("deep")
    deep["client"] = {"tree": "NEST"}
    nest = "[" * 20_000 + '{"k": 1, "k": 2}' + "]" * 20_000
    deep_line = dump(deep).replace('"NEST"', nest)
    fine = rich("fine")
    fine["client"] = {"tree": "NEST"}
    fine_line = dump(fine).replace('"NEST"', "[" * 20_000 + '{"k": 1}' + "]" * 20_000)
    lines = [dump(long, repeat=(("usage",), "completion_tokens", 7, True)), deep_line, fine_line]
    [f] = nightly(billing, {f"requests-{DAY}.jsonl": lines})
    assert (f.lines_read, f.accepted, f.quarantined) == (3, 1, 2)
    found = quarantine(billing)
    assert [(line, reason) for line, reason, _, _ in found] == [(1, "parse_error"), (2, "parse_error")]
    assert found[0][2] == "usage.completion_tokens" and 'repeated key "completion_tokens" in usage' in found[0][3]
    assert found[1][2].startswith("client.tree[][][]") and len(found[1][2]) <= 120
    assert billing.query("SELECT event_id FROM attempts") == [("fine",)]


def test_the_fallback_reader_and_parquet_check_repeats_too(billing: Billing) -> None:
    # a line of invalid UTF-8 sends the whole file to the Python line reader
    lines = [dump(rich("a"), repeat=((), "model", "openai/gpt-5.5-pro", False)).encode(), b'{"x": "\xff"}']
    write_lines(billing.logs / f"requests-{DAY}-a.jsonl", [*lines, json.dumps(rich("b")).encode()])
    # a Parquet MAP column may hold one key twice; DuckDB writes it as a JSON object
    table = pa.table(
        {
            "event_id": ["c"],
            "meta": pa.array([[("k", 1), ("k", 2)]], type=pa.map_(pa.string(), pa.int64())),
        }
    )
    pq.write_table(table, billing.logs / f"requests-{DAY}-b.parquet")
    billing.nightly(DAY)
    got = [(line, reason, field) for line, reason, field, _ in quarantine(billing)]
    assert got == [(1, "parse_error", "model"), (2, "parse_error", None), (1, "parse_error", "meta.k")]
    assert billing.query("SELECT event_id FROM attempts") == [("b",)]


@st.composite
def repeated_key_lines(draw: st.DrawFn) -> tuple[str, str]:
    """(line, key): a valid record with one key of one of its objects written twice."""
    rec = rich(
        f"h-{draw(st.integers(0, 10**9))}",
        status=draw(st.sampled_from((200, 499, 503))),
        usage=usage(draw(st.integers(0, 10**6)), draw(st.integers(0, 10**5)), reasoning=draw(st.integers(0, 10))),
    )
    objects: list[Path_] = []

    def walk(v: Any, at: Path_) -> None:
        if isinstance(v, dict):
            if v:
                objects.append(at)
            for k, child in v.items():
                walk(child, (*at, k))
        elif isinstance(v, list):
            for i, child in enumerate(v):
                walk(child, (*at, i))

    walk(rec, ())
    path = draw(st.sampled_from(objects))
    target = rec
    for step in path:
        target = target[step]
    key = draw(st.sampled_from(sorted(target)))
    other = draw(st.one_of(st.integers(), st.text(max_size=5), st.booleans(), st.none(), st.just(target[key])))
    line = dump(
        rec,
        reverse=draw(st.booleans()),
        space=draw(st.sampled_from(("", " ", "\t"))),
        repeat=(path, key, other, draw(st.booleans())),
    )
    return line, key


@SLOW
@given(st.lists(repeated_key_lines(), min_size=1, max_size=4))
def test_property_any_repeated_key_in_any_valid_record_is_quarantined(tmp_path_factory: Any, cases: Any) -> None:
    billing = Billing(tmp_path_factory.mktemp("repeat"))
    lines = [line for line, _ in cases]
    [f] = nightly(billing, {f"requests-{DAY}.jsonl": [*lines, json.dumps(rich("fine"))]})
    assert f.lines_read == f.accepted + f.duplicates + f.quarantined == len(lines) + 1
    assert (f.accepted, f.quarantined) == (1, len(lines))
    found = quarantine(billing)
    assert {reason for _, reason, _, _ in found} == {"parse_error"}
    for (_, _, field, message), (_, key) in zip(found, cases, strict=True):
        assert f'"{key}"' in message or (field == "messages" and "inside messages" in message)
    assert billing.query("SELECT event_id FROM attempts") == [("fine",)]


def test_first_repeated_key_reads_json_as_json() -> None:
    assert ingest.first_repeated_key('{"a": {"b": 1}, "c": {"b": 2}, "d": [{"e": 1}, {"e": 1}]}') is None
    assert ingest.first_repeated_key('{"s": "{\\"a\\":1,\\"a\\":2}", "t": "\\\\"}') is None
    assert ingest.first_repeated_key('{"a": [[{"x": 0, "y": {}, "x": 1}]]}') == ("a[][]", "x")
    assert ingest.first_repeated_key('{"a\\\\": 1, "a\\u005c": 2}') == ("", "a\\")
    # the path is named the same way through empty keys and deep arrays
    assert ingest.first_repeated_key('{"": {"": {"k": 1, "k": 2}}}') == ("", "k")
    assert ingest.first_repeated_key('{"a": {"": {"k": 1, "k": 2}}}') == ("a.", "k")
    assert ingest.first_repeated_key('{"": [{"k": 1, "k": 2}]}') == ("[]", "k")
    deep = '{"m": ' + "[" * 100_000 + '{"k": 1, "k": 2}' + "]" * 100_000 + "}"
    assert ingest.first_repeated_key(deep) == ("m" + "[]" * 100_000, "k")  # one pass, not a path per level


# --- R1: the same content, spelled differently ----------------------------------------------

SPELLINGS = {
    "key order": {"reverse": True},
    "whitespace": {"space": "  "},
    "escapes": {"escape": "aeé☕\U0001f600/"},
    "all three": {"reverse": True, "space": "\t", "escape": "oïn"},
}


def _respelled(n: int, spelling: str, respelled_first: bool, later_run: bool) -> tuple[str, str, str]:
    """(event_id, the first file, the second file) of a record and its respelled copy."""
    event_id = f"same-{n}"
    rec = rich(event_id, ts="2026-11-20T23:00:00Z") if later_run else rich(event_id)
    plain, other = json.dumps(rec), dump(rec, **SPELLINGS[spelling])
    first, second = (other, plain) if respelled_first else (plain, other)
    if later_run:
        return event_id, batched(NIGHT_1, f"{n}.jsonl", [first]), batched(NIGHT_2, f"{n}.jsonl", [second])
    return event_id, batched(NIGHT_1, f"{n}-a.jsonl", [first]), batched(NIGHT_1, f"{n}-b.jsonl", [second])


RESPELLED = {
    (later_run, spelling, respelled_first): _respelled(n, spelling, respelled_first, later_run)
    for n, (later_run, spelling, respelled_first) in enumerate(
        (later_run, spelling, respelled_first)
        for later_run in (False, True)
        for spelling in SPELLINGS
        for respelled_first in (False, True)
    )
}


@pytest.mark.parametrize("spelling", list(SPELLINGS))
@pytest.mark.parametrize("respelled_first", [False, True])
def test_the_same_record_respelled_in_one_batch_is_a_duplicate(
    nights: Nights, spelling: str, respelled_first: bool
) -> None:
    event_id, a, b = RESPELLED[(False, spelling, respelled_first)]
    files = [nights.file(a), nights.file(b)]
    assert [(f.accepted, f.duplicates, f.quarantined) for f in files] == [(1, 0, 0), (0, 1, 0)]
    assert nights.quarantine(a, b) == []
    [rated] = nights.rated_after_first[event_id]
    assert rated["outcome"] == "billed"


@pytest.mark.parametrize("spelling", list(SPELLINGS))
@pytest.mark.parametrize("respelled_first", [False, True])
def test_the_same_record_respelled_in_a_later_run_is_a_duplicate(
    nights: Nights, spelling: str, respelled_first: bool
) -> None:
    event_id, first, second = RESPELLED[(True, spelling, respelled_first)]
    before = nights.rated_after_first[event_id]
    assert before  # rated by the first night
    f = nights.file(second)
    assert (f.accepted, f.duplicates, f.quarantined) == (0, 1, 0)
    assert nights.quarantine(first, second) == []
    assert nights.rated_after_second[event_id] == before


def _set(rec: dict[str, Any], path: Path_, value: Any) -> dict[str, Any]:
    changed = json.loads(json.dumps(rec))
    target = changed
    for step in path[:-1]:
        target = target[step]
    if value is _ABSENT:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return changed


_ABSENT = object()
DIFFERENCES = {
    "a message's text": (("messages", 1, "content"), "café ☕ naive \U0001f600"),
    "an unread nested value": (("client", "retries", 2, "why"), "Timeout"),
    "1 vs 1.0": (("client", "retries", 0), 1.0),
    "1 vs '1'": (("client", "retries", 0), "1"),
    "null vs absent": (("client", "retries", 2, "n"), _ABSENT),
    "array order": (("client", "retries"), [2.5, 1, {"why": "timeout", "n": None}]),
    "an empty object vs an empty array": (("client", "tags"), {}),
}


def _different(n: int, difference: str, later_run: bool) -> tuple[str, str]:
    """The first and the second file of a record and a respelled copy with one real difference."""
    rec = rich(f"differs-{n}", ts="2026-11-20T23:00:00Z")
    changed = dump(_set(rec, *DIFFERENCES[difference]), reverse=True)  # respelled, and different
    if later_run:
        return batched(NIGHT_1, f"d{n}.jsonl", [json.dumps(rec)]), batched(NIGHT_2, f"d{n}.jsonl", [changed])
    return batched(NIGHT_1, f"d{n}-a.jsonl", [json.dumps(rec)]), batched(NIGHT_1, f"d{n}-b.jsonl", [changed])


DIFFERENT = {
    (difference, later_run): _different(n, difference, later_run)
    for n, (difference, later_run) in enumerate((d, later) for d in DIFFERENCES for later in (False, True))
}


@pytest.mark.parametrize("difference", list(DIFFERENCES))
@pytest.mark.parametrize("later_run", [False, True])
def test_a_real_difference_in_any_field_is_a_conflict(nights: Nights, difference: str, later_run: bool) -> None:
    first, second = DIFFERENT[(difference, later_run)]
    nights.file(first)
    f = nights.file(second)
    if later_run:
        assert (f.accepted, f.duplicates, f.quarantined) == (0, 0, 1)
    [(_, reason, field, _)] = nights.quarantine(first, second)
    assert (reason, field) == ("duplicate_conflict", "event_id")


# decided (README): an integer is not a number with a fraction (1 vs 1.0 above); numbers
# with a fraction or an exponent compare as IEEE doubles, so 1.0, 1.00 and 1e0 are equal
_BASE = json.dumps(record(event_id="n", extra=1.5))
NUMBERS = batched(
    NIGHT_1,
    "numbers.jsonl",
    [_BASE, *(_BASE.replace('"extra": 1.5', f'"extra": {x}') for x in ("1.50", "15e-1", "0.15E+1"))],
)


def test_numbers_compare_as_integers_or_as_doubles(nights: Nights) -> None:
    f = nights.file(NUMBERS)
    assert (f.accepted, f.duplicates, f.quarantined) == (1, 3, 0)


def test_a_parquet_record_and_its_json_copy_are_one_record(billing: Billing, tmp_path: Path) -> None:
    rec = rich("pq", client={"sdk": "py", "retries": [1, 2]})  # Parquet lists hold one type
    parquet = billing.logs / f"requests-{DAY}-a.parquet"
    pq.write_table(pa.Table.from_pylist([rec]), parquet)
    # the JSON the Parquet row is read as (the writer's own nulls included), keys reversed
    [(as_json,)] = duckdb.sql(
        "SELECT CAST(json_merge_patch(to_json(p), '{\"file_row_number\": null}') AS VARCHAR) "
        f"FROM read_parquet('{parquet}', file_row_number=true) p"
    ).fetchall()
    files = nightly(billing, {f"requests-{DAY}-b.jsonl": [dump(json.loads(as_json), reverse=True, space=" ")]})
    assert [(f.accepted, f.duplicates, f.quarantined) for f in files] == [(1, 0, 0), (0, 1, 0)]


def test_attempts_stored_before_canonical_content_still_match_their_resent_line(billing: Billing) -> None:
    # attempts ingested by an older version carry the sha256 of their minified line
    rec = rich("old", ts="2026-11-20T23:00:00Z")
    nightly(billing, {f"requests-{DAY}.jsonl": [json.dumps(rec)]})
    [(minified,)] = duckdb.execute("SELECT sha256(CAST(json(?) AS VARCHAR))", [json.dumps(rec)]).fetchall()
    changed = edit_stored_attempts(
        billing.settings.db_path, "content_sha256 = $sha", "event_id = 'old'", {"sha": minified}
    )
    assert changed == 1
    [f] = nightly(billing, {"requests-2026-11-21.jsonl": [dump(rec, space=" ")]}, day="2026-11-21")
    assert (f.accepted, f.duplicates, f.quarantined) == (0, 1, 0)
    changed = dict(rec, status=503)
    [f] = nightly(billing, {"requests-2026-11-22.jsonl": [json.dumps(changed)]}, day="2026-11-22")
    assert (f.accepted, f.duplicates, f.quarantined) == (0, 0, 1)


@pytest.mark.parametrize("kept_digits", [64, 32])
def test_attempts_keep_64_bits_of_the_digest_and_still_match_rows_that_kept_more(
    billing: Billing, kept_digits: int
) -> None:
    rec = rich("kept", ts="2026-11-20T23:00:00Z")
    nightly(billing, {f"requests-{DAY}.jsonl": [json.dumps(rec)]})
    canonical = json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    [(full,)] = duckdb.execute("SELECT sha256(?)", [canonical]).fetchall()
    # migration 047: the first 16 hex digits of the canonical content's sha256
    assert billing.one("SELECT content_sha256 FROM attempts WHERE event_id = 'kept'") == full[:16]
    # a row stored before 026 holds all 64 digits, one stored before 047 32: the same record
    # re-sent is still a duplicate
    db = billing.settings.db_path
    digest = full[:kept_digits]
    assert edit_stored_attempts(db, "content_sha256 = $sha", "event_id = 'kept'", {"sha": digest}) == 1
    [f] = nightly(billing, {"requests-2026-11-21.jsonl": [dump(rec, space=" ")]}, day="2026-11-21")
    assert (f.accepted, f.duplicates, f.quarantined) == (0, 1, 0)
    # and other content under its event_id a conflict
    [f] = nightly(billing, {"requests-2026-11-22.jsonl": [json.dumps(dict(rec, status=503))]}, day="2026-11-22")
    assert (f.accepted, f.duplicates, f.quarantined) == (0, 0, 1)
    # verify compares the stored digests by the 16 digits both sides have (the re-execution
    # stores 16)
    assert billing.one("SELECT content_sha256 FROM attempts WHERE event_id = 'kept'") == digest
    assert replay.verify_run(billing.settings, 3).status == "MATCH"


def test_a_re_sent_record_whose_kept_digits_match_is_a_duplicate_and_the_first_stands(billing: Billing) -> None:
    """The stored digest is 64 bits: a re-sent record is compared by those. Two contents whose
    digests agree in them (a 2^-64 accident, made here by editing the stored digest) make the
    later record a duplicate, not a conflict: the first stands either way, nothing is billed
    twice or differently."""
    rec = rich("near", ts="2026-11-20T23:00:00Z", usage=usage(100, 10))
    nightly(billing, {f"requests-{DAY}.jsonl": [json.dumps(rec)]})
    changed = dict(rec, usage=usage(900, 90))
    canonical = json.dumps(changed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    [(other,)] = duckdb.execute("SELECT sha256(?)", [canonical]).fetchall()
    db = billing.settings.db_path
    assert edit_stored_attempts(db, "content_sha256 = $sha", "event_id = 'near'", {"sha": other[:16]}) == 1
    [f] = nightly(billing, {"requests-2026-11-21.jsonl": [json.dumps(changed)]}, day="2026-11-21")
    assert (f.accepted, f.duplicates, f.quarantined) == (0, 1, 0)
    assert billing.rated("near")["input_uncached_tokens"] == 100  # the first stands
