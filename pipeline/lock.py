"""One run at a time per database: an advisory ``flock`` on ``<db>.lock``.

The kernel releases a flock when its process dies, so a lock left by a killed run is never
stale: the next run simply takes it (and marks the dead run as crashed in the ledger). The
lock *file* stays, with the dead holder's note in it; the note is only ever read by a run
that failed to get the lock, so a stale note is never mistaken for a live holder. The holder
writes who it is into the file so a refused run can name it.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from core.errors import BillingError


class ConcurrentRunError(BillingError, RuntimeError):
    """Another run holds the database."""


def lock_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".lock")


@contextmanager
def exclusive_run(db_path: Path, command: str) -> Iterator[IO[str]]:
    """Hold the database's run lock for the duration of the block, or refuse at once."""
    path = lock_path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _describe(_read_note(handle))
        handle.close()
        raise ConcurrentRunError(
            f"database {db_path} is in use by {holder}; two runs at once are refused. "
            "Wait for it to finish (see `infergate-billing runs list`)."
        ) from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "command": command,
                    "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            )
        )
        handle.flush()
        yield handle
    finally:
        handle.seek(0)
        handle.truncate()
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()


def record_run_id(handle: IO[str], run_id: int) -> None:
    """Add the run id to the holder note once the ledger has given one."""
    handle.seek(0)
    try:
        note = json.loads(handle.read() or "{}")
    except ValueError:
        note = {}
    note["run_id"] = run_id
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(note))
    handle.flush()


def _read_note(handle: IO[str], wait_seconds: float = 2.0) -> str:  # allow-float: seconds
    """The holder's note. A holder writes it just after it takes the lock, so a run that lost
    a race by microseconds may find the file still empty: it waits briefly for the note."""
    deadline = time.monotonic() + wait_seconds
    while True:
        handle.seek(0)
        note = handle.read()
        if note or time.monotonic() >= deadline:
            return note
        time.sleep(0.01)


def _describe(note: str) -> str:
    try:
        data = json.loads(note)
    except ValueError:
        return "another run"
    run = f"run {data['run_id']} " if "run_id" in data else ""
    return f"{run}({data.get('command', '?')}, pid {data.get('pid', '?')}) since {data.get('since', '?')}"
