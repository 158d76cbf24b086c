"""Dedup's probe of the stored history, on Spark (issue 15): which of the day's records the
driver must look at, found without the day's keys or the history's keys reaching it.

R1 (sql/dedup.sql) looks closely only at *special* records: an event_id that repeats in the
batch, or that is stored. store_batch.sql also needs the records whose event_id is that of an
unresolved quarantine entry or of a quarantined line of the batch (it resolves the entry when
the record is now new). Every other valid record is new by dedup's own rule, and its task
stores it (pipeline/ingest/apply.py). The driver used to read the day's ``event_key`` column
(8 bytes a record) and probe ``attempt_keys`` in its DuckDB with it; since migration 045 the
stored keys are lake files (``attempt_keys/``, core/attempt_store.py ``ATTEMPT_KEYS``), which
Spark reads, so the probe is a Spark job:

- the day's valid keys: the parts' ``event_key`` (the tasks computed them with ``dedup.sql``'s
  own ``hash()``, checked against the driver's by :func:`pipeline.spark.staging.check_key_probes`);
- the stored keys: the listed key files, and the rows still in the table
  (``attempt_keys_before_lake``: before the first run after migration 045, or after a DuckDB
  upgrade changed ``hash()``), which the driver writes into the exchange directory only when
  there are any;
- the quarantined ids: the unresolved quarantine entries' event_ids (written by the driver),
  and the parts' quarantined lines' ones; and every valid id that spells the mask (a line
  quarantined for an API key in its id is kept with the id masked, and store_batch.sql
  resolves that entry when a new record has the masked id).

Of the repeated and stored keys, the probe decides the duplicates whose verdict needs no
line (:func:`_decided_duplicates`): all valid records of the key are one event_id and one
``content_sha256``, and none has a quarantined id; then they are all duplicates of the stored
twin when it has the same digest (read from the attempts files of the runs holding the key),
or, when the key is not stored, the first (file, then line) is new and its task stores it,
the others are duplicates. A resent day, or a file delivered twice in one night, never
reaches the driver: only each file's number of such duplicates does. Every other repeated
or stored key stays special, for the driver's dedup (a conflict, an attempt hashed before the
canonical content form, a hash collision).

Only the results travel: ``stored`` (each stored key of a special record, with its run, which
dedup opens), ``loaded`` (the quarantined rows and the special ones), ``left_out`` (what the
tasks must not store: the special keys and those of the stored records' duplicates, and the
batch's repeats after their first by file and line; the tasks read it, the driver does not),
``duplicates`` (each file's duplicates decided by the probe, counted) and ``earlier`` (each
request of the day that has attempts stored by an earlier run, with that run: the rating's
scope reaches those attempts, :func:`pipeline.rate.rate_scope`; a retry of an earlier day's
request is rare, so this is small). A hash collision only loads a row more (dedup compares
event_ids), or names a request of an earlier run that has none of its attempts (the driver
reads that run's attempts of the request by its text, and finds none). The quarantined ids
are compared as text, where the driver compared their hashes: the same rows up to a
collision, which only loaded a row more.

Spark reads DuckDB's ``UBIGINT`` keys as ``DECIMAL(20,0)`` (it has no unsigned type); the
driver casts the results back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.redact import REDACTED
from pipeline.spark import SparkEngineError


@dataclass(frozen=True)
class ProbeOutput:
    """The folders :func:`probe_history` wrote (Spark's Parquet output each)."""

    stored: Path  # event_key, run_id: the stored keys of the special records (absent: no history)
    loaded: Path  # the rows of the parts the driver loads, every column as the part has it
    # event_key, file_order, line_no (one file): the keys (file and line NULL) and the rows (key
    # NULL) of the valid records no task stores (the special ones and the decided duplicates)
    left_out: Path
    duplicates: Path  # file_order, duplicates: each file's duplicates decided by the probe
    # account_id, request_id, run_id, by_new: the day's requests that an earlier run holds
    # attempts of (absent: none, or no history); by_new: a valid record of the request is not
    # left out (its task stores it), else only the driver's decision on special records can
    earlier: Path


def probe_history(
    spark: Any,
    parts: Sequence[Path],
    history: Sequence[Path],
    quarantined: Path,
    out_dir: Path,
    attempts: Callable[[set[int]], Sequence[Path]] = lambda runs: (),
) -> ProbeOutput:
    """Write into ``out_dir`` the folders of :class:`ProbeOutput`. ``history``: the stored
    keys' files (none: a first run); ``quarantined``: a file of the unresolved quarantine
    entries' ``event_id``; ``attempts``: the listed attempts files of the given runs (asked
    only for the runs holding a stored key the day shares; a run whose attempts are in no
    file, i.e. still in the database's table, decides no duplicate: its keys stay special)."""
    from pyspark.sql import functions as F  # noqa: N812

    from pipeline.spark.remote import _literal

    def read(paths: Sequence[Path]) -> Any:
        return spark.read.parquet(*[_literal(str(p)) for p in paths])

    every_row = read(parts)
    rows = every_row.selectExpr("event_key", "request_key", "event_id", "problem IS NULL AS valid")
    day = rows.where("valid AND event_key IS NOT NULL").select("event_key", "event_id")
    keys = day.select("event_key")
    ids = (
        rows.where("NOT valid AND event_id IS NOT NULL")
        .select("event_id")
        .union(read([quarantined]).select("event_id"))
        .distinct()
    )
    masked = day.where(F.col("event_id").contains(REDACTED)).select("event_key")
    stored_dir, loaded_dir = out_dir / "stored", out_dir / "loaded"
    earlier_dir, left_out_dir, duplicates_dir = out_dir / "earlier", out_dir / "left_out", out_dir / "duplicates"
    cached: list[Any] = []  # released whatever happens: the session outlives the run

    def kept(frame: Any) -> Any:
        cached.append(frame.cache())
        return frame

    try:
        # the keys repeated in the batch (a shuffle of the day's keys: computed once)
        repeated = kept(keys.groupBy("event_key").count().where("count > 1").select("event_key"))
        fixed = kept(day.join(ids, "event_id", "left_semi").select("event_key").union(masked).distinct())
        looked_at = repeated
        stored = None
        if history:
            stored_keys = read(history)
            shared = stored_keys.select("event_key", "run_id").join(keys.distinct(), "event_key", "left_semi")
            stored = kept(shared.distinct())  # its runs opened, and (less the decided keys) written
            looked_at = repeated.union(stored.select("event_key"))
        decided = _decided_duplicates(spark, every_row, looked_at, fixed, stored, attempts, kept)
        not_special = decided.stored_duplicates.select("event_key").union(decided.repeat_keys)
        special = kept(fixed.union(looked_at.join(not_special, "event_key", "left_anti")).distinct())
        if stored is not None:  # the stored keys of the special records: dedup opens their runs
            stored.join(special, "event_key", "left_semi").coalesce(1).write.parquet(str(stored_dir))
        found = decided.stored_duplicates.select("file_order").union(decided.batch_repeats.select("file_order"))
        found.groupBy("file_order").agg(F.count("*").alias("duplicates")).coalesce(1).write.parquet(str(duplicates_dir))
        left_out = kept(special.union(decided.stored_duplicates.select("event_key")).distinct())
        # one file (the tasks that store the parts' other rows each read it): the keys (never
        # NULL: NOT IN), then the rows left out one by one (the batch's repeats after their first)
        keys_left_out = left_out.selectExpr(
            "event_key", "CAST(NULL AS INT) AS file_order", "CAST(NULL AS BIGINT) AS line_no"
        )
        rows_left_out = decided.batch_repeats.selectExpr(
            "CAST(NULL AS DECIMAL(20,0)) AS event_key", "file_order", "line_no"
        )
        keys_left_out.union(rows_left_out).coalesce(1).write.parquet(str(left_out_dir))
        earlier = bool(history) and _write_earlier_requests(every_row, stored_keys, left_out, earlier_dir)
        marked = special.withColumn("special", F.lit(True))  # Spark broadcasts it when it is small
        loaded = every_row.join(marked, "event_key", "left").where("problem IS NOT NULL OR special")
        # one output file, the parts still scanned by a task each (coalesce would make the scan one task)
        loaded.drop("special").repartition(1).write.parquet(str(loaded_dir))
    finally:
        for frame in cached:
            frame.unpersist()
    folders = [
        loaded_dir,
        left_out_dir,
        duplicates_dir,
        *([stored_dir] if history else []),
        *([earlier_dir] if earlier else []),
    ]
    for folder in folders:
        if not (folder / "_SUCCESS").is_file():
            raise SparkEngineError(f"Spark's probe of the stored keys wrote no complete output in {folder}")
    return ProbeOutput(stored_dir, loaded_dir, left_out_dir, duplicates_dir, earlier_dir)


@dataclass(frozen=True)
class Decided:
    """The duplicates the probe decides (DataFrames): ``stored_duplicates`` (``event_key``,
    ``file_order``, ``line_no``: every record of the key is a duplicate of a stored one),
    ``batch_repeats`` (``file_order``, ``line_no``: a repeat within the batch, after the
    first, which is new) and ``repeat_keys`` (the keys of those repeats: no longer special,
    their first record is stored by its task)."""

    stored_duplicates: Any
    batch_repeats: Any
    repeat_keys: Any


def _decided_duplicates(
    spark: Any,
    every_row: Any,
    looked_at: Any,
    fixed: Any,
    stored: Any | None,
    attempts: Callable[[set[int]], Sequence[Path]],
    kept: Callable[[Any], Any],
) -> Decided:
    """The duplicates ``dedup.sql`` would find among the records whose key is ``looked_at``
    (repeated in the batch, or ``stored``) when their verdicts need no line: all valid records
    of the key have one event_id and one ``content_sha256`` (all 64 hex digits, as dedup
    compares two records of the batch), and none is ``fixed`` (a quarantined or masked id,
    which store_batch.sql may resolve). Then, if the key is stored and that event_id's stored
    attempt (in the attempts files of the runs holding the key) has the same digest (the first
    16 hex digits, as dedup compares a record with a stored one), every record of the key is a
    ``duplicate``; if the key is not stored, the first record (by file, then line) is new and
    the others are ``duplicate``. Everything else stays special, for the driver's dedup: a
    hash collision (two event_ids, or no stored twin of the event_id), other content (a
    ``duplicate_conflict``), a stored twin with another digest (a conflict, or an attempt
    hashed before the canonical content form), or a run whose attempts are still in the
    database's table (no file). ``kept``: caches a frame until the probe ends."""
    from pyspark.sql import functions as F  # noqa: N812

    from pipeline.spark.remote import _literal

    # the records looked at: a repeat's or a stored key's (nearly always none)
    rows = kept(
        every_row.where("problem IS NULL AND event_key IS NOT NULL")
        .select("event_key", "event_id", "file_order", "line_no", "content_sha256")
        .join(looked_at.distinct(), "event_key", "left_semi")
        .join(fixed, "event_key", "left_anti")
    )
    # the keys whose records are all one record: joined with the twins, and with the rows
    uniform = kept(
        rows.groupBy("event_key")
        .agg(
            F.min("event_id").alias("event_id"),
            F.max("event_id").alias("last_id"),
            F.min("content_sha256").alias("content_sha256"),
            F.max("content_sha256").alias("last_sha256"),
            F.min(F.struct("file_order", "line_no")).alias("first"),
        )
        .where("event_id = last_id AND content_sha256 = last_sha256")
        .select("event_key", "event_id", "first", F.substring("content_sha256", 1, 16).alias("digest"))
    )
    stored_duplicates = rows.select("event_key", "file_order", "line_no").limit(0)
    runs = set() if stored is None else {int(row[0]) for row in stored.select("run_id").distinct().collect()}
    files = [_literal(str(path)) for path in attempts(runs)] if runs else []
    if stored is not None and files:
        twins = (
            spark.read.parquet(*files)
            .select("event_id", F.substring("content_sha256", 1, 16).alias("twin_digest"))
            .join(uniform.select("event_id"), "event_id", "left_semi")
        )
        same = (
            uniform.join(stored.select("event_key"), "event_key", "left_semi")
            .join(twins, "event_id")
            .groupBy("event_key")
            .agg(F.min(F.col("twin_digest") == F.col("digest")).alias("same"))  # dedup stores one: one twin
            .where("same")
        )
        stored_duplicates = rows.join(same, "event_key", "left_semi").select("event_key", "file_order", "line_no")
    repeats = uniform if stored is None else uniform.join(stored.select("event_key"), "event_key", "left_anti")
    batch_repeats = (
        rows.join(repeats.select("event_key", "first"), "event_key")
        .where("file_order <> first.file_order OR line_no <> first.line_no")
        .select("file_order", "line_no")
    )
    return Decided(kept(stored_duplicates), kept(batch_repeats), repeats.select("event_key"))


def _write_earlier_requests(every_row: Any, stored_keys: Any, left_out: Any, out: Path) -> bool:
    """Write into ``out`` the day's requests (of valid records) that have stored attempts, with
    each run holding some (``request_key`` matched), and ``by_new``: the key of some valid
    record of the request is not ``left_out``, so its task stores it and the request is in the
    run's rating scope for sure. Nothing (False) when no stored key shares a request key with
    the day: the usual night, which costs one job (the keys' join), not the requests' (their
    text, and the marks of the keys left out)."""
    from pyspark.sql import functions as F  # noqa: N812

    valid = every_row.where("problem IS NULL AND request_key IS NOT NULL").select(
        "event_key", "request_key", "account_id", "request_id"
    )
    holders = (
        stored_keys.select("request_key", "run_id").join(valid.select("request_key"), "request_key", "left_semi")
    ).cache()  # tested for rows, then joined: a retried request's keys, few
    try:
        if holders.isEmpty():
            return False
        marked = left_out.withColumn("left_out", F.lit(True))
        requests = valid.join(holders.select("request_key").distinct(), "request_key", "left_semi").join(
            marked, "event_key", "left"
        )
        earlier = (
            requests.join(holders.distinct(), "request_key")
            .groupBy("account_id", "request_id", "run_id")
            .agg(F.max(F.col("left_out").isNull()).alias("by_new"))
        )
        earlier.coalesce(1).write.parquet(str(out))
        return True
    finally:
        holders.unpersist()  # the session outlives the run (a review)


def output_files(folder: Path) -> list[Path]:
    """The Parquet files of a Spark output folder (none when the folder is absent: no history)."""
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []
