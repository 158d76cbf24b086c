"""``nightly --engine spark --logs URI``: the day's files listed, hashed and read by the cluster.

A ``file://`` URI goes the way an ``s3a://`` or ``hdfs://`` one goes (Hadoop's FileSystem on the
driver for the listing, Spark's ``binaryFile`` reader on the executors for the bytes), so these
tests run that path on the local file system; tests/spark/test_nightly_on_executors.py checks
that its rows equal the DuckDB path's on two nights of hostile files. Amounts are hand-computed
as in tests/test_rating.py: openai/gpt-5.5 at $7.50 / $45 per million input / output tokens.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.errors import UsageProblem
from pipeline import jobs, replay
from pipeline.ingest.files import InputMissing
from pipeline.spark import SparkEngineError
from tests.conftest import Billing, deep, record, usage, write_log
from tests.spark.conftest import SKIP_REASON

pytest.importorskip("pyspark", reason=SKIP_REASON)

DAY = date(2026, 11, 20)


def spark_billing(root: Path) -> Billing:
    billing = Billing(root)
    billing.settings = dataclasses.replace(billing.settings, engine="spark")
    return billing


def nightly(billing: Billing, uri: str) -> jobs.RunReport:
    return jobs.run_nightly(billing.settings, DAY, uri)


def test_a_uri_is_read_by_spark_only(tmp_path: Path) -> None:
    billing = Billing(tmp_path)  # the DuckDB engine
    with pytest.raises(UsageProblem, match="a URI is read by Spark's file system connectors"):
        nightly(billing, f"file://{billing.logs}")


def test_the_day_is_read_through_the_cluster_file_system(spark: Any, tmp_path: Path) -> None:
    """Names kept literally, a link refused, a zero-byte file an empty log, a re-run a no-op."""
    billing = spark_billing(tmp_path)
    # a space and "%41" in the name: Hadoop takes a path literally, and so is it stored
    write_log(
        billing.logs / "requests-2026-11-20 %41.jsonl",
        [
            record(event_id="a", request_id="r-a", ts="2026-11-20T01:00:00Z", usage=usage(1000, 200)),
            record(event_id="b", request_id="r-b", ts="2026-11-20T02:00:00Z", usage=usage(2000, 0)),
        ],
    )
    (billing.logs / "requests-2026-11-20-empty.jsonl.gz").write_bytes(b"")
    elsewhere = write_log(tmp_path / "elsewhere.jsonl", [record(event_id="x", request_id="r-x")])
    os.symlink(elsewhere, billing.logs / "requests-2026-11-20-link.jsonl")
    write_log(billing.logs / "requests-2026-11-21.jsonl", [record(event_id="next", request_id="r-next")])

    first = nightly(billing, f"file://{billing.logs}")

    assert any("requests-2026-11-20-link.jsonl: is a symbolic link; refused" in p for p in first.problems)
    assert sorted(Path(f.path).name for f in first.files) == [
        "requests-2026-11-20 %41.jsonl",
        "requests-2026-11-20-empty.jsonl.gz",
    ]
    assert [(f.lines_read, f.accepted) for f in sorted(first.files, key=lambda f: f.path)] == [(2, 2), (0, 0)]
    assert billing.query("SELECT DISTINCT source_file FROM attempts") == [("requests-2026-11-20 %41.jsonl",)]
    assert billing.query("SELECT path FROM run_files WHERE kind = 'input' ORDER BY 1") == [
        (f"file://{billing.logs}/requests-2026-11-20 %41.jsonl",),
        (f"file://{billing.logs}/requests-2026-11-20-empty.jsonl.gz",),
    ]
    # a: 1000 x 7.5/1M + 200 x 45/1M = 0.0075 + 0.009; b: 2000 x 7.5/1M = 0.015
    charges = billing.query("SELECT event_id, charge_total FROM rated_attempts ORDER BY 1")
    assert charges == [("a", Decimal("0.0165")), ("b", Decimal("0.015"))]

    again = nightly(billing, f"file://{billing.logs}")  # hashed on the executors: both files known
    assert all(f.skipped for f in again.files) and len(again.files) == 2
    assert billing.one("SELECT count(*) FROM attempts") == 2


@deep("tests/spark/test_engines_agree.py's replay of Spark nights (from a path)")
def test_replay_verifies_a_run_that_read_a_uri(spark: Any, tmp_path: Path) -> None:
    billing = spark_billing(tmp_path)
    log = write_log(
        billing.logs / "requests-2026-11-20.jsonl",
        [record(event_id="a", request_id="r-a", ts="2026-11-20T01:00:00Z", usage=usage(10, 10))],
    )
    nightly(billing, f"file://{billing.logs}")
    assert replay.verify_run(billing.settings, 1).status == "MATCH"
    log.write_text("{}\n")
    changed = replay.verify_run(billing.settings, 1)
    assert changed.status == "MISMATCH" and "changed since the run" in (changed.first_difference or "")


def test_listing_errors_name_the_uri(spark: Any, tmp_path: Path) -> None:
    billing = spark_billing(tmp_path)
    with pytest.raises(InputMissing, match="file:///nowhere/logs: logs directory does not exist"):
        nightly(billing, "file:///nowhere/logs")
    # no S3 connector on this classpath: one line naming the URI, the hint says what is missing
    with pytest.raises(SparkEngineError, match=r"cannot list s3a://bucket/logs: .*S3AFileSystem") as caught:
        nightly(billing, "s3a://bucket/logs")
    assert "hadoop-aws" in (caught.value.hint or "")


def test_names_with_glob_characters_are_only_themselves(spark: Any, tmp_path: Path) -> None:
    """Spark's load takes a path for a glob: ``[eu]`` must not match ``e`` or ``u``, ``{x}``
    not fail, ``*`` not match its neighbours; a ':' (no Hadoop reader opens it) is refused."""
    billing = spark_billing(tmp_path)
    names = ["requests-2026-11-20[eu].jsonl", "requests-2026-11-20e.jsonl", "requests-2026-11-20{x}*?.jsonl"]
    for n, name in enumerate(names):
        write_log(billing.logs / name, [record(event_id=f"g{n}", request_id=f"r-g{n}", usage=usage(1, 1))])
    write_log(billing.logs / "requests-2026-11-20T00:00.jsonl", [record(event_id="colon", request_id="r-c")])
    report = nightly(billing, f"file://{billing.logs}")
    assert sorted((Path(f.path).name, f.accepted) for f in report.files) == sorted((n, 1) for n in names)
    assert any("requests-2026-11-20T00:00.jsonl: a ':' in a file name" in p for p in report.problems)
    assert billing.query("SELECT source_file FROM attempts ORDER BY event_id") == [(n,) for n in names]


def test_a_file_that_changes_between_reads_fails_the_run_naming_it(spark: Any, tmp_path: Path) -> None:
    """The executors read a file again to validate it: bytes other than those hashed (an object
    overwritten meanwhile) fail the run, which then writes nothing; the message names the URI,
    never a task's local copy."""
    from pipeline.spark import remote

    billing = spark_billing(tmp_path)
    log = write_log(billing.logs / "requests-2026-11-20.jsonl", [record(event_id="a", request_id="r-a")])
    uri = f"file://{log}"
    hashed = remote.hash_files(spark, [uri])
    log.write_text(log.read_text() + "\n")
    (tmp_path / "out").mkdir()
    with pytest.raises(SparkEngineError) as caught:
        remote.parse_files(spark, [(1, uri, hashed[uri][0])], tmp_path / "out", None, None, tmp_path)
    message = str(caught.value)
    assert f"{uri} changed while the run read it" in message and "infergate-remote-" not in message
    assert list((tmp_path / "out").iterdir()) == []  # no part, not even a partial one


@deep("tests/test_replay.py's inputs changed or gone")
def test_replay_names_a_uri_input_that_is_gone(spark: Any, tmp_path: Path) -> None:
    billing = spark_billing(tmp_path)
    log = write_log(billing.logs / "requests-2026-11-20.jsonl", [record(event_id="a", request_id="r-a")])
    nightly(billing, f"file://{billing.logs}")
    log.unlink()
    result = replay.verify_run(billing.settings, 1)
    assert result.status == "MISMATCH" and result.first_difference == f"run 1 (nightly): input file://{log} is missing"


def test_the_command_line_refuses_a_uri_without_spark(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pipeline.cli import cli

    result = CliRunner().invoke(
        cli, ["--db", str(tmp_path / "x.duckdb"), "nightly", "--date", "2026-11-20", "--logs", "s3a://bucket/logs"]
    )
    assert result.exit_code == 2 and "a URI is read by Spark's file system connectors" in result.output
    assert not (tmp_path / "x.duckdb").exists()


def test_an_exchange_directory_is_removed_although_a_late_task_still_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task Spark cancelled may write into the exchange directory after the driver left it, so
    that removing it fails with "directory not empty": the removal is retried until the
    directory is gone (it may hold parsed rows and spills), and gives up with the error after
    its wait."""
    import shutil

    from pipeline.spark import exchange

    work = tmp_path / "exchange"
    (work / "parsed").mkdir(parents=True)
    real_rmtree = shutil.rmtree
    failures = iter([OSError(39, "Directory not empty"), OSError(39, "Directory not empty")])

    def rmtree_while_a_task_writes(path: Path) -> None:
        for error in failures:
            (work / "parsed" / "part-000001.parquet.7.tmp").write_bytes(b"rows")  # the late task
            raise error
        real_rmtree(path)

    monkeypatch.setattr(exchange.shutil, "rmtree", rmtree_while_a_task_writes)
    exchange.remove_settled(work, wait=5)
    assert not work.exists()
    stuck = tmp_path / "stuck"
    stuck.mkdir()
    monkeypatch.setattr(exchange.shutil, "rmtree", lambda path: (_ for _ in ()).throw(OSError(39, "not empty")))
    with pytest.raises(OSError):
        exchange.remove_settled(stuck, wait=0.3)
