"""A nightly killed while Spark writes leaves the database as before; the next run converges.

The scenario of tests/faults (the sample days, the 2026-12-01 run under test), with
``--engine spark``: the run is SIGKILLed as soon as the executors start writing the parsed
rows into the exchange directory. The database must be exactly as before; the exchange
directory the kill left (it holds the raw lines of R5 candidates, i.e. prompt text) must be
removed by the next run on that database, which must then reach the state and the finance CSV
bytes of an uninterrupted run on DuckDB.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from core.attempt_store import copy_database
from tests.conftest import deep
from tests.faults.harness import ACCOUNTS, DAYS, exports, ledger, nightly_args, snapshot
from tests.forked_cli import ForkedCLI, run_cli
from tests.spark.conftest import JVM_FLAGS, SAMPLE_DAYS, SKIP_REASON, SampleNights

pytest.importorskip("pyspark", reason=SKIP_REASON)


def processes_with(text: str) -> list[int]:
    """Pids of the processes whose environment holds ``text`` (here: the killed run's JVM)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if text.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


def as_paths(value: Any) -> Any:
    """A snapshot with ``file://`` URIs written as the paths they name (``ingested_files.path``
    records the location as the run was given it)."""
    if isinstance(value, str):
        return value.removeprefix("file://")
    if isinstance(value, list | tuple):
        return type(value)(as_paths(v) for v in value)
    return value


def ledger_inputs(db: Path) -> list[tuple[str]]:
    """The input paths the ledger recorded for the last run."""
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        last = "(SELECT max(run_id) FROM runs)"
        return con.execute(f"SELECT path FROM run_files WHERE kind = 'input' AND run_id = {last}").fetchall()


# ~30-40 s each (a JVM each): `make fuzz` only
KILLS = [("path", "parts"), ("uri", "parts"), ("path", "after_ingest"), ("path", "rate:after_new_rated")]


@deep("tests/faults/test_crash.py's kills of a nightly at a point of each step")
@pytest.mark.parametrize(("logs_as", "kill_at"), KILLS)
def test_a_nightly_killed_while_spark_writes_leaves_the_database_as_before(
    sample_nights: SampleNights, tmp_path: Path, logs_as: str, kill_at: str
) -> None:
    """``logs_as="uri"``: ``--logs file://...``, the executors read the bytes through Spark and
    write the parsed rows file by file (pipeline/spark/remote.py), killed as they begin.
    ``kill_at="after_ingest"``: killed at that fault point instead, when the run's attempts
    lake files have been written (the parts' rows by their tasks, migration 034, and their keys,
    045) and listed, uncommitted: the files are left unlisted, and the next run removes them.
    ``kill_at="rate:after_new_rated"``: killed when the rating's tasks have written the run's
    rated rows and the driver has renamed and listed them as its parts, uncommitted: those are
    left unlisted too, beside the attempts files, and the next run removes them."""
    if shutil.which("java") is None:
        pytest.skip("no Java runtime for PySpark")
    # tests/faults' scenario (harness.Scenario): the database after the first two sample days,
    # and the state and finance CSVs of the uninterrupted DuckDB run of the third; those three
    # nightlies are the session's, which test_engines_agree.py compares Spark's with
    assert (DAYS, ACCOUNTS) == (SAMPLE_DAYS, sample_nights.duckdb.settings.accounts_file)
    before = snapshot(sample_nights.before_last)
    after = snapshot(sample_nights.duckdb.settings.db_path)
    after_csv = exports(sample_nights.duckdb.settings.db_path, tmp_path / "reference-csv")
    assert before is not None and after is not None and before != after
    db = tmp_path / "kill" / "billing.duckdb"
    db.parent.mkdir()
    copy_database(sample_nights.before_last, db)
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    env = {
        "INFERGATE_SPARK_WORKDIR": str(exchange),
        "INFERGATE_SPARK_MASTER": "local[1]",
        "JAVA_TOOL_OPTIONS": JVM_FLAGS,
    }
    args = nightly_args(DAYS[2])
    if logs_as == "uri":
        args[args.index("--logs") + 1] = "file://" + args[args.index("--logs") + 1]
    argv = ["--db", str(db), "--accounts", str(ACCOUNTS), *args, "--engine", "spark"]

    lake = db.with_suffix(".lake")
    listed_before = set(lake.rglob("*.parquet"))
    deadline = time.monotonic() + 240
    if kill_at == "parts":
        proc = ForkedCLI(argv, env=env)
        while not any(exchange.glob("infergate-spark-*/parsed/*")):  # Spark has begun writing
            assert proc.poll() is None, f"the run ended before Spark wrote: {proc.output()}"
            assert time.monotonic() < deadline, "Spark never started writing"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    else:
        proc = ForkedCLI(argv, env={**env, "INFERGATE_FAULT": kill_at})
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    assert snapshot(db) == before
    left = set(lake.rglob("*.parquet")) - listed_before
    # (the run's keys files too: its tasks write them beside its attempts, migration 045)
    if kill_at == "after_ingest":  # the run's attempts files, the tasks' parts among them, unlisted
        assert {p.parent.name for p in left} == {"attempts", "attempt_keys"}, left
        assert any("-part-" in p.name for p in left if p.parent.name == "attempts"), left
    if kill_at == "rate:after_new_rated":  # and the rated rows the rating's tasks wrote, as parts only
        assert {p.parent.name for p in left} == {"attempts", "attempt_keys", "rated_attempts"}, left
        assert all("-part-" in p.name for p in left if p.parent.name == "rated_attempts"), left
    assert ledger(db)[-1][1] == "running"  # the killed run's row, closed as crashed by the next
    assert [p.name for p in exchange.iterdir()], "the kill should have left the exchange directory"
    while processes_with(f"INFERGATE_SPARK_WORKDIR={exchange}"):  # the orphaned JVM exits on EOF
        assert time.monotonic() < deadline, "the killed run's JVM did not exit"
        time.sleep(0.1)

    done = run_cli(argv, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    # the bundled log4j2.properties: none of Spark's start-up notices reach a cron job's mail
    noise = ("log4j", "log level", "NativeCodeLoader", " WARN ", " INFO ")
    assert not [line for line in done.stderr.splitlines() if any(word in line for word in noise)], done.stderr
    assert as_paths(snapshot(db)) == after
    assert exports(db, tmp_path / "csv") == after_csv
    assert [status for _, status in ledger(db)][-2:] == ["crashed", "succeeded"]
    assert list(exchange.iterdir()) == []  # the leftover removed, the run's own too
    assert not any(p.exists() for p in left)  # an unlisted lake file removed by the next run
    inputs = {path for (path,) in ledger_inputs(db)}
    assert inputs and all(p.startswith("file://") == (logs_as == "uri") for p in inputs)
