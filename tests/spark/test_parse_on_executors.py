"""Engines agree on validation: every line parsed on Spark executors equals the DuckDB path's.

Issue 15's first step: ``pipeline.spark.parse`` runs the DuckDB path's own staging and
parse.sql inside each Spark task (one file per task). These tests hold it to that: the same
files are parsed by ``stage_files`` on one DuckDB connection and by ``remote.parse_files`` on
the session's executors (each file a task writing its rows as a Parquet part), and every
column of every line (the verdict ``problem`` with its reason, field and message, the typed
fields, the digests, the redacted record) must be equal, compared as text so that a lost
decimal digit or a shifted instant shows. The inputs are the committed
sample logs and a day of hostile files: arbitrary JSON values in every field, byte injuries,
deep nesting, repeated keys, API keys in ids, lone surrogates, a cut gzip stream, an unreadable
Parquet file, zero-byte files, a timestamp in the future.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from core.db import connect
from pipeline.ingest import discover, stage_files
from pipeline.ingest.files import file_sha256
from pipeline.ingest.recounting import default_recounter, recount_candidates_by_line
from pipeline.ingest.staging import create_staging, parse_staged, stage_file
from tests.conftest import record
from tests.hostile import DAY, hostile_lines, write_hostile_day
from tests.spark.conftest import SKIP_REASON

pytest.importorskip("pyspark", reason=SKIP_REASON)

from pipeline.spark import SparkEngineError, remote  # noqa: E402
from pipeline.spark.parse import KEY_COLUMNS, local_path, parsed_layout  # noqa: E402
from pipeline.spark.staging import load_special  # noqa: E402

SAMPLE_LOGS = Path(__file__).resolve().parents[2] / "data" / "sample_logs"
# the runs' recorded bounds (latest_plausible_ts of --date): a later ts is in the future
TS_LATEST = datetime(2026, 11, 22, tzinfo=UTC)  # the hostile day, DAY
SAMPLE_TS_LATEST = datetime(2026, 12, 3, tzinfo=UTC)  # the last sample day, 2026-12-01


def as_text(value: Any) -> Any:
    """A value both engines must agree on digit for digit: Decimals and instants as text."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        assert value.utcoffset() is not None, "an instant came back without its zone"
        return value.astimezone(UTC).isoformat()
    if isinstance(value, dict):
        return {k: as_text(v) for k, v in value.items()}
    return value


def rows_as_text(table: Any) -> list[dict[str, Any]]:
    rows = [{k: as_text(v) for k, v in row.items()} for row in table.to_pylist()]
    for row in rows:  # Arrow gives a NULL struct as a dict of NULLs; a verdict always has a reason
        if row["problem"] is not None and row["problem"]["reason"] is None:
            assert set(row["problem"].values()) == {None}
            row["problem"] = None
    return rows


def parsed_by_duckdb(paths: list[Path], ts_latest: datetime) -> list[dict[str, Any]]:
    """``parsed`` of the whole batch as the DuckDB path stages it, with the R5 counts the
    executors add, made file by file on a plain connection (counting needs no Spark)."""
    con = connect(":memory:")
    try:
        stage_files(con, paths, ts_latest=ts_latest)
        # the lookup keys as dedup.sql computes them: the executors' must be equal, value for value
        keys = (
            "CASE WHEN problem IS NULL THEN hash(event_id) END AS event_key, "
            "CASE WHEN problem IS NULL THEN hash(account_id, request_id) END AS request_key"
        )
        query = f"SELECT *, {keys} FROM parsed ORDER BY file_order, line_no"
        rows = rows_as_text(con.sql(query).to_arrow_table())
    finally:
        con.close()
    counts: dict[tuple[int, int], tuple[Any, ...]] = {}
    for order, path in enumerate(paths, start=1):
        con = connect(":memory:")
        try:
            create_staging(con)
            stage_file(con, path, order, file_sha256(path))
            parse_staged(con, ts_latest=ts_latest)
            recount_candidates_by_line(con, default_recounter())
            for line_no, *est in con.execute(
                "SELECT CAST(event_id AS BIGINT), est_input_tokens, est_output_tokens, est_tokenizer FROM recounts"
            ).fetchall():
                counts[(order, line_no)] = tuple(est)
        finally:
            con.close()
    for row in rows:
        est = counts.get((row["file_order"], row["line_no"]), (None, None, None))
        row.update(zip(("est_input_tokens", "est_output_tokens", "est_tokenizer"), est, strict=True))
    assert any(row["event_key"] is not None for row in rows)
    return rows


