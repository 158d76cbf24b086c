"""Dedup's probe of the stored history, on Spark (issue 15): which of the day's records the
driver must look at, found without the day's keys or the history's keys reaching it.

R1 (sql/dedup.sql) decides only for *special* records: an event_id that repeats in the batch,
or that is stored. store_batch.sql also needs the records whose event_id is that of an
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
  and the parts' quarantined lines' ones.

A record whose key is stored is a *plain duplicate* when its event_id repeats nowhere in the
batch, is no quarantined one, and the stored attempt with that event_id has the same content
digest (the first 32 hex digits of ``content_sha256``, as dedup compares them): dedup's verdict
is ``duplicate``, whatever else the batch holds. The probe decides those on the executors
(:func:`_plain_duplicates`, reading ``event_id`` and ``content_sha256`` of the stored runs'
attempts files), so a resent day (every record of it stored before) never reaches the
driver: only each file's number of them does. Every other stored key stays special.

Only the results travel: ``stored`` (each stored key of a special record, with its run, which
dedup opens), ``special`` (every key the driver loads), ``left_out`` (the keys of the rows the
tasks must not store: the special and the plain duplicates; the tasks read it, the driver
does not), ``duplicates`` (each file's plain duplicates, counted) and ``earlier`` (each
request of the day that has attempts stored by an earlier run, with that run: the rating's
scope reaches those attempts, :func:`pipeline.rate.rate_scope`; a retry of an earlier day's
request is rare, so this is small). A hash collision only loads a row more (dedup compares event_ids),
or names a request of an earlier run that has none of its attempts (the driver reads that
run's attempts of the request by its text, and finds none). The quarantined ids are
compared as text, where the driver compared their hashes: the same rows up to a collision,
which only loaded a row more.

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
    special: Path  # event_key: the keys of the valid records the driver loads
    loaded: Path  # the rows of the parts the driver loads, every column as the part has it
    left_out: Path  # event_key: the keys of the valid records the tasks must not store (one file)
    duplicates: Path  # file_order, duplicates: each file's plain duplicates (absent: none)
    # account_id, request_id, run_id, by_new: the day's requests that an earlier run holds
    # attempts of (absent: none, or no history); by_new: a valid record of the request is not
    # special (its task stores it), else only the driver's decision on special records can
    earlier: Path


def probe_history(
    spark: Any,
    parts: Sequence[Path],
    history: Sequence[Path],
    quarantined: Path,
    out_dir: Path,
    attempts: Callable[[set[int]], Sequence[Path]] = lambda runs: (),
) -> ProbeOutput:
    """Write into ``out_dir`` the folders of :class:`ProbeOutput`: ``stored`` (the stored keys
    that special records of ``parts`` share, distinct), ``special`` (the keys of the valid
    records the driver must load: repeated in the parts, the event_id of a quarantined line of
    the parts or of ``quarantined``'s ``event_id``s, or stored and not a plain duplicate),
    ``loaded`` (the rows of ``parts`` the driver loads: the quarantined ones and those with a
    special key; the keys as Spark reads them), ``left_out`` (the special keys and those of
    the plain duplicates), ``duplicates`` (each file's plain duplicates) and ``earlier`` (the
    day's requests with a stored attempt, found by ``request_key``). ``history``: the stored
    keys' files (none: a first run); ``attempts``: the listed attempts files of the given runs
    (asked only for the runs holding a stored key the day shares; a run whose attempts are in
    no file, i.e. still in the database's table, decides no duplicate: its keys stay special)."""
    from pyspark.sql import functions as F  # noqa: N812

    from pipeline.spark.remote import _literal

    def read(paths: Sequence[Path]) -> Any:
        return spark.read.parquet(*[_literal(str(p)) for p in paths])

    every_row = read(parts)
    rows = every_row.selectExpr("event_key", "request_key", "event_id", "problem IS NULL AS valid")
    day = rows.where("valid AND event_key IS NOT NULL").select("event_key", "event_id")
    keys = day.select("event_key")
    # the keys repeated in the batch (a shuffle of the day's keys, so computed once: the
    # duplicates decided and the special keys both read it; nearly always none)
    repeated = keys.groupBy("event_key").count().where("count > 1").select("event_key").cache()
    ids = (
        rows.where("NOT valid AND event_id IS NOT NULL")
        .select("event_id")
        .union(read([quarantined]).select("event_id"))
        .distinct()
    )
    # store_batch.sql keeps a quarantined line's event_id masked (mask_secrets), and resolves the
    # entry when a new record has that masked id: a valid id spelling the mask may be one
    masked = day.where(F.col("event_id").contains(REDACTED)).select("event_key")
    fixed = day.join(ids, "event_id", "left_semi").select("event_key").union(masked)
    fixed = fixed.distinct().cache()  # read twice, small
    stored_dir, special_dir = out_dir / "stored", out_dir / "special"
    earlier_dir, left_out_dir, duplicates_dir = out_dir / "earlier", out_dir / "left_out", out_dir / "duplicates"
    stored = None
    if history:
        stored_keys = read(history)
        stored = stored_keys.select("event_key", "run_id").join(keys.distinct(), "event_key", "left_semi").distinct()
        stored = stored.cache()  # its runs opened, and (less the decided keys) written
    decided = _decided_duplicates(spark, every_row, repeated, fixed, stored, attempts)
    looked_at = repeated if stored is None else repeated.union(stored.select("event_key"))
    not_special = decided.by_key.select("event_key").union(decided.batch_keys)
    special = fixed.union(looked_at.join(not_special, "event_key", "left_anti"))
    special = special.distinct().cache()  # written, and the loaded rows are chosen by it
    special.coalesce(1).write.parquet(str(special_dir))
    if stored is not None:  # the stored keys of the special records: dedup opens their runs
        stored.join(special, "event_key", "left_semi").coalesce(1).write.parquet(str(stored_dir))
    duplicates = decided.by_key.select("file_order").union(decided.by_row.select("file_order"))
    duplicates.groupBy("file_order").agg(F.count("*").alias("duplicates")).coalesce(1).write.parquet(
        str(duplicates_dir)
    )
    left_out = special.union(decided.by_key.select("event_key")).distinct()
    # one file (the tasks that store the parts' other rows each read it): the keys (never NULL:
    # NOT IN), then the rows left out one by one (the batch's repeats after their first)
    left_out.selectExpr("event_key", "CAST(NULL AS INT) AS file_order", "CAST(NULL AS BIGINT) AS line_no").union(
        decided.by_row.selectExpr("CAST(NULL AS DECIMAL(20,0)) AS event_key", "file_order", "line_no")
    ).coalesce(1).write.parquet(str(left_out_dir))
    earlier = bool(history) and _write_earlier_requests(every_row, stored_keys, left_out, earlier_dir)
    loaded_dir = out_dir / "loaded"
    marked = special.withColumn("special", F.lit(True))  # Spark broadcasts it when it is small
    loaded = every_row.join(marked, "event_key", "left").where("problem IS NOT NULL OR special")
    # one output file, the parts still scanned by a task each (coalesce would make the scan one task)
    loaded.drop("special").repartition(1).write.parquet(str(loaded_dir))
    for frame in (special, repeated, fixed):
        frame.unpersist()
    decided.unpersist()
    if stored is not None:
        stored.unpersist()
    folders = [
        special_dir,
        loaded_dir,
        left_out_dir,
        duplicates_dir,
        *([stored_dir] if history else []),
        *([earlier_dir] if earlier else []),
    ]
    for folder in folders:
        if not (folder / "_SUCCESS").is_file():
            raise SparkEngineError(f"Spark's probe of the stored keys wrote no complete output in {folder}")
    return ProbeOutput(stored_dir, special_dir, loaded_dir, left_out_dir, duplicates_dir, earlier_dir)


@dataclass(frozen=True)
class Decided:
    """The duplicates the probe decides (DataFrames): ``by_key`` (``event_key``, ``file_order``:
    every record of the key is a duplicate of a stored one), ``by_row`` (``file_order``,
    ``line_no``: a repeat within the batch, after the first, which is new) and ``batch_keys``
    (the keys of those repeats: no longer special, their first record is stored by its task)."""

    by_key: Any
    by_row: Any
    batch_keys: Any
    cached: tuple[Any, ...]

    def unpersist(self) -> None:
        for frame in self.cached:
            frame.unpersist()


def _decided_duplicates(
    spark: Any,
    every_row: Any,
    repeated: Any,
    fixed: Any,
    stored: Any | None,
    attempts: Callable[[set[int]], Sequence[Path]],
) -> Decided:
    """The duplicates ``dedup.sql`` would find among records whose key repeats in the batch or
    is ``stored``, when their verdict needs no line and no other record: all valid records of
    the key have one event_id and one ``content_sha256`` (all 64 hex digits, as dedup compares
    two records of the batch), and none is ``fixed`` (the event_id of a quarantined line or
    entry, which store_batch.sql resolves). Then, if the key is stored and that event_id's
    stored attempt (in the attempts files of the runs holding the key) has the same digest
    (the first 32 hex digits, as dedup compares a record with a stored one), every record of
    the key is a ``duplicate`` (``by_key``); if the key is not
    stored, the first record (by file, then line) is new and the others are ``duplicate``
    (``by_row``). Everything else stays special, for the driver's dedup: a hash collision (two
    event_ids, or no stored twin of the event_id), other content (a ``duplicate_conflict``), a
    stored twin with another digest (a conflict, or an attempt hashed before the canonical
    content form), or a run whose attempts are still in the database's table (no file)."""
    from pyspark.sql import functions as F  # noqa: N812

    from pipeline.spark.remote import _literal

    looked_at = repeated if stored is None else repeated.union(stored.select("event_key"))
    rows = (
        every_row.where("problem IS NULL AND event_key IS NOT NULL")
        .select("event_key", "event_id", "file_order", "line_no", "content_sha256")
        .join(looked_at.distinct(), "event_key", "left_semi")
        .join(fixed, "event_key", "left_anti")
    ).cache()  # the records looked at: a repeat's or a stored key's (nearly always none)
    groups = (
        rows.groupBy("event_key")
        .agg(
            F.min("event_id").alias("event_id"),
            F.max("event_id").alias("last_id"),
            F.min("content_sha256").alias("content_sha256"),
            F.max("content_sha256").alias("last_sha256"),
            F.min(F.struct("file_order", "line_no")).alias("first"),
        )
        .where("event_id = last_id AND content_sha256 = last_sha256")
        .select("event_key", "event_id", "first", F.substring("content_sha256", 1, 32).alias("digest"))
    ).cache()  # the keys whose records are all one: joined with the twins, and with the rows
    empty = rows.select("event_key", "file_order", "line_no").limit(0)
    by_key = empty
    runs = set() if stored is None else {int(row[0]) for row in stored.select("run_id").distinct().collect()}
    files = [_literal(str(path)) for path in attempts(runs)] if runs else []
    if files:
        twins = (
            spark.read.parquet(*files)
            .select("event_id", F.substring("content_sha256", 1, 32).alias("twin_digest"))
            .join(groups.select("event_id"), "event_id", "left_semi")
        )
        same = (
            groups.join(stored.select("event_key"), "event_key", "left_semi")  # type: ignore[union-attr]
            .join(twins, "event_id")
            .groupBy("event_key")
            .agg(F.min(F.col("twin_digest") == F.col("digest")).alias("same"))  # dedup stores one: one twin
            .where("same")
        )
        by_key = rows.join(same, "event_key", "left_semi").select("event_key", "file_order", "line_no")
    batch = groups if stored is None else groups.join(stored.select("event_key"), "event_key", "left_anti")
    by_row = (
        rows.join(batch.select("event_key", "first"), "event_key")
        .where("file_order <> first.file_order OR line_no <> first.line_no")
        .select("file_order", "line_no")
    )
    by_key, by_row = by_key.cache(), by_row.cache()  # counted, left out, and (by key) not special
    return Decided(by_key, by_row, batch.select("event_key"), (rows, groups, by_key, by_row))


def _write_earlier_requests(every_row: Any, stored_keys: Any, special: Any, out: Path) -> bool:
    """Write into ``out`` the day's requests (of valid records) that have stored attempts, with
    each run holding some (``request_key`` matched), and ``by_new``: some valid record of the
    request is not special, so its task stores it and the request is in the run's rating
    scope for sure. Nothing (False) when no stored key shares a request key with the day: the
    usual night, which costs one job (the keys' join), not the requests' (their text, and the
    special marks)."""
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
        marked = special.withColumn("special", F.lit(True))
        requests = valid.join(holders.select("request_key").distinct(), "request_key", "left_semi").join(
            marked, "event_key", "left"
        )
        earlier = (
            requests.join(holders.distinct(), "request_key")
            .groupBy("account_id", "request_id", "run_id")
            .agg(F.max(F.col("special").isNull()).alias("by_new"))
        )
        earlier.coalesce(1).write.parquet(str(out))
        return True
    finally:
        holders.unpersist()  # the session outlives the run (a review)


def output_files(folder: Path) -> list[Path]:
    """The Parquet files of a Spark output folder (none when the folder is absent: no history)."""
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []
