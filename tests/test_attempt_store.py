"""Attempts stored once, in the run's lake file (migration 025, core/attempt_store.py): written
inside the run, listed by its commit, read back through the view, and a database from before
the migration keeps its attempts in the table and dedups and rates against them."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from core.attempt_store import AttemptFileMissing, attempts_table, lake_dir
from core.db import connect
from pipeline import replay
from tests.conftest import Billing, as_before_migration_027, record, usage


def lake_files(billing: Billing) -> list[tuple[int, str, int]]:
    return billing.query("SELECT run_id, path, row_count FROM lake_files WHERE table_name = 'attempts' ORDER BY 1")


def test_a_run_stores_its_attempts_only_in_its_lake_file(billing: Billing) -> None:
    billing.log(
        "requests-2026-11-20.jsonl",
        [record(event_id="a", usage=usage(1000, 100)), record(event_id="b", usage=usage(2000, 20))],
    )
    billing.nightly()
    assert lake_files(billing) == [(1, "attempts/run-000001.parquet", 2)]
    file = lake_dir(billing.settings.db_path) / "attempts" / "run-000001.parquet"
    con = duckdb.connect()
    names = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{file}')").fetchall()]
    assert "event_key" not in names and "request_key" not in names  # this DuckDB's hash() stays in the database
    assert con.execute(f"SELECT event_id, prompt_tokens FROM read_parquet('{file}') ORDER BY 1").fetchall() == [
        ("a", 1000),
        ("b", 2000),
    ]
    with connect(billing.settings.db_path, read_only=True) as live:
        assert live.execute(f"SELECT count(*) FROM {attempts_table(live)}").fetchone() == (0,)  # not in the table
        # the view: every column of the table; the keys in attempt_keys
        assert live.execute("SELECT event_id, prompt_tokens, event_key FROM attempts ORDER BY 1").fetchall() == [
            ("a", 1000, None),
            ("b", 2000, None),
        ]
        keys = live.execute("SELECT count(*) FROM attempt_keys WHERE event_key IN (hash('a'), hash('b'))")
        assert keys.fetchone() == (2,)


def test_a_failed_run_lists_nothing_and_its_file_is_removed(billing: Billing, monkeypatch) -> None:
    from pipeline import jobs

    billing.log("requests-2026-11-20.jsonl", [record(event_id="a", usage=usage(1000, 100))])

    def fail(*args: object) -> None:
        raise RuntimeError("the ledger row could not be written")

    monkeypatch.setattr(jobs, "close_succeeded", fail)
    with pytest.raises(RuntimeError):
        billing.nightly()
    monkeypatch.undo()
    leftover = lake_dir(billing.settings.db_path) / "attempts" / "run-000001.parquet"
    assert leftover.is_file() and lake_files(billing) == []  # written, never listed: not part of the database
    assert billing.one("SELECT count(*) FROM attempts") == 0
    assert billing.one("SELECT count(*) FROM attempt_keys") == 0
    report = billing.nightly()  # run 2 removes the leftover and stores the day
    assert not leftover.exists() and lake_files(billing) == [(2, "attempts/run-000002.parquet", 1)]
    assert report.files[0].accepted == 1 and billing.one("SELECT count(*) FROM attempts") == 1


def test_a_database_without_its_lake_is_refused_with_what_to_restore(billing: Billing, tmp_path: Path) -> None:
    billing.log("requests-2026-11-20.jsonl", [record(event_id="a")])
    billing.nightly()
    moved = tmp_path / "elsewhere" / "billing.duckdb"
    moved.parent.mkdir()
    moved.write_bytes(billing.settings.db_path.read_bytes())
    with pytest.raises(AttemptFileMissing) as raised:
        connect(moved, read_only=True)
    assert str(lake_dir(moved)) in raised.value.message and ".lake" in raised.value.hint


def _as_before_migration_025(db: Path) -> None:
    """Turn a database into what main wrote before migration 025: the attempts (with their
    lookup keys) and the rated rows in their tables, no attempt_keys, nothing in the lake (the
    analysts' copies of the rated rows are left out too: the next publication writes them)."""
    with connect(db) as con:
        con.execute(
            f"INSERT INTO {attempts_table(con)} SELECT * REPLACE (hash(event_id) AS event_key, "
            "hash(account_id, request_id) AS request_key) FROM attempts"
        )
    as_before_migration_027(db)  # the rated rows back in their table first
    with duckdb.connect(str(db)) as con:
        con.execute("DELETE FROM lake_files")
        con.execute("DROP TABLE attempt_keys")
        con.execute("DELETE FROM rating_state WHERE key = 'attempts_in_lake_from_run'")
        con.execute("ALTER TABLE attempts_before_lake RENAME TO attempts")
        con.execute("DELETE FROM schema_migrations WHERE name >= '025'")
    shutil.rmtree(lake_dir(db))


def test_a_database_from_before_the_migration_keeps_its_attempts_and_dedups_against_them(billing: Billing) -> None:
    first = record(event_id="old", request_id="r", account_id="acct_plain", usage=usage(1000, 100))
    billing.log("requests-2026-11-20.jsonl", [first])
    billing.nightly("2026-11-20")
    _as_before_migration_025(billing.settings.db_path)
    # the next day re-sends the stored record, once identical and once changed, and retries its request
    retry = record(event_id="new", request_id="r", account_id="acct_plain", attempt=2, ts="2026-11-20T12:00:05Z",
                   usage=usage(3000, 300))  # fmt: skip
    billing.log("requests-2026-11-21.jsonl", [first, dict(first, status=500), retry])
    report = billing.nightly("2026-11-21")
    [f] = [f for f in report.files if f.path.endswith("2026-11-21.jsonl")]
    assert (f.accepted, f.duplicates, f.quarantined) == (1, 1, 1)
    assert billing.one("SELECT reason FROM quarantine") == "duplicate_conflict"
    with connect(billing.settings.db_path, read_only=True) as live:
        # the old attempt stays in the table, the new one is in run 2's file; the view has both once
        table = live.execute(f"SELECT event_id FROM {attempts_table(live)}").fetchall()
        assert table == [("old",)]
        assert live.execute("SELECT event_id, run_id FROM attempts ORDER BY 1").fetchall() == [("new", 2), ("old", 1)]
        assert live.execute("SELECT run_id, count(*) FROM attempt_keys GROUP BY 1 ORDER BY 1").fetchall() == [
            (1, 1),
            (2, 1),
        ]
    assert lake_files(billing) == [(2, "attempts/run-000002.parquet", 1)]
    # R2 across the two stores: the retry is billed, the stored attempt superseded
    assert billing.rated("old")["reason"] == "superseded_attempt"
    assert billing.rated("new")["outcome"] == "billed"
    assert replay.verify_run(billing.settings, 2).status == "MATCH"


def test_a_plain_client_or_an_older_version_cannot_take_the_table_for_all_attempts(billing: Billing) -> None:
    billing.log("requests-2026-11-20.jsonl", [record(event_id="a")])
    billing.nightly()
    # migration 025 renamed the table: code that inserts into (or reads) `attempts` without the
    # view fails loudly, instead of writing rows the lake does not know or reading a part
    with duckdb.connect(str(billing.settings.db_path), read_only=True) as plain:
        with pytest.raises(duckdb.CatalogException, match="attempts does not exist"):
            plain.execute("SELECT count(*) FROM attempts")
        assert plain.execute("SELECT count(*) FROM attempts_before_lake").fetchone() == (0,)


def test_a_connection_that_missed_a_run_fails_instead_of_reading_part_of_the_attempts(billing: Billing) -> None:
    from core.attempt_store import refresh_lake_views

    billing.log("requests-2026-11-20.jsonl", [record(event_id="a")])
    billing.nightly("2026-11-20")
    con = connect(billing.settings.db_path)
    try:
        assert con.execute("SELECT count(*) FROM attempts").fetchone() == (1,)
        con.close()  # the run needs the file; a reader keeps its view in a new connection
        con = connect(billing.settings.db_path, read_only=True)
        view = con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'attempts'").fetchone()
        con.close()
        billing.log("requests-2026-11-21.jsonl", [record(event_id="b", ts="2026-11-21T08:00:00Z")])
        billing.nightly("2026-11-21")
        con = connect(billing.settings.db_path)
        assert view is not None
        con.execute("CREATE OR REPLACE TEMP VIEW attempts AS " + view[0].split(" AS ", 1)[1])  # the view it had
        with pytest.raises(duckdb.InvalidInputException, match="stale attempts view"):
            con.execute("SELECT count(*) FROM attempts").fetchone()
        refresh_lake_views(con)
        assert con.execute("SELECT count(*) FROM attempts").fetchone() == (2,)
    finally:
        con.close()


def test_a_lake_file_not_the_one_listed_is_refused(billing: Billing, tmp_path: Path) -> None:
    for day in ("2026-11-20", "2026-11-21"):
        billing.log(f"requests-{day}.jsonl", [record(event_id=f"e-{day}", ts=f"{day}T08:00:00Z")])
        billing.nightly(day)
    attempts = lake_dir(billing.settings.db_path) / "attempts"
    # run 1's file restored in place of run 2's (another size): refused, naming both sizes
    second = (attempts / "run-000002.parquet").stat().st_size
    restored = (attempts / "run-000001.parquet").read_bytes()
    (attempts / "run-000002.parquet").write_bytes(restored + b"\0" * (second + 1))  # never run 2's size
    with pytest.raises(AttemptFileMissing, match=r"1 attempts file\(s\) differ .*run-000002.parquet .*listed with"):
        connect(billing.settings.db_path, read_only=True)
    # cut short by a partial copy
    (attempts / "run-000002.parquet").write_bytes(b"PAR1" * 3)
    with pytest.raises(AttemptFileMissing, match=f"listed with {second:,}"):
        connect(billing.settings.db_path, read_only=True)


def test_a_snapshot_left_pointing_at_a_moved_lake_says_to_publish_it_again(billing: Billing, tmp_path: Path) -> None:
    from core.attempt_store import copy_database
    from pipeline import snapshot
    from tests.conftest import cli_in_process

    billing.log("requests-2026-11-20.jsonl", [record(event_id="a")])
    billing.nightly()
    snapshot.publish_now(billing.settings.db_path)
    moved = copy_database(billing.settings.db_path, tmp_path / "moved" / "billing.duckdb")
    published = snapshot.default_snapshot_path(billing.settings.db_path)
    (moved.parent / published.name).write_bytes(published.read_bytes())  # views still name the old lake
    shutil.rmtree(lake_dir(billing.settings.db_path))
    result = cli_in_process("--db", str(moved), "sql", "SELECT count(*) FROM attempts", cwd=tmp_path)
    assert result.exit_code == 1 and "not where it was published" in result.stderr, result.stderr
    assert "run `infergate-billing snapshot`" in result.stderr
    assert cli_in_process("--db", str(moved), "snapshot", cwd=tmp_path).exit_code == 0
    result = cli_in_process("--db", str(moved), "sql", "--format", "csv", "SELECT count(*) AS n FROM attempts",
                            cwd=tmp_path)  # fmt: skip
    assert result.exit_code == 0 and result.stdout.splitlines() == ["n", "1"], result.stdout + result.stderr


@pytest.mark.parametrize("same_file_system", [True, False], ids=["renamed", "copied"])
def test_a_runs_parts_are_moved_into_the_lake_and_listed_beside_its_file(
    billing: Billing, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, same_file_system: bool
) -> None:
    """``list_run_parts`` (the Spark tasks' attempts files, migration 034): each file with rows
    becomes the run's next part, moved into the lake (copied when the exchange directory is on
    another file system) and listed beside part 0; the view reads them all; an empty file stays."""
    from core import attempt_store
    from core.attempt_store import ATTEMPTS, list_run_parts, typed_rows

    billing.log("requests-2026-11-20.jsonl", [record(event_id="a", request_id="r-a")])
    billing.nightly()
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    lake = lake_dir(billing.settings.db_path)
    if not same_file_system:
        replace = attempt_store.os.replace

        def across(source: object, target: object) -> None:
            if not Path(str(source)).is_relative_to(lake):
                raise OSError(18, "Invalid cross-device link")
            replace(source, target)

        monkeypatch.setattr(attempt_store.os, "replace", across)
    con = connect(billing.settings.db_path)
    try:
        files = []
        for name, where in (("empty", "false"), ("b", "true")):
            rows = typed_rows(con, ATTEMPTS, 1, f"SELECT * REPLACE ('{name}' AS event_id) FROM attempts WHERE {where}")
            con.execute(f"COPY ({rows}) TO '{exchange / name}.parquet'")
            files.append((exchange / f"{name}.parquet", 1 if name == "b" else 0))
        listed = list_run_parts(con, ATTEMPTS, 1, files)
        assert [p.name for p in listed] == ["run-000001-part-000001.parquet"]
        assert (exchange / "b.parquet").exists() == (not same_file_system) and (exchange / "empty.parquet").exists()
        assert con.execute("SELECT event_id FROM attempts ORDER BY 1").fetchall() == [("a",), ("b",)]
    finally:
        con.close()
    assert billing.query("SELECT part, path, row_count FROM lake_files WHERE table_name = 'attempts' ORDER BY 1") == [
        (0, "attempts/run-000001.parquet", 1),
        (1, "attempts/run-000001-part-000001.parquet", 1),
    ]


def test_keys_files_are_merged_by_size_tier_and_a_failed_merge_changes_nothing(
    billing: Billing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each run adds keys files (migration 045), and every probe opens all of them: a run merges
    ``fanout`` files of one size tier into one, and never a file of ``merged_rows`` rows or more
    (what a night rewrites stays bounded). Fanout 2 and 3 rows here, so four nights show it."""
    import functools

    from core import attempt_store
    from pipeline import jobs, vacuum

    merge = functools.partial(attempt_store.merge_key_files, fanout=2, merged_rows=3)
    monkeypatch.setattr(jobs, "merge_key_files", merge)
    keys_files = "SELECT run_id, part, row_count FROM lake_files WHERE table_name = 'attempt_keys' ORDER BY ALL"
    merged = "SELECT path FROM lake_files WHERE table_name = 'attempt_keys_merged' ORDER BY ALL"
    lake = lake_dir(billing.settings.db_path)
    view = None
    for day, event in (("2026-11-20", "a"), ("2026-11-21", "b"), ("2026-11-22", "c")):
        billing.log(f"requests-{day}.jsonl", [record(event_id=event, request_id=f"r-{event}", ts=f"{day}T10:00:00Z")])
        billing.nightly(day)
        if view is None:  # the keys view of a connection that read the manifest after night 1
            with connect(billing.settings.db_path, read_only=True) as con:
                view = con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'attempt_keys'").fetchone()
    # night 1: one file of 1 row (tier 0); night 2: two of tier 0, merged into run 2's part 1
    # (2 rows, tier 1); night 3 adds one of tier 0
    assert billing.query(keys_files) == [(2, 1, 2), (3, 0, 1)]
    # the merged files stay on disk, listed as merged, for a backup that copied the database
    # before the merge and the lake after it (`lake vacuum` deletes them)
    assert billing.query(merged) == [("attempt_keys/run-000001.parquet",), ("attempt_keys/run-000002.parquet",)]
    assert (lake / "attempt_keys" / "run-000001.parquet").exists()
    # night 2 listed one file and merged two: as many files listed as before, and yet a view
    # made before night 2 is refused as stale, not read without run 2's key
    with connect(billing.settings.db_path) as con:
        assert view is not None
        con.execute("CREATE OR REPLACE TEMP VIEW attempt_keys AS " + view[0].split(" AS ", 1)[1])
        with pytest.raises(duckdb.InvalidInputException, match="stale attempt_keys view"):
            con.execute("SELECT count(*) FROM attempt_keys").fetchone()
    night_4 = record(event_id="d", request_id="r-d", ts="2026-11-23T10:00:00Z")
    billing.log("requests-2026-11-23.jsonl", [night_4])

    def fail(*args: object) -> None:
        raise RuntimeError("the ledger row could not be written")

    with monkeypatch.context() as patched:
        patched.setattr(jobs, "close_succeeded", fail)
        with pytest.raises(RuntimeError):
            billing.nightly("2026-11-23")
    assert billing.query(keys_files) == [(2, 1, 2), (3, 0, 1)]  # the failed run's merge is not listed
    billing.nightly("2026-11-23")
    # run 5 (run 4 failed): 1 row of tier 0 beside run 3's: merged into part 1 (2 rows), which
    # makes two files of tier 1 with run 2's, merged into part 2 (4 rows: never merged again)
    assert billing.query(keys_files) == [(5, 2, 4)]
    expected = "SELECT hash(e), r FROM (VALUES ('a', 1), ('b', 2), ('c', 3), ('d', 5)) v(e, r) ORDER BY ALL"
    assert billing.query("SELECT event_key, run_id FROM attempt_keys ORDER BY ALL") == billing.query(expected)
    # the merged file is what dedup probes: a resend of a is a duplicate, e is new
    resent = record(event_id="a", request_id="r-a", ts="2026-11-20T10:00:00Z")
    new = record(event_id="e", request_id="r-e", ts="2026-11-24T10:00:00Z")
    billing.log("requests-2026-11-24.jsonl", [resent, new])
    [f] = [f for f in billing.nightly("2026-11-24").files if f.path.endswith("2026-11-24.jsonl")]
    assert (f.accepted, f.duplicates) == (1, 1)
    assert billing.query(keys_files) == [(5, 2, 4), (6, 0, 1)]
    listed = {lake / p for (p,) in billing.query("SELECT path FROM lake_files WHERE table_name = 'attempt_keys'")}
    kept = {lake / p for (p,) in billing.query(merged)}
    assert len(kept) == 6 and set((lake / "attempt_keys").glob("*.parquet")) == listed | kept
    report = vacuum.vacuum(billing.settings.db_path, None)
    assert sorted(report.merged_keys) == sorted(kept)
    assert set((lake / "attempt_keys").glob("*.parquet")) == listed  # what views read stays
    with connect(billing.settings.db_path, read_only=True) as con:  # and the database opens and reads
        assert con.execute("SELECT count(*) FROM attempt_keys").fetchone() == (5,)
