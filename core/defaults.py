"""Where a run looks when it is not told: the default paths and limits, in one light module.

The CLI shows these in ``--help`` and must start without the heavy modules that use them
(duckdb for ``core.db``, pydantic for the reference-file parsers: issue 14, item 5). They used
to be copied into the CLI and the job module with a test keeping the copies equal; now every
module imports them from here, and tests/test_cli_start.py checks that none keeps a copy.
Imports nothing but the standard library.
"""

from __future__ import annotations

from pathlib import Path

#: The billing database (relative: the directory a run starts in, as the README's commands).
DEFAULT_DB = Path("data/infergate.duckdb")
#: DuckDB's buffer memory for a run; it spills to disk beyond it (docs/performance.md).
DEFAULT_MEMORY_LIMIT = "2GB"
#: The versioned price tables shipped with the package (absolute: found from anywhere).
DEFAULT_TABLES_DIR = Path(__file__).parent.parent / "pricing" / "tables"
#: The reference files a run reads from the directory it starts in.
DEFAULT_ACCOUNTS_FILE = Path("data/accounts.toml")
DEFAULT_CREDITS_FILE = Path("data/credits.csv")  # optional: no file, no grants
DEFAULT_ISSUER_FILE = Path("data/issuer.toml")  # optional: no file, the built-in issuer
#: A nightly fails when more of the day's lines than this are quarantined (--max-quarantine-rate).
DEFAULT_MAX_QUARANTINE_RATE = 0.02  # allow-float: a ratio threshold, not money
