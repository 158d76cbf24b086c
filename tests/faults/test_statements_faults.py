"""A statements run killed or failing half-way: the database stays usable and statements
are issued exactly when their files exist (issue 20, items 9 and 14).

Killed: a ``statements --finalize`` of ten statements renders in a pool of forked workers.
Killed (SIGKILL or SIGTERM) while they render, the workers must die with it and must not
keep the run lock: the next nightly runs, marks the killed run crashed, and the period is
either untouched or completely issued with every file (a re-run restores missing ones).

Failing: an ``--out`` that cannot take the files (here a path under a regular file, which
stops root too, and a disk that fills up half-way) fails the finalize before it commits:
one-line error, exit 1, nothing issued, the number sequence unchanged, the ledger ``failed``;
the same command with a writable directory then issues the same numbers.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from pipeline import jobs, lock, statements
from tests.conftest import Billing, built_once, record, usage
from tests.faults.harness import seed_from_env

CLI = str(Path(sys.executable).with_name("infergate-billing"))
EXTRA_ACCOUNTS = 6  # with the four of tests/conftest.py's inline file: ten statements
NUMBERS = [f"IG-2026-11-{n:06d}" for n in range(1, 11)]
WAIT_LIMIT = 60  # seconds; a safety net for a hung process, never an assertion on speed


@pytest.fixture(scope="module")
def ten_accounts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with November usage on ten accounts, and the logs of the next night."""
    billing = Billing(tmp_path_factory.mktemp("ten"))
    accounts = billing.settings.accounts_file
    extra = "".join(f'\n[[accounts]]\nid = "acct_x{i}"\nlegal_name = "Extra {i} Ltd"\n' for i in range(EXTRA_ACCOUNTS))
    accounts.write_text(accounts.read_text(encoding="utf-8") + extra, encoding="utf-8")
    lines = accounts.read_text(encoding="utf-8").splitlines()
    ids = sorted(line.split('"')[1] for line in lines if line.startswith("id = "))
    assert len(ids) >= 10, ids
    billing.log(
        "requests-2026-11-20.jsonl",
        [record(event_id=f"k{i}", account_id=a, usage=usage(1000 * (i + 1), 100)) for i, a in enumerate(ids[:10])],
    )
    billing.nightly("2026-11-20")
    billing.log(
        "requests-2026-11-21.jsonl",
        [record(event_id="next-day", account_id=ids[0], ts="2026-11-21T08:00:00Z", usage=usage(500, 50))],
    )
    return billing.root


def _copy(base: Path, work: Path) -> Billing:
    shutil.copytree(base, work)
    billing = Billing.__new__(Billing)
    billing.root, billing.logs = work, work / "logs"
    billing.settings = jobs.Settings(db_path=work / "billing.duckdb", accounts_file=work / "accounts.toml")
    return billing


def _run(billing: Billing, *args: str) -> list[str]:
    s = billing.settings
    return [CLI, "--db", str(s.db_path), "--accounts", str(s.accounts_file), *args]


def _finalize(billing: Billing, out: Path) -> list[str]:
    return _run(
        billing, "statements", "--period", "2026-11", "--finalize", "--issue-date", "2026-12-01", "--out", str(out)
    )


def _children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _workers(pid: int) -> list[int]:
    """The render workers of run ``pid``: children forked from it, running its command line
    (the imports also fork short-lived helpers, e.g. ``gcc`` to find libraries, which exec)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        return [c for c in _children(pid) if Path(f"/proc/{c}/cmdline").read_bytes() == command]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper does not count: it holds no descriptors)."""
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


def _wait_until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT_LIMIT
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def _issued_files_complete(billing: Billing, folder: Path) -> None:
    stored = billing.query("SELECT file_name, sha256 FROM statement_files WHERE kind <> 'html' ORDER BY 1")
    assert len(stored) == 3 * 10
    for name, sha in stored:
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == sha, name
    assert sorted(p.name for p in folder.iterdir()) == [name for name, _ in stored]  # nothing staged left


