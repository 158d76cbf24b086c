"""Audit replay (issue 4): reproduce exactly, reprice with a diff, refuse edited used prices,
verify recorded runs."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path

import duckdb
import pytest
from click.testing import Result

from core.attempt_store import copy_database
from core.db import connect
from core.money import D
from pipeline import jobs, replay
from pipeline.reference import PriceEditError
from reports.statement_model import LAYOUT_VERSION
from tests.conftest import Billing, cli_in_process, edit_stored_attempts, record, usage

PRICES = Path(__file__).resolve().parent.parent / "pricing" / "tables" / "2026-11-01.toml"


@pytest.fixture(scope="module")
def _issued_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """:func:`issued` built once per module: the working directory and a copy of it.

    The runs record absolute paths (input files, outputs), so every test works in the same
    directory, restored from the copy; the module's tests run one after another."""
    work = tmp_path_factory.mktemp("issued")
    _build_issued(Billing(work / "billing"), work)
    template = tmp_path_factory.mktemp("issued-template") / "copy"
    shutil.copytree(work, template)
    return work, template


@pytest.fixture
def issued(_issued_once: tuple[Path, Path]) -> tuple[Billing, Path]:
    """November issued (with a late record arriving afterwards), December issued with it."""
    work, template = _issued_once
    shutil.rmtree(work)
    shutil.copytree(template, work)
    return Billing(work / "billing"), work / "out"


@pytest.fixture(scope="module")
def _verified_as_issued() -> dict[int, replay.VerifyReport]:
    """:func:`issued`'s runs verified (``verify_run``), by run id, as built: for the module."""
    return {}


@pytest.fixture
def verify_as_issued(
    issued: tuple[Billing, Path], _verified_as_issued: dict[int, replay.VerifyReport]
) -> Callable[[int], replay.VerifyReport]:
    """``verify_run`` of a run of :func:`issued` before the test changed anything: computed once
    per module, as the state is the same for every test (and a verify only reads it: it
    re-executes the runs in a scratch database). A verify of the issued state re-executes all
    its runs (two nightlies, two statement runs rendering PDFs): two tests verify the last."""
    billing, _ = issued

    def verify(run_id: int) -> replay.VerifyReport:
        if run_id not in _verified_as_issued:
            _verified_as_issued[run_id] = replay.verify_run(billing.settings, run_id)
        return _verified_as_issued[run_id]

    return verify


def _build_issued(billing: Billing, tmp_path: Path) -> None:
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="a", account_id="acct_plain", usage=usage(100_000, 1_000_000)),
            record(event_id="b", account_id="acct_discount", usage=usage(10_000, 20_000, cached=5_000)),
            record(event_id="c", account_id="acct_plain", model="deepseek-v4-flash", usage=usage(1000, 1000)),
        ],
    )
    billing.nightly("2026-11-20")
    out = tmp_path / "out"
    # November is issued as before statement layouts were versioned: the first layout (which
    # migration 024 records for such statements), no "layout" in the run's arguments (replay
    # and verify must re-render it so)
    november = jobs.run_statements(
        billing.settings, "2026-11", out, finalize=True, issue_date=date(2026, 12, 1), layout_version=1
    )
    con = duckdb.connect(str(billing.settings.db_path))
    con.execute(
        "UPDATE runs SET args = json_merge_patch(args, '{\"layout\": null}') WHERE run_id = ?", [november.run_id]
    )
    con.close()
    billing.log(
        "requests-2026-12-02.jsonl",
        [
            record(event_id="late", account_id="acct_plain", ts="2026-11-30T23:00:00Z", usage=usage(0, 10_000)),
            record(event_id="dec", account_id="acct_plain", ts="2026-12-02T08:00:00Z", usage=usage(0, 20_000)),
        ],
    )
    billing.nightly("2026-12-02")
    jobs.run_statements(billing.settings, "2026-12", out, finalize=True, issue_date=date(2027, 1, 1))


