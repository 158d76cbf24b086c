"""Load the reference data (price versions, accounts, issuer) into the run's database tables.

The files are the source of truth; the tables are a snapshot replaced by every run, so the
rating SQL can join them and analysts can read them. The fingerprint (content hashes) tells
whether rated data was computed with the reference data now in force.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from pydantic import ValidationError

from core.db import insert_many
from core.errors import BillingError
from pipeline.accounts import AccountsError, AccountsFile, parse_accounts
from pipeline.credits import CreditsError, CreditsFile, check_accounts, check_append_only, parse_credits
from pipeline.issuer import BUILT_IN, Issuer, IssuerError, parse_stored
from pipeline.reference_state import PriceEditError as PriceEditError  # the hash-level steps: see that module
from pipeline.reference_state import fingerprint_of, forget_sources
from pricing.model import PriceVersion
from pricing.versions import PriceBook, PriceTableError, build_price_book, canonical_json


@dataclass(frozen=True)
class Reference:
    prices: PriceBook
    accounts: AccountsFile
    credits: CreditsFile | None = None  # prepaid credit grants (issue 17); None: no grants file
    issuer: Issuer = field(default=BUILT_IN)
    # digest of the files it was validated from (pipeline.reference_state); None: not from files
    sources: str | None = None

    def hashes(self) -> dict[str, object]:
        """What identifies this reference data: each price version's hash, the accounts file's,
        the issuer's (a statement replays with the issuer in force when it was issued) and (only
        when there is one, so databases without credits keep their fingerprint) the credit
        grants file's."""
        hashes: dict[str, object] = {
            "prices": self.prices.hashes(),
            "accounts": self.accounts.sha256,
            "issuer": self.issuer.sha256,
        }
        if self.credits is not None:
            hashes["credits"] = self.credits.sha256
        return hashes

    def fingerprint(self) -> str:
        return fingerprint_of(self.hashes())


def load_into(con: duckdb.DuckDBPyConnection, ref: Reference) -> None:
    """Replace the reference tables with ``ref``. Call inside the run's transaction."""
    forget_sources(con)
    for table in (
        "price_versions",
        "model_prices",
        "accounts",
        "account_groups",
        "price_overrides",
        "issuer",
        "account_invoicing",
    ):
        con.execute(f"DELETE FROM {table}")
    for loaded in ref.prices.versions:
        v = loaded.version
        con.execute(
            "INSERT INTO price_versions VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                v.version,
                v.effective_from,
                loaded.effective_until,
                v.currency,
                v.markup,
                loaded.sha256,
                loaded.source_file,
            ],
        )
        insert_many(
            con,
            "INSERT INTO model_prices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    v.version,
                    m.model,
                    m.display_name,
                    m.upstream_input_per_1m,
                    m.upstream_cached_input_price(),
                    m.upstream_output_per_1m,
                    m.list_input_per_1m,
                    m.cached_input_price(),
                    m.list_output_per_1m,
                )
                for m in v.models
            ],
        )
    groups = dict(ref.accounts.groups)
    insert_many(
        con, "INSERT INTO account_groups VALUES (?, ?)", [(name, g.multiplier) for name, g in sorted(groups.items())]
    )
    if "default" not in groups:
        con.execute("INSERT INTO account_groups VALUES ('default', 1)")
    _insert_accounts(con, ref)
    _insert_credits(con, ref)
    _insert_invoicing(con, ref)
    insert_many(
        con,
        "INSERT INTO price_overrides VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                a.id,
                o.model,
                o.effective_from,
                o.effective_until,
                o.input_per_1m,
                o.cached_input_per_1m if o.cached_input_per_1m is not None else o.input_per_1m,
                o.output_per_1m,
            )
            for a in ref.accounts.accounts
            for o in a.overrides
        ],
    )


def _insert_accounts(con: duckdb.DuckDBPyConnection, ref: Reference) -> None:
    """All accounts in one :func:`insert_many` (row by row for a few; one Arrow insert for many,
    so pyarrow is imported only for a file that needs it: issue 14, CLI start)."""
    insert_many(
        con,
        "INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (a.id, a.legal_name, list(a.address), a.email, a.group, a.discount_pct, a.spend_limit_usd)
            for a in ref.accounts.accounts
        ],
    )


def _insert_credits(con: duckdb.DuckDBPyConnection, ref: Reference) -> None:
    """Replace credit_grants, refusing a grants file that edited or dropped a recorded entry."""
    recorded = con.execute(
        "SELECT grant_id, account_id, amount, currency, granted_at, expires_at, kind, external_ref, reverses "
        "FROM credit_grants ORDER BY source_line"
    ).fetchall()
    where = f"credit grants file {ref.credits.name}" if ref.credits else "no credit grants file given"
    check_append_only([tuple(r) for r in recorded], ref.credits, where)
    con.execute("DELETE FROM credit_grants")
    if ref.credits is None:
        return
    check_accounts(ref.credits, {a.id for a in ref.accounts.accounts}, ref.credits.name)
    insert_many(
        con,
        "INSERT INTO credit_grants VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                e.grant_id,
                e.account_id,
                e.amount,
                e.currency,
                e.granted_at,
                e.expires_at,
                e.kind,
                e.external_ref,
                e.reverses,
                e.line,
            )
            for e in ref.credits.entries
        ],
    )