def _kill_and_recover(base: Path, work: Path, sig: signal.Signals, delay: float | None) -> str:
    """Kill a finalize (while its workers render, or after ``delay`` s), then check the nightly
    runs, the killed run is marked crashed, and the period is untouched or completely issued."""
    billing = _copy(base, work)
    out = work / "out"
    proc = subprocess.Popen(_finalize(billing, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers: list[int] = []
    if delay is None:
        _wait_until(
            lambda: len(_workers(proc.pid)) >= (os.cpu_count() or 1) or proc.poll() is not None, "the render workers"
        )
        time.sleep(0.2)  # let them start rendering
        workers = _workers(proc.pid)
        assert workers, "the finalize ended before its workers started"
    else:
        time.sleep(delay)
        workers = _workers(proc.pid)
    proc.send_signal(sig)
    proc.wait(timeout=WAIT_LIMIT)
    assert proc.stderr is not None
    proc.stderr.close()
    # the workers die with the run (and cannot hold the lock even while they linger)
    _wait_until(lambda: not any(_alive(w) for w in workers), "the orphaned workers to end")
    _wait_until(lambda: not lock.holders_of(lock.lock_path(billing.settings.db_path)), "the lock to be free")
    issued = billing.one("SELECT count(*) FROM statements")
    assert issued in (0, 10), f"{issued} of 10 statements issued after a kill"
    nightly = subprocess.run(
        _run(billing, "nightly", "--date", "2026-11-21", "--logs", str(billing.logs)),
        capture_output=True,
        text=True,
        timeout=WAIT_LIMIT * 2,
    )
    assert nightly.returncode == 0, nightly.stderr
    runs = billing.query("SELECT command, status FROM runs ORDER BY run_id")
    if proc.returncode == 0:
        assert runs[-2:] == [("statements", "succeeded"), ("nightly", "succeeded")], runs
        outcome = "finished"
    else:
        assert proc.returncode == -sig, proc.returncode
        assert runs[-1] == ("nightly", "succeeded"), runs
        statuses = [s for c, s in runs if c == "statements"]
        if issued:
            # killed after the commit that issued the period and closed its ledger row (one
            # transaction), while it published the files: the re-run below restores them
            assert statuses == ["succeeded"], runs
        else:
            # killed before its ledger row was written (still importing), it leaves no row
            assert statuses in ([], ["crashed"]), runs
        outcome = "after" if issued else "before"
    assert billing.one("SELECT count(*) FROM statements") == issued  # the nightly does not issue
    again = subprocess.run(_finalize(billing, out), capture_output=True, text=True, timeout=WAIT_LIMIT * 2)
    assert again.returncode == 0, again.stderr
    assert [n for (n,) in billing.query("SELECT statement_number FROM statements ORDER BY 1")] == NUMBERS
    _issued_files_complete(billing, out / "statements" / "2026-11")
    return outcome


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_finalize_killed_while_workers_render_leaves_no_lock(ten_accounts: Path, tmp_path: Path, sig) -> None:
    assert _kill_and_recover(ten_accounts, tmp_path / "work", sig, None) == "before"


def test_finalize_killed_at_random_instants(ten_accounts: Path, tmp_path: Path) -> None:
    seed = seed_from_env()
    rng = random.Random(seed)
    outcomes = []
    for i in range(1):  # one instant a run keeps the suite fast; the seed varies it
        sig = rng.choice((signal.SIGKILL, signal.SIGTERM))
        delay = rng.uniform(0.5, 6.0)
        try:
            outcomes.append(_kill_and_recover(ten_accounts, tmp_path / f"w{i}", sig, delay))
        except AssertionError as exc:
            raise AssertionError(f"INFERGATE_FAULT_SEED={seed} ({sig.name} after {delay:.2f}s): {exc}") from exc
    print(f"seed {seed}: {outcomes}")


def test_a_lock_held_by_an_orphan_of_a_dead_run_is_named_with_the_cure(tmp_path: Path) -> None:
    db = tmp_path / "billing.duckdb"
    path = lock.lock_path(db)
    dead = subprocess.Popen(["true"])
    dead.wait()
    path.write_text(f'{{"pid": {dead.pid}, "command": "statements", "since": "2026-12-01T00:00:00Z"}}')
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('held', flush=True); time.sleep(60)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(lock.ConcurrentRunError) as refused:
            with lock.exclusive_run(db, "nightly"):
                pass
        message = str(refused.value)
        assert f"pid {dead.pid}) since 2026-12-01T00:00:00Z, which is dead" in message, message
        assert f"kill {holder.pid}" in message and str(path) in message, message
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout:
            holder.stdout.close()
    with lock.exclusive_run(db, "nightly"):  # the orphan ended: the lock is free again
        pass


# --- item 14: issued means the files exist ----------------------------------------------------


def _build_november(billing: Billing) -> None:
    """November rated, nothing issued."""
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="n1", account_id="acct_plain", usage=usage(100_000, 10_000)),
            record(event_id="n2", account_id="acct_discount", usage=usage(100_000, 10_000)),
        ],
    )
    billing.nightly("2026-11-20")


november = built_once("november", _build_november)


def _nothing_issued(billing: Billing) -> None:
    assert billing.one("SELECT count(*) FROM statements") == 0
    assert billing.one("SELECT count(*) FROM statement_files") == 0
    assert billing.one("SELECT count(*) FROM finalized_periods") == 0
    assert billing.one("SELECT coalesce(max(sequence_no), 0) FROM statements") == 0
    assert billing.query("SELECT command, status FROM runs ORDER BY run_id")[-1] == ("statements", "failed")


def _issues_the_same_numbers(billing: Billing, out: Path) -> None:
    done = subprocess.run(_finalize(billing, out), capture_output=True, text=True, timeout=WAIT_LIMIT * 2)
    assert done.returncode == 0, done.stderr
    assert [n for (n,) in billing.query("SELECT statement_number FROM statements ORDER BY 1")] == NUMBERS[:2]
    folder = out / "statements" / "2026-11"
    stored = billing.query("SELECT file_name, sha256 FROM statement_files WHERE kind <> 'html' ORDER BY 1")
    assert len(stored) == 6 and stored == [
        (name, hashlib.sha256((folder / name).read_bytes()).hexdigest()) for name, _ in stored
    ]
    assert sorted(p.name for p in folder.iterdir()) == [name for name, _ in stored]


def test_finalize_into_an_unwritable_out_issues_nothing(november: Billing, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # stops root too, unlike a read-only mode
    failed = subprocess.run(  # cwd: no data/issuer.toml there to differ from the built-in issuer rated
        _finalize(november, blocker / "out"), capture_output=True, text=True, timeout=WAIT_LIMIT * 2, cwd=tmp_path
    )
    assert failed.returncode == 1, failed.stderr
    assert failed.stderr.startswith("Error: ") and failed.stderr.count("\n") == 1, failed.stderr
    assert "Traceback" not in failed.stderr and "Not a directory" in failed.stderr, failed.stderr
    _nothing_issued(november)
    _issues_the_same_numbers(november, tmp_path / "writable")


def test_finalize_on_a_disk_that_fills_up_half_way_issues_nothing(
    november: Billing, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC on the fourth of six files: the three staged before it are removed again."""
    real_open = open
    opened: list[str] = []

    def filling_open(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        handle = real_open(file, mode, *args, **kwargs)
        if "w" in mode:
            opened.append(str(file))
            if len(opened) == 4:

                def write(data: bytes) -> int:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

                handle.write = write
        return handle

    monkeypatch.setattr(statements, "open", filling_open, raising=False)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="cannot write: No space left on device") as failed:
        jobs.run_statements(november.settings, "2026-11", out, finalize=True, issue_date=date(2026, 12, 1))
    fourth = Path(opened[3])  # .<name>.issuing: the error names the file the user asked for
    assert failed.value.filename == str(fourth.with_name(fourth.name[1:].removesuffix(statements.STAGING_SUFFIX)))
    assert list((out / "statements" / "2026-11").iterdir()) == []  # the staged files were removed
    _nothing_issued(november)
    monkeypatch.undo()
    _issues_the_same_numbers(november, out)


def test_files_that_cannot_be_renamed_after_the_commit_are_restored_by_a_rerun(
    november: Billing, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one window left: committed, then the rename fails (or the run dies there). The
    statements are issued; the error says so, and the same command restores the files."""

    def refuse(src: object, dst: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dst))

    monkeypatch.setattr(statements.os, "replace", refuse)
    out = tmp_path / "out"
    with pytest.raises(statements.StatementError, match="the statements ARE issued") as failed:
        jobs.run_statements(november.settings, "2026-11", out, finalize=True, issue_date=date(2026, 12, 1))
    assert "Read-only file system" in str(failed.value)
    monkeypatch.undo()
    assert november.one("SELECT count(*) FROM statements") == 2
    assert all(p.name.endswith(statements.STAGING_SUFFIX) for p in (out / "statements" / "2026-11").iterdir())
    _issues_the_same_numbers(november, out)
