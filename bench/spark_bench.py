"""Rating time on Spark (local mode) next to DuckDB's, for the same generated day. Not a test.

Generates N requests with ``pipeline.sample_logs.generate_day`` (deterministic, seeded),
ingests them once with the real ingest job, then rates the whole day on each engine and prints:

- the rating step alone: DuckDB running rate.sql vs Spark exporting the inputs to Parquet,
  running rate.spark.sql, writing Parquet, and DuckDB loading it back;
- the ``rate`` job end to end on each engine (reference data, rating, statement lines, ledger);
- whether the two engines' rated rows are identical.

    .venv/bin/python bench/spark_bench.py                 # 20,000 requests
    .venv/bin/python bench/spark_bench.py --n 1000000     # the full run

Spark runs ``local[2]`` on this machine's cores: the figures show the overhead of the engine
and the exchange at one machine's scale, not what a cluster gains on logs that outgrow one.

``--nightly`` (what ``make spark-bench`` runs) compares whole nightlies instead: the same
generated day through ``nightly`` on DuckDB and with ``--engine spark`` on ``local[1]`` and
``local[2]`` (validation on the executors, rating on Spark), each on a fresh database, and
prints wall time, attempts per second and per core, the run's steps, and whether the stored
attempts, quarantine and rated rows are identical. docs/scale.md turns the figures into a
plan for 100M and 1B attempts a day. ``--resend`` adds a night that resends the first night's
records under the next day's name (other bytes): every record a duplicate of a stored one,
which a Spark nightly decides on the cluster; the ``peak RSS`` column is this Python process's
during each night (Linux: VmHWM, reset before the night): the driver's DuckDB, where a resend
that reached the driver would show (the Spark JVM is another process, not counted).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb

from core.attempt_store import attempts_of_runs, rated_rows
from core.db import connect, sql_text
from pipeline import jobs, reference
from pipeline.jobs import Settings
from pipeline.rate import ensure_issued_prices
from pipeline.sample_logs import generate_day
from pipeline.spark import bridge, rating
from pipeline.spark.exchange import spark_uri
from pipeline.spark.session import get_session

WHOLE_DAY = "CREATE OR REPLACE TEMP TABLE rating_scope AS SELECT DISTINCT account_id, request_id FROM attempts"
SCOPE_VIEW = (
    "CREATE OR REPLACE TEMP VIEW scoped_attempts AS "
    "SELECT a.* FROM attempts a JOIN rating_scope s USING (account_id, request_id)"
)


@contextmanager
def timed(label: str, figures: dict[str, float]) -> Iterator[None]:
    start = time.perf_counter()
    yield
    figures[label] = time.perf_counter() - start
    print(f"  {label:<46} {figures[label]:8.2f} s", flush=True)


def write_day(path: Path, day: date, requests: int, seed: int, files: int = 1) -> int:
    """The generated day as ``files`` .jsonl.gz log files (``path``, or ``path`` with ``-<k>``
    before the suffix when several: a gateway writes one file per instance or hour), the lines
    dealt round-robin; returns the number of attempts."""
    names = (
        [path]
        if files == 1
        else [path.with_name(path.name.replace(".jsonl.gz", f"-{k:02d}.jsonl.gz")) for k in range(files)]
    )
    outs = [gzip.open(name, "wt", encoding="utf-8", compresslevel=1) for name in names]
    count = 0
    try:
        for record in generate_day(day, requests, seed):
            outs[count % files].write(json.dumps(record) + "\n")
            count += 1
    finally:
        for out in outs:
            out.close()
    return count


def resend_day(first: Path, target: Path) -> None:
    """The first night's files again, re-gzipped (other bytes, the same records) under the name
    of ``target`` (``requests-<day>``): a gateway's log shipper resending a day."""
    for k, source in enumerate(sorted(first.parent.glob(f"{first.name}*.jsonl.gz"))):
        copy = target.with_name(f"{target.name}-r{k:02d}.jsonl.gz")
        with gzip.open(source, "rb") as src, gzip.open(copy, "wb") as out:
            shutil.copyfileobj(src, out)


def reset_peak_rss() -> bool:
    """Start this process's peak resident set over (Linux: 5 written to /proc/self/clear_refs);
    whether the kernel took it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float | None:  # allow-float: megabytes
    """This process's peak resident set since the last reset (Linux VmHWM); None where the
    kernel does not say."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def no_recount(rows: list[Any]) -> list[tuple[int, int, str] | None]:
    """Skip the R5 tokenizers: their cost is ingest's, and the bench is about rating."""
    return [None for _ in rows]


def rating_step_duckdb(con: duckdb.DuckDBPyConnection, tag: str, figures: dict[str, float]) -> float:
    con.execute(WHOLE_DAY)
    con.execute(SCOPE_VIEW)
    ensure_issued_prices(con)
    with timed(f"duckdb {tag}: rate.sql -> duck_rated", figures):
        con.execute("CREATE OR REPLACE TEMP TABLE duck_rated AS " + sql_text("rate.sql"))
    return figures[f"duckdb {tag}: rate.sql -> duck_rated"]


