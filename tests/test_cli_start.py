"""The CLI starts without its heavy dependencies (issue 14, item 5: start in <= 0.3 s of imports).

A behaviour check, not a timing: `--help` loads none of the modules that make a start slow, and
a nightly loads no renderer (the time itself is printed by `make bench`, never asserted). Each
check runs in a fresh interpreter (``python -c``): in the test process these modules are long
imported by other tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from pipeline import jobs, reference_state
from pipeline.accounts import AccountsError
from pipeline.lock import ConcurrentRunError, exclusive_run
from pricing import versions
from tests.conftest import ACCOUNTS_TOML, Billing, record

ROOT = Path(__file__).resolve().parent.parent

HEAVY = ("duckdb", "polars", "pydantic", "weasyprint", "jinja2", "pyarrow", "rich", "stdnum")

_HELP = """
import json, sys
from click.testing import CliRunner
from pipeline.cli import cli
result = CliRunner().invoke(cli, ["--help"])
assert result.exit_code == 0, result.output
assert "nightly" in result.output
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)))
"""


def _loaded_after(code: str, *argv: str) -> list[str]:
    """Heavy top-level modules in sys.modules after running ``code`` in a fresh interpreter."""
    prologue = f"HEAVY = {HEAVY!r}\nLAZY = {LAZY!r}\n"
    done = subprocess.run(
        [sys.executable, "-c", prologue + code, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return sorted({m if m in LAZY else m.split(".")[0] for m in loaded})


def test_import_and_help_load_no_heavy_module():
    assert _loaded_after(_HELP) == []


_NIGHTLY = """
import json, sys
from click.testing import CliRunner
from pipeline.cli import cli
db, logs, accounts = sys.argv[1:4]
result = CliRunner().invoke(cli, ["--db", db, "--accounts", accounts, "--no-snapshot", "nightly",
                                  "--date", "2026-11-29", "--logs", logs, "--allow-empty"])
assert result.exit_code == 0, result.output
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in HEAVY or m in LAZY)))
"""

# imported by the job that needs them: rendering statements (a process pool), R5 recounts
LAZY = ("multiprocessing", "concurrent.futures", "pipeline.statements", "pipeline.recount")


def test_nightly_of_an_empty_day_loads_no_renderer(tmp_path):
    """A first nightly (a new database) needs DuckDB and pydantic (validating the reference
    files); not pyarrow (five accounts go in row by row), never the statement renderer
    (weasyprint, jinja2, its process pool), the tokenizers (no line to recount), polars, rich
    (no terminal) or stdnum (no VAT ID in the accounts file). The next nightly, on the same
    unchanged files, parses none of them: no pydantic either (issue 14, item 5)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    argv = (str(tmp_path / "billing.duckdb"), str(logs), str(ROOT / "data" / "accounts.toml"))
    first = _loaded_after(_NIGHTLY, *argv)
    assert "pydantic" in first, first
    assert not {"weasyprint", "jinja2", "polars", "rich", "stdnum", "pyarrow", *LAZY} & set(first), first
    again = _loaded_after(_NIGHTLY, *argv)
    assert again == ["duckdb"], again


def _accounts_rows(billing: Billing) -> list[tuple[object, ...]]:
    return billing.query("SELECT * FROM accounts ORDER BY account_id")


def test_unchanged_reference_files_are_not_parsed_again(billing: Billing):
    """The second nightly on the same files uses what the database holds (no parsing), and
    leaves exactly what a full load leaves: the tables, the fingerprint, the ledger's hashes."""
    billing.log("requests-2026-11-20.jsonl", [record(event_id="a", account_id="acct_discount")])
    first = billing.nightly()
    state = billing.query("SELECT key, value FROM rating_state WHERE key LIKE 'reference%' ORDER BY key")
    tables = _accounts_rows(billing), billing.query("SELECT * FROM model_prices ORDER BY ALL")
    assert isinstance(jobs.reference_for_run(billing.settings, "nightly"), reference_state.Unchanged)
    again = billing.nightly("2026-11-21", allow_empty=True)
    assert billing.query("SELECT key, value FROM rating_state WHERE key LIKE 'reference%' ORDER BY key") == state
    assert (_accounts_rows(billing), billing.query("SELECT * FROM model_prices ORDER BY ALL")) == tables
    ledger = "SELECT price_versions, accounts_sha256, credits_sha256, issuer_sha256 FROM runs WHERE run_id = ?"
    assert billing.one(ledger, [again.run_id]) == billing.one(ledger, [first.run_id])
    expected = jobs.load_reference(billing.settings)  # the full load, for comparison
    assert billing.one(ledger, [again.run_id])[1] == expected.accounts.sha256
    assert billing.one("SELECT value FROM rating_state WHERE key = 'reference_fingerprint'") == expected.fingerprint()


