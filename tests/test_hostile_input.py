"""Hostile input (issue #7, part 3): the run never crashes, every line is accounted for, and
valid records are billed exactly as without the garbage around them.

The regression cases name the input that broke the pipeline before; the fuzz test draws
arbitrary JSON values into every field, injures bytes and files, and mixes in valid records.
``INFERGATE_FUZZ_EXAMPLES`` raises its example count (``make soak`` does).
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.db import connect
from tests.conftest import Billing, examples, record, usage
from tests.hostile import (
    DAY,
    HostileLine,
    hostile_lines,
    json_line,
    non_blank_lines,
    valid_records,
    write_lines,
)

VALID = valid_records()
VALID_IDS = tuple(r["event_id"] for r in VALID)
RATED = "SELECT * EXCLUDE (rated_run_id) FROM rated_attempts WHERE event_id IN ? ORDER BY event_id"
FUZZ_EXAMPLES = int(os.environ.get("INFERGATE_FUZZ_EXAMPLES", examples(20)))


def quarantine(billing: Billing) -> list[tuple[Any, ...]]:
    return billing.query("SELECT source_line, reason, field, message, record FROM quarantine ORDER BY source_line")


def one_file(billing: Billing, lines: list[bytes], name: str = f"requests-{DAY}.jsonl") -> Any:
    write_lines(billing.logs / name, lines)
    [result] = [f for f in billing.nightly(DAY).files if Path(f.path).name == name]
    assert result.lines_read == result.accepted + result.duplicates + result.quarantined
    return result


# --- one nightly for the cases that each hold a file of their own ---------------------------
# A one-record nightly costs about 0.7 CPU-s, most of it fixed; the cases below each write a
# file of their own, with event and request ids of their own, and assert only on what that
# file's lines became (its counts, its quarantine entries, its attempts, its ids' rated rows).
# Nothing they check depends on another file: dedup and the request rules go by ids no other
# case uses, a file's reader and its file-level errors are its own. So one nightly reads them
# all (the ``batch`` fixture). Cases whose verdict could depend on the rest of the run (a
# limit, dedup, a second run, refused files) keep a nightly of their own.

BATCH: dict[str, list[bytes] | bytes] = {}  # file name -> its lines, or its bytes as they are


def batched(name: str, content: list[bytes] | bytes) -> str:
    """Add a case's file to the batch (lines written by :func:`write_lines`, bytes as they are)."""
    name = f"requests-{DAY}-{name}"
    assert name not in BATCH, name
    BATCH[name] = content
    return name


@dataclass(frozen=True)
class Batch:
    files: dict[str, Any]  # file name -> its FileResult
    quarantined: list[tuple[str, tuple[Any, ...]]]  # (file name, the whole quarantine row), by line
    quarantine_columns: list[str]
    attempts_rows: list[tuple[str, tuple[Any, ...]]]  # (file name, the whole attempts row)
    attempts_columns: list[str]
    rated_rows: dict[str, dict[str, Any]]  # event_id -> its rated_attempts row

    def file(self, name: str) -> Any:
        result = self.files[name]
        assert not result.skipped and result.lines_read == result.accepted + result.duplicates + result.quarantined
        return result

    def quarantine(self, *names: str) -> list[tuple[Any, ...]]:
        """What :func:`quarantine` gives, for these files' lines only."""
        picked = [self.quarantine_columns.index(c) for c in ("source_line", "reason", "field", "message", "record")]
        return [tuple(row[i] for i in picked) for name, row in self.quarantined if name in names]

    def quarantine_rows(self, name: str) -> list[tuple[Any, ...]]:
        return [row for got, row in self.quarantined if got == name]

    def attempts(self, name: str) -> list[tuple[Any, ...]]:
        return [row for got, row in self.attempts_rows if got == name]

    def attempt_ids(self, *names: str) -> list[tuple[str]]:
        at = self.attempts_columns.index("event_id")
        return [(row[at],) for got, row in self.attempts_rows if got in names]

    def rated(self, event_id: str) -> dict[str, Any]:
        assert event_id in self.rated_rows, f"{event_id} not rated"
        return self.rated_rows[event_id]


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Batch:
    billing = Billing(tmp_path_factory.mktemp("batch"))
    for name, content in BATCH.items():
        if isinstance(content, bytes):
            (billing.logs / name).write_bytes(content)
        else:
            write_lines(billing.logs / name, content)
    report = billing.nightly(DAY)
    files = {Path(f.path).name: f for f in report.files}
    assert sorted(files) == sorted(BATCH) and not report.refused

    def by_file(sql: str) -> tuple[list[str], list[tuple[str, tuple[Any, ...]]]]:
        con = connect(billing.settings.db_path, read_only=True)
        try:
            cursor = con.execute(sql)
            columns = [d[0] for d in cursor.description]
            at = columns.index("source_file")
            return columns, [(Path(row[at]).name, row) for row in cursor.fetchall()]
        finally:
            con.close()

    quarantine_columns, quarantined = by_file("SELECT * FROM quarantine ORDER BY source_line, source_file")
    attempts_columns, attempts_rows = by_file("SELECT * FROM attempts ORDER BY source_file, source_line")
    rated = billing.records("SELECT * FROM rated_attempts")
    rated_rows = {r["event_id"]: r for r in rated}
    assert len(rated_rows) == len(rated)
    return Batch(files, quarantined, quarantine_columns, attempts_rows, attempts_columns, rated_rows)