@pytest.mark.parametrize("period", ["2026-11", "2026-12"])
def test_replay_reproduces_issued_statements_byte_for_byte(issued, period: str) -> None:
    billing, out = issued
    before = billing.query("SELECT * FROM rated_attempts ORDER BY ALL")
    report = replay.replay_period(billing.settings, period, out)
    assert report.checks and report.matches, report.checks
    assert {c.kind for c in report.checks} == {"lines_csv", "detail_csv", "html"}
    issued_csv = out / "statements" / period
    for check in report.checks:
        if check.kind != "html":
            assert Path(check.path).read_bytes() == (issued_csv / Path(check.path).name).read_bytes()
    assert billing.query("SELECT * FROM rated_attempts ORDER BY ALL") == before  # the database is only read


def test_each_issued_statement_keeps_the_layout_it_was_printed_with(issued, verify_as_issued) -> None:
    """November was issued in the first layout (no line numbers), December in the current one;
    replay reproduced both byte for byte (above), and verify re-executes both finalizing runs."""
    billing, out = issued
    layouts = billing.query("SELECT period, layout_version FROM statements ORDER BY period, statement_number")
    assert {period for period, _ in layouts} == {"2026-11", "2026-12"}
    assert all(layout == 1 for period, layout in layouts if period == "2026-11")
    assert all(layout == LAYOUT_VERSION for period, layout in layouts if period == "2026-12")
    # the issued HTML is kept in the database only (statement_files), never in the output folder
    pages = billing.query(
        "SELECT s.period, s.statement_number, f.content FROM statement_files f JOIN statements s "
        "USING (statement_number) WHERE f.kind = 'html' ORDER BY s.period, s.statement_number"
    )
    assert {period for period, _, _ in pages} == {"2026-11", "2026-12"}
    for period, number, content in pages:
        numbered = period == "2026-12"
        assert ('class="num col-no"' in bytes(content).decode("utf-8")) is numbered, number
    for (run_id,) in billing.query("SELECT run_id FROM runs WHERE command = 'statements' ORDER BY run_id"):
        assert verify_as_issued(run_id).status == "MATCH", run_id  # nothing changed: as issued


def test_a_database_not_yet_migrated_to_layouts_replays(issued) -> None:
    """A database written before migration 024 (no statements.layout_version), replayed by an
    auditor with the new package before any run migrated it: its statements are layout 1."""
    billing, out = issued
    con = duckdb.connect(str(billing.settings.db_path))
    con.execute("ALTER TABLE statements DROP COLUMN layout_version")
    con.execute("DELETE FROM schema_migrations WHERE name LIKE '024_%'")
    con.close()
    report = replay.replay_period(billing.settings, "2026-11", out)
    assert report.checks and report.matches, report.checks
    # verify of the last run compares every live table with the re-execution, whose
    # statements table has the column: it is compared without it (the files carry the layout)
    last = billing.one("SELECT max(run_id) FROM runs")
    assert replay.verify_run(billing.settings, last).status == "MATCH"


def test_statements_issued_with_layout_8_replay_and_verify_as_issued(tmp_path: Path) -> None:
    """Layout 9 (issue 14 item 4) changes how new statements are laid out: statements issued
    with layout 8 (November, and December with an adjustment for a late November record) are
    re-rendered by replay with layout 8's template byte for byte, without layout 9's stylesheet
    or its sentence on the adjustments' requests, and their runs verify."""
    billing = Billing(tmp_path / "billing")
    billing.log(
        "requests-2026-11-20.jsonl", [record(event_id="a", account_id="acct_plain", usage=usage(100_000, 1_000_000))]
    )
    billing.nightly("2026-11-20")
    out = tmp_path / "out"
    jobs.run_statements(billing.settings, "2026-11", out, finalize=True, issue_date=date(2026, 12, 1), layout_version=8)
    billing.log(
        "requests-2026-12-02.jsonl",
        [
            record(event_id="late", account_id="acct_plain", ts="2026-11-30T23:00:00Z", usage=usage(0, 10_000)),
            record(event_id="dec", account_id="acct_plain", ts="2026-12-02T08:00:00Z", usage=usage(0, 20_000)),
        ],
    )
    billing.nightly("2026-12-02")
    jobs.run_statements(billing.settings, "2026-12", out, finalize=True, issue_date=date(2027, 1, 1), layout_version=8)
    assert {layout for (layout,) in billing.query("SELECT layout_version FROM statements")} == {8}
    (content,) = billing.query(  # the HTML is stored in the database only
        "SELECT f.content FROM statement_files f JOIN statements s USING (statement_number) "
        "WHERE s.period = '2026-12' AND f.kind = 'html'"
    )[0]
    html = bytes(content).decode("utf-8")
    assert "Prior-period adjustments" in html and '<td class="col-period">2026-11</td>' in html
    assert "adjustment-requests" not in html and "Statement layout 9" not in html
    for period in ("2026-11", "2026-12"):
        report = replay.replay_period(billing.settings, period, out)
        assert report.checks and report.matches, report.checks
    for (run_id,) in billing.query("SELECT run_id FROM runs WHERE command = 'statements' ORDER BY run_id"):
        assert replay.verify_run(billing.settings, run_id).status == "MATCH", run_id


