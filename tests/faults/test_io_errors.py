"""Disk full and read-only storage end in one clear line and exit code 1, never a traceback,
and never in a half-written database.

Real file systems where the machine allows it: as root, a tmpfs mounted read-only or a few
hundred KiB too small; otherwise a directory without write permission (read-only cases) or
a skip (disk full of the database). Disk full of the CSV export is also simulated in-process
(``OSError(ENOSPC)`` from the write), which runs everywhere.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from core.attempt_store import copy_database, lake_dir
from pipeline.cli import cli as cli_group
from tests.faults.harness import DAYS, Scenario, cli, exports, nightly_args, rerun, snapshot


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


@contextmanager
def tmpfs(path: Path, size_kib: int) -> Iterator[Path]:
    """A fresh tmpfs of ``size_kib`` at ``path`` (root only; skips where mounting is denied)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    mounted = _mount("-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(path))
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make the directory ``path`` read-only: a read-only remount as root, else permissions."""
    if os.geteuid() == 0:
        with tmpfs(path.with_name(path.name + ".mnt"), 64 * 1024) as mnt:
            for item in path.iterdir():  # the database and its lake
                shutil.copytree(item, mnt / item.name) if item.is_dir() else shutil.copy(item, mnt / item.name)
            assert _mount("-o", "remount,ro", str(mnt)).returncode == 0
            path.rename(path.with_name(path.name + ".orig"))
            path.symlink_to(mnt)
            try:
                yield
            finally:
                path.unlink()
                path.with_name(path.name + ".orig").rename(path)
    else:
        path.chmod(stat.S_IRUSR | stat.S_IXUSR)
        try:
            yield
        finally:
            path.chmod(stat.S_IRWXU)


def one_clean_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("Error: ")
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_export_into_a_read_only_directory(scenario: Scenario, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with read_only(out):
        result = cli(scenario.base_db, "export", "--period", "2026-11", "--out", str(out))
    one_clean_line(result, "finance-summary-2026-11.csv: cannot write: ")
    assert list(out.iterdir()) == []  # no temporary file left behind


def test_nightly_with_the_database_in_a_read_only_directory(scenario: Scenario, tmp_path: Path) -> None:
    home = tmp_path / "db"
    home.mkdir()
    copy_database(scenario.base_db, home / "billing.duckdb")
    with read_only(home):
        result = cli(home / "billing.duckdb", *nightly_args(DAYS[2]))
        # reading still works: finance can export from a read-only copy of the database
        listed = cli(home / "billing.duckdb", "runs", "list")
        exported = cli(home / "billing.duckdb", "export", "--period", "2026-11", "--out", str(tmp_path / "out"))
    one_clean_line(result)
    assert any(word in result.stderr for word in ("Read-only file system", "Permission denied")), result.stderr
    assert listed.returncode == 0 and exported.returncode == 0, listed.stderr + exported.stderr
    assert snapshot(home / "billing.duckdb") == scenario.before


def test_disk_full_during_the_nightly_leaves_the_database_as_before(scenario: Scenario, tmp_path: Path) -> None:
    # room for the database and its lake as they are, and the ledger row, not the day's writes
    lake = sum(p.stat().st_size for p in lake_dir(scenario.base_db).rglob("*") if p.is_file())
    size_kib = (scenario.base_db.stat().st_size + lake) // 1024 + 64
    with tmpfs(tmp_path / "disk", size_kib) as disk:
        db = disk / "billing.duckdb"
        copy_database(scenario.base_db, db)
        result = cli(db, *nightly_args(DAYS[2]))
        one_clean_line(result, "No space left on device")
        assert snapshot(db) == scenario.before
        assert _mount("-o", "remount,size=256m", str(disk)).returncode == 0  # space freed
        rerun(db, DAYS[2])
        assert snapshot(db) == scenario.after
        assert exports(db, tmp_path / "csv") == scenario.after_csv


def test_disk_full_during_export(scenario: Scenario, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", 64) as disk:
        (disk / "filler").write_bytes(b"\0" * (disk.stat().st_size or 1))
        try:
            with open(disk / "filler", "ab") as handle:
                while True:
                    handle.write(b"\0" * 4096)
                    handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        result = cli(scenario.base_db, "export", "--period", "2026-11", "--out", str(disk))
        one_clean_line(result, "finance-summary-2026-11.csv: cannot write: No space left on device")
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_disk_full_during_export_simulated(scenario: Scenario, tmp_path: Path, monkeypatch) -> None:
    """The same without root: the write itself raises ENOSPC."""
    import reports.atomic

    real_open = open

    def full_disk_open(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        handle = real_open(file, mode, *args, **kwargs)
        if "w" in mode:

            def write(data: bytes) -> int:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            handle.write = write
        return handle

    monkeypatch.setattr(reports.atomic, "open", full_disk_open, raising=False)
    runner = CliRunner()
    result = runner.invoke(
        cli_group, ["--db", str(scenario.base_db), "export", "--period", "2026-11", "--out", str(tmp_path)]
    )
    assert result.exit_code == 1 and result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output.strip().endswith("finance-summary-2026-11.csv: cannot write: No space left on device")
    assert list(tmp_path.iterdir()) == []
