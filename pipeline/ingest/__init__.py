"""Ingest gateway log files into ``attempts`` (R1 dedup) and ``quarantine`` (R9).

DuckDB reads the files (``read_csv`` of whole lines, numbered WITH ORDINALITY, or
``read_parquet``); ``sql/parse.sql`` validates and types every line and ``sql/dedup.sql``
applies R1. Python only orchestrates, plus a line-by-line fallback reader for the rare file
DuckDB refuses (invalid UTF-8, a truncated or corrupt gzip/zstd stream, a lone CR, a line
holding our delimiter bytes \\x1e\\x1f, a line over 64 MiB), so one bad byte never stops the
good lines of a file. The fallback streams: it holds one line (at most 64 MiB of it) and one
batch of lines at a time, so its memory does not grow with the file.

Staging and parse.sql write TEMP tables only and run before the run's transaction; parse.sql
runs over slices of a few MiB of text, because DuckDB's JSON functions hold a whole vector's
parse trees outside the memory limit (see ``parse_staged``). Everything else is one
transaction (``apply_staged``, inside the job's).

Accounting per file: lines read = accepted + duplicates + quarantined (blank lines, i.e.
only spaces, tabs or CR, are not records and are not counted). A file that cannot be read at
all (a corrupt Parquet file) or stops being readable (a cut gzip or zstd stream) adds one
``parse_error`` entry for the unreadable rest, so it never vanishes from the accounting; a
zero-byte file of any kind is an empty log.

Hostile input, decided (see ``docs/hostile-input.md``): a line with lone UTF-16 surrogate
escapes (``"\\ud800"``) only inside ``messages``/``output_text`` is accepted, the lone halves
counted as U+FFFD (the texts are only counted, never stored); anywhere else it is a
``parse_error``. An id field (event_id, request_id, account_id, model) that carries an API
key is an ``invalid_record``; other text fields are stored with the key masked. A symbolic
link, a FIFO, a device or a directory named like a log file is never read (:func:`refusal`).
An object that repeats a key (any depth) is a ``parse_error``: parse.sql finds it set-based,
:func:`first_repeated_key` names it and checks the lines parse.sql cannot (over 1 MiB, or
deeply nested). R1 compares canonical content (parse.sql), not bytes.

The package, one module per responsibility (issue 14's rewrite, issue 18's one file per
concern): ``files`` (finding, refusing, hashing and framing files), ``staging`` (staging a
batch into TEMP tables and parsing it in bounded slices), ``repeated_keys``, ``macros``
(the SQL macros parse.sql and store_batch.sql call), ``recounting`` (R5 inside ingest) and
``apply`` (dedup, recount and store inside the run's transaction). The jobs use the names
below.
"""

from pipeline.ingest.apply import apply_staged
from pipeline.ingest.files import (
    SUPPORTED_SUFFIXES,
    FileResult,
    IngestError,
    InputMissing,
    discover,
    file_kind,
    file_sha256,
    input_name,
    is_uri,
    recorded_input,
    refusal,
    source_name,
)
from pipeline.ingest.recounting import Recounter, RecountRow, no_recount
from pipeline.ingest.repeated_keys import first_repeated_key, repeated_key_problem
from pipeline.ingest.staging import StagedBatch, latest_plausible_ts, parse_staged, stage_file, stage_files

__all__ = [
    "SUPPORTED_SUFFIXES",
    "FileResult",
    "IngestError",
    "InputMissing",
    "RecountRow",
    "Recounter",
    "StagedBatch",
    "apply_staged",
    "discover",
    "file_kind",
    "file_sha256",
    "first_repeated_key",
    "input_name",
    "is_uri",
    "latest_plausible_ts",
    "no_recount",
    "parse_staged",
    "recorded_input",
    "refusal",
    "repeated_key_problem",
    "source_name",
    "stage_file",
    "stage_files",
]
