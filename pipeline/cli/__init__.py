"""``infergate-billing``: a thin Click adapter over the library (``pipeline.jobs``,
``pipeline.ledger``, ``pipeline.replay``, ``reports``).

Commands parse options, call one library function, and print. Expected failures (every
:class:`core.errors.BillingError`, plus DuckDB and OS errors) become one line on stderr,
``Error: <message>. Hint: <what to do next>``, never a traceback. Exit codes: 0 success;
1 quarantine above threshold, a failed check or run, bad reference data, no input for the
day, nothing billed in the period; 2 usage error (bad options, or a file or directory named
on the command line that does not exist). The table of exit codes, ``--quiet`` and
``--log-format json``: docs/operations.md; every message goes through ``core.console``.

Where things are:

- ``base``: the group and its global options, shared option decorators and types
  (``--period`` is a :class:`core.period.Period`, ``--out`` an output directory), the
  failure translation.
- ``run_commands``: jobs recorded in the ledger (ingest, rate, nightly, statements, replay).
- ``query_commands``: read-only listings and exports (export, margin, spend-limits,
  balances, quarantine, runs, sql, snapshot).
- ``admin_commands``: prices, import, sample-logs, schema-doc.
- ``report``: how a run's result is printed.

Adding a command: one decorated function in the module of its kind (or a new module
imported below), using the shared options of ``base``.
"""

from __future__ import annotations

from pipeline.cli import admin_commands, query_commands, run_commands  # noqa: F401  (they register the commands)
from pipeline.cli.base import cli

__all__ = ["cli", "main"]


def main() -> None:
    cli(prog_name="infergate-billing")