# --- regressions: each input below crashed the run, leaked text, or lost a line before ------


# RecursionError from json.loads in the R5 recount used to kill the whole run (20,000 levels
# raise it as surely as 100,000, which spent 10 s of kernel time growing the stack)
DEEP_MESSAGES = batched("deep.jsonl", [
    json_line(record(event_id="ok-deep")),
    json.dumps(record(event_id="deep", usage=None, messages="X")).replace('"X"', "[" * 20_000 + "]" * 20_000).encode(),
])  # fmt: skip


def test_deeply_nested_messages_are_held_not_a_crash(batch: Batch) -> None:
    f = batch.file(DEEP_MESSAGES)
    assert (f.lines_read, f.accepted) == (2, 2)
    assert batch.rated("deep")["reason"] == "usage_missing"
    assert batch.rated("ok-deep")["outcome"] == "billed"


# ValueError (int max str digits) from json.loads used to kill the whole run
_MANY_DIGITS = '[{"role": "user", "content": "x", "n": ' + "9" * 5000 + "}]"
MANY_DIGITS = batched("digits.jsonl", [
    json.dumps(record(event_id="big", usage=None, messages="X", output_text="y")).replace('"X"', _MANY_DIGITS).encode()
])  # fmt: skip


def test_integer_beyond_python_digit_limit_in_messages_is_held(batch: Batch) -> None:
    batch.file(MANY_DIGITS)
    assert batch.rated("big")["reason"] == "usage_missing"


