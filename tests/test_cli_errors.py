"""Every command, given a missing database, a missing directory or bad reference data, fails
with one ``Error: ... Hint: ...`` line and exit code 1 or 2, never a traceback (issue 20 item 6).

The commands are enumerated from the Click group, so a command added later is covered too: its
required arguments get plausible values from :func:`arguments_for`.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from core.errors import BillingError, EmptyPeriod, MissingInput, UsageProblem
from pipeline import jobs
from pipeline.cli import cli
from pipeline.jobs import NoInputForDay
from tests.conftest import Billing, record, usage, write_log

PRICES = Path(__file__).resolve().parent.parent / "pricing" / "tables"
DAY = "2026-11-20"

# Commands that need an existing database: on a missing --db they must say so, exit 2, and
# create nothing (no file, no directory). The others create the database (nightly, ingest) or
# do not use one.
NEEDS_DATABASE = {
    "rate",
    "statements",
    "credit-note",
    "export",
    "quarantine",
    "runs list",
    "runs show",
    "replay",
    "margin",
    "spend-limits",
    "snapshot",
    "sql",
}
LOADS_PRICES = {"nightly", "rate", "prices list", "prices validate"}
LOADS_ACCOUNTS = {"nightly", "rate"}


def commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every leaf command of the CLI, as its words (``("runs", "show")``)."""
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


ALL_COMMANDS = [" ".join(words) for words in commands()]


