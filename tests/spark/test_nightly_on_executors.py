"""``nightly --engine spark`` validates on the executors, and stores what the DuckDB path stores.

Two nights of hostile files go through the real nightly job on several databases: both nights
on DuckDB and the engines alternating (Spark then DuckDB, DuckDB then Spark); under `make fuzz`
also both on Spark, from a path and from a ``file://`` URI. Quarantine (file, line, event,
reason, field, message and the redacted record), stored attempts, the per-file accounting,
rated attempts and statement lines must be identical on all of them,
every value compared by its text. The nights hold R5 records (recounted from lines the
executors ship), conflicts within a batch and with history (quarantined with their redacted
records from files the driver stages again), identical resends, and every file injury.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from core.attempt_store import attempts_of_runs
from pipeline import jobs
from tests.conftest import FULL_DEPTH, Billing, deep, record, usage
from tests.hostile import DAY, hostile_lines, json_line, valid_records, write_hostile_day, write_lines
from tests.spark.conftest import SKIP_REASON

pytest.importorskip("pyspark", reason=SKIP_REASON)

from tests.spark.test_engines_agree import LINES, RATED, texts  # noqa: E402

NEXT_DAY = "2026-11-21"
THIRD_DAY = "2026-11-22"
UPSTREAM = {"status": 502, "error_code": "upstream_error"}
PLANS = {
    "duckdb": ("duckdb", "duckdb"),
    "spark-then-duckdb": ("spark", "duckdb"),
    "duckdb-then-spark": ("duckdb", "spark"),
}
if FULL_DEPTH:  # make fuzz: both nights on Spark, from a path and from a URI (make test: each
    # night on Spark from a path in the alternating plans; URI nightlies of small days in
    # tests/spark/test_remote_logs.py): four Spark nightlies of these nights, ~20 s, less
    PLANS["spark"] = ("spark", "spark")
    # --logs as a URI: listed by Hadoop's file system, hashed, validated and (for dedup's
    # quotes) staged by the executors from the bytes Spark reads (pipeline/spark/remote.py)
    PLANS["spark-uri"] = ("spark", "spark")

# the mechanics of a Spark nightly (what the probe finds, the tasks' files): make fuzz only
BESIDE_THE_NIGHTS = deep(
    "test_nights_store_the_same_whichever_engine_ran_each (every table equal on alternating engines)"
)
STORED = {
    "quarantine": (
        "SELECT source_file, source_sha256, source_line, event_id, reason, field, message, record, run_id,"
        " resolved_run_id FROM quarantine ORDER BY source_file, source_line, reason"
    ),
    "attempts": "SELECT * FROM attempts ORDER BY event_id",
    # the executors' lookup keys (stored for the rows the driver did not load) are the driver's
    "attempt_keys": "SELECT event_key, request_key FROM attempt_keys ORDER BY event_key, request_key",
    "ingested_files": (
        "SELECT sha256, file_name, run_id, lines_read, accepted, duplicates, quarantined FROM ingested_files"
        " ORDER BY run_id, file_name"
    ),
    "rated_attempts": RATED,
    "statement_lines": LINES,
    # the same rows a run and table in the lake files (a Spark run's attempts in several: the
    # driver's part 0 and one a log file, written by its task; migration 034)
    "lake_files": "SELECT table_name, run_id, sum(row_count) FROM lake_files GROUP BY ALL ORDER BY ALL",
}


def on_engine(root: Path, engine: str) -> Billing:
    """A fresh billing setup under ``root`` whose nightlies run on ``engine``."""
    billing = Billing(root)
    billing.settings = dataclasses.replace(billing.settings, engine=engine)
    return billing


def attempt_file_columns(billing: Billing) -> set[tuple[str, ...]]:
    """The attempts lake files' columns and their types as DuckDB reads them, each layout once
    (the view ``attempts`` casts, so a file written in other types would not show there)."""
    files = billing.query("SELECT path FROM lake_files WHERE table_name = 'attempts' ORDER BY run_id")
    assert files
    lake = billing.settings.db_path.with_suffix(".lake")
    return {
        tuple(f"{name} {kind}" for name, kind, *_ in billing.query(f"DESCRIBE SELECT * FROM '{lake / path}'"))
        for (path,) in files
    }


def r5(event_id: str, ts: str, text: str) -> dict[str, Any]:
    """A billable attempt without usage: R5 counts its texts."""
    return record(
        event_id=event_id,
        request_id=f"req-{event_id}",
        ts=ts,
        usage=None,
        messages=[{"role": "user", "content": text}],
        output_text=f"answer to {text}",
    )


def first_night(logs: Path, drawn: list[Any]) -> None:
    write_hostile_day(logs, drawn)
    twin = record(event_id="twin", request_id="req-twin", ts=f"{DAY}T07:00:00Z", usage=usage(40, 4))
    edited = dict(twin, usage=usage(41, 4))  # same event_id, other content: a conflict in the batch
    broken = record(event_id="fix-me", request_id="req-fix-me", ts=f"{DAY}T09:00:00Z", status="200")
    write_lines(
        logs / f"requests-{DAY}-h.jsonl",
        [
            json_line(twin),
            json_line(r5("r5-a", f"{DAY}T08:00:00Z", "count these words")),
            json_line(edited),
            json_line(broken),  # invalid_record, fixed the next night
            # billed tonight, superseded by an attempt after midnight: the next night's rating
            # reaches this run (else the request would be billed twice)
            json_line(record(event_id="late-1", request_id="req-late", ts=f"{DAY}T23:59:58Z")),
        ],
    )
    write_lines(logs / f"requests-{DAY}-i.jsonl.gz", [json_line(twin), json_line(edited)])


def second_night(logs: Path) -> None:
    v1 = valid_records()[0]
    write_lines(
        logs / f"requests-{NEXT_DAY}.jsonl",
        [
            json_line(dict(v1, usage=usage(1, 1))),  # conflicts with the stored v-1: the first stands
            json_line(record(event_id="new-next", request_id="req-new-next", ts=f"{NEXT_DAY}T01:00:00Z")),
            json_line(r5("r5-b", f"{NEXT_DAY}T02:00:00Z", "und noch ein paar Wörter")),
            b'{"event_id": 1}',
            # yesterday's broken fix-me, fixed: new, it resolves the quarantine entries it replaces
            # (on Spark only if the driver loads it: its event_id is neither repeated nor stored)
            json_line(record(event_id="fix-me", request_id="req-fix-me", ts=f"{DAY}T09:00:00Z")),
            # broken and fixed in the same batch: its entry is resolved by this run (on Spark only
            # if the driver loads the valid line too: found by review)
            json_line(record(event_id="fix-now", request_id="req-fix-now", ts=f"{NEXT_DAY}T04:00:00Z", status="200")),
            json_line(record(event_id="fix-now", request_id="req-fix-now", ts=f"{NEXT_DAY}T04:00:00Z")),
            json_line(record(event_id="late-2", request_id="req-late", attempt=2, ts=f"{NEXT_DAY}T00:00:02Z")),
        ],
    )
    # yesterday's file h again under another name, with one line more: its lines are duplicates
    again = (logs / f"requests-{DAY}-h.jsonl").read_bytes()
    one_more = json_line(r5("r5-c", f"{NEXT_DAY}T03:00:00Z", "x")) + b"\n"
    (logs / f"requests-{NEXT_DAY}-h.jsonl").write_bytes(again + one_more)


def run_plan(root: Path, engines: tuple[str, str], logs: Path, as_uri: bool = False) -> Billing:
    billing = Billing(root)
    billing.logs = logs  # the same files for every plan (an unreadable file's message names its path)
    for day, engine in zip((DAY, NEXT_DAY), engines, strict=True):
        billing.settings = dataclasses.replace(billing.settings, engine=engine)
        if as_uri:
            jobs.run_nightly(billing.settings, date.fromisoformat(day), "file://" + str(logs))
        else:
            billing.nightly(day)
    return billing


def shown_as_path(rows: list[tuple[str, ...]], logs: Path) -> list[tuple[str, ...]]:
    """Rows of the URI plan with the logs' URI written as their path: a reader's error quoted in a
    message names the file as the run was given it (the URI there, the path on DuckDB)."""
    uri = "file://" + str(logs)
    return [tuple(value.replace(uri, str(logs)) for value in row) for row in rows]


@settings(
    max_examples=1,
    derandomize=True,
    deadline=None,
    phases=[Phase.generate],  # eight nightlies per example, four on Spark: no shrinking
    suppress_health_check=list(HealthCheck),
)
@given(drawn=st.lists(hostile_lines(), min_size=30, max_size=30))
def test_nights_store_the_same_whichever_engine_ran_each(
    spark: Any, tmp_path_factory: pytest.TempPathFactory, drawn: list[Any]
) -> None:
    logs = tmp_path_factory.mktemp("logs")
    first_night(logs, drawn)
    second_night(logs)
    dbs = {
        name: run_plan(tmp_path_factory.mktemp(name), plan, logs, as_uri=name == "spark-uri")
        for name, plan in PLANS.items()
    }
    for table, query in STORED.items():
        expected = texts(dbs["duckdb"].query(query))
        assert expected, table
        for name in PLANS:
            found = texts(dbs[name].query(query))
            if name == "spark-uri":
                found = shown_as_path(found, logs)
            assert found == expected, f"{table} differs on {name}"
    for name in PLANS:
        assert attempt_file_columns(dbs[name]) == attempt_file_columns(dbs["duckdb"]), name
    if "spark-uri" in dbs:
        uri_inputs = dbs["spark-uri"].query("SELECT DISTINCT path FROM run_files WHERE kind = 'input' ORDER BY 1")
        assert uri_inputs and all(p.startswith(f"file://{logs}/") for (p,) in uri_inputs)
    # the nights hold what they claim to (on every engine, since the tables are equal)
    reference = dbs["duckdb"]
    reasons = {r for (r,) in reference.query("SELECT DISTINCT reason FROM quarantine")}
    assert {"parse_error", "invalid_record", "duplicate_conflict"} <= reasons
    conflicts = reference.query(
        "SELECT event_id, record FROM quarantine WHERE reason = 'duplicate_conflict' ORDER BY event_id"
    )
    # the edited twin in files h and i (night 1), in h resent (night 2), and v-1 edited (night 2)
    assert [e for e, _ in conflicts] == ["twin", "twin", "twin", "v-1"] and all(rec for _, rec in conflicts)
    fixed = reference.query("SELECT run_id, resolved_run_id FROM quarantine WHERE event_id = 'fix-me' ORDER BY 1")
    assert fixed == [(1, 2), (2, 2)]  # night 1's entry, and the resent file h's of night 2
    assert reference.query("SELECT run_id, resolved_run_id FROM quarantine WHERE event_id = 'fix-now'") == [(2, 2)]
    # the retry across midnight: R2 bills the second night's attempt, no longer the first night's
    late = reference.query(
        "SELECT event_id, outcome, reason FROM rated_attempts WHERE request_id = 'req-late' ORDER BY 1"
    )
    assert late == [("late-1", "not_billed", "superseded_attempt"), ("late-2", "billed", None)]
    recounted = reference.query("SELECT event_id FROM attempts WHERE est_tokenizer IS NOT NULL ORDER BY 1")
    assert [e for (e,) in recounted] == ["r5-a", "r5-b", "r5-c", "v-5"]


def test_a_spark_nightly_that_fails_after_staging_stores_nothing_and_leaves_no_parts(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The executors' parts live from staging to the end of the run's transaction (rows the
    driver did not load are stored from them): a run failing in between stores nothing, and
    its parts are removed all the same; the next run stores the day as if nothing happened."""
    from pipeline import rate

    exchange = tmp_path / "exchange"
    exchange.mkdir()
    monkeypatch.setenv("INFERGATE_SPARK_WORKDIR", str(exchange))
    billing = Billing(tmp_path / "billing")
    billing.settings = dataclasses.replace(billing.settings, engine="spark")
    twin = record(event_id="twin", request_id="req-twin")
    # twin again with other content: the driver's dedup keeps the first (a copy with the same
    # content would be decided by Spark's probe, and the task would store the first)
    edited = dict(twin, usage=usage(41, 4))
    billing.log(f"requests-{DAY}.jsonl", [record(event_id="a", request_id="r-a"), twin, edited, "{not json"])
    tables = ("attempt_keys", "attempts", "quarantine", "ingested_files")
    before = {t: billing.one(f"SELECT count(*) FROM {t}") for t in tables}

    lake = billing.settings.db_path.with_suffix(".lake")
    written: list[Path] = []

    def fail(con: Any, run_id: int, *args: Any) -> None:
        assert list(exchange.glob("infergate-spark-*/parsed/part-*.parquet")), "the parts should be there"
        # the run's attempts files and their keys' are written and listed before rating: a, which
        # the driver did not load, by the file's task (part 1), and twin, which it dedup'ed, by
        # the driver (part 0)
        assert con.execute("SELECT count(*) FROM run_attempts").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM run_attempt_keys").fetchone() == (0,)
        listed = "SELECT table_name, part, row_count FROM lake_files WHERE run_id = ? ORDER BY ALL"
        assert con.execute(listed, [run_id]).fetchall() == [
            ("attempt_keys", 0, 1),
            ("attempt_keys", 1, 1),
            ("attempts", 0, 1),
            ("attempts", 1, 1),
        ]
        keys = "SELECT event_key, run_id FROM attempt_keys ORDER BY ALL"
        assert (
            con.execute(keys).fetchall()
            == con.execute("SELECT hash(id), 1 FROM (VALUES ('a'), ('twin')) v(id) ORDER BY ALL").fetchall()
        )
        # part 1 of each is the file a task wrote into the exchange directory, renamed into the lake
        stored = exchange.glob("infergate-spark-*/stored-*")
        assert not [f for s in stored for f in s.glob("*.parquet")], "the tasks' files should have moved into the lake"
        scoped = con.execute(f"SELECT event_id FROM ({attempts_of_runs(con, [run_id])}) ORDER BY 1").fetchall()
        assert scoped == [("a",), ("twin",)]
        written.extend(sorted(lake.rglob("*.parquet")))
        raise RuntimeError("rating failed")

    left: list[list[Path]] = []
    close_failed = jobs._close_failed

    def closing(*args: Any) -> None:  # the run's frame still holds the batch: removed by the run, not by GC
        left.append(list(exchange.iterdir()))
        close_failed(*args)

    with monkeypatch.context() as patched:
        patched.setattr(rate, "rate_scope", fail)
        patched.setattr(jobs, "_close_failed", closing)
        with pytest.raises(RuntimeError, match="rating failed"):
            billing.nightly(DAY)
    assert left == [[]]
    assert {t: billing.one(f"SELECT count(*) FROM {t}") for t in tables} == before
    assert [p.relative_to(lake).as_posix() for p in written] == [
        "attempt_keys/run-000001-part-000001.parquet",
        "attempt_keys/run-000001.parquet",
        "attempts/run-000001-part-000001.parquet",
        "attempts/run-000001.parquet",
    ]
    assert all(p.exists() for p in written)  # unlisted
    [f] = billing.nightly(DAY).files
    assert (f.lines_read, f.accepted, f.duplicates, f.quarantined) == (4, 2, 0, 2)
    assert billing.one("SELECT count(*) FROM attempt_keys") == 2 and list(exchange.iterdir()) == []
    listed = {lake / p for (p,) in billing.query("SELECT path FROM lake_files")}
    assert not any(p.exists() for p in written) and set(lake.rglob("*.parquet")) == listed  # the next run removed them
    assert billing.query("SELECT event_id FROM attempts ORDER BY 1") == [("a",), ("twin",)]