def test_replay_with_a_changed_output_price_reports_the_exact_difference(issued, tmp_path: Path) -> None:
    billing, out = issued
    changed = tmp_path / "gpt55-output-60.toml"
    changed.write_text(
        PRICES.read_text()
        .replace('version = "2026-11-01"', 'version = "proposal"')
        .replace('upstream_output_per_1m = "30"', 'upstream_output_per_1m = "40"')
        .replace('list_output_per_1m = "45"', 'list_output_per_1m = "60"')
    )
    report = replay.replay_period(billing.settings, "2026-11", out, prices=str(changed))
    diffs = {(d.account_id, d.model): d for d in report.diffs}
    # acct_plain: 1,000,000 output tokens x (60 - 45)/1M = 15.00 more; input and DeepSeek unchanged
    plain = diffs[("acct_plain", "openai/gpt-5.5")]
    assert (plain.old_amount, plain.new_amount, plain.difference) == (D("45.75"), D("60.75"), D("15.00"))
    assert diffs[("acct_plain", "deepseek-v4-flash")].difference == 0
    # acct_discount (12.5% off): 20,000 x 15 x 0.875 / 1M = 0.2625; old output line 20,000 x 39.375/1M
    # = 0.7875 -> 0.79, new 20,000 x 52.5/1M = 1.05; difference 0.26
    assert diffs[("acct_discount", "openai/gpt-5.5")].difference == D("0.26")
    assert (out / "replay-2026-11-prices-gpt55-output-60" / "replay-diff-2026-11.csv").exists()


def test_editing_a_used_price_version_is_refused_unless_forced(issued, tmp_path: Path) -> None:
    billing, _ = issued
    prices = tmp_path / "prices"
    prices.mkdir()
    (prices / "2026-11-01.toml").write_text(
        PRICES.read_text()
        .replace('upstream_input_per_1m = "5"', 'upstream_input_per_1m = "6"')
        .replace('list_input_per_1m = "7.5"', 'list_input_per_1m = "9"')
    )
    edited = dataclasses.replace(billing.settings, prices_dir=prices)
    with pytest.raises(PriceEditError, match="2026-11-01 was edited after it priced attempts"):
        jobs.run_nightly(edited, date(2026, 12, 3), billing.logs, allow_empty=True)
    forced = dataclasses.replace(edited, force_price_edit=True)
    # a record may not be dated after the run date (README): the nightly is the one of 2027-01-05
    billing.log("requests-2027-01-05.jsonl", [record(event_id="jan", ts="2027-01-05T00:00:00Z")])
    jobs.run_nightly(forced, date(2027, 1, 5), billing.logs)
    # issued periods are never re-priced by an edit; the open one is
    assert billing.rated("a")["unit_price_input_uncached"] == D("7.5")
    assert billing.rated("dec")["unit_price_input_uncached"] == D("7.5")
    assert billing.rated("jan")["unit_price_input_uncached"] == D("9")


