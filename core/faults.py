"""Named fault points for the crash tests: ``INFERGATE_FAULT=<point>`` kills the process there.

A billing run must leave the database as before or as after wherever it dies; the tests
(``tests/faults/``) prove it by SIGKILLing a real run at each of these points, and at random
instants. Unset (always, in production), a fault point costs one environment lookup.

A point that is passed several times in one run (once per staged file, once per statement of
a SQL script) is addressed as ``<point>#<n>``, the n-th pass; ``<point>`` alone is the first.
``INFERGATE_FAULT_TRACE=<file>`` appends every ``<point>#<n>`` passed to that file instead,
so a test can check that every point below is really reached (a point that is never reached
would make its crash test pass without testing anything).

``INFERGATE_PAUSE=<point>`` with ``INFERGATE_PAUSE_FILE=<gate>`` holds the run at that point
(creating ``<gate>.reached.<pid>``) for as long as ``<gate>`` exists, so a concurrency test
can keep a run inside its lock, deterministically, while another one starts.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

# In the order a nightly run passes them. "#n" points are listed by their base name.
POINTS = (
    "migration:before_commit",  # only on a database that still needs a migration
    "after_lock",
    "after_ledger_row",
    "staged_file",  # once per staged file
    "after_parse",  # parse.sql runs before the transaction, like staging (TEMP tables only)
    "after_stage",
    "after_dedup",
    "after_recount",
    "sql:store_batch.sql",  # after each statement of the script
    "after_ingest",
    "after_reference",
    "after_scope",
    "rate:after_new_rated",
    "rate:after_delete",
    "rate:after_insert",
    "rate:after_affected_periods",
    "sql:aggregate.sql",  # after each statement of the script
    "after_rate",
    "after_lake",  # the run's attempts file written, renamed and listed (not yet committed)
    "ledger:after_runs_update",
    "before_commit",
    "after_commit",
    "after_close",
)

_passes: dict[str, int] = {}


PAUSE_LIMIT_SECONDS = 300


# The statements job's own points (it also passes the shared after_lock, after_ledger_row,
# ledger:after_runs_update and after_close): after rendering, around and after its transaction.
STATEMENT_POINTS = (
    "statements:after_render",
    "statements:after_stage",  # finalize: every file written under its staging name
    "statements:before_commit",
    "statements:after_commit",
    "statements:after_publish",  # finalize: staged files renamed to their issued names
)


def fault_point(name: str) -> None:
    """Die (or wait) here if the environment asks for it (tests only)."""
    target = os.environ.get("INFERGATE_FAULT")
    trace = os.environ.get("INFERGATE_FAULT_TRACE")
    if os.environ.get("INFERGATE_PAUSE") == name:
        _pause(Path(os.environ["INFERGATE_PAUSE_FILE"]))
    if not target and not trace:
        return
    count = _passes[name] = _passes.get(name, 0) + 1
    if trace:
        with open(trace, "a", encoding="utf-8") as handle:
            handle.write(f"{name}#{count}\n")
    if target == f"{name}#{count}" or (target == name and count == 1):
        os.kill(os.getpid(), signal.SIGKILL)


def _pause(gate: Path) -> None:
    gate.with_name(f"{gate.name}.reached.{os.getpid()}").touch()
    deadline = time.monotonic() + PAUSE_LIMIT_SECONDS
    while gate.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