def parsed_by_spark(spark: Any, paths: list[Path], ts_latest: datetime, work: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    files = [(order, str(path), file_sha256(path)) for order, path in enumerate(paths, start=1)]
    (work / "parsed").mkdir()
    (work / "spill").mkdir()
    parts, lines = remote.parse_files(spark, files, work / "parsed", ts_latest, None, work / "spill")
    rows = [row for part in parts for row in rows_as_text(pq.read_table(part))]
    assert list((work / "spill").iterdir()) == []  # the tasks' spill directories are removed
    assert sum(lines.values()) == len(rows)  # the tasks' counts, which the ledger then uses
    return sorted(rows, key=lambda r: (r["file_order"], r["line_no"]))


def assert_engines_agree(spark: Any, paths: list[Path], ts_latest: datetime, work: Path) -> list[dict[str, Any]]:
    expected = parsed_by_duckdb(paths, ts_latest)
    got = parsed_by_spark(spark, paths, ts_latest, work)
    assert [(r["file_order"], r["line_no"]) for r in got] == [(r["file_order"], r["line_no"]) for r in expected]
    for want, have in zip(expected, got, strict=True):
        assert have == want, f"{want['source_file']}:{want['line_no']} differs"
    return expected


def special_rows(rows: list[dict[str, Any]]) -> int:
    """The rows the driver must load of a batch with no history: quarantined, or valid and
    sharing their event_id with another valid row of other content (repeats of one content are
    decided by Spark's probe), with a quarantined line, or spelling the mask."""
    valid = [r for r in rows if r["problem"] is None]
    contents: dict[str, set[str]] = {}
    for r in valid:
        contents.setdefault(r["event_id"], set()).add(r["content_sha256"])
    quarantined = {r["event_id"] for r in rows if r["problem"] is not None}
    return sum(
        r["problem"] is not None
        or len(contents[r["event_id"]]) > 1
        or r["event_id"] in quarantined
        or "[REDACTED]" in r["event_id"]
        for r in rows
    )


def test_sample_logs_parse_identically_on_executors(spark: Any, tmp_path: Path) -> None:
    paths = discover([str(SAMPLE_LOGS / "*")])
    rows = assert_engines_agree(spark, paths, SAMPLE_TS_LATEST, tmp_path)
    # the sample logs exercise every kind of file and some quarantine (see data/sample_logs)
    assert {Path(r["source_file"]).suffix for r in rows} == {".gz", ".zst", ".parquet"}
    assert len(rows) == 1902 and sum(r["problem"] is not None for r in rows) == 18
    assert sum(r["est_tokenizer"] is not None for r in rows) == 48  # the R5 records of all four files, counted
    # the driver loads the quarantined and the special rows only, not all 1,902 (nothing stored yet)
    con = connect(":memory:")
    try:
        create_staging(con)
        parse_staged(con)
        load_special(con, sorted((tmp_path / "parsed").glob("part-*.parquet")))
        loaded = con.execute("SELECT count(*), count(*) FILTER (WHERE problem IS NOT NULL) FROM parsed").fetchone()
    finally:
        con.close()
    assert loaded == (special_rows(rows), 18) and special_rows(rows) < 100


@settings(
    max_examples=2,
    derandomize=True,
    deadline=None,
    phases=[Phase.generate],  # each example is a Spark job: no shrinking, the failure names the line
    suppress_health_check=list(HealthCheck),
)
@given(drawn=st.lists(hostile_lines(), min_size=40, max_size=40))
def test_a_hostile_day_parses_identically_on_executors(spark: Any, tmp_path_factory: Any, drawn: list[Any]) -> None:
    logs = tmp_path_factory.mktemp("hostile")
    rows = assert_engines_agree(spark, write_hostile_day(logs, drawn), TS_LATEST, tmp_path_factory.mktemp("work"))
    reasons = {r["problem"]["reason"] for r in rows if r["problem"] is not None}
    # the day really is hostile: the fixed lines alone give these verdicts on both engines
    assert {"parse_error", "bad_timestamp", "invalid_record"} <= reasons
    unreadable = [r for r in rows if r["problem"] and r["problem"]["message"].startswith("file unreadable")]
    assert {Path(r["source_file"]).name for r in unreadable} == {
        f"requests-{DAY}-d.jsonl.gz",
        f"requests-{DAY}-e.parquet",
    }


def test_no_files_write_no_part_and_the_parts_have_the_columns_of_parsed(spark: Any, tmp_path: Path) -> None:
    assert remote.parse_files(spark, [], tmp_path, None, None, tmp_path) == ([], {})
    # the layout comes from parse.sql itself (an empty parse on the driver)
    con = connect(":memory:")
    try:
        stage_files(con, discover([str(SAMPLE_LOGS / "*")])[:1])
        counts = ["est_input_tokens", "est_output_tokens", "est_tokenizer"]
        expected = [c[0] for c in con.sql("DESCRIBE parsed").fetchall()] + counts + list(KEY_COLUMNS)
        assert parsed_layout().arrow_schema.names == expected
    finally:
        con.close()


def test_the_local_reader_opens_local_paths_and_file_uris_only(tmp_path: Path) -> None:
    """Other schemes go through Spark's reader (pipeline/spark/remote.py, test_remote_logs.py)."""
    assert local_path("file:///srv/logs/a.jsonl") == Path("/srv/logs/a.jsonl")
    assert local_path("file:///srv/logs/a%20b.jsonl") == Path("/srv/logs/a%20b.jsonl")  # literal, as Hadoop
    assert local_path("file://localhost/srv/logs/a.jsonl") == Path("/srv/logs/a.jsonl")
    assert local_path(str(tmp_path)) == tmp_path
    with pytest.raises(SparkEngineError, match="this reader opens local files; a --logs URI is read through Spark"):
        local_path("s3a://bucket/logs/a.jsonl")
    with pytest.raises(SparkEngineError, match="must name a local path"):
        local_path("file://otherhost/logs/a.jsonl")


def test_a_task_counts_long_prompts_itself_and_ships_counts_not_text(tmp_path: Path) -> None:
    """R5 runs in the task: a file of long usage-less prompts comes back as counts, and no
    column of any row carries the prompt's text."""
    from pipeline.spark import parse

    prompt = "word " * 8_000  # 8,000 tokens of input
    lines = [
        json.dumps(record(event_id=f"long-{i}", usage=None, messages=[{"role": "user", "content": prompt}]))
        for i in range(30)
    ]
    (tmp_path / "requests-2026-11-20.jsonl").write_text("\n".join(lines) + "\n")
    spill = tmp_path / "spill"
    spill.mkdir()
    batches = list(
        parse.parse_file(1, str(tmp_path / "requests-2026-11-20.jsonl"), parse.parsed_layout(), spill_parent=str(spill))
    )
    rows = [row for batch in batches for row in batch.to_pylist()]
    assert [r["line_no"] for r in rows] == list(range(1, 31))
    assert all(r["est_tokenizer"] and 8_000 <= r["est_input_tokens"] <= 8_010 for r in rows)
    assert not any("word word" in str(value) for r in rows for value in r.values())
    assert list(spill.iterdir()) == []  # the task's spill directory is gone
