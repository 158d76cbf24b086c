"""One run at a time per database: an advisory ``flock`` on ``<db>.lock``.

The kernel releases a flock when its process dies, so a lock left by a killed run is never
stale: the next run simply takes it (and marks the dead run as crashed in the ledger). The
lock *file* stays, with the dead holder's note in it; the note is only ever read by a run
that failed to get the lock, so a stale note is never mistaken for a live holder. The holder
writes who it is into the file so a refused run can name it.

A flock belongs to the open file description, which a ``fork`` shares: a child forked while
the lock is held (a render worker) holds it too, and would keep it for ever if it outlived
its parent. So the lock is opened close-on-exec (``exec``-ed children never get it), the
descriptors held are listed in ``_HELD`` for a forked child to close (:func:`release_inherited`,
called by the render workers of ``pipeline/statements.py``), and a run refused by a holder
that is dead names the orphans that still hold the file and tells how to end them.
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


# Descriptors of the run locks this process holds (a forked child closes its copies).
_HELD: set[int] = set()


def release_inherited() -> None:
    """In a forked child: close the inherited run-lock descriptors, so that the lock is
    released when the parent ends even if this child lives on (flock is shared by fork)."""
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


def lock_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".lock")


@contextmanager
def exclusive_run(db_path: Path, command: str) -> Iterator[IO[str]]:
    """Hold the database's run lock for the duration of the block, or refuse at once."""
    path = lock_path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Python opens files close-on-exec (O_CLOEXEC); stated here because the lock relies on it
    handle = path.open("a+")
    os.set_inheritable(handle.fileno(), False)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        note = _read_note(handle)
        handle.close()
        raise ConcurrentRunError(_refusal(db_path, path, note)) from None
    _HELD.add(handle.fileno())
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
        _HELD.discard(handle.fileno())
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


def _refusal(db_path: Path, path: Path, note: str) -> str:
    """Why the run is refused: a live holder to wait for, or a dead one's orphans to end."""
    holder = _describe(note)
    pid = _note_pid(note)
    if pid is None or _alive(pid):
        return (
            f"database {db_path} is in use by {holder}; two runs at once are refused. "
            "Wait for it to finish (see `infergate-billing runs list`)."
        )
    orphans = sorted(holders_of(path) - {os.getpid()})
    which = ", ".join(str(p) for p in orphans) if orphans else "unknown (see `fuser -v` on the lock file)"
    return (
        f"database {db_path} is locked by {holder}, which is dead, but process(es) {which} still "
        f"hold its lock file {path} (orphans of that run); end them (kill {' '.join(map(str, orphans)) or '<pid>'}) "
        "and run again: the dead run is then marked crashed and its changes were rolled back"
    )


def _note_pid(note: str) -> int | None:
    try:
        pid = json.loads(note).get("pid")
    except (ValueError, AttributeError):
        return None
    return pid if isinstance(pid, int) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def holders_of(path: Path) -> set[int]:
    """Pids with ``path`` open (Linux ``/proc``; empty elsewhere or where unreadable)."""
    target = os.path.realpath(path)
    pids: set[int] = set()
    proc = Path("/proc")
    if not proc.is_dir():
        return pids
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) == target:
                    pids.add(int(entry.name))
                    break
        except OSError:
            continue  # gone, or not ours to read
    return pids


def _describe(note: str) -> str:
    try:
        data = json.loads(note)
    except ValueError:
        return "another run"
    run = f"run {data['run_id']} " if "run_id" in data else ""
    return f"{run}({data.get('command', '?')}, pid {data.get('pid', '?')}) since {data.get('since', '?')}"