def test_a_new_version_never_changes_requests_before_it(issued, tmp_path: Path) -> None:
    billing, _ = issued
    billing.log(
        "requests-2027-01-05.jsonl",
        [
            record(event_id="before", ts="2027-01-04T23:59:59.999999Z", usage=usage(0, 1_000_000)),
            record(event_id="at", ts="2027-01-05T00:00:00Z", usage=usage(0, 1_000_000)),
        ],
    )
    jobs.run_nightly(billing.settings, date(2027, 1, 5), billing.logs)  # not before the records' dates
    prices = tmp_path / "prices"
    prices.mkdir()
    shutil.copy(PRICES, prices / "2026-11-01.toml")
    (prices / "2027-01-05.toml").write_text(
        PRICES.read_text()
        .replace('version = "2026-11-01"', 'version = "v2"')
        .replace("effective_from = 2026-11-01T00:00:00Z", "effective_from = 2027-01-05T00:00:00Z")
        .replace('upstream_output_per_1m = "30"', 'upstream_output_per_1m = "40"')
        .replace('list_output_per_1m = "45"', 'list_output_per_1m = "60"')
    )
    query = "SELECT event_id, price_version, charge_total FROM rated_attempts WHERE event_id <> 'at' ORDER BY 1"
    before = billing.query(query)
    jobs.run_nightly(
        dataclasses.replace(billing.settings, prices_dir=prices), date(2026, 12, 4), billing.logs, allow_empty=True
    )
    assert billing.query(query) == before  # everything before the new version's instant is unchanged
    at = billing.rated("at")
    assert (at["price_version"], at["charge_total"]) == ("v2", D("60"))  # exactly at its effective_from
    assert billing.rated("before")["charge_total"] == D("45")


def test_verify_matches_an_untouched_database_and_catches_tampering(issued, verify_as_issued) -> None:
    billing, _ = issued
    last = billing.one("SELECT max(run_id) FROM runs")
    result = verify_as_issued(last)  # untouched: as issued
    assert result.status == "MATCH", result.steps
    assert verify_as_issued(1).status == "MATCH"
    changed = edit_stored_attempts(
        # the tokens, not the charge: the files leave the charges out and compute them (migration 039)
        billing.settings.db_path,
        "output_tokens = output_tokens + 1",
        "event_id = 'dec'",
        table="rated_attempts",
    )
    assert changed == 1
    tampered = replay.verify_run(billing.settings, last)
    assert tampered.status == "MISMATCH"
    assert "rated_attempts" in (tampered.first_difference or "")


def test_verify_names_a_changed_input_file(issued) -> None:
    billing, _ = issued
    (billing.logs / "requests-2026-11-20.jsonl").write_text("{}\n")
    result = replay.verify_run(billing.settings, 1)
    assert result.status == "MISMATCH" and "changed since the run" in (result.first_difference or "")


