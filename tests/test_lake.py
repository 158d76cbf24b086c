"""The Parquet lake behind the analyst snapshot (issue 14 item 2): each run's rows written once,
listed in lake_files, caught up after a crash, and read back equal to the live tables."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import duckdb
import pytest

from core.attempt_store import AttemptFileMissing, copy_database
from core.db import connect
from pipeline import lake, snapshot
from tests.conftest import Billing, BuiltOnce, record, usage

TABLES = ("attempts", "rated_attempts")


def with_snapshot(billing: Billing) -> Path:
    target = snapshot.default_snapshot_path(billing.settings.db_path)
    billing.settings = dataclasses.replace(billing.settings, snapshot_path=target)
    return target


def lake_of(billing: Billing) -> Path:
    return billing.settings.db_path.with_name("billing.lake")


def manifest(billing: Billing) -> list[tuple[object, ...]]:
    return billing.query("SELECT run_id, table_name, path, row_count, bytes FROM lake_files ORDER BY ALL")


def files_on_disk(billing: Billing) -> dict[str, int]:
    """Every file under the lake: relative path -> modification time (ns)."""
    root = lake_of(billing)
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def assert_snapshot_equals_live(billing: Billing, target: Path) -> None:
    live, copy = connect(billing.settings.db_path, read_only=True), snapshot.open_snapshot(target)
    try:
        for table in TABLES:
            query = f"SELECT * FROM {table} ORDER BY ALL"
            assert copy.execute(query).fetchall() == live.execute(query).fetchall(), table
            describe = f"SELECT column_name, column_type FROM (DESCRIBE {table})"
            assert copy.execute(describe).fetchall() == live.execute(describe).fetchall(), table
        kinds = "SELECT table_name, table_type FROM information_schema.tables WHERE table_name IN ? ORDER BY 1"
        assert copy.execute(kinds, [list(TABLES)]).fetchall() == [(t, "VIEW") for t in TABLES]
    finally:
        live.close()
        copy.close()


def published_late_retry(billing: Billing) -> Path:
    """With the snapshot published: run 1 bills a1 and x, run 2 brings a1's retry a2 (the
    snapshot's path, for the tests)."""
    target = with_snapshot(billing)
    billing.log(  # x keeps run 1's rated file read when a1's row is replaced: a tombstone, not a retirement
        "requests-2026-11-20.jsonl",
        [record(event_id="a1", request_id="r", usage=usage(1000, 100)), record(event_id="x", usage=usage(1000, 100))],
    )
    billing.nightly("2026-11-20")
    late = record(event_id="a2", request_id="r", attempt=2, ts="2026-11-20T12:00:05Z", usage=usage(3000, 300))
    billing.log("requests-2026-11-21.jsonl", [late])
    billing.nightly("2026-11-21")
    return target


@pytest.fixture(scope="module")
def _late_retry_once(tmp_path_factory: pytest.TempPathFactory) -> BuiltOnce:
    return BuiltOnce(tmp_path_factory, "late-retry", published_late_retry)


@pytest.fixture
def late_retry(_late_retry_once: BuiltOnce) -> tuple[Billing, Path]:
    """:func:`published_late_retry`, built once per module, a fresh copy for each test."""
    return _late_retry_once.restore(), _late_retry_once.value


def test_a_run_writes_its_rows_once_and_a_rerun_writes_nothing(billing: Billing) -> None:
    target = with_snapshot(billing)
    billing.log("requests-2026-11-20.jsonl", [record(usage=usage(1000, 100)), record(status=500, finish_reason=None)])
    billing.nightly()
    listed = manifest(billing)
    assert [row[:4] for row in listed] == [
        (1, "attempt_keys", "attempt_keys/run-000001.parquet", 2),  # migration 045
        (1, "attempts", "attempts/run-000001.parquet", 2),
        (1, "rated_attempts", "rated_attempts/run-000001.parquet", 2),
    ]
    on_disk = files_on_disk(billing)
    assert list(on_disk) == [row[2] for row in listed]
    for _, table, path, rows, size in listed:
        file = lake_of(billing) / str(path)
        assert file.stat().st_size == size
        assert billing.one(f"SELECT count(*) FROM read_parquet('{file}')") == rows
        assert rows == billing.one(f"SELECT count(*) FROM {table}")
    assert_snapshot_equals_live(billing, target)
    # the same file again: run 2 stores nothing, so no file is written or rewritten
    billing.nightly()
    assert manifest(billing) == listed and files_on_disk(billing) == on_disk
    # the run wrote its files itself: the publication has nothing to export
    assert billing.query("SELECT through_run_id, files FROM lake_exports ORDER BY 1") == [(1, 0), (2, 0)]
    assert_snapshot_equals_live(billing, target)