def rating_step_spark(
    con: duckdb.DuckDBPyConnection, spark: Any, work: Path, tag: str, figures: dict[str, float]
) -> float:
    """Export, rate on Spark, load back: the part of a run that ``--engine spark`` replaces."""
    with timed(f"spark {tag}: export scope, attempts, reference", figures):
        inputs = bridge.export_inputs(con, work, None)
    with timed(f"spark {tag}: rate.spark.sql -> Parquet", figures):
        rating.write_rated(rating.rate(spark, inputs), spark_uri(work / "rated"))
    with timed(f"spark {tag}: load Parquet into DuckDB", figures):
        bridge.load_rated(con, work / "rated")
    total = sum(v for k, v in figures.items() if k.startswith(f"spark {tag}:"))
    print(f"  {'spark ' + tag + ': rating step total':<46} {total:8.2f} s")
    return total


def differing_rows(con: duckdb.DuckDBPyConnection) -> int:
    """Rows in one engine's output and not the other's (multiset difference, both ways)."""
    row = con.execute(
        "SELECT (SELECT count(*) FROM (SELECT * FROM duck_rated EXCEPT ALL SELECT * FROM new_rated)) "
        "+ (SELECT count(*) FROM (SELECT * FROM new_rated EXCEPT ALL SELECT * FROM duck_rated))"
    ).fetchone()
    assert row is not None
    return int(row[0])


def end_to_end(settings: Settings, engine: str, figures: dict[str, float]) -> None:
    with timed(f"rate job end to end, --engine {engine}", figures):
        jobs.run_rate(dataclasses.replace(settings, engine=engine), None, None)


def run(args: argparse.Namespace, root: Path) -> None:
    figures: dict[str, float] = {}
    settings = Settings(db_path=root / "bench.duckdb", accounts_file=Path("data/accounts.toml"))
    day = date.fromisoformat(args.day)
    print(f"spark bench: {args.n:,} requests on {day}, seed {args.seed}, master {args.master}")
    with timed("generate the log file", figures):
        attempts = write_day(root / f"requests-{day}.jsonl.gz", day, args.n, args.seed)
    print(f"  {attempts:,} attempts")
    with timed("ingest (DuckDB, shared by both engines)", figures):
        jobs.run_ingest(settings, [str(root / f"requests-{day}.jsonl.gz")], no_recount)
    with timed("spark: start the local session", figures):
        spark = get_session(args.master, {"spark.driver.memory": args.driver_memory})
    compare_rating_steps(settings, spark, root, figures)
    end_to_end(settings, "duckdb", figures)
    end_to_end(settings, "spark", figures)


def compare_rating_steps(settings: Settings, spark: Any, root: Path, figures: dict[str, float]) -> None:
    """Each engine's rating step twice: cold (first query in a fresh JVM) and warm."""
    con = connect(settings.db_path)
    try:
        reference.load_into(con, jobs.load_reference(settings))
        for tag in ("cold", "warm"):
            duck = rating_step_duckdb(con, tag, figures)
            work = root / f"exchange-{tag}"
            work.mkdir()
            spark_total = rating_step_spark(con, spark, work, tag, figures)
            print(f"  {tag}: spark / duckdb rating step = {spark_total / duck:.1f}x")
        print(f"  rows that differ between the engines: {differing_rows(con)}")
    finally:
        con.close()


NIGHTLY_TABLES = {
    # the tables and the run's lake files (core/attempt_store.py); keys are derived from the ids
    "attempts": "SELECT * EXCLUDE (run_id, event_key, request_key) FROM ({attempts})",
    "quarantine": "SELECT * EXCLUDE (quarantine_id, run_id, quarantined_at) FROM {db}.quarantine",
    "rated_attempts": "SELECT * EXCLUDE (rated_run_id) FROM ({rated})",
}


def _tag(engine: str, master: str | None) -> str:
    return engine if master is None else f"{engine}-{master.replace('[', '').replace(']', '')}"


def nightly_on(
    engine: str, master: str | None, logs: Path | str, day: date, root: Path
) -> tuple[float, dict[str, float]]:
    """One nightly on the engine's database (fresh for the first night); its wall time and its
    steps' times."""
    from core import timing

    steps: dict[str, float] = {}
    timing.listener = lambda name, seconds: steps.__setitem__(name, steps.get(name, 0.0) + seconds)
    tag = _tag(engine, master)
    settings = Settings(db_path=root / f"{tag}.duckdb", accounts_file=Path("data/accounts.toml"), engine=engine)
    try:
        start = time.perf_counter()
        jobs.run_nightly(settings, day, logs)
        return time.perf_counter() - start, steps
    finally:
        timing.listener = None


