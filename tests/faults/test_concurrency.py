"""Two runs on one database: exactly one proceeds, the other is refused naming the holder; a
lock left behind by a killed run is taken over safely and the dead run is marked crashed.

The winner of the race is held inside its lock by a pause point (``INFERGATE_PAUSE``), so the
test never depends on how fast either process starts.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from pipeline.lock import lock_path
from tests.faults.harness import ACCOUNTS, CLI, DAYS, ROOT, cli, ledger, nightly_args

WAIT_LIMIT = 120  # seconds; only a safety net for a hung process, never an assertion on speed


def _start(db: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    command = [CLI, "--db", str(db), "--accounts", str(ACCOUNTS), *nightly_args(DAYS[0])]
    return subprocess.Popen(
        command, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )


def _wait_until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT_LIMIT
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def test_two_runs_started_at_once_one_proceeds_the_other_names_it(tmp_path: Path) -> None:
    db = tmp_path / "billing.duckdb"
    gate = tmp_path / "gate"
    gate.touch()
    env = {"INFERGATE_PAUSE": "after_ledger_row", "INFERGATE_PAUSE_FILE": str(gate)}
    procs = [_start(db, env), _start(db, env)]
    try:
        _wait_until(lambda: any(p.poll() is not None for p in procs), "the refused run to exit")
        _wait_until(lambda: any(tmp_path.glob("gate.reached.*")), "the winner to hold the lock")
        [loser] = [p for p in procs if p.poll() is not None]
        [winner] = [p for p in procs if p is not loser]
        [reached] = tmp_path.glob("gate.reached.*")
        assert reached.name == f"gate.reached.{winner.pid}"
        out, err = loser.communicate()
        assert loser.returncode == 1, err
        assert err.count("\n") == 1 and "Traceback" not in err
        # the run id is in the note once the winner has its ledger row; the loser may be faster
        assert re.search(rf"is in use by (run 1 )?\(nightly, pid {winner.pid}\) since", err), err
        assert "two runs at once are refused" in err
        # a read-only command while the run holds the database fails cleanly, too
        export = cli(db, "export", "--period", "2026-11", "--out", str(tmp_path / "out"))
        assert export.returncode == 1 and export.stderr.count("\n") == 1 and "Traceback" not in export.stderr
        assert "lock" in export.stderr.lower()
    finally:
        gate.unlink()
        for p in procs:
            p.wait(timeout=WAIT_LIMIT)
    assert winner.returncode == 0, winner.stderr.read() if winner.stderr else ""
    assert ledger(db) == [(1, "succeeded")]  # the refused run never touched the database
    for p in procs:
        for stream in (p.stdout, p.stderr):
            if stream:
                stream.close()


def test_lock_left_by_a_killed_run_is_recovered_and_the_run_marked_crashed(tmp_path: Path) -> None:
    db = tmp_path / "billing.duckdb"
    killed = cli(db, *nightly_args(DAYS[0]), env={"INFERGATE_FAULT": "after_stage"})
    assert killed.returncode == -9
    stale = lock_path(db).read_text()
    assert '"command": "nightly"' in stale and '"run_id": 1' in stale  # the dead holder's note
    assert ledger(db) == [(1, "running")]
    again = cli(db, *nightly_args(DAYS[0]))
    assert again.returncode == 0, again.stderr
    assert ledger(db) == [(1, "crashed"), (2, "succeeded")]
    assert lock_path(db).read_text() == ""  # released cleanly this time
