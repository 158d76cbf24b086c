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
dedup opens) and ``special`` (every key the driver loads). A hash collision only loads a row
more: dedup compares event_ids. The quarantined ids are compared as text, where the driver
compared their hashes: the same rows up to a collision, which only loaded a row more.

Spark reads DuckDB's ``UBIGINT`` keys as ``DECIMAL(20,0)`` (it has no unsigned type); the
driver casts the results back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.spark import SparkEngineError


def probe_history(
    spark: Any, parts: Sequence[Path], history: Sequence[Path], quarantined: Path, out_dir: Path
) -> tuple[Path, Path, Path]:
    """Write into ``out_dir`` the folders ``stored`` (``event_key``, ``run_id``: the stored
    keys that valid records of ``parts`` share, distinct), ``special`` (``event_key``: the
    keys of the valid records the driver must load: repeated in the parts, stored, or the
    event_id of a quarantined line of the parts or of ``quarantined``'s ``event_id``s) and
    ``loaded`` (the rows of ``parts`` the driver loads: the quarantined ones and those with a
    special key, every column as the part has it; the keys as Spark reads them), each as
    Spark's Parquet output; the three folders. ``history``: the stored keys' files (none: a
    first run)."""
    from pyspark.sql import functions as F  # noqa: N812

    from pipeline.spark.remote import _literal

    def read(paths: Sequence[Path]) -> Any:
        return spark.read.parquet(*[_literal(str(p)) for p in paths])

    every_row = read(parts)
    rows = every_row.selectExpr("event_key", "event_id", "problem IS NULL AS valid")
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
    if history:
        stored = read(history).select("event_key", "run_id").join(keys.distinct(), "event_key", "left_semi").distinct()
        stored = stored.cache()  # written, and its keys are special
        special = special.union(stored.select("event_key"))
        stored.coalesce(1).write.parquet(str(stored_dir))
    special = special.distinct().cache()  # written, and the loaded rows are chosen by it
    special.coalesce(1).write.parquet(str(special_dir))
    loaded_dir = out_dir / "loaded"
    marked = special.withColumn("special", F.lit(True))  # Spark broadcasts it when it is small
    loaded = every_row.join(marked, "event_key", "left").where("problem IS NOT NULL OR special")
    # one output file, the parts still scanned by a task each (coalesce would make the scan one task)
    loaded.drop("special").repartition(1).write.parquet(str(loaded_dir))
    special.unpersist()
    if history:
        stored.unpersist()
    folders = (stored_dir, special_dir, loaded_dir) if history else (special_dir, loaded_dir)
    for folder in folders:
        if not (folder / "_SUCCESS").is_file():
            raise SparkEngineError(f"Spark's probe of the stored keys wrote no complete output in {folder}")
    return stored_dir, special_dir, loaded_dir


def output_files(folder: Path) -> list[Path]:
    """The Parquet files of a Spark output folder (none when the folder is absent: no history)."""
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []
