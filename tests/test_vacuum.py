"""``lake vacuum`` (pipeline/vacuum.py): the rated files a re-rate retired are deleted once no
view and no published snapshot reads them; nothing billed changes.

Prices (acct_plain, list, openai/gpt-5.5): input 7.5 USD and output 45 USD per 1M tokens, so
1,000 + 100 tokens cost 0.0075 + 0.0045 = 0.012 USD and 3,000 + 300 tokens 0.036 USD.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from core.attempt_store import lake_dir
from core.db import connect
from pipeline import jobs, replay, snapshot
from pipeline.lock import ConcurrentRunError, exclusive_run
from pipeline.vacuum import lake_status, retired_files, vacuum
from tests.conftest import Billing, built_once, record, usage


def a_day_later() -> datetime:
    """A vacuum's clock a day after the runs (the default --older-than is 24 hours)."""
    return datetime.now(UTC) + timedelta(days=1, minutes=1)


def two_days_then_a_re_rate(billing: Billing) -> None:
    """Runs 1 and 2 rate a day each; run 3 (`rate`, everything) retires both runs' files. Every
    run publishes the analyst snapshot, as the CLI's runs do by default."""
    billing.settings = dataclasses.replace(billing.settings, snapshot_path=published(billing))
    billing.log("requests-2026-11-20.jsonl", [record(event_id="a", usage=usage(1000, 100))])
    billing.nightly("2026-11-20")
    billing.log("requests-2026-11-21.jsonl", [record(event_id="b", ts="2026-11-21T08:00:00Z", usage=usage(3000, 300))])
    billing.nightly("2026-11-21")
    assert jobs.run_rate(billing.settings, None, None).run_id == 3


def one_published_day(billing: Billing) -> None:
    """Run 1 rates a day and publishes the analyst snapshot (reading run 1's file)."""
    billing.settings = dataclasses.replace(billing.settings, snapshot_path=published(billing))
    billing.log("requests-2026-11-20.jsonl", [record(event_id="a", usage=usage(1000, 100))])
    billing.nightly("2026-11-20")  # publishes a snapshot reading run 1's file


re_rated = built_once("re_rated", two_days_then_a_re_rate)


one_day = built_once("one_day", one_published_day)


def rated_folder(billing: Billing) -> list[str]:
    return sorted(p.name for p in (lake_dir(billing.settings.db_path) / "rated_attempts").iterdir())


def published(billing: Billing) -> Path:
    return snapshot.default_snapshot_path(billing.settings.db_path)


def test_retired_files_are_deleted_and_nothing_billed_changes(re_rated: Billing) -> None:
    billing = re_rated
    before = billing.query("SELECT * FROM rated_attempts ORDER BY event_id")
    lines = billing.query("SELECT * FROM statement_lines ORDER BY ALL")
    assert rated_folder(billing) == ["run-000001.parquet", "run-000002.parquet", "run-000003.parquet"]

    dry = vacuum(billing.settings.db_path, published(billing), dry_run=True, now=a_day_later())
    assert [(f.run_id, f.retired_by) for f in dry.deleted] == [(1, 3), (2, 3)]
    assert len(rated_folder(billing)) == 3  # a dry run deletes nothing

    report = vacuum(billing.settings.db_path, published(billing), now=a_day_later())
    assert [f.path.name for f in report.deleted] == ["run-000001.parquet", "run-000002.parquet"]
    assert report.freed == sum(f.size for f in dry.deleted) > 0
    assert rated_folder(billing) == ["run-000003.parquet"]
    # the same rows and cents (0.012 + 0.036), the same lines; the manifest keeps its audit rows
    assert billing.query("SELECT * FROM rated_attempts ORDER BY event_id") == before
    assert billing.one("SELECT sum(charge_total) FROM rated_attempts") == Decimal("0.048")
    assert billing.query("SELECT * FROM statement_lines ORDER BY ALL") == lines
    assert billing.one("SELECT count(*) FROM lake_files WHERE table_name = 'rated_attempts'") == 3
    with connect(billing.settings.db_path, read_only=True) as con:
        assert [(f.run_id, f.on_disk) for f in retired_files(con)] == [(1, False), (2, False)]
        rated = next(s for s in lake_status(con) if s.folder == "rated_attempts")
        assert (rated.files, rated.retired_on_disk, rated.retired_deleted) == (1, 0, 2)
    # every run still verifies, later runs go on (and publish: the deleted files are not taken
    # for a lake restored without its files, the manifest keeps them), a second vacuum finds nothing
    for run in (1, 2, 3):
        assert replay.verify_run(billing.settings, run).status == "MATCH"
    manifest = billing.query("SELECT run_id, table_name, path FROM lake_files ORDER BY ALL")
    exports = billing.query("SELECT through_run_id FROM lake_exports ORDER BY 1")
    billing.log("requests-2026-11-22.jsonl", [record(event_id="c", ts="2026-11-22T08:00:00Z", usage=usage(1000, 100))])
    report_4 = billing.nightly("2026-11-22")
    assert report_4.snapshot is not None and report_4.snapshot_error is None
    assert billing.one("SELECT sum(charge_total) FROM rated_attempts") == Decimal("0.060")
    assert billing.query("SELECT run_id, table_name, path FROM lake_files WHERE run_id < 4 ORDER BY ALL") == manifest
    assert billing.query("SELECT through_run_id FROM lake_exports ORDER BY 1") == [*exports, (4,)]
    assert vacuum(billing.settings.db_path, published(billing), now=a_day_later()).deleted == []


def test_recently_retired_files_are_kept(re_rated: Billing) -> None:
    billing = re_rated
    report = vacuum(billing.settings.db_path, published(billing))  # default: 24 hours; run 3 published just now
    assert report.deleted == [] and [f.run_id for f in report.kept_recent] == [1, 2]
    assert len(rated_folder(billing)) == 3


def test_files_are_kept_until_a_snapshot_without_them_is_a_day_old(one_day: Billing) -> None:
    """The grace counts from the first publication after the re-rate, not from the re-rate: a
    re-rate run with --no-snapshot leaves the old snapshot (which reads the file) published."""
    billing = one_day  # run 1 published a snapshot reading its file
    billing.settings = dataclasses.replace(billing.settings, snapshot_path=None)  # --no-snapshot
    jobs.run_rate(billing.settings, None, None)  # run 2 retires run 1's file; nothing republished
    kept = vacuum(billing.settings.db_path, published(billing), now=a_day_later())
    assert kept.deleted == [] and [f.run_id for f in kept.kept_unpublished] == [1] and kept.kept_recent == []
    with snapshot.open_snapshot(published(billing)) as con:  # the old snapshot still reads
        assert con.execute("SELECT event_id, rated_run_id FROM rated_attempts").fetchall() == [("a", 1)]
    snapshot.publish_now(billing.settings.db_path, published(billing))
    assert vacuum(billing.settings.db_path, published(billing)).deleted == []  # published just now
    done = vacuum(billing.settings.db_path, published(billing), now=a_day_later())
    assert [f.run_id for f in done.deleted] == [1]
    with snapshot.open_snapshot(published(billing)) as con:
        assert con.execute("SELECT event_id, rated_run_id FROM rated_attempts").fetchall() == [("a", 2)]


def test_a_file_the_snapshot_given_still_names_is_kept(one_day: Billing, tmp_path: Path) -> None:
    """Publications went elsewhere (a --snapshot the vacuum was not given): the snapshot at the
    path it checks, older, still reads the file, which is kept."""
    billing = one_day  # run 1 published a snapshot reading its file
    billing.settings = dataclasses.replace(billing.settings, snapshot_path=tmp_path / "elsewhere.duckdb")
    jobs.run_rate(billing.settings, None, None)  # publishes, to the other path
    report = vacuum(billing.settings.db_path, published(billing), now=a_day_later())
    assert report.deleted == [] and [f.run_id for f in report.kept_for_snapshot] == [1]
    assert [
        f.run_id for f in vacuum(billing.settings.db_path, tmp_path / "elsewhere.duckdb", now=a_day_later()).deleted
    ] == [1]


def test_a_vacuum_is_refused_while_a_run_holds_the_lock(re_rated: Billing) -> None:
    billing = re_rated
    with exclusive_run(billing.settings.db_path, "nightly"), pytest.raises(ConcurrentRunError):
        vacuum(billing.settings.db_path, None, now=a_day_later())
    assert len(rated_folder(billing)) == 3


def test_the_command_line_refuses_bad_hours_and_a_missing_database_without_side_effects(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pipeline.cli import cli

    missing = tmp_path / "nodir" / "x.duckdb"
    for hours in ("inf", "nan", "1e12", "-1"):
        result = CliRunner().invoke(cli, ["--db", str(missing), "lake", "vacuum", "--older-than", hours])
        assert result.exit_code == 2 and "--older-than" in result.output, (hours, result.output)
    result = CliRunner().invoke(cli, ["--db", str(missing), "lake", "vacuum"])
    assert result.exit_code == 2 and "no such database" in result.output
    assert not (tmp_path / "nodir").exists()  # neither the directory nor a lock file was made
