"""Finding and reading log files: kinds, refusals, discovery, hashes, and the raw line reader
of the fallback path (gzip, zstd, plain), which frames lines itself so one bad byte never
stops the good lines of a file.
"""

from __future__ import annotations

import codecs
import glob
import gzip
import hashlib
import os
import re
import stat
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import zstandard

from core.errors import BillingError, MissingInput
from pipeline.ingest.macros import EXCERPT_BYTES
from pipeline.redact import mask_secrets

SUPPORTED_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".parquet")
# The longest line read: DuckDB's own line limit (the fallback reader refuses longer ones).
MAX_LINE_BYTES = 64 << 20


class IngestError(BillingError, ValueError):
    """An input that cannot be ingested at all (unknown kind, missing file)."""


class InputMissing(IngestError, MissingInput):
    """The logs directory named on the command line does not exist: a usage error."""


@dataclass(frozen=True)
class FileResult:
    path: str
    sha256: str
    size_bytes: int
    lines_read: int
    accepted: int
    duplicates: int
    quarantined: int
    skipped: bool = False


def file_kind(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in SUPPORTED_SUFFIXES if name.endswith(s)), None)


def secret_in_name(path: str) -> str | None:
    """Why a file whose name holds what looks like an API key or token is not read, or None.

    A log file's name is stored with every record it holds (``source_file``), in the ledger and
    the lake, and printed in messages; masking it would break replay, which finds the file by
    its name. So such a file is refused and reported with the name masked (found by an audit):
    rename it."""
    name = re.sub(r"[\x00-\x1f\x7f]", "?", path)
    masked = mask_secrets(name)
    if masked == name:
        return None
    return f"{masked}: the file name holds what looks like a secret; refused (names are stored and printed): rename it"


def refusal(path: Path) -> str | None:
    """Why ``path`` is not read as a log file, or None for a regular file.

    A log file is read only as what it is: a symbolic link (``requests-X.jsonl ->
    /etc/passwd``) would put another file's content into the quarantine copies, and a FIFO or
    a device would block or never end. Looked at with ``lstat``, so a link is never followed.
    A name holding a secret is refused too (:func:`secret_in_name`).
    """
    if reason := secret_in_name(str(path)):
        return reason
    name = re.sub(r"[\x00-\x1f\x7f]", "?", str(path))  # the message stays one line
    try:
        mode = os.lstat(path).st_mode
    except OSError as exc:
        return f"{name}: cannot be read ({exc.strerror})"
    if stat.S_ISLNK(mode):
        return f"{name}: is a symbolic link; refused, log files are read only as regular files"
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        return f"{name}: is {kind}; refused, log files are read only as regular files"
    return None


def discover(patterns: Sequence[str], refused: list[str] | None = None) -> list[Path]:
    """Expand files and globs; a named file of an unknown kind is an error, not a skip.

    A glob that matches no log file is fine beside patterns that do (``*.jsonl *.jsonl.gz``);
    when nothing matches at all it is missing input (:class:`IngestError`), like a named file
    that is not there. A link or anything but a regular file (:func:`refusal`) is never read: with ``refused``
    given, its one-line reason is appended there and the other files go on (the caller
    reports it and fails the run's exit code); without, it is an :class:`IngestError`.
    """
    found: dict[str, Path] = {}

    def refuse(reason: str) -> None:
        if refused is None:
            raise IngestError(reason)
        refused.append(reason)

    unmatched: list[str] = []  # globs that matched no log file
    matched_any = False
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            matched = False
            for match in glob.glob(pattern, recursive=True):
                path = Path(match)
                if not file_kind(path):
                    continue
                matched = matched_any = True
                if reason := refusal(path):
                    refuse(reason)
                    continue
                found[str(path.resolve())] = path
            if not matched:
                unmatched.append(pattern)
            continue
        matched_any = True
        path = Path(pattern)
        if not os.path.lexists(path):
            # exit 1, not 2: like a day without files for the nightly, a log that is not there is
            # missing input, not a mistyped command line
            raise IngestError(f"{pattern}: no such file", hint="check the path; quote globs so the shell leaves them")
        if not file_kind(path):
            raise IngestError(
                f"{pattern}: not a log file (expected {', '.join(SUPPORTED_SUFFIXES)})",
                hint="rename it with its format's suffix, or leave it out",
            )
        if reason := refusal(path):
            refuse(reason)
            continue
        found[str(path.resolve())] = path
    if unmatched and not matched_any:  # nothing to read at all: missing input, not a quiet success
        raise IngestError(
            f"{unmatched[0]}: no log file matches (expected {', '.join(SUPPORTED_SUFFIXES)})",
            hint="check the pattern; quote globs so the shell leaves them",
        )
    # R1 "first" within a batch: files in name order
    # (ties between equal names by absolute path, so the order never depends on the spelling)
    return sorted(found.values(), key=lambda p: (p.name, str(p.resolve())))


def source_name(path: Path) -> str:
    """The name stored with every record of a file (``attempts``/``quarantine.source_file``).

    The file name only, never the path as spelled: ``data/sample_logs/x.jsonl.gz``,
    ``./data/sample_logs/x.jsonl.gz`` and ``/srv/.../x.jsonl.gz`` are one input, which the
    stored ``source_sha256`` identifies. A stored path would make the rows depend on the
    directory a run was started from, and ``replay --verify`` (which re-reads the inputs by
    their recorded absolute paths) would report an untouched database as changed.
    """
    return path.resolve().name


_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(text: object) -> bool:
    """Whether ``text`` is a location for the cluster's file system (``s3a://...``, a string),
    read by Spark's executors (pipeline/spark/remote.py), rather than a local path."""
    return isinstance(text, str) and bool(_URI_SCHEME.match(text))


def uri_file_name(uri: str) -> str:
    """The file name of ``uri``, stored with its records as :func:`source_name` stores a local
    file's. Taken literally, as Hadoop's file systems take a path (``%41`` is three characters
    of a name, never an ``A``), so the name is the one the gateway wrote."""
    return uri.rstrip("/").rsplit("/", 1)[-1]


def input_name(path: str | Path) -> str:
    """The file name of an input given as a local path or as a URI."""
    return uri_file_name(path) if isinstance(path, str) and is_uri(path) else Path(path).name


def recorded_input(path: str | Path) -> str:
    """An input as the ledger records it (``run_files.path``): a local file by its absolute
    path (replay re-reads it there), a URI as the cluster's file system named it."""
    return path if isinstance(path, str) and is_uri(path) else str(Path(path).resolve())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def zstd_problem(path: Path) -> str | None:
    """Why a .zst file is not a complete zstd stream, or None when it is.

    Neither DuckDB nor python-zstandard reports a stream cut off inside a frame: both return
    what decoded (often nothing) and stop, so a truncated file would ingest as fewer lines
    than it had, with no trace. Walking the frame and block headers (RFC 8878) finds a cut
    or trailing junk without decompressing anything.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        while (pos := f.tell()) < size:
            magic = f.read(4)
            if len(magic) < 4:
                return f"zstd stream is truncated (frame header at byte {pos})"
            number = int.from_bytes(magic, "little")
            if 0x184D2A50 <= number <= 0x184D2A5F:  # skippable frame
                length = f.read(4)
                if len(length) < 4 or f.tell() + int.from_bytes(length, "little") > size:
                    return f"zstd stream is truncated (skippable frame at byte {pos})"
                f.seek(int.from_bytes(length, "little"), 1)
                continue
            if number != 0xFD2FB528:
                return f"not a zstd frame at byte {pos}"
            descriptor = f.read(1)
            if not descriptor:
                return f"zstd stream is truncated (frame header at byte {pos})"
            d = descriptor[0]
            single_segment = bool(d & 0x20)
            fcs = (1 if single_segment else 0, 2, 4, 8)[d >> 6]
            header = (0 if single_segment else 1) + (0, 1, 2, 4)[d & 3] + fcs
            f.seek(header, 1)
            while True:
                block = f.read(3)
                if len(block) < 3:
                    return f"zstd stream is truncated (block header at byte {f.tell() - len(block)})"
                value = int.from_bytes(block, "little")
                block_type, block_size = (value >> 1) & 3, value >> 3
                if block_type == 3:
                    return f"corrupt zstd block at byte {f.tell() - 3}"
                f.seek(1 if block_type == 1 else block_size, 1)  # RLE blocks hold one byte
                if value & 1:
                    break
            if d & 0x04:
                f.seek(4, 1)  # content checksum
            if f.tell() > size:
                return f"zstd stream is truncated (frame at byte {pos} ends past the end of the file)"
    return None


def _open_stream(raw: IO[bytes], kind: str | None) -> IO[bytes] | gzip.GzipFile:
    if kind == ".jsonl.gz":
        return gzip.GzipFile(fileobj=raw)
    if kind == ".jsonl.zst":
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)  # type: ignore[return-value]
    return raw


def starts_with_bom(path: Path) -> bool:
    """Whether the file's (decompressed) bytes start with a UTF-8 byte-order mark.

    DuckDB's line reader drops one there, the Python reader keeps it: such a file is read by
    the latter, so its first line is what it is anywhere else, not JSON (RFC 8259 has no BOM
    in a JSON text; docs/hostile-input.md). An unreadable start is left to the readers.
    """
    try:
        with path.open("rb") as raw:
            stream = _open_stream(raw, file_kind(path))
            read = getattr(stream, "read1", stream.read)
            head = b""
            while len(head) < len(codecs.BOM_UTF8) and (chunk := read(len(codecs.BOM_UTF8) - len(head))):
                head += chunk
    except (OSError, EOFError, zstandard.ZstdError, zlib.error):
        return False
    return head == codecs.BOM_UTF8


def raw_lines(path: Path) -> Iterator[tuple[bytes, bool]]:
    """Physical lines, split on LF only, as ``(line, too_long)``.

    Never holds more than one line: a line over MAX_LINE_BYTES is yielded as its first
    EXCERPT_BYTES with ``too_long`` set, the rest skipped as it streams by. Only the new chunk
    is searched for LF, so a 50 MB line costs O(size), not O(size^2).
    """
    with path.open("rb") as raw:
        stream = _open_stream(raw, file_kind(path))
        # read1 hands over what has been decompressed so far, so the lines before a
        # truncation point are kept (read(n) would raise and lose them)
        read = getattr(stream, "read1", stream.read)
        parts: list[bytes] = []
        size = 0
        too_long = False
        while chunk := read(1 << 16):
            start = 0
            while True:
                end = chunk.find(b"\n", start)
                piece = chunk[start:] if end < 0 else chunk[start:end]
                if not too_long:
                    if size + len(piece) > MAX_LINE_BYTES:
                        too_long = True
                        parts = [(b"".join(parts) + piece[:EXCERPT_BYTES])[:EXCERPT_BYTES]]
                    elif piece:
                        parts.append(piece)
                        size += len(piece)
                if end < 0:
                    break
                yield b"".join(parts), too_long
                parts, size, too_long = [], 0, False
                start = end + 1
        if parts or too_long:
            yield b"".join(parts), too_long
