"""Named fault points for the crash tests: ``INFERGATE_FAULT=<point>`` kills the process there.

A billing run must leave the database as before or as after wherever it dies; the tests
prove it by SIGKILLing a real run at each of these points. Unset (always, in production),
a fault point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

POINTS = (
    "after_lock",
    "after_ledger_row",
    "after_stage",
    "after_ingest",
    "after_reference",
    "after_rate",
    "before_commit",
    "after_commit",
)


# where the statements job can die: after rendering, inside and after its transaction
STATEMENT_POINTS = ("after_render", "before_commit", "after_commit")


def fault_point(name: str) -> None:
    """Die here, abruptly, if the environment asks for it (tests only)."""
    if os.environ.get("INFERGATE_FAULT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
