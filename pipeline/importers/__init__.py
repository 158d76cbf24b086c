"""Convert other gateways' logs into ``infergate.request_log.v1`` files the nightly job ingests.

Teams that move to InferGate arrive with months of logs from the gateway they used before.
``run_import`` reads LiteLLM spend logs or OpenRouter generation records, maps every field the
rating rules read (docs/imports.md, field by field), and writes one ``.jsonl.gz`` per UTC day,
named ``<gateway>-<source stem>-<YYYY-MM-DD>.jsonl.gz`` so that ``nightly --date D --logs OUT``
picks each day up. Rows that cannot be mapped are not dropped: each becomes one JSON line in
``OUT/rejected/<gateway>-<source stem>.jsonl`` with file, row, field, reason and message
(never the row itself: it can hold prompt text or keys).

Conversion is deterministic: the same input gives the same bytes, and every record's
``event_id`` is derived from the source's own id, so importing an overlapping export again
only produces duplicates that ingest counts as such (R1).
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from core.errors import BillingError
from pipeline.importers import litellm, openrouter
from pipeline.importers._common import Rejected
from reports.atomic import write_atomic

__all__ = ["GATEWAYS", "GatewayImportError", "ImportReport", "Rejected", "run_import"]

Row = tuple[int, dict[str, Any] | Rejected]
Reader = Callable[[Path], Iterator[Row]]
Converter = Callable[[dict[str, Any], str], dict[str, Any]]

GATEWAYS: dict[str, tuple[Reader, Converter]] = {
    "litellm": (litellm.read_rows, litellm.convert),
    "openrouter": (openrouter.read_rows, openrouter.convert),
}
_SOURCE_SUFFIXES = (".jsonl", ".json", ".csv")


class GatewayImportError(BillingError):
    """A source file that cannot be read at all (missing, not a supported kind)."""


@dataclass
class FileResult:
    """What one source file gave: rows read = converted + rejected."""

    path: Path
    rows_read: int = 0
    converted: int = 0
    rejected: int = 0
    outputs: list[Path] = field(default_factory=list)
    rejects_file: Path | None = None


@dataclass
class ImportReport:
    gateway: str
    files: list[FileResult]

    @property
    def rows_read(self) -> int:
        return sum(f.rows_read for f in self.files)

    @property
    def rejected(self) -> int:
        return sum(f.rejected for f in self.files)


def source_stem(path: Path) -> str:
    """The part of the output names that says which source file they came from.

    The source's whole name, dots made underscores (``spend.csv`` -> ``spend_csv``): a CSV and
    a JSON export with the same stem must not write over each other's outputs.
    """
    if not path.name.endswith(_SOURCE_SUFFIXES):
        raise GatewayImportError(f"{path}: not a supported source file (expected {', '.join(_SOURCE_SUFFIXES)})")
    return path.name.replace(".", "_")


def run_import(gateway: str, files: Sequence[Path], out_dir: Path, account_id: str) -> ImportReport:
    """Convert ``files`` of ``gateway``'s format into request-log files in ``out_dir``."""
    if gateway not in GATEWAYS:
        raise GatewayImportError(f"unknown gateway {gateway!r} (known: {', '.join(GATEWAYS)})")
    if not account_id.strip():
        raise GatewayImportError("--account must name an InferGate account id")
    read_rows, convert = GATEWAYS[gateway]
    stems: dict[str, Path] = {}
    for path in map(Path, files):
        stem = source_stem(path)
        if not path.is_file():
            raise GatewayImportError(f"{path}: no such file")
        if stem in stems:
            raise GatewayImportError(
                f"{path}: same name as {stems[stem]}; their outputs would collide, import them apart"
            )
        stems[stem] = path
    return ImportReport(
        gateway,
        [_convert_file(gateway, path, stem, out_dir, read_rows, convert, account_id) for stem, path in stems.items()],
    )


def _convert_file(
    gateway: str, path: Path, stem: str, out_dir: Path, read_rows: Reader, convert: Converter, account_id: str
) -> FileResult:
    result = FileResult(path)
    rejects: list[str] = []
    with _DayFiles(out_dir, f"{gateway}-{stem}") as days:
        for row_number, row in read_rows(path):
            result.rows_read += 1
            try:
                if isinstance(row, Rejected):
                    raise row
                record = convert(row, account_id)
            except Rejected as rejected:
                rejects.append(_reject_line(path, row_number, rejected))
                continue
            days.write(record)
            result.converted += 1
    result.outputs = days.paths
    result.rejected = len(rejects)
    rejects_path = out_dir / "rejected" / f"{gateway}-{stem}.jsonl"
    if rejects:
        write_atomic(rejects_path, ("\n".join(rejects) + "\n").encode())
        result.rejects_file = rejects_path
    else:
        rejects_path.unlink(missing_ok=True)  # a stale list from an earlier run would mislead
    return result


class _DayFiles:
    """One gzip stream per UTC day, written to a temporary name and renamed when all succeeded.

    Streaming keeps memory flat for months of logs; the renames at the end mean a failed run
    leaves no half-written output that a nightly could ingest. ``mtime=0`` and no file name in
    the gzip header: the same input gives the same bytes.
    """

    def __init__(self, out_dir: Path, prefix: str) -> None:
        self.out_dir, self.prefix = out_dir, prefix
        self.streams: dict[str, tuple[Path, Path, BinaryIO, gzip.GzipFile]] = {}
        self.paths: list[Path] = []

    def __enter__(self) -> _DayFiles:
        return self

    def write(self, record: dict[str, Any]) -> None:
        day = datetime.fromisoformat(record["ts"]).astimezone(UTC).date().isoformat()
        if day not in self.streams:
            final = self.out_dir / f"{self.prefix}-{day}.jsonl.gz"
            tmp = final.with_name(f".{final.name}.tmp")
            self.out_dir.mkdir(parents=True, exist_ok=True)
            raw = open(tmp, "wb")  # closed in __exit__
            self.streams[day] = (final, tmp, raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0))
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"
        self.streams[day][3].write(line.encode())

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        for _final, tmp, raw, stream in self.streams.values():
            stream.close()
            raw.flush()
            os.fsync(raw.fileno())
            raw.close()
            if exc_type is not None:
                tmp.unlink(missing_ok=True)
        if exc_type is None:
            for day in sorted(self.streams):
                final, tmp, _raw, _stream = self.streams[day]
                os.replace(tmp, final)
                self.paths.append(final)


def _reject_line(path: Path, row: int, rejected: Rejected) -> str:
    entry = {"file": str(path), "row": row, "field": rejected.field, "reason": rejected.reason}
    entry["message"] = f"{path}: row {row}: {rejected.message}"
    return json.dumps(entry, ensure_ascii=False)