def test_a_late_retry_tombstones_the_replaced_rated_row(late_retry: tuple[Billing, Path]) -> None:
    billing, target = late_retry  # published_late_retry
    # run 2 re-rated a1 (now superseded): its run-1 row is replaced, and the lake says so
    assert billing.query("SELECT event_id, rated_run_id, reason FROM rated_attempts ORDER BY 1") == [
        ("a1", 2, "superseded_attempt"),
        ("a2", 2, None),
        ("x", 1, None),
    ]
    assert (2, "rated_replaced", "rated_replaced/run-000002.parquet", 1) in [row[:4] for row in manifest(billing)]
    tombstone = lake_of(billing) / "rated_replaced" / "run-000002.parquet"
    assert billing.query(f"SELECT * FROM read_parquet('{tombstone}')") == [("a1", 1)]
    assert billing.one("SELECT count(*) FROM rated_replaced") == 0  # written to the lake, then emptied
    # the lake's files hold 3 rated rows (a1 twice); the snapshot shows the 2 live ones
    assert_snapshot_equals_live(billing, target)


def test_a_publication_missed_or_killed_is_caught_up_and_leftovers_removed(billing: Billing, monkeypatch) -> None:
    billing.log(  # x keeps run 1's rated file read when a1's row is replaced: a tombstone, not a retirement
        "requests-2026-11-20.jsonl",
        [record(event_id="a1", request_id="r", usage=usage(1000, 100)), record(event_id="x", usage=usage(1000, 100))],
    )
    billing.nightly("2026-11-20")  # committed, never published (as if killed right after the commit)
    # the run itself wrote and listed its attempts, their keys and rated rows (the only copy of them)
    assert [row[:4] for row in manifest(billing)] == [
        (1, "attempt_keys", "attempt_keys/run-000001.parquet", 2),
        (1, "attempts", "attempts/run-000001.parquet", 2),
        (1, "rated_attempts", "rated_attempts/run-000001.parquet", 2),
    ]
    assert list(files_on_disk(billing)) == [
        "attempt_keys/run-000001.parquet",
        "attempts/run-000001.parquet",
        "rated_attempts/run-000001.parquet",
    ]
    assert billing.query("SELECT * FROM lake_exports") == []
    target = with_snapshot(billing)
    late = record(event_id="a2", request_id="r", attempt=2, ts="2026-11-20T12:00:05Z", usage=usage(3000, 300))
    billing.log("requests-2026-11-21.jsonl", [late])

    def killed(*args: object, **kwargs: object) -> None:
        raise OSError("killed before the manifest commit")

    monkeypatch.setattr(lake, "transaction", killed)
    report = billing.nightly("2026-11-21")
    assert report.snapshot_error == "OSError: killed before the manifest commit"
    # the runs' files are listed by their own commits; the publication's export was not recorded
    listed = [
        (1, "attempt_keys", "attempt_keys/run-000001.parquet", 2),
        (1, "attempts", "attempts/run-000001.parquet", 2),
        (1, "rated_attempts", "rated_attempts/run-000001.parquet", 2),
        (2, "attempt_keys", "attempt_keys/run-000002.parquet", 1),
        (2, "attempts", "attempts/run-000002.parquet", 1),
        (2, "rated_attempts", "rated_attempts/run-000002.parquet", 2),
        (2, "rated_replaced", "rated_replaced/run-000002.parquet", 1),
    ]
    assert [row[:4] for row in manifest(billing)] == listed
    assert billing.query("SELECT * FROM lake_exports") == [] and billing.query("SELECT * FROM rated_replaced") == []
    monkeypatch.undo()
    stray = lake_of(billing) / "attempts" / "run-000099.parquet"
    stray.write_bytes(b"not listed")
    (lake_of(billing) / "attempts" / ".run-000003.parquet.tmp").write_bytes(b"half a file")
    snapshot.publish_now(billing.settings.db_path)
    assert [row[:4] for row in manifest(billing)] == listed  # the strays removed, nothing written again
    assert list(files_on_disk(billing)) == sorted(str(row[2]) for row in manifest(billing))
    assert_snapshot_equals_live(billing, target)