def test_corrupt_gzip_body_is_quarantined_not_a_crash(billing: Billing) -> None:
    # a gzip header followed by a bad deflate block raised zlib.error, which nothing caught
    good = gzip.compress(json_line(record(event_id="ok")) + b"\n", mtime=0)
    (billing.logs / f"requests-{DAY}-a.jsonl.gz").write_bytes(good)
    (billing.logs / f"requests-{DAY}-b.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 20 + b"garbage")
    report = billing.nightly(DAY)
    assert [(f.lines_read, f.accepted, f.quarantined) for f in report.files] == [(1, 1, 0), (1, 0, 1)]
    assert "file unreadable after line 0" in quarantine(billing)[0][3]


# "field messages: ... got string "my secret prompt..."" used to store prompt text
MESSAGES_STRING = batched(
    "messages-string.jsonl", [json_line(record(event_id="m", messages="my secret prompt text", output_text=7))]
)


def test_messages_given_as_a_string_is_not_quoted_in_the_quarantine(batch: Batch) -> None:
    batch.file(MESSAGES_STRING)
    [(_, reason, field, message, kept)] = batch.quarantine(MESSAGES_STRING)
    assert (reason, field) == ("invalid_record", "messages")
    assert message == "field messages: expected array or null, got string"
    assert "secret" not in kept


TEXT_FIELD_KEY = "sk-live-abcdefghijklmnop0123"


def _key_in_text_field(where: str) -> str:
    value: Any = usage(10, 1) | {"note": TEXT_FIELD_KEY} if where == "usage" else f"see {TEXT_FIELD_KEY}"
    return batched(f"text-{where}.jsonl", [json_line(record(event_id=f"k-{where}", **{where: value}))])


KEY_IN_TEXT = {
    w: _key_in_text_field(w) for w in ("usage", "error_code", "provider", "endpoint", "group", "finish_reason")
}


@pytest.mark.parametrize("where", list(KEY_IN_TEXT))
def test_key_in_a_stored_text_field_is_masked(batch: Batch, where: str) -> None:
    # a key in an unknown usage field used to be stored as is in attempts.usage_json
    batch.file(KEY_IN_TEXT[where])
    row = batch.attempts(KEY_IN_TEXT[where])
    assert len(row) == 1
    assert TEXT_FIELD_KEY not in repr(row) and "[REDACTED]" in repr(row)
    assert batch.rated(f"k-{where}")["outcome"] == "billed"


KEY_IN_ID = {
    field: batched(f"id-{field}.jsonl", [json_line(record(**{field: "id-sk-abcdefghijklmnop0123"}))])
    for field in ("event_id", "request_id", "account_id", "model")
}


@pytest.mark.parametrize("field", list(KEY_IN_ID))
def test_key_in_an_id_field_is_quarantined(batch: Batch, field: str) -> None:
    batch.file(KEY_IN_ID[field])
    [(_, reason, got_field, message, kept)] = batch.quarantine(KEY_IN_ID[field])
    assert (reason, got_field) == ("invalid_record", field) and "contains an API key" in message
    assert "abcdefghijklmnop0123" not in message + kept


OTHER_KEY_FORMATS = {
    "stripe": "sk_live_aB3dE5gH7jK9mN1pQ3sT5vW7",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "github": "ghp_aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1eF3hJ5",
    "bearer": "BEARER aB3dE5gH7jK9mN1pQ3sT5vW7",
    "slack": "xoxb-123456789012-1234567890123-aB3dE5gH7jK9",
    "google": "AIzaSyA-aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1e",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
    "anthropic": "sk-ant-api03-aB3dE5gH7jK9mN1pQ3sT5vW7",
}


def _other_key_format(kind: str) -> str:
    key = OTHER_KEY_FORMATS[kind]
    masked = record(event_id=f"k-{kind}", api_key_id=key, error_code=f"bad {key}", provider=key, extra={"t": key})
    return batched(
        f"format-{kind}.jsonl", [json_line(masked), json_line(record(event_id=f"id-{kind}", request_id=f"r-{key}"))]
    )


OTHER_KEYS = {kind: _other_key_format(kind) for kind in sorted(OTHER_KEY_FORMATS)}


@pytest.mark.parametrize("kind", list(OTHER_KEYS))
def test_key_formats_other_than_sk_are_masked_and_refused_as_ids(batch: Batch, kind: str) -> None:
    # issue 20 item 15: sk_live_, AKIA..., ghp_..., BEARER in capitals were stored unmasked
    key = OTHER_KEY_FORMATS[kind]
    body = key.split()[-1]
    name = OTHER_KEYS[kind]
    batch.file(name)
    stored = repr(batch.attempts(name)) + repr(batch.quarantine_rows(name))
    assert body not in stored and "[REDACTED]" in stored
    assert batch.rated(f"k-{kind}")["outcome"] == "billed"
    [(_, reason, field, message, _)] = batch.quarantine(name)
    assert (reason, field) == ("invalid_record", "request_id") and "contains an API key" in message


def _plant_non_regular_logs(logs: Path, tmp_path: Path) -> list[str]:
    """Next to a good log: a link to a secret file, a FIFO and a directory, all named like logs."""
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:SECRETROOT:/root:/bin/bash\n")
    (logs / f"requests-{DAY}-link.jsonl").symlink_to(secret)
    os.mkfifo(logs / f"requests-{DAY}-fifo.jsonl")
    (logs / f"requests-{DAY}-dir.jsonl").mkdir()
    return [f"requests-{DAY}-{n}.jsonl" for n in ("dir", "fifo", "link")]


def test_links_fifos_and_directories_in_the_logs_are_refused_by_name(billing: Billing, tmp_path: Path) -> None:
    # issue 20 item 15: a symlink was followed and /etc/passwd content ended up in quarantine.record
    billing.log(f"requests-{DAY}.jsonl", [record(event_id="good")])
    names = _plant_non_regular_logs(billing.logs, tmp_path)
    report = billing.nightly(DAY)  # returns: a FIFO would have blocked the read for ever
    assert [Path(f.path).name for f in report.files] == [f"requests-{DAY}.jsonl"]
    assert billing.rated("good")["outcome"] == "billed"
    assert [r.split(": ")[0].rsplit("/", 1)[1] for r in report.refused] == names
    assert "is a directory" in report.refused[0] and "is a FIFO" in report.refused[1]
    assert "is a symbolic link" in report.refused[2]
    assert "SECRETROOT" not in repr(billing.query("SELECT * FROM quarantine"))


def test_a_log_file_whose_name_holds_a_key_is_refused_with_the_name_masked(billing: Billing) -> None:
    """Found by an audit: the name is stored with every record (source_file), in the ledger and
    the lake, and printed; masking it would break replay, so the file is refused: rename it."""
    key = "sk-proj-" + "Zq7" * 8
    billing.log(f"requests-{DAY}.jsonl", [record(event_id="good")])
    billing.log(f"requests-{DAY}-{key}.jsonl", [record(event_id="named")])
    report = billing.nightly(DAY)
    assert [Path(f.path).name for f in report.files] == [f"requests-{DAY}.jsonl"]
    [reason] = report.refused
    assert reason.endswith(f"requests-{DAY}-[REDACTED].jsonl: the file name holds what looks like a secret; "
                           "refused (names are stored and printed): rename it")  # fmt: skip
    stored = repr(billing.query("SELECT * FROM ingested_files")) + repr(billing.query("SELECT * FROM runs"))
    assert key not in stored and key not in reason and billing.one("SELECT count(*) FROM attempts") == 1


def test_ingest_glob_refuses_links_and_a_named_link_too(billing: Billing, tmp_path: Path) -> None:
    from pipeline import jobs

    billing.log(f"requests-{DAY}.jsonl", [record(event_id="good")])
    _plant_non_regular_logs(billing.logs, tmp_path)
    report = jobs.run_ingest(billing.settings, [str(billing.logs / "*.jsonl")])
    assert len(report.files) == 1 and len(report.refused) == 3
    report = jobs.run_ingest(billing.settings, [str(billing.logs / f"requests-{DAY}-link.jsonl")])
    assert report.files == [] and len(report.refused) == 1
    assert report.refused[0].endswith("is a symbolic link; refused, log files are read only as regular files")
    assert "SECRETROOT" not in repr(billing.query("SELECT * FROM quarantine"))


def test_nightly_cli_with_a_link_in_the_logs_bills_the_rest_and_exits_1(tmp_path: Path) -> None:
    import duckdb

    from tests.conftest import cli_in_process, write_log

    logs = tmp_path / "logs"
    logs.mkdir()
    write_log(logs / f"requests-{DAY}.jsonl", [record(event_id="good", account_id="acct_acme")])
    _plant_non_regular_logs(logs, tmp_path)
    db = tmp_path / "billing.duckdb"
    # the command's exit code and output, not the process's: the CLI in this process, from the
    # repository's root as before (the default reference files)
    done = cli_in_process(
        "--db", str(db), "nightly", "--date", DAY, "--logs", str(logs), cwd=Path(__file__).resolve().parents[1]
    )
    assert done.exit_code == 1, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3 and f"requests-{DAY}-link.jsonl: is a symbolic link" in errors[2]
    # the day is billed and recorded; the ledger says what cron saw (exit 1 and the reasons)
    assert "run 1 committed, with 3 problems (exit 1):" in done.stdout
    assert "SECRETROOT" not in done.stdout + done.stderr
    con = duckdb.connect(str(db), read_only=True)
    try:
        status, exit_code, message = con.execute("SELECT status, exit_code, message FROM runs").fetchone()
    finally:
        con.close()
    assert (status, exit_code) == ("succeeded", 1) and "SECRETROOT" not in message
    assert message == "; ".join(line.removeprefix("error: ") for line in errors)


BOUNDED_FIELDS = {
    "event_id": 256, "request_id": 256, "account_id": 256, "api_key_id": 256, "model": 256, "group": 256,
    "endpoint": 1024, "provider": 256, "error_code": 256, "finish_reason": 256,
}  # fmt: skip


def _bounded(field: str) -> str:
    bound = BOUNDED_FIELDS[field]
    at_bound, over = "x" * bound, "y" * (bound + 1)
    extra = {"account_id": "acct_plain"} if field != "account_id" else {}
    return batched(f"bound-{field}.jsonl", [
        json_line(record(**{"event_id": f"at-{field}", **extra, field: at_bound})),
        json_line(record(**{"event_id": f"over-{field}", **extra, field: over})),
    ])  # fmt: skip


BOUNDED = {field: _bounded(field) for field in sorted(BOUNDED_FIELDS)}


@pytest.mark.parametrize("field", list(BOUNDED))
def test_identifiers_over_their_bound_are_quarantined_naming_the_field(batch: Batch, field: str) -> None:
    # issue 20 item 15: a 20 MB request_id was stored and written whole into a detail CSV
    bound = BOUNDED_FIELDS[field]
    f = batch.file(BOUNDED[field])
    assert (f.lines_read, f.accepted, f.quarantined) == (2, 1, 1)
    [(_, reason, got_field, message, _)] = batch.quarantine(BOUNDED[field])
    assert (reason, got_field) == ("invalid_record", field)
    assert message == f"field {field}: {bound + 1} characters, over the bound of {bound}"


def test_a_huge_id_is_quarantined_and_the_quarantine_keeps_an_excerpt(billing: Billing) -> None:
    huge = "r" * (2 << 20)
    one_file(billing, [json_line(record(event_id="big", request_id=huge)), json_line(record(event_id=huge))])
    rows = billing.query("SELECT event_id, field, length(record) FROM quarantine ORDER BY source_line")
    assert [(e[:3], f) for e, f, _ in rows] == [("big", "request_id"), ("rrr", "event_id")]
    assert all(n <= 4096 + 40 for _, _, n in rows)  # an excerpt and a note of the full length
    assert rows[1][0].endswith(f" ...[cut: {2 << 20} characters]") and len(rows[1][0]) < 300
    assert billing.query("SELECT count(*) FROM attempts") == [(0,)]


HUGE_USAGE = batched("huge-usage.jsonl", [json_line(record(event_id="u", usage=usage(10, 1) | {"note": "n" * 5000}))])


def test_a_huge_usage_object_is_quarantined(batch: Batch) -> None:
    batch.file(HUGE_USAGE)
    [(_, reason, field, message, _)] = batch.quarantine(HUGE_USAGE)
    assert (reason, field) == ("invalid_record", "usage") and "over the bound of 4096" in message


# --- the lone-surrogate decision (docs/hostile-input.md) --------------------------------------


def test_lone_surrogates_only_in_message_text_are_accepted_and_counted(billing: Billing, tmp_path: Path) -> None:
    text = {"messages": [{"role": "user", "content": "cut \ud83d"}], "output_text": "emoji \udc00 cut"}
    repaired = {"messages": [{"role": "user", "content": "cut \ufffd"}], "output_text": "emoji \ufffd cut"}
    f = one_file(billing, [json_line(record(event_id="s", request_id="r", usage=None, **text))])  # "\\ud83d"
    assert (f.accepted, f.quarantined) == (1, 0)
    same = Billing(tmp_path / "same")
    one_file(same, [json_line(record(event_id="s", request_id="r", usage=None, **repaired))])
    estimated = billing.rated("s")
    assert estimated["usage_source"] == "estimated" and estimated["outcome"] == "billed"
    assert estimated == same.rated("s")  # counted as U+FFFD


SURROGATES_ELSEWHERE = [
    {"event_id": "e\ud800"}, {"error_code": "\udfff"}, {"usage": usage(1, 1) | {"x\ud800": 1}}, {"\ud800": 1}
]  # fmt: skip


def _surrogate_elsewhere(i: int, fields: dict[str, Any]) -> str:
    text = {"messages": [{"role": "user", "content": "also \ud800 here"}]}
    lines = [json_line(record(**fields, **text)), json_line(record(event_id=f"ok-surrogate-{i}"))]
    return batched(f"surrogate-{i}.jsonl", lines)


SURROGATE_FILES = [_surrogate_elsewhere(i, fields) for i, fields in enumerate(SURROGATES_ELSEWHERE)]


@pytest.mark.parametrize("fields", SURROGATES_ELSEWHERE)
def test_lone_surrogates_elsewhere_are_a_parse_error(batch: Batch, fields: dict[str, Any]) -> None:
    name = SURROGATE_FILES[SURROGATES_ELSEWHERE.index(fields)]
    batch.file(name)
    [(line, reason, _, message, kept)] = batch.quarantine(name)
    assert (line, reason) == (1, "parse_error") and "lone UTF-16 surrogate" in message
    assert "also" not in kept


ESCAPED_BACKSLASH = batched("backslash.jsonl", [b'{"x": "\\\\ud800", ' + json_line(record(event_id="bs"))[1:]])


def test_escaped_backslash_before_u_is_not_a_surrogate(batch: Batch) -> None:
    batch.file(ESCAPED_BACKSLASH)
    assert batch.rated("bs")["outcome"] == "billed"


# --- lines and files -----------------------------------------------------------------------


def test_crlf_and_mixed_line_endings_bill_the_same_as_lf(billing: Billing, tmp_path: Path) -> None:
    lines = [json_line(r) for r in VALID]
    lf = Billing(tmp_path / "lf")
    one_file(lf, lines)
    write_lines(billing.logs / f"requests-{DAY}-crlf.jsonl", [line + b"\r" for line in lines])
    mixed = [line + b"\r" * (i % 2) for i, line in enumerate(lines)]
    write_lines(billing.logs / f"requests-{DAY}-mixed.jsonl.gz", mixed)
    report = billing.nightly(DAY)
    assert [(f.accepted, f.duplicates) for f in report.files] == [(len(VALID), 0), (0, len(VALID))]
    assert billing.query(RATED, [VALID_IDS]) == lf.query(RATED, [VALID_IDS])


BAD_LINES = [
    (b'{"a": 1}\x1e\x1f{"b": 2}', "line is not valid JSON"),  # our read_csv delimiter
    (b'{"a": 1}\x1e\x1f', "line is not valid JSON"),
    (b"\x1e\x1f", "line is not valid JSON"),
    (b'{"a": "x\ry"}', "line is not valid JSON"),  # a lone CR is data, not a line break
    (b'{"event_id": "\xff\xfe"}', "line is not valid UTF-8 (byte 14)"),
    (b"\x00", "line is not valid JSON"),
    (b"\xef\xbb\xbf" + json_line(record()), "line is not valid JSON"),  # BOM
    # RFC 8259, which DuckDB's reader stretches: NaN/Infinity (anywhere) and trailing commas
    (json_line(record(attempt=float("nan"))), "line is not valid JSON: NaN or Infinity is not a JSON number"),
    (json_line(record(extra=[1, float("-inf")])), "line is not valid JSON: NaN or Infinity is not a JSON number"),
    (json_line(record())[:-1] + b', "x": nan}', "line is not valid JSON: NaN or Infinity is not a JSON number"),
    (json_line(record())[:-1] + b" ,\t}", "line is not valid JSON: a comma before a closing bracket"),
    (json_line(record(usage=usage(1, 1))).replace(b"}}", b", }}"), "line is not valid JSON: a comma before"),
    (b"[1, 2,]", "line is not valid JSON: a comma before a closing bracket"),
    (json_line(record(status=2**70)), "field status: required HTTP status integer 100-599, got number 1180591620"),
    (json_line(record(usage={"prompt_tokens": 10**400, "completion_tokens": 1})), "field usage.prompt_tokens"),
    (json_line(record(usage={"prompt_tokens": 2**64, "completion_tokens": 1})), "field usage.prompt_tokens"),
]
BAD_LINE_FILES = {
    bad: batched(
        f"bad-{i}.jsonl",
        [json_line(record(event_id=f"a-bad-{i}")), bad, json_line(record(event_id=f"b-bad-{i}")), b"\t", b" \r"],
    )
    for i, (bad, _) in enumerate(BAD_LINES)
}
assert len(BAD_LINE_FILES) == len(BAD_LINES)


@pytest.mark.parametrize(("bad", "message"), BAD_LINES)
def test_bad_line_is_one_quarantined_line_and_the_rest_is_billed(batch: Batch, bad: bytes, message: str) -> None:
    f = batch.file(BAD_LINE_FILES[bad])
    assert (f.lines_read, f.accepted, f.quarantined) == (3, 2, 1)
    [(line, _, _, got, _)] = batch.quarantine(BAD_LINE_FILES[bad])
    assert line == 2 and got.startswith(message)


LOOKS_NONSTANDARD = batched("looks-nonstandard.jsonl", [
    json_line(record(event_id="s1", extra="a, ] NaN, Infinity, }")),
    json_line(record(event_id="s2", extra={"k": '" ,}'})),
    json_line(record(event_id="s3"))[:-1] + b', "x": 1e400}',
])  # fmt: skip


def test_standard_json_that_merely_looks_nonstandard_is_billed(batch: Batch) -> None:
    """The cheap flags of parse.sql (a comma then a bracket, NaN, Infinity) inside strings, and
    a number too large for a double (1e400 reads as infinity), are standard JSON: billed."""
    f = batch.file(LOOKS_NONSTANDARD)
    assert (f.lines_read, f.accepted, f.quarantined) == (3, 3, 0)


def _byte_order_mark(suffix: str) -> tuple[str, str]:
    a, c = f'"bom-a{suffix}"'.encode(), f'"bom-c{suffix}"'.encode()
    clean = [
        b"\xef\xbb\xbf" + json_line(record(event_id=f"bom-a{suffix}")),
        json_line(record(event_id=f"bom-b{suffix}")),
    ]
    return batched(f"bom-1{suffix}", clean), batched(f"bom-2{suffix}", [clean[0].replace(a, c), b"\xff"])


BYTE_ORDER_MARKS = {suffix: _byte_order_mark(suffix) for suffix in (".jsonl", ".jsonl.gz", ".jsonl.zst")}


@pytest.mark.parametrize("suffix", list(BYTE_ORDER_MARKS))
def test_a_byte_order_mark_is_a_parse_error_whichever_reader_reads_the_file(batch: Batch, suffix: str) -> None:
    """U+FEFF is not JSON whitespace (RFC 8259): the first line of a file that starts with a
    BOM is a parse_error, as it is further down, and as the fallback reader (a file with an
    invalid UTF-8 line) said before; DuckDB's reader used to drop it at the start of a file."""
    names = BYTE_ORDER_MARKS[suffix]
    for name in names:
        batch.file(name)
    assert [(q[0], q[3]) for q in batch.quarantine(*names)] == [
        (1, "line is not valid JSON: it starts with a byte-order mark (U+FEFF)"),
        (1, "line is not valid JSON: it starts with a byte-order mark (U+FEFF)"),
        (2, "line is not valid UTF-8 (byte 0)"),
    ]
    assert batch.attempt_ids(*names) == [(f"bom-b{suffix}",)]


def test_empty_and_zero_byte_files_are_zero_lines(billing: Billing) -> None:
    for name in ("a.jsonl", "b.jsonl.gz", "c.jsonl.zst", "d.parquet"):
        (billing.logs / f"requests-{DAY}-{name}").write_bytes(b"")
    write_lines(billing.logs / f"requests-{DAY}-e.jsonl.gz", [])
    billing.log(f"requests-{DAY}-f.jsonl", [record(event_id="ok")])
    report = billing.nightly(DAY)
    assert sum(f.lines_read for f in report.files) == 1 and billing.rated("ok")["outcome"] == "billed"


UNREADABLE_PARQUET = {
    body: batched(f"parquet-{i}.parquet", body)
    for i, body in enumerate([b"PAR1" + b"\x00" * 64 + b"PAR1", b"not parquet at all", b"PAR1"])
}


@pytest.mark.parametrize("body", list(UNREADABLE_PARQUET))
def test_unreadable_parquet_is_one_quarantine_entry(batch: Batch, body: bytes) -> None:
    f = batch.file(UNREADABLE_PARQUET[body])
    assert (f.lines_read, f.quarantined) == (1, 1)
    assert batch.quarantine(UNREADABLE_PARQUET[body])[0][3].startswith(
        "file unreadable after line 0: not a readable Parquet file"
    )


def _cut_stream(suffix: str) -> str:
    # a writer appending one gzip member / zstd frame per flush, killed inside the last one;
    # a cut zstd frame used to ingest silently as 0 lines (neither DuckDB nor zstandard says)
    def compress(data: bytes) -> bytes:
        return gzip.compress(data, mtime=0) if suffix.endswith("gz") else zstandard.ZstdCompressor().compress(data)

    first = b"".join(json_line(record(event_id=f"cut{suffix}-a{i}")) + b"\n" for i in range(50))
    second = compress(b"".join(json_line(record(event_id=f"cut{suffix}-b{i}")) + b"\n" for i in range(50)))
    return batched(f"cut{suffix}", compress(first) + second[: len(second) // 2])


CUT_STREAMS = {suffix: _cut_stream(suffix) for suffix in (".jsonl.gz", ".jsonl.zst")}


@pytest.mark.parametrize("suffix", list(CUT_STREAMS))
def test_cut_stream_keeps_the_lines_before_the_cut_and_flags_the_rest(batch: Batch, suffix: str) -> None:
    f = batch.file(CUT_STREAMS[suffix])
    # gzip decodes into the cut member (whole lines only), zstd up to the last whole block
    assert 50 <= f.accepted < 100 and f.quarantined == 1 and f.lines_read == f.accepted + 1
    assert batch.quarantine(CUT_STREAMS[suffix])[0][3].startswith(f"file unreadable after line {f.accepted}")


def test_a_line_over_the_limit_is_quarantined_without_being_held_in_memory(billing: Billing, monkeypatch) -> None:
    from pipeline.ingest import files

    monkeypatch.setattr(files, "MAX_LINE_BYTES", 1000)
    long_line = json_line(record(event_id="long", output_text="x" * 5000))
    # invalid UTF-8 elsewhere sends the file to the fallback reader, whose limit is patched
    f = one_file(billing, [json_line(record(event_id="ok")), long_line, b"\xff", json_line(record(event_id="ok2"))])
    assert (f.lines_read, f.accepted, f.quarantined) == (4, 2, 2)
    assert quarantine(billing)[0][3] == "line is longer than 0 MiB"


# --- the fuzz --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean_bill(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Any, ...]]:
    """The valid records billed alone: what every dirty run must reproduce."""
    clean = Billing(tmp_path_factory.mktemp("clean"))
    clean.log(f"requests-{DAY}.jsonl", VALID)
    clean.nightly(DAY)
    rated = clean.query(RATED, [VALID_IDS])
    assert len(rated) == len(VALID)
    return rated


TEXT_KINDS = (".jsonl", ".jsonl.gz", ".jsonl.zst")


@st.composite
def dirty_logs(draw: st.DrawFn) -> tuple[list[tuple[str, list[bytes]]], list[tuple[str, bytes]]]:
    """Text files mixing the valid records with hostile lines, plus wholly injured files."""
    n_files = draw(st.integers(1, 3))
    kinds = [draw(st.sampled_from(TEXT_KINDS)) for _ in range(n_files)]
    files: list[list[bytes]] = [[] for _ in range(n_files)]
    for r in VALID:
        files[draw(st.integers(0, n_files - 1))].append(json_line(r, crlf=draw(st.booleans())))
    hostile: list[HostileLine] = draw(st.lists(hostile_lines(), max_size=10))
    for i, h in enumerate(hostile):
        target = files[draw(st.integers(0, n_files - 1))]
        target.insert(draw(st.integers(0, len(target))), h.to_bytes())
        if i % 3 == 0:
            target.insert(draw(st.integers(0, len(target))), draw(st.sampled_from((b"", b"  ", b"\t\r"))))
    text_files = [(f"requests-{DAY}-{i}{kinds[i]}", lines) for i, lines in enumerate(files)]
    broken: list[tuple[str, bytes]] = []
    for i, injury in enumerate(draw(st.lists(st.sampled_from(BROKEN_FILES), max_size=2, unique=True))):
        junk = b"".join(h.to_bytes() + b"\n" for h in hostile[:3]) or b'{"x": 1}\n'
        broken.append((f"requests-{DAY}-broken{i}{injury[0]}", injury[1](junk, draw(st.randoms()))))
    return text_files, broken


BROKEN_FILES = (
    (".jsonl.gz", lambda data, rng: gzip.compress(data, mtime=0)[: rng.randint(1, 30)]),
    (".jsonl.zst", lambda data, rng: bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40)))),
    (".parquet", lambda data, rng: b""),
    (".parquet", lambda data, rng: b"PAR1" + data[:50] + b"PAR1"),
    (".jsonl", lambda data, rng: b""),
)


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(logs=dirty_logs())
def test_fuzz_never_crashes_accounts_for_every_line_and_bills_valid_records_unchanged(
    tmp_path_factory: pytest.TempPathFactory, clean_bill: list[tuple[Any, ...]], logs: Any
) -> None:
    text_files, broken = logs
    dirty = Billing(tmp_path_factory.mktemp("dirty"))
    expected_lines = {}
    for name, lines in text_files:
        expected_lines[name] = non_blank_lines(write_lines(dirty.logs / name, lines))
    for name, data in broken:
        (dirty.logs / name).write_bytes(data)
    report = dirty.nightly(DAY)
    for f in report.files:
        name = Path(f.path).name
        assert f.lines_read == f.accepted + f.duplicates + f.quarantined, name
        if name in expected_lines:
            assert f.lines_read == expected_lines[name], name
    assert dirty.one("SELECT count(*) FROM quarantine") == sum(f.quarantined for f in report.files)
    assert dirty.one("SELECT count(*) FROM attempts") == sum(f.accepted for f in report.files)
    assert dirty.query(RATED, [VALID_IDS]) == clean_bill
    if count_file := os.environ.get("INFERGATE_FUZZ_COUNT_FILE"):  # make soak reports the totals
        hostile = sum(len(lines) for _, lines in text_files) - len(VALID)
        with open(count_file, "a", encoding="utf-8") as handle:
            handle.write(f"{hostile} {len(broken)} {sum(f.lines_read for f in report.files)}\n")