def test_a_changed_accounts_file_is_validated_with_its_error(billing: Billing):
    billing.nightly(allow_empty=True)
    accounts = billing.settings.accounts_file
    accounts.write_text(accounts.read_text().replace('discount_pct = "12.5"', 'discount_pct = "150"'))
    with pytest.raises(AccountsError) as refused:
        billing.nightly("2026-11-21", allow_empty=True)
    assert refused.value.message == (
        f"{accounts}: field accounts.[acct_discount].discount_pct: Value error, '150' is outside [0, 100]"
    )
    assert billing.one("SELECT count(*) FROM runs") == 1  # refused before anything was recorded
    with pytest.raises(AccountsError, match="is outside"):  # and again: the bad file was never recorded
        billing.nightly("2026-11-21", allow_empty=True)


def test_a_changed_accounts_file_is_loaded(billing: Billing):
    billing.nightly(allow_empty=True)
    before = billing.one("SELECT value FROM rating_state WHERE key = 'reference_fingerprint'")
    accounts = billing.settings.accounts_file
    accounts.write_text(accounts.read_text().replace('"Plain Ltd"', '"Plain Limited"'))
    assert not isinstance(jobs.reference_for_run(billing.settings, "nightly"), reference_state.Unchanged)
    run = billing.nightly("2026-11-21", allow_empty=True)
    assert billing.one("SELECT legal_name FROM accounts WHERE account_id = 'acct_plain'") == "Plain Limited"
    assert billing.one("SELECT value FROM rating_state WHERE key = 'reference_fingerprint'") != before
    sha = hashlib.sha256(accounts.read_bytes()).hexdigest()
    assert billing.one("SELECT accounts_sha256 FROM runs WHERE run_id = ?", [run.run_id]) == sha
    assert isinstance(jobs.reference_for_run(billing.settings, "nightly"), reference_state.Unchanged)


def test_reference_loaded_by_another_run_since_the_peek_is_loaded_again(billing: Billing, monkeypatch):
    """Between the read-only peek and the run lock another run may load other files: the run
    checks again under the lock and loads its own files (and records their hashes)."""
    billing.nightly(allow_empty=True)
    peeked = jobs.reference_for_run(billing.settings, "nightly")
    assert isinstance(peeked, reference_state.Unchanged)
    other = billing.settings.accounts_file.with_name("other.toml")
    other.write_text(billing.settings.accounts_file.read_text().replace('"Plain Ltd"', '"Other Name"'))
    jobs.run_nightly(
        dataclasses.replace(billing.settings, accounts_file=other), date(2026, 11, 21), billing.logs, allow_empty=True
    )
    assert billing.one("SELECT legal_name FROM accounts WHERE account_id = 'acct_plain'") == "Other Name"
    monkeypatch.setattr(jobs, "reference_for_run", lambda settings, command: peeked)
    run = billing.nightly("2026-11-22", allow_empty=True)
    assert billing.one("SELECT legal_name FROM accounts WHERE account_id = 'acct_plain'") == "Plain Ltd"
    sha = hashlib.sha256(billing.settings.accounts_file.read_bytes()).hexdigest()
    assert billing.one("SELECT accounts_sha256 FROM runs WHERE run_id = ?", [run.run_id]) == sha


def test_a_replayed_or_given_reference_is_never_taken_as_the_files(billing: Billing):
    """Reference data given in the settings (replays) clears the recorded sources."""
    billing.nightly(allow_empty=True)
    given = dataclasses.replace(jobs.load_reference(billing.settings), sources=None)
    jobs.run_nightly(dataclasses.replace(billing.settings, reference=given), date(2026, 11, 21), billing.logs,
                     allow_empty=True)  # fmt: skip
    assert billing.query("SELECT value FROM rating_state WHERE key = 'reference_sources'") == []
    assert not isinstance(jobs.reference_for_run(billing.settings, "nightly"), reference_state.Unchanged)


