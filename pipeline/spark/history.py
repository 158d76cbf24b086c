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

Only the results travel: ``stored`` (each stored key the day shares, with its run, which
dedup opens), ``special`` (every key the driver loads) and ``earlier`` (each request of the
day that has attempts stored by an earlier run, with that run: the rating's scope reaches
those attempts, :func:`pipeline.rate.rate_scope`; a retry of an earlier day's request is
rare, so this is small). A hash collision only loads a row more (dedup compares event_ids),
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

    stored: Path  # event_key, run_id: the stored keys that the day's valid records share (absent: no history)
    special: Path  # event_key: the keys of the valid records the driver loads
    loaded: Path  # the rows of the parts the driver loads, every column as the part has it
    # account_id, request_id, run_id, by_new: the day's requests that an earlier run holds
    # attempts of (absent: none, or no history); by_new: a valid record of the request is not
    # special (its task stores it), else only the driver's decision on special records can
    earlier: Path


def probe_history(
    spark: Any, parts: Sequence[Path], history: Sequence[Path], quarantined: Path, out_dir: Path
) -> ProbeOutput:
    """Write into ``out_dir`` the folders of :class:`ProbeOutput`: ``stored`` (the stored keys
    that valid records of ``parts`` share, distinct), ``special`` (the keys of the valid
    records the driver must load: repeated in the parts, stored, or the event_id of a
    quarantined line of the parts or of ``quarantined``'s ``event_id``s), ``loaded`` (the
    rows of ``parts`` the driver loads: the quarantined ones and those with a special key; the
    keys as Spark reads them) and ``earlier`` (the day's requests with a stored attempt, found
    by ``request_key``). ``history``: the stored keys' files (none: a first run)."""
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
    earlier_dir = out_dir / "earlier"
    if history:
        stored_keys = read(history)
        stored = stored_keys.select("event_key", "run_id").join(keys.distinct(), "event_key", "left_semi").distinct()
        stored = stored.cache()  # written, and its keys are special
        special = special.union(stored.select("event_key"))
        stored.coalesce(1).write.parquet(str(stored_dir))
    special = special.distinct().cache()  # written, and the loaded rows are chosen by it
    special.coalesce(1).write.parquet(str(special_dir))
    earlier = bool(history) and _write_earlier_requests(every_row, stored_keys, special, earlier_dir)
    loaded_dir = out_dir / "loaded"
    marked = special.withColumn("special", F.lit(True))  # Spark broadcasts it when it is small
    loaded = every_row.join(marked, "event_key", "left").where("problem IS NOT NULL OR special")
    # one output file, the parts still scanned by a task each (coalesce would make the scan one task)
    loaded.drop("special").repartition(1).write.parquet(str(loaded_dir))
    special.unpersist()
    if history:
        stored.unpersist()
    folders = [
        special_dir,
        loaded_dir,
        *([stored_dir] if history else []),
        *([earlier_dir] if earlier else []),
    ]
    for folder in folders:
        if not (folder / "_SUCCESS").is_file():
            raise SparkEngineError(f"Spark's probe of the stored keys wrote no complete output in {folder}")
    return ProbeOutput(stored_dir, special_dir, loaded_dir, earlier_dir)


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