def compare_nightlies(args: argparse.Namespace, root: Path) -> None:
    day = date.fromisoformat(args.day)
    logs = root / "logs"
    logs.mkdir()
    nights = [day + timedelta(days=k) for k in range(args.nights)]
    print(f"spark bench, nightlies: {args.n:,} requests a day on {', '.join(map(str, nights))}, seed {args.seed}")
    counts = []
    for k, night in enumerate(nights):
        start = time.perf_counter()
        counts.append(write_day(logs / f"requests-{night}.jsonl.gz", night, args.n, args.seed + k, args.files))
        size = sum(p.stat().st_size for p in logs.glob(f"requests-{night}*"))
        print(
            f"  generated {counts[-1]:,} attempts for {night} in {args.files} files ({size / 1e6:.1f} MB gz)"
            f" in {time.perf_counter() - start:.1f} s"
        )
    if args.resend:  # one more night: the first night's records again, under the next day's name
        night = nights[-1] + timedelta(days=1)
        resend_day(logs / f"requests-{nights[0]}", logs / f"requests-{night}")
        nights.append(night)
        counts.append(counts[0])
        print(f"  resent the {counts[0]:,} attempts of {nights[0]} as {night}")
    cores = os.cpu_count() or 1
    spark_runs = [("spark", m, int(m.removeprefix("local[").removesuffix("]"))) for m in args.masters]
    runs = [("duckdb", None, cores), *spark_runs]
    print(f"  {'engine':<16} {'wall s':>8} {'attempts/s':>12} {'per core':>10} {'peak RSS':>9}   steps (s)")
    results = []
    for engine, master, used in runs:
        if master is not None:
            from pyspark.sql import SparkSession

            active = SparkSession.getActiveSession()
            if active is not None and active.sparkContext.master != master:
                active.stop()  # one session per process: the next master needs a new one
            started = time.perf_counter()
            session = get_session(master, {"spark.driver.memory": args.driver_memory})
            assert session.sparkContext.master == master, session.sparkContext.master
            print(f"  ({master}: session started in {time.perf_counter() - started:.1f} s, not counted)")
        # --uri: the Spark runs read the day as a URI, through Hadoop and the executors' hashing
        source: Path | str = f"file://{logs.resolve()}" if args.uri and master is not None else logs
        name = engine if master is None else f"spark {master}"
        for k, (night, attempts) in enumerate(zip(nights, counts, strict=True)):
            # the first night loads the reference data (a listed scope: the open periods); the
            # next ones are the usual night, with a history to probe
            was_reset = reset_peak_rss()
            wall, steps = nightly_on(engine, master, source, night, root)
            peak = peak_rss_mb() if was_reset else None  # else the process's peak so far, not the night's
            rss = "n/a" if peak is None else f"{peak:,.0f} MB"
            shown = ", ".join(f"{key} {v:.1f}" for key, v in steps.items() if v >= 0.05)
            label = name if len(nights) == 1 else f"{name} n{k + 1}"
            if args.resend and k == len(nights) - 1:
                label = f"{name} resend"
            print(
                f"  {label:<16} {wall:8.1f} {attempts / wall:12,.0f} {attempts / wall / used:10,.0f} {rss:>9}   {shown}"
            )
        results.append(name)
    con = duckdb.connect()
    try:
        for i, (engine, master, _) in enumerate(runs):
            tag = _tag(engine, master)
            con.execute(f"ATTACH '{root / f'{tag}.duckdb'}' AS db{i} (READ_ONLY)")
        for table, query in NIGHTLY_TABLES.items():
            for i in range(1, len(runs)):
                a, b = (
                    query.format(db=db, attempts=attempts_of_runs(con, database=db), rated=rated_rows(con, db))
                    for db in ("db0", f"db{i}")
                )
                row = con.execute(
                    f"SELECT (SELECT count(*) FROM ({a} EXCEPT ALL {b})) + (SELECT count(*) FROM ({b} EXCEPT ALL {a}))"
                ).fetchone()
                assert row is not None
                print(f"  {table}: rows that differ, duckdb vs {results[i]}: {row[0]}")
    finally:
        con.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=20_000, help="requests to generate (default 20,000)")
    parser.add_argument("--day", default="2026-11-30")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--nightly", action="store_true", help="compare whole nightlies (make spark-bench)")
    parser.add_argument("--masters", nargs="+", default=["local[1]", "local[2]"], help="with --nightly")
    parser.add_argument("--files", type=int, default=8, help="with --nightly: log files the day is split into")
    parser.add_argument(
        "--nights",
        type=int,
        default=1,
        help="with --nightly: consecutive days, each engine's nights on one database (the first loads the reference)",
    )
    parser.add_argument(
        "--resend",
        action="store_true",
        help="with --nightly: one more night resending the first night's records under the next day's name",
    )
    parser.add_argument(
        "--uri",
        action="store_true",
        help="with --nightly: Spark reads the day as a file:// URI (listed by Hadoop, hashed and read on executors)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="spark-bench-") as tmp:
        if args.nightly:
            compare_nightlies(args, Path(tmp))
        else:
            run(args, Path(tmp))


if __name__ == "__main__":
    main()