def test_the_sources_digest_covers_every_input(tmp_path: Path):
    """Every file the reference data is built from changes the digest: a price file added or
    edited, the accounts, credits and issuer files, the logo the issuer file names."""
    prices = tmp_path / "prices"
    shutil.copytree(versions.DEFAULT_TABLES_DIR, prices)
    accounts = tmp_path / "accounts.toml"
    accounts.write_text(ACCOUNTS_TOML)
    credits_file = tmp_path / "credits.csv"
    credits_file.write_text("grant_id,account_id,amount,currency,granted_at,expires_at,kind,external_ref,reverses\n")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n one")
    issuer_file = tmp_path / "issuer.toml"
    issuer_file.write_text('legal_name = "X"\nlogo = "logo.png"\n')

    def digest() -> str | None:
        return reference_state.sources_digest(prices, accounts, credits_file, issuer_file)

    seen = {digest()}
    for change in (
        lambda: accounts.write_text(ACCOUNTS_TOML + "\n"),
        lambda: credits_file.write_text(credits_file.read_text() + "\n"),
        lambda: issuer_file.write_text(issuer_file.read_text() + "\n"),
        lambda: (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n two"),
        lambda: (prices / "2099-01-01.toml").write_text("version = 'x'\n"),
        lambda: next(prices.glob("2026*.toml")).write_text("edited"),
    ):
        change()
        seen.add(digest())
    assert len(seen) == 7 and None not in seen
    accounts.unlink()
    assert digest() is None  # unreadable: the full load reports it


def test_every_module_takes_its_defaults_from_core_defaults():
    """The default paths and limits exist once, in the light core.defaults: the CLI (--help
    shows them), the jobs, and the modules that load each file use that very object. A module
    that wrote its own copy again (a Path literal is a new object) fails here."""
    from core import defaults
    from pipeline import accounts, credits, issuer
    from pipeline.cli import base

    uses = {
        "DEFAULT_DB": (jobs, base),
        "DEFAULT_MEMORY_LIMIT": (jobs, base),
        "DEFAULT_TABLES_DIR": (versions, jobs, base),
        "DEFAULT_ACCOUNTS_FILE": (accounts, jobs, base),
        "DEFAULT_CREDITS_FILE": (credits, reference_state),
        "DEFAULT_ISSUER_FILE": (issuer, base),
        "DEFAULT_MAX_QUARANTINE_RATE": (base,),
    }
    for name, modules in uses.items():
        for module in modules:
            assert getattr(module, name) is getattr(defaults, name), f"{module.__name__}.{name} is a copy"
    assert defaults.DEFAULT_TABLES_DIR.is_dir() and any(defaults.DEFAULT_TABLES_DIR.glob("*.toml"))


def test_help_defaults_are_the_modules_own():
    """pipeline.cli keeps copies of a few constants shown in --help whose modules load duckdb:
    they must equal the originals."""
    from pipeline import importers
    from pipeline.cli import admin_commands, query_commands
    from reports import query_output, spend_limits

    assert query_commands.DEFAULT_MIN_REJECTIONS == spend_limits.DEFAULT_MIN_REJECTIONS
    assert query_commands.QUERY_FORMATS == query_output.FORMATS
    assert admin_commands.IMPORT_GATEWAYS == tuple(sorted(importers.GATEWAYS))
    # quarantine --reason: SPEC section 3's codes of held and quarantined records, no other
    reason = next(p for p in query_commands.quarantine.params if p.name == "reason")
    assert sorted(reason.type.choices) == sorted(  # type: ignore[attr-defined]
        ["parse_error", "invalid_record", "bad_timestamp", "duplicate_conflict", "usage_inconsistent",
         "usage_missing", "unknown_account", "unpriced_model"]
    )  # fmt: skip


def test_while_another_run_holds_the_database_the_files_are_validated(billing: Billing):
    """The peek takes the run lock for a moment (a run opening the file read-write must not find
    it held); held by another run, the files are validated instead, so a bad file is still the
    error reported first, and a good one leaves the lock's refusal."""
    billing.nightly(allow_empty=True)
    with exclusive_run(billing.settings.db_path, "statements"):
        assert not isinstance(jobs.reference_for_run(billing.settings, "nightly"), reference_state.Unchanged)
        with pytest.raises(ConcurrentRunError):
            billing.nightly("2026-11-21", allow_empty=True)
        accounts = billing.settings.accounts_file
        accounts.write_text(accounts.read_text().replace('"Plain Ltd"', '""'))
        with pytest.raises(AccountsError, match=r"accounts\.\[acct_plain\]\.legal_name"):
            billing.nightly("2026-11-21", allow_empty=True)