def leaf(words: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for word in words:
        assert isinstance(command, click.Group)
        command = command.commands[word]
    return command


def arguments_for(name: str, logs: Path, out: Path) -> list[str]:
    """Arguments that get the command past Click's own checks to the work itself."""
    known: dict[str, list[str]] = {
        "nightly": ["--date", DAY, "--logs", str(logs)],
        "ingest": [str(logs / f"requests-{DAY}.jsonl")],
        "rate": ["--period", "2026-11"],
        "replay": ["--period", "2026-11"],
        "runs show": ["1"],
        "sql": ["SELECT count(*) FROM runs"],
    }
    args = list(known.get(name, []))
    for param in leaf(tuple(name.split())).params:
        if param.name == "out_dir":
            args += ["--out", str(out)]  # never the default (out/, data/sample_logs) of the checkout
        elif param.required and not any(opt in args for opt in getattr(param, "opts", [])) and name not in known:
            args += _plausible(param, logs)
    return args


def _plausible(param: click.Parameter, logs: Path) -> list[str]:
    """A value for a required parameter of a command this test does not know by name."""
    if param.name == "period":
        value = "2026-11"
    elif isinstance(param.type, click.Path):
        value = str(logs / f"requests-{DAY}.jsonl")
    elif isinstance(param.type, click.Choice):
        value = str(param.type.choices[0])
    elif isinstance(param.type, click.DateTime):
        value = DAY
    elif isinstance(param.type, click.types.IntParamType):
        value = "1"
    else:
        value = "x"
    values = [value] * (param.nargs if param.nargs > 0 else 1)
    return values if isinstance(param, click.Argument) else [param.opts[0], *values]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Billing:
    """A small billing database: one day rated, November issued (so replays have something)."""
    billing = Billing(tmp_path_factory.mktemp("base"))
    billing.log(f"requests-{DAY}.jsonl", [record(usage=usage(1000, 100)), record(account_id="acct_discount")])
    billing.nightly(DAY)
    jobs.run_statements(billing.settings, "2026-11", billing.root / "out", finalize=True, issue_date=date(2026, 12, 1))
    return billing


def test_ingest_of_a_glob_matching_no_log_file_is_missing_input(home: Billing, tmp_path: Path) -> None:
    """A glob that matches nothing (or nothing of a log kind) fails like a named file that is not
    there (exit 1, recorded nowhere), instead of a run that "succeeds" having read nothing."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "notes.txt").write_text("not a log")
    pattern = str(logs / "*.txt")
    result = invoke(tmp_path, "ingest", home.settings.db_path, home.settings.accounts_file, tmp_path, logs, [pattern])
    assert_clean(result, {1}, f"{pattern}: no log file matches", "Hint: ")
    assert not home.settings.db_path.exists() or home.one("SELECT count(*) FROM runs WHERE command = 'ingest'") == 0


def test_a_glob_matching_nothing_beside_one_that_matches_is_fine(home: Billing, tmp_path: Path) -> None:
    """`ingest 'logs/*.jsonl' 'logs/*.jsonl.gz'` with only .jsonl files ingests them (exit 0)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    write_log(logs / "requests-2026-11-20.jsonl", [record(event_id="one", usage=usage(10, 1))])
    patterns = [str(logs / "*.jsonl"), str(logs / "*.jsonl.gz")]
    result = invoke(tmp_path, "ingest", home.settings.db_path, home.settings.accounts_file, tmp_path, logs, patterns)
    assert result.exit_code == 0, result.output
    assert home.one("SELECT count(*) FROM attempts WHERE event_id = 'one'") == 1


def test_a_nightly_reads_a_logs_directory_whose_name_looks_like_a_glob(home: Billing, tmp_path: Path) -> None:
    """logs[eu]/ holds the day's file: its name is a name, not a pattern that cannot match itself."""
    logs = tmp_path / "logs[eu]*"
    logs.mkdir()
    write_log(logs / "requests-2026-11-20.jsonl", [record(event_id="eu", usage=usage(10, 1))])
    args = ["--date", "2026-11-20", "--logs", str(logs)]
    result = invoke(tmp_path, "nightly", home.settings.db_path, home.settings.accounts_file, PRICES, logs, args)
    assert result.exit_code == 0, result.output
    assert home.one("SELECT count(*) FROM attempts WHERE event_id = 'eu'") == 1


@pytest.fixture
def home(base: Billing, tmp_path: Path) -> Billing:
    """A copy of the base database (commands may write to it), its logs and accounts."""
    shutil.copytree(base.root, tmp_path / "home")
    return Billing(tmp_path / "home")


def invoke(
    tmp_path: Path, name: str, db: Path, accounts: Path, prices: Path, logs: Path, extra: list[str] | None = None
) -> Result:
    runner = CliRunner(env={"INFERGATE_DB": None, "INFERGATE_PRICES": None, "INFERGATE_ACCOUNTS": None})
    args = ["--db", str(db), "--accounts", str(accounts), "--prices", str(prices)]
    scratch = Path(tempfile.mkdtemp(dir=tmp_path))
    with contextlib.chdir(scratch):  # relative defaults land in a scratch directory
        return runner.invoke(
            cli, [*args, *name.split(), *(extra or arguments_for(name, logs, tmp_path / "out"))], catch_exceptions=True
        )


def assert_clean(result: Result, codes: set[int], *needles: str) -> None:
    """No traceback; exit code in ``codes``; a failure is exactly one ``Error:`` line with a hint."""
    shown = f"exit {result.exit_code}\n{result.output}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (shown, result.exc_info)
    assert "Traceback" not in result.output, shown
    assert result.exit_code in codes, shown
    if result.exit_code:
        problems = [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]
        assert len(problems) == 1 and problems[0].startswith("Error: "), shown
        for needle in needles:
            assert needle in problems[0], shown


def test_every_command_is_enumerated() -> None:
    """The list the tests below run over really is every command (a cheap guard on commands())."""
    assert {"nightly", "ingest", "export", "statements", "runs list", "runs show", "prices validate"} <= set(
        ALL_COMMANDS
    )
    assert NEEDS_DATABASE <= set(ALL_COMMANDS)


@pytest.mark.parametrize("name", ALL_COMMANDS)
def test_a_missing_database(name: str, home: Billing, tmp_path: Path) -> None:
    db = tmp_path / "nowhere" / "billing.duckdb"
    result = invoke(tmp_path, name, db, home.settings.accounts_file, PRICES, home.logs)
    if name in NEEDS_DATABASE:
        assert_clean(result, {2}, f"{db}: no such database", "Hint: ")
        assert not db.parent.exists()  # a reader creates nothing
    else:
        assert_clean(result, {0, 1, 2})


@pytest.mark.parametrize("name", ALL_COMMANDS)
def test_a_missing_directory(name: str, home: Billing, tmp_path: Path) -> None:
    """--prices names a directory that does not exist, and so does nightly's --logs."""
    prices, logs = tmp_path / "no-prices", tmp_path / "no-logs"
    result = invoke(tmp_path, name, home.settings.db_path, home.settings.accounts_file, prices, logs)
    if name == "nightly":
        assert_clean(result, {2}, f"{logs}: logs directory does not exist", "Hint: ")
    elif name == "ingest":
        assert_clean(result, {1}, "no such file", "Hint: ")
    elif name in LOADS_PRICES:
        assert_clean(result, {2}, f"{prices}: price table directory does not exist", "Hint: ")
    else:
        assert_clean(result, {0, 1, 2})


@pytest.fixture
def bad_prices(tmp_path: Path) -> Path:
    """The committed price tables, one with a list price that is not upstream x markup."""
    folder = tmp_path / "bad-prices"
    shutil.copytree(PRICES, folder)
    table = sorted(folder.glob("*.toml"))[0]
    text = table.read_text(encoding="utf-8")
    assert 'list_input_per_1m = "7.5"' in text
    table.write_text(text.replace('list_input_per_1m = "7.5"', 'list_input_per_1m = "7.6"', 1), encoding="utf-8")
    return table


@pytest.mark.parametrize("name", ALL_COMMANDS)
def test_a_bad_price_table(name: str, home: Billing, bad_prices: Path, tmp_path: Path) -> None:
    result = invoke(tmp_path, name, home.settings.db_path, home.settings.accounts_file, bad_prices.parent, home.logs)
    if name in LOADS_PRICES:
        assert_clean(result, {1}, f"{bad_prices}: model ", "list_input_per_1m is 7.6", "Hint: ")
    else:
        assert_clean(result, {0, 1, 2})


@pytest.mark.parametrize("name", ALL_COMMANDS)
def test_a_bad_accounts_file(name: str, home: Billing, tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.toml"
    accounts.write_text('[[accounts]]\nid = "a"\nlegal_name = "A"\ndiscount_pct = 12.5\n', encoding="utf-8")
    result = invoke(tmp_path, name, home.settings.db_path, accounts, PRICES, home.logs)
    if name in LOADS_ACCOUNTS:
        assert_clean(result, {1}, f"{accounts}: field accounts.[a].discount_pct", "Hint: ")
    else:
        assert_clean(result, {0, 1, 2})


def test_a_missing_accounts_file_is_a_usage_error(home: Billing, tmp_path: Path) -> None:
    missing = tmp_path / "no-accounts.toml"
    result = invoke(tmp_path, "nightly", home.settings.db_path, missing, PRICES, home.logs)
    assert_clean(result, {2}, f"{missing}: no such accounts file", "--accounts")


def test_replay_verify_without_the_stored_reference_data_is_an_error_not_a_traceback(
    home: Billing, tmp_path: Path
) -> None:
    """The bare ValueError of reference loading, now a BillingError with a hint."""
    import duckdb

    con = duckdb.connect(str(home.settings.db_path))
    con.execute("DELETE FROM reference_files WHERE kind = 'accounts'")
    con.close()
    result = invoke(tmp_path, "replay", home.settings.db_path, home.settings.accounts_file, PRICES, home.logs,
                    ["--verify", "1"])  # fmt: skip
    assert_clean(result, {1}, "is not stored in reference_files", "Hint: ", "backup")


def test_replay_with_an_unknown_price_version_names_the_known_ones(home: Billing, tmp_path: Path) -> None:
    result = invoke(tmp_path, "replay", home.settings.db_path, home.settings.accounts_file, PRICES, home.logs,
                    ["--period", "2026-11", "--prices", "no-such.toml"])  # fmt: skip
    assert_clean(result, {1}, "no price version 'no-such.toml' (known: 2026-11-01)", "prices list")


# -- the error type itself -------------------------------------------------------------------


def test_every_expected_error_class_is_a_billing_error_and_keeps_its_old_base() -> None:
    from core.money import MoneyError
    from pipeline.accounts import AccountsError
    from pipeline.ingest import IngestError
    from pipeline.lock import ConcurrentRunError
    from pipeline.recount import RecountError
    from pipeline.recount._common import VocabularyIntegrityError
    from pipeline.reference import PriceEditError, StoredReferenceError
    from pipeline.replay import ReplayError
    from pipeline.snapshot import LiveDatabaseBusyError, SnapshotMissingError
    from pipeline.spark import SparkEngineError
    from pipeline.statements import StatementError
    from pricing.versions import PriceTableError
    from reports.render import UnsafeResourceError

    old_bases: dict[type[Exception], type[Exception]] = {
        AccountsError: ValueError,
        IngestError: ValueError,
        ConcurrentRunError: RuntimeError,
        MoneyError: ValueError,
        RecountError: ValueError,
        VocabularyIntegrityError: RuntimeError,
        PriceEditError: ValueError,
        StoredReferenceError: ValueError,
        ReplayError: RuntimeError,
        LiveDatabaseBusyError: RuntimeError,
        SnapshotMissingError: FileNotFoundError,
        SparkEngineError: Exception,
        StatementError: RuntimeError,
        PriceTableError: ValueError,
        UnsafeResourceError: RuntimeError,
    }
    for cls, old in old_bases.items():
        assert issubclass(cls, BillingError) and issubclass(cls, old), cls
    assert issubclass(NoInputForDay, BillingError) and NoInputForDay.exit_code == 1
    assert EmptyPeriod.exit_code == 1 and UsageProblem.exit_code == 2 and MissingInput.exit_code == 2


def test_a_billing_error_keeps_message_and_hint_through_pickling() -> None:
    """Statement rendering runs in worker processes: an error crossing back keeps its hint."""
    import pickle

    from pipeline.snapshot import SnapshotMissingError

    error: Any = SnapshotMissingError("no analyst snapshot at x", hint="publish one")
    again = pickle.loads(pickle.dumps(error))
    assert (str(again), again.message, again.hint) == (
        "no analyst snapshot at x",
        "no analyst snapshot at x",
        "publish one",
    )
    assert isinstance(again, FileNotFoundError) and again.strerror is None


def test_core_is_the_bottom_layer() -> None:
    """core/ imports no package of the project, so every package may import it (issue 18)."""
    import ast

    for path in (Path(__file__).resolve().parent.parent / "core").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not {name.split(".")[0] for name in imported} & {"pipeline", "pricing", "reports"}, path


def test_a_date_that_is_not_in_the_calendar_says_so(tmp_path: Path) -> None:
    """2026-11-31 has the right format: the error names the date, not the format."""
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "x.duckdb"), "nightly", "--date", "2026-11-31"])
    assert result.exit_code == 2
    assert "'2026-11-31' is not a calendar date (YYYY-MM-DD)" in result.output
    assert "does not match" not in result.output


