"""Step timings for profiling a run, printed to stderr when ``INFERGATE_TIMINGS`` is set.

``make bench`` sets it to show where a nightly spends its time; otherwise a step costs one
environment lookup. The lines read ``timing STEP SECONDS`` (seconds of wall time).

Under ``--log-format json`` the CLI's console sets :data:`listener`, which receives every
step's time instead of these lines (a ``step`` event per step, see ``core.console``), so
that stderr stays one JSON object per line even with ``INFERGATE_TIMINGS`` set.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from core.faults import fault_point

# called with (step, seconds) after every timed step; set by core.console for JSON logs
listener: Callable[[str, float], None] | None = None  # allow-float: wall time, not money


def started(name: str) -> Callable[[], None]:
    """Start timing ``name``; calling the result prints the time since (for spans that do
    not fit a ``with`` block, such as the COMMIT at the end of a transaction block)."""
    notify = listener
    printing = notify is None and bool(os.environ.get("INFERGATE_TIMINGS"))  # JSON logs: events only
    if not printing and notify is None:
        return lambda: None
    start = time.perf_counter()

    def stop() -> None:
        seconds = time.perf_counter() - start
        if printing:
            print(f"timing {name} {seconds:.3f}s", file=sys.stderr, flush=True)
        if notify is not None:
            notify(name, seconds)

    return stop


@contextmanager
def step(name: str, after: str | None = None) -> Iterator[None]:
    """Time the block as one named step of the run; then, when it ended without an error, pass
    the fault injection point ``after`` (``core.faults``: a test can kill the run there)."""
    stop = started(name)
    try:
        yield
    finally:
        stop()
    if after is not None:
        fault_point(after)
