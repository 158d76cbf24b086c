"""Step timings for profiling a run, printed to stderr when ``INFERGATE_TIMINGS`` is set.

``make bench`` sets it to show where a nightly spends its time; otherwise a step costs one
environment lookup. The lines read ``timing STEP SECONDS`` (seconds of wall time).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def started(name: str) -> Callable[[], None]:
    """Start timing ``name``; calling the result prints the time since (for spans that do
    not fit a ``with`` block, such as the COMMIT at the end of a transaction block)."""
    if not os.environ.get("INFERGATE_TIMINGS"):
        return lambda: None
    start = time.perf_counter()

    def stop() -> None:
        print(f"timing {name} {time.perf_counter() - start:.3f}s", file=sys.stderr, flush=True)

    return stop


@contextmanager
def step(name: str) -> Iterator[None]:
    """Time the block as one named step of the run."""
    stop = started(name)
    try:
        yield
    finally:
        stop()