def test_an_older_database_gets_its_history_exported_once(billing: Billing) -> None:
    billing.log("requests-2026-11-20.jsonl", [record(usage=usage(1000, 100))])
    billing.nightly("2026-11-20")
    billing.log("requests-2026-11-21.jsonl", [record(ts="2026-11-21T08:00:00Z"), record(ts="2026-11-21T09:00:00Z")])
    billing.nightly("2026-11-21")
    target = snapshot.publish_now(billing.settings.db_path)
    assert [row[:4] for row in manifest(billing)] == [
        (1, "attempt_keys", "attempt_keys/run-000001.parquet", 1),
        (1, "attempts", "attempts/run-000001.parquet", 1),
        (1, "rated_attempts", "rated_attempts/run-000001.parquet", 1),
        (2, "attempt_keys", "attempt_keys/run-000002.parquet", 2),
        (2, "attempts", "attempts/run-000002.parquet", 2),
        (2, "rated_attempts", "rated_attempts/run-000002.parquet", 2),
    ]
    assert_snapshot_equals_live(billing, target)
    before = files_on_disk(billing)
    snapshot.publish_now(billing.settings.db_path)
    assert files_on_disk(billing) == before and len(manifest(billing)) == 6


def test_an_empty_database_publishes_views_with_the_columns(billing: Billing) -> None:
    connect(billing.settings.db_path).close()  # migrated, no run yet
    target = snapshot.publish_now(billing.settings.db_path)
    assert files_on_disk(billing) == {} and manifest(billing) == []
    assert_snapshot_equals_live(billing, target)


def test_the_snapshot_reads_while_another_connection_writes_the_database(billing: Billing) -> None:
    target = with_snapshot(billing)
    billing.log("requests-2026-11-20.jsonl", [record(usage=usage(1000, 100))])
    billing.nightly()
    writer = duckdb.connect(str(billing.settings.db_path))  # holds the file, as a nightly does
    try:
        writer.execute("BEGIN TRANSACTION")
        writer.execute("DELETE FROM statement_lines")
        copy = snapshot.open_snapshot(target)
        try:
            assert copy.execute("SELECT count(*) FROM attempts").fetchone() == (1,)
            # 1000 input + 100 output tokens of openai/gpt-5.5 for acct_plain: 0.012 USD
            assert copy.execute("SELECT sum(charge_total) FROM rated_attempts").fetchone() == (billing_amount("0.012"),)
            with pytest.raises(duckdb.Error):
                copy.execute("CREATE TABLE y (i INTEGER)")
        finally:
            copy.close()
        writer.execute("ROLLBACK")
    finally:
        writer.close()


def billing_amount(text: str) -> object:
    from core.money import D

    return D(text)


def test_a_database_copied_without_any_part_of_its_lake_is_refused(
    late_retry: tuple[Billing, Path], tmp_path: Path
) -> None:
    billing, _ = late_retry  # published_late_retry
    assert len(manifest(billing)) == 7  # run 1: attempts, keys, rated; run 2: attempts, keys, rated, tombstone
    # without its lake, the database has lost its attempts: refused, naming what to restore
    elsewhere = tmp_path / "restored"
    elsewhere.mkdir()
    (elsewhere / "billing.duckdb").write_bytes(billing.settings.db_path.read_bytes())  # no .lake beside it
    refused = r"2 attempts file\(s\) .* missing \(7 lake files in all\), first .*restored/billing.lake/"
    with pytest.raises(AttemptFileMissing, match=refused):
        connect(elsewhere / "billing.duckdb")
    # the rated rows and their tombstones (migration 027), and the keys (045) are in the lake only too
    for folder, count in (("rated_attempts", 2), ("rated_replaced", 1), ("attempt_keys", 2)):
        copy_database(billing.settings.db_path, elsewhere / "billing.duckdb")
        shutil.rmtree(elsewhere / "billing.lake" / folder)
        with pytest.raises(AttemptFileMissing, match=rf"{count} {folder} file\(s\) .* missing"):
            connect(elsewhere / "billing.duckdb")
    # restored whole, it opens and publishes as before
    copy_database(billing.settings.db_path, elsewhere / "billing.duckdb")
    billing.settings = dataclasses.replace(billing.settings, db_path=elsewhere / "billing.duckdb")
    target = snapshot.publish_now(billing.settings.db_path)
    assert len(manifest(billing)) == 7
    assert list(files_on_disk(billing)) == sorted(str(row[2]) for row in manifest(billing))
    assert_snapshot_equals_live(billing, target)
