"""The CLI starts without its heavy dependencies (issue 14, item 5: start in <= 0.3 s of imports).

A behaviour check, not a timing: `--help` loads none of the modules that make a start slow, and
a nightly loads no renderer (the time itself is printed by `make bench`, never asserted). Each
check runs in a fresh interpreter (``python -c``): in the test process these modules are long
imported by other tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    """A nightly needs DuckDB, pydantic (the accounts file) and pyarrow (loading the accounts);
    never the statement renderer (weasyprint, jinja2, its process pool), the tokenizers (no
    line to recount), polars, rich (no terminal) or stdnum (no VAT ID in the accounts file)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    loaded = _loaded_after(_NIGHTLY, str(tmp_path / "billing.duckdb"), str(logs), str(ROOT / "data" / "accounts.toml"))
    assert not {"weasyprint", "jinja2", "polars", "rich", "stdnum", *LAZY} & set(loaded), loaded


def test_help_defaults_are_the_modules_own():
    """pipeline.cli keeps copies of defaults shown in --help (importing their modules would load
    duckdb or pydantic): they must equal the originals."""
    from core import db
    from pipeline import importers, issuer, jobs
    from pipeline.cli import admin_commands, base, query_commands
    from pricing import versions
    from reports import query_output, spend_limits

    assert base.DEFAULT_DB == db.DEFAULT_DB
    assert base.DEFAULT_MEMORY_LIMIT == db.DEFAULT_MEMORY_LIMIT
    assert base.DEFAULT_TABLES_DIR.resolve() == versions.DEFAULT_TABLES_DIR.resolve()
    assert base.DEFAULT_ISSUER_FILE == issuer.DEFAULT_ISSUER_FILE
    assert base.DEFAULT_MAX_QUARANTINE_RATE == jobs.DEFAULT_MAX_QUARANTINE_RATE
    assert query_commands.DEFAULT_MIN_REJECTIONS == spend_limits.DEFAULT_MIN_REJECTIONS
    assert query_commands.QUERY_FORMATS == query_output.FORMATS
    assert admin_commands.IMPORT_GATEWAYS == tuple(sorted(importers.GATEWAYS))
