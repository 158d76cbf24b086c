"""Ingest: R1 dedup, R9 quarantine with file/line/field, line accounting, file kinds."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zstandard

from core.db import connect
from pipeline import jobs
from pipeline.ingest import IngestError
from tests.conftest import Billing, record, usage


def quarantine_rows(billing: Billing) -> list[tuple[str, int, str, str | None, str]]:
    return [
        (Path(f).name, line, reason, field, message)
        for f, line, reason, field, message in billing.query(
            "SELECT source_file, source_line, reason, field, message FROM quarantine ORDER BY source_line"
        )
    ]


BAD_RECORDS = [
    ('{"event_id": "e", ', "parse_error", None),
    ("[1, 2, 3]", "invalid_record", None),
    (record(event_id=None), "invalid_record", "event_id"),
    (record(attempt="2"), "invalid_record", "attempt"),
    (record(attempt=0), "invalid_record", "attempt"),
    (record(attempt=1.0), "invalid_record", "attempt"),
    (record(status="200"), "invalid_record", "status"),
    (record(model=None), "invalid_record", "model"),
    (record(stream="yes"), "invalid_record", "stream"),
    (record(ts=1764633600), "invalid_record", "ts"),
    (record(ts="2026-11-20T12:00:00"), "bad_timestamp", "ts"),
    (record(ts="2026-11-20 12:00"), "bad_timestamp", "ts"),
    (record(ts="2026-02-30T12:00:00Z"), "bad_timestamp", "ts"),
    (record(ts="yesterday"), "bad_timestamp", "ts"),
    (record(usage=usage(100, 10, cached=150)), "usage_inconsistent", "usage.prompt_tokens_details.cached_tokens"),
    (
        record(usage={"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 111}),
        "usage_inconsistent",
        "usage.total_tokens",
    ),
    (record(usage={"prompt_tokens": "100", "completion_tokens": 10}), "usage_inconsistent", "usage.prompt_tokens"),
    (record(usage={"prompt_tokens": 12.5, "completion_tokens": 10}), "usage_inconsistent", "usage.prompt_tokens"),
    (
        record(usage={"prompt_tokens": 100, "completion_tokens": True}),
        "usage_inconsistent",
        "usage.completion_tokens",
    ),
    (record(usage={"prompt_tokens": -1, "completion_tokens": 10}), "usage_inconsistent", "usage.prompt_tokens"),
    (
        record(
            usage={
                "prompt_tokens": 100,
                "completion_tokens": 10,
                "prompt_cache_hit_tokens": 60,
                "prompt_cache_miss_tokens": 50,
            }
        ),
        "usage_inconsistent",
        "usage.prompt_cache_hit_tokens",
    ),
    (
        record(
            usage={
                "prompt_tokens": 100,
                "completion_tokens": 10,
                "completion_tokens_details": {"reasoning_tokens": 11},
            }
        ),
        "usage_inconsistent",
        "usage.completion_tokens_details.reasoning_tokens",
    ),
    (record(usage="lots"), "invalid_record", "usage"),
]
# Each bad record's file, all read by one nightly (the ``bad_records`` fixture): a nightly costs
# about 0.7 CPU-s whatever it reads, and a case's verdict depends on its own line alone (the
# good records around it have event ids of their own, so R1 dedup cannot join two cases).
BAD_RECORD_FILES = [f"requests-2026-11-20-bad-{i:02d}.jsonl" for i in range(len(BAD_RECORDS))]
# and other one-file cases of the same kind (a verdict on their own lines, their own ids)
OTHER_FILES: dict[str, list[dict[str, Any] | str]] = {}


def batched(name: str, items: list[dict[str, Any] | str]) -> str:
    name = f"requests-2026-11-20-{name}.jsonl"
    assert name not in OTHER_FILES and name not in BAD_RECORD_FILES
    OTHER_FILES[name] = items
    return name


@dataclass(frozen=True)
class OneNight:
    files: dict[str, Any]  # file name -> its FileResult
    quarantined: list[tuple[Any, ...]]  # quarantine_rows() of the night
    billed: dict[str, int]  # file name -> its billed attempts
    attempts: list[tuple[str, tuple[Any, ...]]]  # (file name, the whole attempts row)
    attempts_columns: list[str]
    rated: dict[str, dict[str, Any]]  # event_id -> its rated row
    quarantine_records: list[tuple[str, str]]  # (file name, quarantine.record), by line

    def quarantine_rows(self, name: str) -> list[tuple[Any, ...]]:
        return [row for row in self.quarantined if row[0] == name]

    def column(self, name: str, column: str) -> list[Any]:
        at = self.attempts_columns.index(column)
        return [row[at] for got, row in self.attempts if got == name]


@pytest.fixture(scope="module")
def bad_records(tmp_path_factory: pytest.TempPathFactory) -> OneNight:
    """The bad-record cases' files and the other one-file cases', read by one nightly."""
    billing = Billing(tmp_path_factory.mktemp("bad-records"))
    for i, ((bad, _, _), name) in enumerate(zip(BAD_RECORDS, BAD_RECORD_FILES, strict=True)):
        billing.log(name, [record(event_id=f"good-{i}"), bad, record(event_id=f"good2-{i}")])
    for name, items in OTHER_FILES.items():
        billing.log(name, items)
    report = billing.nightly()
    files = {Path(f.path).name: f for f in report.files}
    assert sorted(files) == sorted([*BAD_RECORD_FILES, *OTHER_FILES])
    billed = billing.query(
        "SELECT a.source_file, count(*) FROM rated_attempts r JOIN attempts a USING (event_id) "
        "WHERE r.outcome = 'billed' GROUP BY ALL"
    )
    con = connect(billing.settings.db_path, read_only=True)
    try:
        cursor = con.execute("SELECT * FROM attempts")
        attempts_columns = [d[0] for d in cursor.description]
        at = attempts_columns.index("source_file")
        attempts = [(Path(row[at]).name, row) for row in cursor.fetchall()]
        cursor = con.execute("SELECT * FROM rated_attempts")
        columns = [d[0] for d in cursor.description]
        rated = {row[columns.index("event_id")]: dict(zip(columns, row, strict=True)) for row in cursor.fetchall()}
    finally:
        con.close()
    records = billing.query("SELECT source_file, record FROM quarantine ORDER BY source_line")
    return OneNight(
        files,
        quarantine_rows(billing),
        {Path(f).name: n for f, n in billed},
        attempts,
        attempts_columns,
        rated,
        [(Path(f).name, r) for f, r in records],
    )


@pytest.mark.parametrize(("bad", "reason", "field"), BAD_RECORDS)
def test_bad_record_is_quarantined_with_reason_field_and_line(bad_records: OneNight, bad, reason, field) -> None:
    own = BAD_RECORD_FILES[BAD_RECORDS.index((bad, reason, field))]
    [(name, line, got_reason, got_field, message)] = bad_records.quarantine_rows(own)
    assert (name, line, got_reason, got_field) == (own, 2, reason, field)
    if field:
        assert message.startswith(f"field {field}")
    f = bad_records.files[own]
    assert (f.lines_read, f.accepted, f.quarantined) == (3, 2, 1)
    assert bad_records.billed[own] == 2


_UNKNOWN = usage(100, 10) | {"cost_in_usd_ticks": 17, "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 3}}
UNKNOWN_USAGE = batched("unknown-usage", [record(event_id="e-unknown-usage", usage=_UNKNOWN, extra_field={"x": 1})])


def test_unknown_usage_fields_are_ignored(bad_records: OneNight) -> None:
    assert bad_records.files[UNKNOWN_USAGE].accepted == 1
    assert bad_records.rated["e-unknown-usage"]["outcome"] == "billed"


REDACTED = batched(
    "redacted",
    [
        record(
            attempt="x",
            api_key_id="sk-proj-abcdefghijklmnop1234",
            messages=[{"role": "user", "content": "my secret prompt"}],
            output_text="secret answer",
        ),
        '{"api_key": "sk-live-0123456789abcdef", "messages": "x',
    ],
)


def test_quarantine_keeps_a_redacted_record_without_text_or_keys(bad_records: OneNight) -> None:
    records = [r for name, r in bad_records.quarantine_records if name == REDACTED]
    assert len(records) == 2
    for text in records:
        assert "sk-proj-abcdefghijklmnop1234" not in text and "sk-live-0123456789abcdef" not in text
        assert "secret" not in text
    kept = json.loads(records[0])
    assert kept["attempt"] == "x" and "messages" not in kept and "output_text" not in kept
    assert "[REDACTED]" in records[1]


RAW_KEY = batched("raw-key", [record(event_id="e-raw-key", api_key_id="sk-abcdefghijklmnopqrstu")])


def test_raw_api_key_in_a_valid_record_is_masked(bad_records: OneNight) -> None:
    assert bad_records.column(RAW_KEY, "api_key_id") == ["[REDACTED]"]


def test_same_event_twice_is_one_record_and_conflict_is_quarantined(billing: Billing) -> None:
    original = record(event_id="dup", usage=usage(1000, 100))
    changed = dict(original, status=500)
    billing.log("requests-2026-11-20.jsonl", [original, original, changed])
    report = billing.nightly()
    [f] = report.files
    assert (f.lines_read, f.accepted, f.duplicates, f.quarantined) == (3, 1, 1, 1)
    assert quarantine_rows(billing)[0][1:4] == (3, "duplicate_conflict", "event_id")
    assert billing.rated("dup")["status"] == 200  # the first one stands


def test_first_record_in_file_name_order_stands(billing: Billing) -> None:
    a = record(event_id="same", status=200)
    b = dict(a, status=503)
    billing.log("requests-2026-11-20-b.jsonl", [b])
    billing.log("requests-2026-11-20-a.jsonl", [a])
    billing.nightly()
    assert billing.rated("same")["status"] == 200
    assert quarantine_rows(billing)[0][0] == "requests-2026-11-20-b.jsonl"


def test_conflict_with_an_earlier_run_keeps_the_earlier_record(billing: Billing) -> None:
    a = record(event_id="same", usage=usage(1000, 100))
    billing.log("requests-2026-11-20.jsonl", [a])
    billing.nightly()
    billing.log("requests-2026-11-21.jsonl", [dict(a, usage=usage(9000, 900)), a])
    report = billing.nightly("2026-11-21")
    [f] = report.files
    assert (f.accepted, f.duplicates, f.quarantined) == (0, 1, 1)
    assert billing.rated("same")["output_tokens"] == 100


def test_reingesting_the_same_file_changes_nothing(billing: Billing) -> None:
    billing.log("requests-2026-11-20.jsonl", [record(), record(), "garbage"])
    first = billing.nightly()
    before = billing.query("SELECT * FROM rated_attempts ORDER BY event_id")
    second = billing.nightly()
    assert second.files[0].skipped and not first.files[0].skipped
    assert billing.query("SELECT * EXCLUDE (rated_run_id) FROM rated_attempts ORDER BY event_id") == [
        row[:-1] for row in before
    ]
    assert billing.one("SELECT count(*) FROM quarantine") == 1


def test_fixed_record_can_be_reingested(billing: Billing) -> None:
    billing.log("requests-2026-11-20.jsonl", [record(event_id="fix", ts="2026-11-20T10:00:00")])
    billing.nightly()
    billing.log("requests-2026-11-20-fixed.jsonl", [record(event_id="fix", ts="2026-11-20T10:00:00Z")])
    billing.nightly()
    assert billing.rated("fix")["outcome"] == "billed"
    assert billing.one("SELECT resolved_run_id FROM quarantine WHERE event_id = 'fix'") == 2


def test_all_file_kinds_are_read(billing: Billing, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [record(event_id=f"k{i}") for i in range(4)]
    billing.log("requests-2026-11-20.jsonl", [rows[0]])
    billing.log("requests-2026-11-20-b.jsonl.gz", [rows[1]])
    (billing.logs / "requests-2026-11-20-c.jsonl.zst").write_bytes(
        zstandard.ZstdCompressor().compress((json.dumps(rows[2]) + "\n").encode())
    )
    pq.write_table(pa.Table.from_pylist([rows[3]]), billing.logs / "requests-2026-11-20-d.parquet")
    report = billing.nightly()
    assert sorted(f.accepted for f in report.files) == [1, 1, 1, 1]
    assert billing.one("SELECT count(*) FROM rated_attempts WHERE outcome = 'billed'") == 4


def test_file_duckdb_cannot_read_is_read_line_by_line(billing: Billing) -> None:
    good = json.dumps(record(event_id="ok")).encode()
    (billing.logs / "requests-2026-11-20.jsonl").write_bytes(good + b"\n\xff\xfe not utf8\n" + good + b"\r\n")
    # two gzip members, the second cut off mid-stream (a writer killed while appending)
    truncated = gzip.compress(json.dumps(record(event_id="gz")).encode() + b"\n") + gzip.compress(good)[:-12]
    (billing.logs / "requests-2026-11-20-t.jsonl.gz").write_bytes(truncated)
    report = billing.nightly()
    by_name = {Path(f.path).name: f for f in report.files}
    plain = by_name["requests-2026-11-20.jsonl"]
    assert (plain.lines_read, plain.accepted, plain.duplicates, plain.quarantined) == (3, 1, 1, 1)
    broken = by_name["requests-2026-11-20-t.jsonl.gz"]
    assert broken.accepted == 1 and broken.quarantined >= 1
    messages = [m for *_, m in quarantine_rows(billing)]
    assert any("UTF-8" in m for m in messages) and any("unreadable" in m for m in messages)


BLANK_LINES = batched("blank-lines", [record(), "", "   ", record()])


def test_blank_lines_are_not_records(bad_records: OneNight) -> None:
    f = bad_records.files[BLANK_LINES]
    assert (f.lines_read, f.accepted, f.quarantined) == (2, 2, 0)


def test_named_file_of_unknown_kind_is_an_error(billing: Billing, tmp_path: Path) -> None:
    odd = tmp_path / "requests.csv"
    odd.write_text("a,b\n")
    with pytest.raises(IngestError, match="requests.csv: not a log file"):
        jobs.run_ingest(billing.settings, [str(odd)])


def test_a_part_hashed_by_another_duckdb_is_refused(tmp_path: Path) -> None:
    """The executors' lookup keys are used only if their DuckDB hashes as the driver's does: a
    part from another hash() would miss every stored twin and store duplicates silently."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.spark import SparkEngineError
    from pipeline.spark.parse import PROBE_KEY, VERSION_KEY, key_probe
    from pipeline.spark.staging import check_key_probes

    table = pa.table({"event_key": pa.array([1], pa.uint64())})
    good, bad = tmp_path / "part-000001.parquet", tmp_path / "part-000002.parquet"
    pq.write_table(table.replace_schema_metadata({PROBE_KEY: key_probe(), VERSION_KEY: duckdb.__version__}), good)
    pq.write_table(table.replace_schema_metadata({PROBE_KEY: "1/2", VERSION_KEY: "0.9.0"}), bad)
    check_key_probes([good])
    with pytest.raises(SparkEngineError) as caught:
        check_key_probes([good, bad])
    message = str(caught.value)
    assert (
        f"the executors' DuckDB 0.9.0 hashes lookup keys differently from the driver's {duckdb.__version__}" in message
    )
    assert f"install duckdb=={duckdb.__version__} on the executors" in message and bad.name in message


def test_an_open_exchange_directory_is_no_leftover(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A nightly keeps its parsed parts from staging to the end of its transaction while later
    steps open (and clear leftovers for) directories of their own; a closed one is a leftover."""
    from pipeline.spark.exchange import exchange_directory, remove_leftovers

    monkeypatch.setenv("INFERGATE_SPARK_WORKDIR", str(tmp_path))
    db = tmp_path / "billing.duckdb"
    with exchange_directory(db) as kept:
        with exchange_directory(db) as other:
            assert kept.is_dir() and other.is_dir()
        assert kept.is_dir() and not other.exists()
    assert not kept.exists()
    (tmp_path / kept.name).mkdir()  # as a killed run leaves it
    assert remove_leftovers(db) == [kept]
