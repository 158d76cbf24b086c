"""Prepaid credit grants (issue 17): an append-only CSV ledger, validated line by line.

The file (``data/credits.csv`` by default, ``--credits``) is reference data like the accounts
file: every rating run loads it into ``credit_grants``, hashes it and keeps its exact bytes in
``reference_files``, so a replay uses the grants that were in force. It is append-only: an
entry is never edited or removed; a mistake is undone by a *reversal*, a new line whose
``reverses`` names the entry it takes back. A run refuses a file in which an entry recorded
by an earlier run changed or disappeared.

Columns (header required, in any order)::

    grant_id,account_id,amount,currency,granted_at,expires_at,kind,external_ref,reverses

``amount`` is a positive USD amount with at most 2 decimals (a reversal's amount is what it
takes back, at most the reversed grant's); ``granted_at``/``expires_at`` are RFC 3339
instants with an offset (``expires_at`` empty: never expires); ``kind`` is purchased,
promotional or goodwill (a reversal repeats the kind of the grant it reverses).
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core.defaults import DEFAULT_CREDITS_FILE
from core.errors import BillingError, MissingInput, read_reference_file
from core.money import D, Decimal, MoneyError, max_scale

COLUMNS = (
    "grant_id",
    "account_id",
    "amount",
    "currency",
    "granted_at",
    "expires_at",
    "kind",
    "external_ref",
    "reverses",
)
KINDS = ("purchased", "promotional", "goodwill")


class CreditsError(BillingError, ValueError):
    """A credit grants file that must not be used, naming file, line and field."""

    default_hint = "fix the credit grants file (--credits, default data/credits.csv) and re-run; nothing was rated"


class CreditsFileMissing(CreditsError, MissingInput):
    """``--credits`` names a file that does not exist (a usage error)."""


@dataclass(frozen=True)
class CreditEntry:
    """One line of the ledger: a grant, or (``reverses`` set) the reversal of one."""

    grant_id: str
    account_id: str
    amount: Decimal
    currency: str
    granted_at: datetime
    expires_at: datetime | None
    kind: str
    external_ref: str
    reverses: str | None
    line: int

    @property
    def is_reversal(self) -> bool:
        return self.reverses is not None

    def key(self) -> tuple[object, ...]:
        """What must never change once recorded (everything but the line number)."""
        return (
            self.grant_id,
            self.account_id,
            self.amount,
            self.currency,
            self.granted_at,
            self.expires_at,
            self.kind,
            self.external_ref,
            self.reverses,
        )


@dataclass(frozen=True)
class CreditsFile:
    entries: tuple[CreditEntry, ...]
    sha256: str
    source_bytes: bytes
    name: str = "credits.csv"


def _instant(path: Path, line: int, name: str, text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CreditsError(f"{path}:{line}: field {name}: {text!r} is not an RFC 3339 instant") from None
    if value.tzinfo is None:
        raise CreditsError(f"{path}:{line}: field {name}: {text!r} has no offset (write e.g. 2026-11-01T00:00:00Z)")
    return value


def _amount(path: Path, line: int, text: str) -> Decimal:
    try:
        value = D(text)
    except MoneyError:
        raise CreditsError(f"{path}:{line}: field amount: {text!r} is not a decimal amount") from None
    if value <= 0 or max_scale(value) > 2:
        raise CreditsError(f"{path}:{line}: field amount: {text!r} must be positive with at most 2 decimals")
    return value


def _entry(path: Path, line: int, row: dict[str, str]) -> CreditEntry:
    cells = {k: (row.get(k) or "").strip() for k in COLUMNS}
    for name in ("grant_id", "account_id", "amount", "currency", "granted_at", "kind"):
        if not cells[name]:
            raise CreditsError(f"{path}:{line}: field {name}: is empty")
    if cells["currency"] != "USD":
        raise CreditsError(f"{path}:{line}: field currency: {cells['currency']!r} is not USD (the billing currency)")
    if cells["kind"] not in KINDS:
        raise CreditsError(f"{path}:{line}: field kind: {cells['kind']!r} is not one of {', '.join(KINDS)}")
    granted = _instant(path, line, "granted_at", cells["granted_at"])
    expires = _instant(path, line, "expires_at", cells["expires_at"]) if cells["expires_at"] else None
    if expires is not None and expires <= granted:
        raise CreditsError(f"{path}:{line}: field expires_at: must be after granted_at")
    return CreditEntry(
        cells["grant_id"],
        cells["account_id"],
        _amount(path, line, cells["amount"]),
        "USD",
        granted,
        expires,
        cells["kind"],
        cells["external_ref"],
        cells["reverses"] or None,
        line,
    )


def _check_reversals(path: Path, entries: list[CreditEntry]) -> None:
    by_id: dict[str, CreditEntry] = {}
    reversed_ids: set[str] = set()
    for e in entries:
        if e.grant_id in by_id:
            raise CreditsError(
                f"{path}:{e.line}: field grant_id: {e.grant_id!r} is already used on line {by_id[e.grant_id].line}"
            )
        by_id[e.grant_id] = e
    for e in entries:
        if e.reverses is None:
            continue
        target = by_id.get(e.reverses)
        where = f"{path}:{e.line}: field reverses"
        if target is None or target.is_reversal:
            raise CreditsError(f"{where}: {e.reverses!r} is not a grant in this file")
        if target.line > e.line:
            raise CreditsError(f"{where}: the reversal must come after grant {e.reverses!r} (append-only)")
        if e.reverses in reversed_ids:
            raise CreditsError(f"{where}: grant {e.reverses!r} is already reversed")
        reversed_ids.add(e.reverses)
        if (e.account_id, e.kind) != (target.account_id, target.kind):
            raise CreditsError(f"{where}: account and kind must be those of grant {e.reverses!r}")
        if e.amount > target.amount:
            raise CreditsError(f"{path}:{e.line}: field amount: more than grant {e.reverses!r} ({target.amount})")
        if e.granted_at < target.granted_at or e.expires_at is not None:
            raise CreditsError(
                f"{path}:{e.line}: field granted_at: a reversal takes effect at or after its grant and has no expiry"
            )


def parse_credits(data: bytes, path: Path) -> CreditsFile:
    """Validate credit grant file bytes (``path`` only names them in errors)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CreditsError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [c for c in COLUMNS if c not in header]
    unknown = [c for c in header if c not in COLUMNS]
    if missing or unknown:
        raise CreditsError(
            f"{path}:1: header: missing {', '.join(missing) or 'nothing'}; unknown {', '.join(unknown) or 'nothing'}",
            hint=f"the header is {','.join(COLUMNS)}",
        )
    entries = []
    for row in reader:
        line = reader.line_num
        if None in row:
            raise CreditsError(f"{path}:{line}: more cells than header columns")
        if not any((v or "").strip() for v in row.values()):
            continue
        entries.append(_entry(path, line, row))
    _check_reversals(path, entries)
    return CreditsFile(tuple(entries), hashlib.sha256(data).hexdigest(), data, path.name)