# --- issue 20 item 3: verify after the README's demo, whatever the spelling of --logs ---

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str, cwd: Path) -> Result:
    """The command run from ``cwd``, in this process: a relative ``--logs`` resolves against
    ``cwd`` as in a shell there (tests/conftest.py, ``cli_in_process``)."""
    return cli_in_process(*args, cwd=cwd)


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The steps of `make demo`, with --logs spelled three ways from two directories.

    2026-11-29 relative to the project (the Makefile's spelling), 2026-11-30 absolute, and
    2026-12-01 relative to another working directory (``./sample_logs/`` from ``data/``).
    """
    out = tmp_path_factory.mktemp("demo")
    db = str(out / "demo.duckdb")
    logs = ROOT / "data" / "sample_logs"
    accounts = str(ROOT / "data" / "accounts.toml")  # its default, data/accounts.toml, is relative
    issuer = str(ROOT / "data" / "issuer.toml")  # so is the issuer's: from data/ it would be the built-in one
    steps = [
        (ROOT, ("nightly", "--date", "2026-11-29", "--logs", "data/sample_logs")),
        (ROOT, ("nightly", "--date", "2026-11-30", "--logs", str(logs))),
        (ROOT, ("statements", "--period", "2026-11", "--out", str(out))),
        (ROOT, ("statements", "--period", "2026-11", "--finalize", "--issue-date", "2026-12-01", "--out", str(out))),
        (ROOT / "data", ("nightly", "--date", "2026-12-01", "--logs", "./sample_logs/")),
        (ROOT, ("statements", "--period", "2026-12", "--finalize", "--issue-date", "2027-01-01", "--out", str(out))),
    ]
    for cwd, step in steps:
        result = _cli("--db", db, "--accounts", accounts, "--issuer", issuer, "--no-snapshot", *step, cwd=cwd)
        assert result.exit_code == 0, result.stdout + result.stderr
    return Path(db)


def test_verify_of_the_demo_matches_from_another_directory(demo_db: Path, tmp_path: Path) -> None:
    con = connect(demo_db, read_only=True)  # the attempts view: the lake files too
    try:
        names = con.execute("SELECT source_file FROM attempts UNION SELECT source_file FROM quarantine").fetchall()
        last = con.execute("SELECT max(run_id) FROM runs").fetchone()
    finally:
        con.close()
    # whatever the spelling, every record names its file the same way: the file name
    assert {n for (n,) in names} == {p.name for p in (ROOT / "data" / "sample_logs").iterdir()}
    assert last == (6,)
    result = _cli("--db", str(demo_db), "replay", "--verify", "6", cwd=tmp_path)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-2:] == ["live database vs re-execution: MATCH", "MATCH"]


TAMPERING = {
    # (in the lake file that holds the row: edit_stored_attempts)
    "attempts": "UPDATE attempts SET prompt_tokens = prompt_tokens + 1 WHERE event_id = $event",
    "quarantine": "UPDATE quarantine SET field = 'status' WHERE quarantine_id = 1",
    # (not a charge: the lake files leave the charges out and compute them, migration 039)
    "rated_attempts": "UPDATE rated_attempts SET reasoning_tokens = reasoning_tokens + 1 WHERE event_id = $event",
    "statement_lines": "UPDATE statement_lines SET amount = amount + 0.01 WHERE account_id = 'acct_acme' "
    "AND period = '2026-12' AND token_class = 'output' AND model = 'openai/gpt-5.5'",
    "statements": "UPDATE statements SET total_usd = total_usd + 1 WHERE statement_number = 'IG-2026-11-000001'",
    "statement_issued_lines": "UPDATE statement_issued_lines SET quantity_tokens = quantity_tokens + 1 "
    "WHERE statement_number = 'IG-2026-11-000002' AND line_no = 1",
    "statement_files": "UPDATE statement_files SET sha256 = repeat('0', 64) "
    "WHERE statement_number = 'IG-2026-12-000006' AND kind = 'detail_csv'",
}


def test_verify_names_every_edited_table_and_tolerates_old_path_spellings(demo_db: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered.duckdb"
    copy_database(demo_db, tampered)
    with connect(tampered, read_only=True) as con:
        event = con.execute(
            "SELECT min(event_id) FROM rated_attempts WHERE outcome = 'billed' AND period = '2026-12'"
        ).fetchone()
    assert event is not None
    assert (
        edit_stored_attempts(tampered, "prompt_tokens = prompt_tokens + 1", "event_id = $event", {"event": event[0]})
        == 1
    )
    # how databases written before source_name stored the file: the path as given. Not a difference.
    assert edit_stored_attempts(tampered, "source_file = 'data/sample_logs/' || source_file", "true") > 0
    assert (
        edit_stored_attempts(
            tampered,
            "reasoning_tokens = reasoning_tokens + 1",
            "event_id = $event",
            {"event": event[0]},
            "rated_attempts",
        )
        == 1
    )
    con = duckdb.connect(str(tampered))
    try:
        for table, statement in TAMPERING.items():
            if table in ("attempts", "rated_attempts"):
                continue
            changed = con.execute(statement, {"event": event[0]} if "$event" in statement else None).fetchone()
            assert changed == (1,), table  # exactly one row edited per table
        con.execute(
            "UPDATE quarantine SET source_file = '/srv/logs/' || source_file, "
            "message = replace(message, '(first at ', '(first at ./data/sample_logs/')"
        )
        old = con.execute("SELECT count(*) FROM quarantine WHERE message LIKE '%(first at ./data/sample_logs/%'")
        assert old.fetchone() != (0,)  # the sample logs have a duplicate_conflict
    finally:
        con.close()
    result = _cli("--db", str(tampered), "replay", "--verify", "6", cwd=tmp_path)
    assert result.exit_code == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "MISMATCH: 7 live table(s) differ from the re-execution: " + ", ".join(TAMPERING)
    details = {line.split()[2]: line for line in lines if line.startswith("  live table ")}
    assert set(details) == set(TAMPERING)
    one_row = "in 2 row(s) (1 only in live, 1 only in the re-execution); e.g. "
    # the files keep the usage object as a template of the counts (migration 039): it reads back
    # with the edited count too
    assert details["attempts"].endswith(f"{one_row}event_id={event[0]} (differs in usage_json, prompt_tokens)")
    assert details["rated_attempts"].endswith(f"{one_row}event_id={event[0]} (differs in reasoning_tokens)")
    assert details["quarantine"].endswith("(differs in field)") and one_row in details["quarantine"]
    assert details["statements"].endswith(f"{one_row}statement_number=IG-2026-11-000001 (differs in total_usd)")
    assert details["statement_issued_lines"].endswith(
        f"{one_row}statement_number=IG-2026-11-000002 line_no=1 (differs in quantity_tokens)"
    )
    assert details["statement_files"].endswith(
        f"{one_row}statement_number=IG-2026-12-000006 kind=detail_csv (differs in sha256)"
    )
    assert "account_id=acct_acme period=2026-12 model=openai/gpt-5.5 token_class=output" in details["statement_lines"]
    assert details["statement_lines"].endswith("(differs in amount)")


# --- issue 14 item 1: the rated rows' digest, version 2 (migration 046) ---

ROW_DIGEST_1 = "CAST(coalesce(bit_xor(md5_number(CAST(r AS VARCHAR))), 0) AS VARCHAR)"  # as runs before 046 did


def test_a_run_that_recorded_the_first_row_digest_still_verifies_by_it(billing: Billing) -> None:
    """Runs before migration 046 recorded their rated rows' digest as version 1 (md5 of each
    row's struct text). Such a database, as an auditor's new package finds it (the column and
    the migration not there yet), verifies: the re-execution is digested by the version the run
    recorded. A version-1 digest that does not match is still a MISMATCH, and so is the right
    digest under the wrong version."""
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="a", request_id="r1", usage=usage(1000, 200, cached=400)),
            record(event_id="b", request_id="r2", attempt=1, status=503, usage=usage(10, 0)),
            record(event_id="c", request_id="r2", attempt=2, usage=usage(300, 50), ts="2026-11-20T12:00:01+02:00"),
            record(event_id="d", request_id="r3", account_id="acct_nobody", usage=usage(5, 5)),
        ],
    )
    billing.nightly()
    assert billing.query("SELECT name, digest_version FROM run_outputs ORDER BY name") == [
        ("rated_attempts", 2),
        ("statement_lines", 1),
    ]
    (rows, v1) = billing.query(
        f"SELECT count(*), {ROW_DIGEST_1} FROM (SELECT * EXCLUDE (rated_run_id) FROM rated_attempts) r"
    )[0]
    assert rows == 4 and v1 != billing.one("SELECT digest FROM run_outputs WHERE name = 'rated_attempts'")

    def recorded_as(digest: str, version: int) -> replay.VerifyReport:
        con = duckdb.connect(str(billing.settings.db_path))
        con.execute(
            "UPDATE run_outputs SET digest = ?, digest_version = ? WHERE name = 'rated_attempts'", [digest, version]
        )
        con.close()
        return replay.verify_run(billing.settings, 1)

    assert recorded_as(v1, 1).status == "MATCH"
    changed = str(int(v1) ^ 1)
    assert recorded_as(changed, 1).status == "MISMATCH"
    wrong_version = recorded_as(v1, 2)
    assert wrong_version.status == "MISMATCH" and "rated_attempts" in (wrong_version.first_difference or "")
    con = duckdb.connect(str(billing.settings.db_path))  # the database before migration 046
    con.execute("UPDATE run_outputs SET digest = ? WHERE name = 'rated_attempts'", [v1])
    con.execute("ALTER TABLE run_outputs DROP COLUMN digest_version")
    con.execute("DELETE FROM schema_migrations WHERE name LIKE '046_%'")
    con.close()
    assert replay.verify_run(billing.settings, 1).status == "MATCH"
