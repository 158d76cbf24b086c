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

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    attempts: Sequence[tuple[int, Path]] = (),
) -> ProbeOutput:
    """Write into ``out_dir`` the folders of :class:`ProbeOutput`: ``stored`` (the stored keys
    that special records of ``parts`` share, distinct), ``special`` (the keys of the valid
    records the driver must load: repeated in the parts, the event_id of a quarantined line of
    the parts or of ``quarantined``'s ``event_id``s, or stored and not a plain duplicate),
    ``loaded`` (the rows of ``parts`` the driver loads: the quarantined ones and those with a
    special key; the keys as Spark reads them), ``left_out`` (the special keys and those of
    the plain duplicates), ``duplicates`` (each file's plain duplicates) and ``earlier`` (the
    day's requests with a stored attempt, found by ``request_key``). ``history``: the stored
    keys' files (none: a first run); ``attempts``: the listed attempts files, with their runs
    (a run whose attempts are in none, i.e. still in the database's table, has no plain
    duplicate: its keys stay special)."""
    from pyspark.sql import functions as F  # noqa: N812

    from pipeline.spark.remote import _literal

    def read(paths: Sequence[Path]) -> Any:
        return spark.read.parquet(*[_literal(str(p)) for p in paths])

    every_row = read(parts)
    rows = every_row.selectExpr("event_key", "request_key", "event_id", "problem IS NULL AS valid")
    day = rows.where("valid AND event_key IS NOT NULL").select("event_key", "event_id")
    keys = day.select("event_key")
    repeated = keys.groupBy("event_key").count().where("count > 1").select("event_key")
    ids = (
        rows.where("NOT valid AND event_id IS NOT NULL")
        .select("event_id")
        .union(read([quarantined]).select("event_id"))
        .distinct()
    )
    fixed = day.join(ids, "event_id", "left_semi").select("event_key")
    special = repeated.union(fixed)
    stored_dir, special_dir = out_dir / "stored", out_dir / "special"
    earlier_dir, left_out_dir, duplicates_dir = out_dir / "earlier", out_dir / "left_out", out_dir / "duplicates"
    plain = None
    if history:
        stored_keys = read(history)
        stored = stored_keys.select("event_key", "run_id").join(keys.distinct(), "event_key", "left_semi").distinct()
        # read for the runs to open, joined, and (less the plain duplicates) written
        stored = stored_all = stored.cache()
        plain = _plain_duplicates(spark, every_row, stored, special.distinct(), attempts)
        if plain is not None:
            plain = plain.cache()  # counted, and its keys are left out
            stored = stored.join(plain.select("event_key"), "event_key", "left_anti")
            plain.groupBy("file_order").agg(F.count("*").alias("duplicates")).coalesce(1).write.parquet(
                str(duplicates_dir)
            )
        special = special.union(stored.select("event_key"))
        stored.coalesce(1).write.parquet(str(stored_dir))
    special = special.distinct().cache()  # written, and the loaded rows are chosen by it
    special.coalesce(1).write.parquet(str(special_dir))
    left_out = special if plain is None else special.union(plain.select("event_key"))
    # one file (the tasks that store the parts' other rows each read it), never a NULL key (NOT IN)
    left_out.where("event_key IS NOT NULL").coalesce(1).write.parquet(str(left_out_dir))
    earlier = bool(history) and _write_earlier_requests(every_row, stored_keys, left_out, earlier_dir)
    loaded_dir = out_dir / "loaded"
    marked = special.withColumn("special", F.lit(True))  # Spark broadcasts it when it is small
    loaded = every_row.join(marked, "event_key", "left").where("problem IS NOT NULL OR special")
    # one output file, the parts still scanned by a task each (coalesce would make the scan one task)
    loaded.drop("special").repartition(1).write.parquet(str(loaded_dir))
    special.unpersist()
    if history:
        stored_all.unpersist()
    if plain is not None:
        plain.unpersist()
    folders = [
        special_dir,
        loaded_dir,
        left_out_dir,
        *([stored_dir] if history else []),
        *([duplicates_dir] if plain is not None else []),
        *([earlier_dir] if earlier else []),
    ]
    for folder in folders:
        if not (folder / "_SUCCESS").is_file():
            raise SparkEngineError(f"Spark's probe of the stored keys wrote no complete output in {folder}")
    return ProbeOutput(stored_dir, special_dir, loaded_dir, left_out_dir, duplicates_dir, earlier_dir)


def _plain_duplicates(
    spark: Any, every_row: Any, stored: Any, special: Any, attempts: Sequence[tuple[int, Path]]
) -> Any | None:
    """The plain duplicates of the parts (``event_key``, ``file_order``): valid records whose
    key is ``stored``, not ``special`` (so their event_id is in the batch once, and no
    quarantined one), and whose event_id is stored with the same content digest, in the
    attempts files of the runs holding their key. ``dedup.sql`` gives each of them the verdict
    ``duplicate``: a stored twin with the same digest. A hash collision finds no twin of the
    same event_id, and a twin stored with another digest (a conflict, or an attempt hashed
    before the canonical content form) is not plain: both stay special, for the driver's dedup.
    None when no stored key has its run's attempts in a file (the usual night: no stored key)."""
    from pyspark.sql import functions as F  # noqa: N812

    from pipeline.spark.remote import _literal

    runs = {int(row[0]) for row in stored.select("run_id").distinct().collect()}
    files = [str(path) for run, path in attempts if run in runs]
    if not files:
        return None
    candidates = (
        every_row.where("problem IS NULL AND event_key IS NOT NULL")
        .select("event_key", "event_id", "file_order", F.substring("content_sha256", 1, 32).alias("digest"))
        .join(stored.select("event_key").distinct(), "event_key", "left_semi")
        .join(special, "event_key", "left_anti")
    )
    twins = (
        spark.read.parquet(*[_literal(f) for f in files])
        .select("event_id", F.substring("content_sha256", 1, 32).alias("twin_digest"))
        .join(candidates.select("event_id"), "event_id", "left_semi")
    )
    # every twin of the event_id equal (dedup stores one attempt an event_id: one twin)
    return (
        candidates.join(twins, "event_id")
        .groupBy("event_key", "file_order", "digest")
        .agg(F.min(F.col("twin_digest") == F.col("digest")).alias("same"))
        .where("same")
        .select("event_key", "file_order")
    )


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
