"""The reference data's state in the database, by hashes only (no parsing, no pydantic).

Validating the reference files takes pydantic (about 0.1 s to import) and their models; on a
nightly of an empty day that was a third of the start (issue 14, item 5). Yet most runs read
the very files the last run validated and loaded. So the run that loads reference data also
records a digest of what it was built from (``reference_sources`` in ``rating_state``: every
price file's path and bytes, the accounts, credits and issuer files' (and the issuer's logo's),
the code version and the validating modules' source). A later run whose files give the same
digest uses :class:`Unchanged`: the hashes the database recorded, without parsing a file,
because the reference tables, ``reference_files`` and the fingerprint already hold exactly what
validating those bytes produced. Any difference (a changed, added or removed file, another
path, another code version, tables written by anything but such a run) has no match, and the
files are validated and loaded as always, with the same errors.

The hash-level steps of a rating run (the fingerprint, edited price versions, used versions)
live here too, so that a run on unchanged files needs nothing else; ``pipeline.reference``
re-exports them.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import duckdb

from core.db import code_version
from core.defaults import DEFAULT_CREDITS_FILE
from core.errors import BillingError

if TYPE_CHECKING:
    from pipeline.rate import RateResult

SOURCES_KEY = "reference_sources"  # rating_state: {"digest": ..., "fingerprint": ...}

_ROOT = Path(__file__).parent.parent
# the modules whose rules decide whether reference files are valid: an edit re-validates
_VALIDATORS = (
    "pipeline/accounts.py",
    "pipeline/credits.py",
    "pipeline/issuer.py",
    "pipeline/reference.py",
    "pipeline/taxids.py",
    "pricing/model.py",
    "pricing/versions.py",
)


class Identified(Protocol):
    """Reference data as a run records it: its hashes, and the sources it was read from."""

    @property
    def sources(self) -> str | None: ...

    def hashes(self) -> dict[str, Any]: ...

    def fingerprint(self) -> str: ...


def fingerprint_of(hashes: dict[str, Any]) -> str:
    """The fingerprint of reference data with these hashes (``Reference.fingerprint``)."""
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _issuer_part(path: Path) -> list[str]:
    """The issuer file and the logo it names (embedded in the issuer, so part of its content)."""
    data = path.read_bytes()
    raw = tomllib.loads(data.decode("utf-8"))
    part = [str(path), hashlib.sha256(data).hexdigest()]
    logo = raw.get("logo")
    if isinstance(logo, str) and logo:
        part.append(_sha(Path(logo) if Path(logo).is_absolute() else path.parent / logo))
    return part


def sources_digest(
    prices_dir: Path, accounts_file: Path, credits_file: Path | None, issuer_file: Path | None
) -> str | None:
    """A digest of everything the reference data is built from, as ``jobs.load_reference``
    reads it; None when something cannot be read (the full load then says what)."""
    if credits_file is None and DEFAULT_CREDITS_FILE.is_file():
        credits_file = DEFAULT_CREDITS_FILE
    try:
        if not prices_dir.is_dir():
            return None
        parts: dict[str, Any] = {
            "code": [code_version(), *(_sha(_ROOT / name) for name in _VALIDATORS)],
            "prices": [[str(p), _sha(p)] for p in sorted(prices_dir.glob("*.toml"))],
            "accounts": [str(accounts_file), _sha(accounts_file)],
            "credits": None if credits_file is None else [str(credits_file), _sha(credits_file)],
            "issuer": None if issuer_file is None else _issuer_part(issuer_file),
        }
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Unchanged:
    """Reference data the database already holds, loaded from files with this digest."""

    sources: str
    stored: dict[str, Any]  # rating_state 'reference': the loaded Reference's hashes()

    def hashes(self) -> dict[str, Any]:
        return self.stored

    def fingerprint(self) -> str:
        return fingerprint_of(self.stored)

    def held_by(self, con: duckdb.DuckDBPyConnection) -> bool:
        """Still what ``con`` holds (checked again under the run lock: another run may have
        loaded other reference data since :func:`peek`)."""
        return stored(con, self.sources) == self


def stored(con: duckdb.DuckDBPyConnection, digest: str) -> Unchanged | None:
    """What ``con`` holds, if it was loaded from files with ``digest`` by a run that recorded them."""
    keys = (SOURCES_KEY, "reference", "reference_fingerprint")
    rows = dict(con.execute("SELECT key, value FROM rating_state WHERE key IN (?, ?, ?)", list(keys)).fetchall())
    if set(rows) != set(keys):
        return None
    try:
        sources = json.loads(rows[SOURCES_KEY])
        hashes = json.loads(rows["reference"])
    except ValueError:
        return None
    if not isinstance(sources, dict) or not isinstance(hashes, dict) or sources.get("digest") != digest:
        return None
    if not sources.get("fingerprint") == fingerprint_of(hashes) == rows["reference_fingerprint"]:
        return None
    return Unchanged(digest, hashes)


def peek(db_path: Path, digest: str | None) -> Unchanged | None:
    """:func:`stored` on the database file, read-only, before the run opens it (so a bad file
    is still reported before anything is written); None when it cannot tell. The caller holds
    the run lock (``jobs.reference_for_run``)."""
    if digest is None or not db_path.is_file():
        return None
    try:
        con = duckdb.connect(str(db_path), read_only=True)
    except duckdb.Error:  # in use by a run, or not a database: the full load decides
        return None
    try:
        return stored(con, digest)
    except duckdb.Error:  # not migrated yet, or not ours
        return None
    finally:
        con.close()


def forget_sources(con: duckdb.DuckDBPyConnection) -> None:
    """The reference tables are being replaced: they match no recorded files until
    :func:`store_fingerprint` records the ones they were loaded from."""
    con.execute("DELETE FROM rating_state WHERE key = ?", [SOURCES_KEY])


class PriceEditError(BillingError, ValueError):
    """A price version that already priced attempts was edited."""


def check_used_versions(con: duckdb.DuckDBPyConnection, ref: Identified, force: bool) -> None:
    """Refuse an edited price version that has already priced attempts (unless forced).

    Editing a used version would silently change what past requests cost; a price change is
    a new version with a later effective_from.
    """
    prices: dict[str, str] = ref.hashes()["prices"]
    used = dict(con.execute("SELECT version_id, sha256 FROM price_versions_used").fetchall())
    for version_id, sha in prices.items():
        if version_id in used and used[version_id] != sha and not force:
            raise PriceEditError(
                f"price version {version_id} was edited after it priced attempts (sha256 was "
                f"{used[version_id][:12]}, is now {sha[:12]}); add a new version with a later effective_from "
                "instead, or re-run with --force-price-edit to re-rate with the edited prices"
            )
    if force:
        for version_id, sha in prices.items():
            con.execute("UPDATE price_versions_used SET sha256 = ? WHERE version_id = ?", [sha, version_id])


def record_used_versions(con: duckdb.DuckDBPyConnection, ref: Identified, run_id: int, rated: RateResult) -> None:
    """Remember the versions the just-rated attempts were priced with (inside the transaction):
    ``rated.versions_table``, the distinct versions of its rated rows (``pipeline/rated_summary.py``)."""
    hashes = ref.hashes()["prices"]
    for (version_id,) in con.execute(
        f"SELECT price_version FROM {rated.versions_table} "
        "WHERE price_version NOT IN (SELECT version_id FROM price_versions_used) ORDER BY 1"
    ).fetchall():
        con.execute("INSERT INTO price_versions_used VALUES (?, ?, ?)", [version_id, hashes[version_id], run_id])


def stored_fingerprint(con: duckdb.DuckDBPyConnection) -> str | None:
    row = con.execute("SELECT value FROM rating_state WHERE key = 'reference_fingerprint'").fetchone()
    return row[0] if row else None


def store_fingerprint(con: duckdb.DuckDBPyConnection, ref: Identified) -> None:
    """The fingerprint and hashes of the reference data now loaded, and (when it was read from
    files that did not change while they were validated) the digest of those files."""
    fingerprint = ref.fingerprint()
    con.execute("INSERT OR REPLACE INTO rating_state VALUES ('reference_fingerprint', ?)", [fingerprint])
    con.execute(
        "INSERT OR REPLACE INTO rating_state VALUES ('reference', ?)", [json.dumps(ref.hashes(), sort_keys=True)]
    )
    forget_sources(con)
    if ref.sources is not None:
        con.execute(
            "INSERT INTO rating_state VALUES (?, ?)",
            [SOURCES_KEY, json.dumps({"digest": ref.sources, "fingerprint": fingerprint}, sort_keys=True)],
        )