def test_a_reader_that_goes_away_ends_the_output_quietly(tmp_path: Path) -> None:
    """`infergate-billing sql ... | head -1`: no "Error: Broken pipe" line after head is done."""
    import subprocess
    import sys

    from tests.conftest import migrated_database

    db = migrated_database(tmp_path / "x.duckdb")
    command = [sys.executable, "-c", "from pipeline.cli import main; main()", "--db", str(db)]
    query = ["sql", "--live", "--format", "csv", "SELECT * FROM range(2000000)"]
    proc = subprocess.Popen([*command, *query], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == b"range\n"
    proc.stdout.close()  # the reader is gone
    stderr = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Error" not in stderr and "Traceback" not in stderr, stderr


@pytest.mark.parametrize("name", ["export", "statements", "replay", "balances"])
def test_a_missing_reference_path_is_a_usage_error_where_the_database_copy_is_read(
    name: str, home: Billing, tmp_path: Path
) -> None:
    """The walkthrough's case: these commands read the database's reference data and ignored a
    --accounts that does not exist (exit 0); a path given and missing is a typo: exit 2."""
    missing = tmp_path / "nope.toml"
    result = invoke(tmp_path, name, home.settings.db_path, missing, PRICES, home.logs)
    assert_clean(result, {2}, f"{missing}: no such file or directory (--accounts)", "Hint: ")