def load_credits(path: Path | None) -> CreditsFile | None:
    """The grants in ``path``; None when no file is given and the default does not exist."""
    if path is None:
        if not DEFAULT_CREDITS_FILE.is_file():
            return None
        path = DEFAULT_CREDITS_FILE
    hint = "give the credit grants file with --credits"
    data = read_reference_file(
        path, "credit grants file", missing=CreditsFileMissing, unreadable=CreditsError, hint=hint
    )
    return parse_credits(data, path)


def check_accounts(credits: CreditsFile, known: set[str], where: str) -> None:
    """Refuse credit for an account the accounts file does not have (a typo would hide it)."""
    for e in credits.entries:
        if e.account_id not in known:
            raise CreditsError(f"{where}:{e.line}: field account_id: {e.account_id!r} is not in the accounts file")


def check_append_only(recorded: list[tuple[object, ...]], current: CreditsFile | None, where: str) -> None:
    """Refuse a grants file that dropped or changed an entry an earlier run recorded."""
    now = {e.grant_id: e.key() for e in (current.entries if current else ())}
    for key in recorded:
        grant_id = str(key[0])
        if grant_id not in now:
            raise CreditsError(
                f"{where}: credit entry {grant_id} recorded by an earlier run is missing",
                hint="credit grants are append-only: restore the entry (reverse it with a new line instead), "
                "or give the grants file with --credits",
            )
        if now[grant_id] != tuple(key):
            raise CreditsError(
                f"{where}: credit entry {grant_id} was edited after an earlier run recorded it",
                hint="credit grants are append-only: restore the entry and add a reversal line instead",
            )