@BESIDE_THE_NIGHTS
def test_a_spark_nightly_rates_its_own_attempts_files_beside_the_earlier_attempts_its_probe_found(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spark rates a nightly's attempts from the run's lake files, shared into the exchange
    directory as they are, not exported from DuckDB. The earlier attempts of the night's
    requests (a retry of yesterday's request), which the Spark probe found by their request
    keys, are exported beside them, and no scope is written: every request of the inputs is
    in scope. A request whose only record of the night is a duplicate is not; one whose only
    record the driver stored (yesterday's quarantined line, fixed) is; a night of duplicates
    only has an empty scope, still without a scope table. R2 chooses among both days'
    attempts, and every rated row and count is the DuckDB nightly's."""
    from pipeline.spark import bridge

    read: list[dict[str, Any]] = []
    rate = bridge.rate

    def reading(session: Any, inputs: Any) -> Any:  # what Spark reads, as files
        source = Path(inputs.attempts.removeprefix("file://"))
        files = sorted(source.glob("*.parquet")) if source.is_dir() else [source]
        earlier = None
        if inputs.earlier is not None:
            earlier = session.read.parquet(inputs.earlier).select("event_id").collect()
        read.append(
            {
                "attempts": {f.name: f.read_bytes() for f in files},
                "scope": inputs.scope,
                "earlier": None if earlier is None else sorted(row[0] for row in earlier),
            }
        )
        return rate(session, inputs)

    monkeypatch.setattr(bridge, "rate", reading)
    first_night = [
        record(event_id="first", request_id="late", ts=f"{DAY}T23:59:59Z", **UPSTREAM),
        record(event_id="other", request_id="r-other", ts=f"{DAY}T08:00:00Z"),
        record(event_id="fixed-1", request_id="fixed", ts=f"{DAY}T21:00:00Z", **UPSTREAM),
        # quarantined (a status as text), fixed the next night: the driver stores that record
        record(event_id="fix-me", request_id="fixed", attempt=2, ts=f"{DAY}T22:00:00Z", status="200"),
    ]
    second_night = [
        record(event_id="second", request_id="late", attempt=2, ts=f"{NEXT_DAY}T00:00:01Z"),
        record(event_id="other", request_id="r-other", ts=f"{DAY}T08:00:00Z"),  # a duplicate: not in scope
        record(event_id="fix-me", request_id="fixed", attempt=2, ts=f"{DAY}T22:00:00Z"),
        record(event_id="new-next", request_id="r-new", ts=f"{NEXT_DAY}T01:00:00Z"),
    ]
    reports = {}
    for engine in ("spark", "duckdb"):
        billing = on_engine(tmp_path / engine, engine)
        billing.log(f"requests-{DAY}.jsonl", first_night)
        billing.log(f"requests-{NEXT_DAY}.jsonl", second_night)
        # a third night of duplicates only (the second night's retry and "other" again, in a
        # file of other bytes): the probe names the earlier runs of their requests, the driver
        # keeps none (no record of them stored), nothing is in scope
        billing.log(f"requests-{THIRD_DAY}.jsonl", second_night[:2])
        reports[engine] = [billing.nightly(day) for day in (DAY, NEXT_DAY, THIRD_DAY)]
        assert (billing.rated("first")["reason"], billing.rated("second")["outcome"]) == ("upstream_error", "billed")
        assert (billing.rated("fixed-1")["outcome"], billing.rated("fix-me")["outcome"]) == ("not_billed", "billed")
        assert len(billing.query("SELECT * FROM quarantine WHERE resolved_run_id = 2")) == 1
        reports[engine].append(texts(billing.query(RATED)))
        if engine == "spark":
            lake = billing.settings.db_path.with_suffix(".lake")
            own = [
                billing.query(
                    "SELECT path FROM lake_files WHERE table_name = 'attempts' AND run_id = ? ORDER BY path", [run]
                )
                for run in (1, 2, 3)
            ]
            assert len(own[1]) == 2  # the driver's part 0 (fix-me) and the task's part
            for night, paths in zip(read[:2], own[:2], strict=True):
                shared = {f"{i:06d}-{Path(p).name}": (lake / p).read_bytes() for i, (p,) in enumerate(paths)}
                assert night["attempts"] == shared
            # the first night loads the reference data, which re-rates what is not issued: a
            # listed scope (rating_scope); the second rates its own files and their earlier attempts
            assert read[0]["scope"] is not None and read[0]["earlier"] is None
            assert (read[1]["scope"], read[1]["earlier"]) == (None, ["first", "fixed-1"])
            # no file of its own: the (empty) scoped attempts exported, still no scope
            assert own[2] == []
            third = (read[2]["scope"], read[2]["earlier"], list(read[2]["attempts"]))
            assert third == (None, None, ["attempts.parquet"])
    counts = {engine: [dataclasses.astuple(report.rated) for report in reports[engine][:3]] for engine in reports}
    assert counts["spark"] == counts["duckdb"]
    assert counts["spark"][1][:3] == (3, 5, 3)  # late, fixed, r-new: 5 attempts, 3 billed
    assert counts["spark"][2][:5] == (0, 0, 0, 0, 0)
    assert reports["spark"][3] == reports["duckdb"][3]


@BESIDE_THE_NIGHTS
def test_a_resent_day_s_plain_duplicates_are_decided_by_spark_s_probe_and_never_reach_the_driver(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day resent under another name: each record whose event_id is stored with the same
    content (one with its keys in another order: the same content) and repeats nowhere in the
    batch is a duplicate that Spark's probe decides; so are new records repeated within the
    batch with the same content (a line twice in a file, a file delivered twice under two
    names): the first is new and stored by its task, the others are duplicates. The driver
    loads only the record that also comes edited in another file (dedup must choose), reads
    only its stored twin, and counts the probe's duplicates in each file's accounting; the
    tasks store none of them. Everything stored is the DuckDB nightlies'."""
    from pipeline.spark import staging

    seen: list[tuple[list[str], dict[int, int], int]] = []
    load = staging.load_special

    def loading(con: Any, parts: Any) -> dict[int, int]:
        plain = load(con, parts)
        ids = sorted(str(i) for (i,) in con.execute("SELECT event_id FROM parsed").fetchall())
        (twins,) = con.execute("SELECT count(*) FROM stored_twins").fetchone()
        seen.append((ids, plain, twins))
        return plain

    monkeypatch.setattr(staging, "load_special", loading)
    day = [record(event_id=f"e-{i}", request_id=f"r-{i}", ts=f"{DAY}T0{i}:00:00Z") for i in range(1, 6)]
    resent: list[dict[str, Any] | str] = [json.dumps(dict(reversed(day[0].items())))] + day[1:]
    new = [record(event_id=f"n-{i}", request_id=f"rn-{i}", ts=f"{NEXT_DAY}T0{i}:00:00Z") for i in (1, 2)]
    stored = {}
    for engine in ("spark", "duckdb"):
        billing = on_engine(tmp_path / engine, engine)
        billing.log(f"requests-{DAY}.jsonl", day)
        billing.nightly(DAY)
        billing.log(f"requests-{NEXT_DAY}-a.jsonl", resent)
        billing.log(f"requests-{NEXT_DAY}-b.jsonl", [dict(day[2], usage=usage(41, 4))])  # e-3 edited
        billing.log(f"requests-{NEXT_DAY}-c.jsonl", [new[0], new[1], new[1]])  # n-2 twice
        billing.log(f"requests-{NEXT_DAY}-d.jsonl", [json.dumps(dict(reversed(new[0].items()))), new[1]])
        billing.nightly(NEXT_DAY)
        stored[engine] = {name: texts(billing.query(sql)) for name, sql in STORED.items()}
        accounting = billing.query(
            "SELECT file_name, lines_read, accepted, duplicates, quarantined FROM ingested_files WHERE run_id = 2"
            " ORDER BY file_name"
        )
        assert accounting == [
            (f"requests-{NEXT_DAY}-a.jsonl", 5, 0, 5, 0),  # four by the probe, e-3 by dedup
            (f"requests-{NEXT_DAY}-b.jsonl", 1, 0, 0, 1),  # the edited e-3: a duplicate_conflict
            (f"requests-{NEXT_DAY}-c.jsonl", 3, 2, 1, 0),  # n-1 and n-2 new, n-2 again
            (f"requests-{NEXT_DAY}-d.jsonl", 2, 0, 2, 0),  # file c's records again
        ]
        assert billing.query("SELECT event_id, reason FROM quarantine") == [("e-3", "duplicate_conflict")]
        assert billing.query("SELECT count(*), count(DISTINCT event_id), max(run_id) FROM attempts") == [(7, 7, 2)]
        assert billing.query("SELECT source_file, source_line FROM attempts WHERE run_id = 2 ORDER BY 1, 2") == [
            (f"requests-{NEXT_DAY}-c.jsonl", 1),
            (f"requests-{NEXT_DAY}-c.jsonl", 2),
        ]
    # the first night stores every record (no history: nothing is a duplicate); the second
    # loads e-3 twice (resent, and edited) and its one stored twin, and the probe counts the
    # four others of file a (file_order 1), n-2's repeat in file c (3) and file d's two (4)
    assert seen == [([], {}, 0), (["e-3", "e-3"], {1: 4, 3: 1, 4: 2}, 1)]
    assert stored["spark"] == stored["duckdb"]


@BESIDE_THE_NIGHTS
def test_a_valid_record_with_the_masked_id_of_a_quarantined_line_resolves_it_on_both_engines(
    spark: Any, tmp_path: Path
) -> None:
    """A line whose event_id holds an API key is quarantined with the id masked; a valid record
    whose id is that masked text resolves the entry when it is stored new (store_batch.sql).
    Spark's probe compares the quarantined lines' raw ids, so it loads every valid record whose
    id spells the mask for the driver's dedup instead of deciding it (found by review: repeated
    twice it was decided as a duplicate and stored by its task, once it was never loaded; the
    entries stayed open on Spark)."""
    secret = "sk-abcdefgh12345678"
    lines: list[dict[str, Any] | str] = []
    for name in ("m1", "m2"):
        lines.append(json.dumps(record(event_id=f"{name}-{secret}", request_id=f"r-{name}", ts=f"{DAY}T01:00:00Z")))
        lines.append(record(event_id=f"{name}-[REDACTED]", request_id=f"r-{name}", ts=f"{DAY}T01:00:00Z"))
    lines.append(lines[1])  # m1's masked id twice
    stored = {}
    for engine in ("spark", "duckdb"):
        billing = on_engine(tmp_path / engine, engine)
        billing.log(f"requests-{DAY}.jsonl", lines)
        billing.nightly(DAY)
        assert billing.query("SELECT event_id, reason, resolved_run_id FROM quarantine ORDER BY 1") == [
            ("m1-[REDACTED]", "invalid_record", 1),
            ("m2-[REDACTED]", "invalid_record", 1),
        ]
        assert billing.query("SELECT event_id FROM attempts ORDER BY 1") == [("m1-[REDACTED]",), ("m2-[REDACTED]",)]
        stored[engine] = {name: texts(billing.query(sql)) for name, sql in STORED.items()}
    assert stored["spark"] == stored["duckdb"]


def test_shared_attempt_files_are_copied_where_they_cannot_be_linked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exchange directory is often another file system than the lake (a shared mount):
    a file that cannot be hard-linked there is copied."""
    from pipeline.spark import bridge

    lake = tmp_path / "lake"
    lake.mkdir()
    (lake / "run-000001.parquet").write_bytes(b"one")
    (tmp_path / "work").mkdir()
    linked = bridge.share_files([lake / "run-000001.parquet"], tmp_path / "work" / "linked")
    assert (linked / "000000-run-000001.parquet").stat().st_ino == (lake / "run-000001.parquet").stat().st_ino

    def cross_device(source: Any, target: Any) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(bridge.os, "link", cross_device)
    copied = bridge.share_files([lake / "run-000001.parquet"], tmp_path / "work" / "copied")
    assert (copied / "000000-run-000001.parquet").read_bytes() == b"one"


def test_a_first_spark_night_makes_its_lake_folders_durable_and_takes_any_exchange_path(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review findings on the tasks' attempts files (issue 15 slice B). The first night creates
    the lake: each new folder's name must be fsynced in its parent, the database's own directory
    included (it was not on Spark: a power loss after the commit could drop the folder holding
    the day's only copy of its attempts). And the exchange directory may be any path, also one
    holding "$part" (each task substituted that placeholder in the whole query, the loaded keys'
    path included: a parser error)."""
    from core import attempt_store

    synced: list[Path] = []
    real = attempt_store.fsync_dir
    monkeypatch.setattr(attempt_store, "fsync_dir", lambda p: (synced.append(Path(p)), real(p)))
    work = tmp_path / "spark$parts"
    work.mkdir()
    monkeypatch.setenv("INFERGATE_SPARK_WORKDIR", str(work))
    billing = Billing(tmp_path / "billing")
    billing.settings = dataclasses.replace(billing.settings, engine="spark")
    billing.log(f"requests-{DAY}.jsonl", [record(event_id="a"), record(event_id="b")])
    billing.nightly(DAY)
    assert billing.query("SELECT event_id FROM attempts ORDER BY 1") == [("a",), ("b",)]
    assert billing.query("SELECT part FROM lake_files WHERE table_name = 'attempts' ORDER BY 1") == [(1,)]
    assert billing.settings.db_path.parent in synced


def lake_layout(path: Path) -> tuple[Any, ...]:
    """A lake file's layout: its columns and types as DuckDB and pyarrow read them, each
    column's Parquet type and compression, and whether Parquet 2's encodings are in use (which
    encoding a column gets depends on its values, not compared)."""
    import duckdb
    import pyarrow.parquet as pq

    with duckdb.connect() as con:
        described = con.execute(f"DESCRIBE SELECT * FROM '{path}'").fetchall()
        chunks = con.execute(
            f"SELECT DISTINCT path_in_schema, type, compression FROM parquet_metadata('{path}') ORDER BY ALL"
        ).fetchall()
        v2 = con.execute(f"SELECT bool_or(encodings LIKE '%DELTA%') FROM parquet_metadata('{path}')").fetchone()
    # (not whether a field is required: DuckDB's writer says so of a column without NULLs in the file)
    arrow = [(field.name, str(field.type)) for field in pq.read_schema(path)]
    return described, arrow, chunks, v2


@BESIDE_THE_NIGHTS
def test_a_spark_nightly_s_rated_rows_are_the_files_its_tasks_wrote(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15: the executors write a Spark nightly's rated rows as the run's lake files, in the
    stored layout (the DuckDB path's columns, types, row order and Parquet options: its tasks
    write them with DuckDB), listed by the run as its parts 1..; the driver's DuckDB writes no
    rated file and copies no rated row into a table (``new_rated`` is a view over the parts,
    which aggregation reads). The rows, the statement lines, the run's digests and ts bounds
    equal the DuckDB engine's, and replay verifies the run."""
    from core import attempt_store
    from pipeline import rate, replay
    from pipeline.spark import bridge

    write_rated = bridge.write_rated
    # Spark's rating output in three files, rows in no particular order: three parts, each
    # ordered by its task as the DuckDB path orders a run's file
    monkeypatch.setattr(bridge, "write_rated", lambda rated, out: write_rated(rated.repartition(3), out))
    written: list[Path] = []
    write_parquet = attempt_store.write_parquet

    def writing(con: Any, query: str, target: Path) -> int:  # what the driver's DuckDB writes
        written.append(Path(target))
        return write_parquet(con, query, target)

    monkeypatch.setattr(attempt_store, "write_parquet", writing)
    driver: dict[str, Any] = {}
    rate_scope = rate.rate_scope

    def rating(con: Any, *args: Any) -> Any:
        result = rate_scope(con, *args)
        kind = "SELECT table_type FROM information_schema.tables WHERE table_catalog = 'temp' AND table_name = ?"
        driver["new_rated"] = con.execute(kind, [result.rows_table]).fetchone()
        driver["run_rated"] = con.execute(f"SELECT count(*) FROM {attempt_store.RATED.run_table}").fetchone()
        return result

    monkeypatch.setattr(rate, "rate_scope", rating)
    logs = tmp_path / "logs"
    logs.mkdir()
    items = [
        record(event_id=f"e{i}", request_id=f"r{i % 7}", attempt=i // 7 + 1, ts=f"{DAY}T{i % 24:02d}:{i:02d}:00Z")
        for i in range(20)
    ]
    items += [record(event_id="held", account_id="acct_nobody"), record(event_id="unpriced", model="no/such-model")]
    write_lines(logs / f"requests-{DAY}.jsonl", [json_line(item) for item in items])
    dbs = {}
    for engine in ("duckdb", "spark"):
        dbs[engine] = Billing(tmp_path / engine)
        dbs[engine].logs = logs
        dbs[engine].settings = dataclasses.replace(dbs[engine].settings, engine=engine)
        dbs[engine].nightly(DAY)

    assert driver == {"new_rated": ("VIEW",), "run_rated": (0,)}
    spark_db, duck_db = dbs["spark"], dbs["duckdb"]
    rated_files = "SELECT part, path, row_count FROM lake_files WHERE table_name = 'rated_attempts' ORDER BY part"
    parts = spark_db.query(rated_files)
    assert [part for part, _, _ in parts] == [1, 2, 3], parts
    [(duck_part, duck_path, rows)] = duck_db.query(rated_files)
    assert duck_part == 0  # the DuckDB path: one file, its driver's
    assert sum(n for _, _, n in parts) == rows == len(items)
    spark_lake, duck_lake = (db.settings.db_path.with_suffix(".lake") for db in (spark_db, duck_db))
    # the driver's DuckDB wrote no rated file on Spark (the DuckDB path's driver wrote its one)
    by_driver = {
        name: [p.relative_to(lake.resolve()).as_posix() for p in written if lake.resolve() in p.parents]
        for name, lake in (("spark", spark_lake), ("duckdb", duck_lake))
    }
    assert "rated_attempts/run-000001.parquet" in by_driver["duckdb"]
    assert not [p for p in by_driver["spark"] if p.startswith("rated_attempts/")], by_driver
    for _, path, _ in parts:
        assert "-part-" in path
        assert lake_layout(spark_lake / path) == lake_layout(duck_lake / duck_path)
        ordered = spark_db.query(f"SELECT ts, event_id FROM '{spark_lake / path}'")
        assert ordered == sorted(ordered)
    for table, query in {"rated_attempts": RATED, "statement_lines": LINES}.items():
        assert texts(spark_db.query(query)) == texts(duck_db.query(query)), table
    same = (
        "SELECT name, rows, digest FROM run_outputs ORDER BY ALL",
        "SELECT table_name, run_id, ts_min, ts_max FROM lake_file_bounds ORDER BY ALL",
    )
    for query in same:
        assert spark_db.query(query) == duck_db.query(query), query
    assert replay.verify_run(spark_db.settings, 1).status == "MATCH"


@BESIDE_THE_NIGHTS
def test_a_spark_nightly_s_driver_combines_its_tasks_summaries_and_reads_no_rated_part(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15: the tasks that write a Spark nightly's rated parts also run the summary queries
    of ``pipeline/rated_summary.py`` over the part each wrote (statement-line contributions,
    periods, held per reason, price versions, counts, digest, ts range) and return the results;
    the driver combines them. With Spark's rating output in three parts, right after
    ``publish_rated`` the combined results equal the driver's scan of the listed parts by the
    same queries, value for value as text, and the digest the driver recorded before over the
    rows. Then the parts are moved out of the lake until the run has recorded its digests: the
    affected periods, held counts, statement lines, used versions, counts, bounds and digests
    complete without them (the driver read no part), and equal a DuckDB nightly's."""
    from pipeline import rate, rated_summary
    from pipeline.spark import bridge

    write_rated = bridge.write_rated
    monkeypatch.setattr(bridge, "write_rated", lambda rated, out: write_rated(rated.repartition(3), out))
    publish_rated, record_output_digests = bridge.publish_rated, jobs.record_output_digests
    away: list[tuple[Path, Path]] = []
    seen: dict[str, Any] = {}

    def as_text(con: Any, query: str) -> list[tuple[str, ...]]:
        return sorted(texts(con.execute(query).fetchall()), key=repr)

    def publishing(con: Any, run_id: int, work: Path, memory_limit: str | None = None) -> list[Path]:
        listed = publish_rated(con, run_id, work, memory_limit)
        seen["parts"] = len(listed)
        for summary in rated_summary.SUMMARIES:  # combined from the tasks' results vs the driver's scan
            scan = f"WITH {rated_summary.ROWS} AS (SELECT * FROM {rate.NEW_RATED}) {summary.query}"
            seen[summary.table] = as_text(con, f"SELECT * FROM {summary.table}")
            assert seen[summary.table] == as_text(con, scan), summary.table
        row_digest = rated_summary.ROW_DIGESTS[rated_summary.RATED_DIGEST_VERSION]
        before = f"SELECT count(*), CAST(coalesce(bit_xor({row_digest}), 0) AS VARCHAR) FROM "
        totals = f"SELECT attempts, CAST(coalesce(digest, 0) AS VARCHAR) FROM {rated_summary.TOTALS.table}"
        assert con.execute(totals).fetchall() == con.execute(f"{before} (SELECT * FROM {rate.NEW_RATED}) r").fetchall()
        for path in listed:  # the driver must not read them until the digests are recorded
            away.append((path, path.rename(path.with_name(f"{path.name}.away"))))
        return listed

    def recording(con: Any, *args: Any) -> None:
        record_output_digests(con, *args)
        seen["recorded without the parts"] = bool(away) and not any(path.exists() for path, _ in away)
        for path, moved in away:
            moved.rename(path)

    monkeypatch.setattr(bridge, "publish_rated", publishing)
    monkeypatch.setattr(jobs, "record_output_digests", recording)
    logs = tmp_path / "logs"
    logs.mkdir()
    items = [
        record(
            event_id=f"e{i}",
            request_id=f"r{i % 9}",
            attempt=i // 9 + 1,
            account_id=("acct_plain", "acct_override", "acct_partner")[i % 3],
            ts=f"{DAY}T{i % 24:02d}:{i:02d}:00Z",
            usage=usage(1000 + 13 * i, 20 + i, cached=100 * (i % 3)),
        )
        for i in range(27)
    ]
    items += [record(event_id="held", account_id="acct_nobody"), record(event_id="unpriced", model="no/such-model")]
    write_lines(logs / f"requests-{DAY}.jsonl", [json_line(item) for item in items])
    dbs = {}
    for engine in ("duckdb", "spark"):
        dbs[engine] = Billing(tmp_path / engine)
        dbs[engine].logs = logs
        dbs[engine].settings = dataclasses.replace(dbs[engine].settings, engine=engine)
        dbs[engine].nightly(DAY)

    assert seen["parts"] == 3 and seen["recorded without the parts"], seen
    assert seen[rated_summary.LINES.table] and len(seen[rated_summary.HELD.table]) == 2
    spark_db, duck_db = dbs["spark"], dbs["duckdb"]
    same = {
        "rated_attempts": RATED,
        "statement_lines": LINES,
        "outputs": "SELECT name, rows, digest FROM run_outputs ORDER BY ALL",
        "bounds": "SELECT table_name, run_id, ts_min, ts_max FROM lake_file_bounds ORDER BY ALL",
        "held": "SELECT reason, change FROM held_changes ORDER BY ALL",
        "versions": "SELECT version_id, sha256, first_run_id FROM price_versions_used ORDER BY ALL",
        "ledger": "SELECT run_id, status FROM runs ORDER BY ALL",
    }
    for name, query in same.items():
        assert texts(spark_db.query(query)) == texts(duck_db.query(query)), name


def test_a_spark_rating_whose_charges_are_not_tokens_times_prices_is_refused_and_publishes_nothing(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rated files of migration 039 leave the charges out and the views compute them as
    tokens x unit price, so each task counts the rows of its part of Spark's output whose
    charges would read back otherwise, and the driver lists no part of a run that has any.
    Here the rating SQL Spark runs adds 0.000001 to every input charge: the run is refused
    with ComputedColumnMismatch, nothing of it is stored, and the next (right) run stores
    the day."""
    from core.attempt_store import ComputedColumnMismatch
    from pipeline.spark import rating

    billing = Billing(tmp_path / "billing")
    billing.settings = dataclasses.replace(billing.settings, engine="spark")
    billing.log(
        f"requests-{DAY}.jsonl", [record(event_id="a", request_id="r-a"), record(event_id="b", request_id="r-b")]
    )
    right = rating.sql_text

    def off_by_a_millionth(name: str) -> str:
        text = right(name)
        wrong = text.replace(
            "END AS charge_input_uncached,",
            "END + CAST(0.000001 AS DECIMAL(7, 6)) AS charge_input_uncached_raw,",
            1,
        )
        assert wrong != text, "the rating SQL should name charge_input_uncached"
        # keep the column's name and exact type (a type Spark widened is refused earlier, by name)
        return wrong.replace(
            "  charge_input_uncached,",
            "  CAST(charge_input_uncached_raw AS DECIMAL(38, 20)) AS charge_input_uncached,",
            1,
        ).replace("CAST(charge_input_uncached + ", "CAST(CAST(charge_input_uncached_raw AS DECIMAL(38, 20)) + ", 1)

    with monkeypatch.context() as patched:
        patched.setattr(rating, "sql_text", off_by_a_millionth)
        with pytest.raises(ComputedColumnMismatch, match="2 rated_attempts row"):
            billing.nightly(DAY)
    assert billing.one("SELECT count(*) FROM lake_files WHERE path LIKE 'rated_attempts/%'") == 0
    assert billing.one("SELECT count(*) FROM statement_lines") == 0
    assert billing.one("SELECT status FROM runs ORDER BY run_id DESC LIMIT 1") == "failed"
    billing.nightly(DAY)
    assert billing.query("SELECT event_id, outcome FROM rated_attempts ORDER BY 1") == [
        ("a", "billed"),
        ("b", "billed"),
    ]


@BESIDE_THE_NIGHTS
def test_a_spark_nightly_probes_the_keys_left_in_the_table_and_moves_them_into_its_files(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 045 leaves the keys stored before it in the table until a run that stores
    attempts moves them into its own file: Spark's probe must see them (handed over through the
    exchange directory), or a resent record would be stored twice and a changed one not
    quarantined. After the run the history is key files only, which the next night's probe reads."""
    from tests.conftest import as_before_migration_045

    exchange = tmp_path / "exchange"
    exchange.mkdir()
    monkeypatch.setenv("INFERGATE_SPARK_WORKDIR", str(exchange))
    billing = Billing(tmp_path / "billing")
    old = record(event_id="old", request_id="r-old")
    billing.log(f"requests-{DAY}.jsonl", [old])
    billing.nightly(DAY)  # DuckDB, then the database as main wrote it before migration 045
    as_before_migration_045(billing.settings.db_path)
    assert billing.one("SELECT count(*) FROM main.attempt_keys") == 1  # the table, not yet renamed
    billing.settings = dataclasses.replace(billing.settings, engine="spark")
    new = record(event_id="new", request_id="r-new", ts=f"{NEXT_DAY}T10:00:00Z")
    billing.log(f"requests-{NEXT_DAY}.jsonl", [old, dict(old, status=500), new])
    [f] = [f for f in billing.nightly(NEXT_DAY).files if NEXT_DAY in f.path]
    assert (f.lines_read, f.accepted, f.duplicates, f.quarantined) == (3, 1, 1, 1)
    assert billing.query("SELECT event_id, reason FROM quarantine") == [("old", "duplicate_conflict")]
    assert billing.one("SELECT count(*) FROM attempt_keys_before_lake") == 0
    # run 2's keys files: the key moved from the table (part 0, with its run) and new's (part 1, a task's)
    listed = "SELECT run_id, part, row_count FROM lake_files WHERE table_name = 'attempt_keys' ORDER BY ALL"
    assert billing.query(listed) == [(2, 0, 1), (2, 1, 1)]
    keys = billing.query("SELECT event_key = hash('new'), run_id FROM attempt_keys ORDER BY run_id")
    assert keys == [(False, 1), (True, 2)]
    # the third night resends both: the probe finds them in the key files, nothing is stored again
    third = "2026-11-22"
    billing.log(f"requests-{third}.jsonl", [new, old])
    [f] = [f for f in billing.nightly(third).files if third in f.path]
    assert (f.lines_read, f.accepted, f.duplicates, f.quarantined) == (2, 0, 2, 0)
    assert billing.one("SELECT count(*) FROM attempts") == 2
    assert billing.one("SELECT count(*) FROM lake_files WHERE table_name = 'attempt_keys' AND run_id = 3") == 0