def _insert_invoicing(con: duckdb.DuckDBPyConnection, ref: Reference) -> None:
    """The issuer row and the accounts' invoicing fields (only accounts that set one)."""
    i = ref.issuer
    con.execute(
        "INSERT INTO issuer VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            i.sha256,
            i.legal_name,
            list(i.address),
            i.email,
            i.tax_id,
            i.vat_id,
            i.registration,
            list(i.remittance),
            i.logo_png_base64,
            i.statement_number_prefix,
            i.country,
            i.domestic_tax_rate_pct,
            i.tax_label,
            i.default_payment_terms_days,
        ],
    )
    rows = [
        (a.id, a.tax_treatment, a.vat_id, a.tax_note, a.payment_terms_days, a.po_reference, a.e_invoice, a.country)
        for a in ref.accounts.accounts
        if (a.tax_treatment, a.vat_id, a.tax_note, a.payment_terms_days, a.po_reference, a.e_invoice, a.country)
        != (None,) * 7
    ]
    if rows:
        insert_many(con, "INSERT INTO account_invoicing VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)


def remember_files(con: duckdb.DuckDBPyConnection, ref: Reference, run_id: int) -> None:
    """Keep the exact reference data of this run (content-addressed) for later replays."""
    items: list[tuple[str, str, str, bytes]] = [
        (loaded.sha256, "price_version", loaded.version_id, canonical_json(loaded.version).encode())
        for loaded in ref.prices.versions
    ]
    items.append((ref.accounts.sha256, "accounts", "accounts.toml", ref.accounts.source_bytes))
    if ref.credits is not None:
        items.append((ref.credits.sha256, "credits", "credits.csv", ref.credits.source_bytes))
    items.append((ref.issuer.sha256, "issuer", "issuer.json", ref.issuer.canonical_json().encode()))
    for sha, kind, name, content in items:
        con.execute(
            "INSERT INTO reference_files SELECT ?, ?, ?, ?, ? WHERE ? NOT IN (SELECT sha256 FROM reference_files)",
            [sha, kind, name, content, run_id, sha],
        )


class StoredReferenceError(BillingError, ValueError):
    """The reference data a recorded run used is missing from ``reference_files`` or unreadable.

    A replay must use exactly the recorded price versions and accounts file; without them it
    cannot be exact, so it stops (a ValueError too, as it was before it had a class).
    """

    default_hint = (
        "the database no longer holds the reference data this run used (table reference_files); "
        "restore the database from a backup: an exact replay needs those bytes"
    )


def from_stored(con: duckdb.DuckDBPyConnection, hashes: dict[str, Any]) -> Reference:
    """Rebuild the reference data a run used from the stored bytes (replays)."""
    versions = []
    for version_id, sha in sorted(hashes["prices"].items()):
        row = con.execute("SELECT content FROM reference_files WHERE sha256 = ?", [sha]).fetchone()
        if row is None:
            raise StoredReferenceError(
                f"price version {version_id} (sha256 {sha[:12]}) is not stored in reference_files"
            )
        try:
            versions.append((f"stored:{version_id}", PriceVersion.model_validate_json(bytes(row[0]))))
        except ValidationError as exc:
            raise StoredReferenceError(
                f"stored price version {version_id} (sha256 {sha[:12]}) cannot be read: {exc.errors()[0]['msg']}"
            ) from None
    row = con.execute("SELECT content FROM reference_files WHERE sha256 = ?", [hashes["accounts"]]).fetchone()
    if row is None:
        raise StoredReferenceError(f"accounts file sha256 {hashes['accounts'][:12]} is not stored in reference_files")
    credits = None
    if "credits" in hashes:
        stored = con.execute("SELECT content FROM reference_files WHERE sha256 = ?", [hashes["credits"]]).fetchone()
        if stored is None:
            raise StoredReferenceError(f"credit grants file sha256 {hashes['credits'][:12]} is not stored")
        try:
            credits = parse_credits(bytes(stored[0]), Path("stored:credits.csv"))
        except CreditsError as exc:
            raise StoredReferenceError(f"stored credit grants cannot be used: {exc.message}") from None
    try:
        return Reference(
            build_price_book(versions),
            parse_accounts(bytes(row[0]), Path("stored:accounts.toml")),
            credits,
            stored_issuer(con, hashes.get("issuer")),
        )
    except (PriceTableError, AccountsError, IssuerError) as exc:
        raise StoredReferenceError(f"stored reference data cannot be used: {exc.message}") from None


def stored_issuer(con: duckdb.DuckDBPyConnection, sha: str | None, db: str = "") -> Issuer:
    """The issuer a run or an issued document used, by its sha256 (``db``: ``live.`` in a
    replay); runs recorded before the issuer was reference data used BUILT_IN."""
    if sha is None or sha == BUILT_IN.sha256:
        return BUILT_IN
    row = con.execute(f"SELECT content FROM {db}reference_files WHERE sha256 = ?", [sha]).fetchone()
    if row is None:
        raise StoredReferenceError(f"issuer sha256 {sha[:12]} is not stored in reference_files")
    return parse_stored(bytes(row[0]), "stored:issuer.json")
