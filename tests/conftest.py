"""Shared test helpers: inline log records, inline reference data, one-call job runs.

Tests write their input next to their assertions (beancount style): a few records built with
:func:`record`, written with :func:`write_log`, run through the real jobs, and the exact
amounts asserted were computed by hand in the test.
"""

from __future__ import annotations

import atexit
import gzip
import hashlib
import json
import os
import shutil
import tempfile
import textwrap
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import Result

from core.db import connect
from pipeline import jobs
from pipeline.jobs import RunReport, Settings

ACCOUNTS_TOML = textwrap.dedent(
    """
    [groups.default]
    multiplier = "1"
    [groups.enterprise]
    multiplier = "0.9"
    [groups.partner]
    multiplier = "1.1"

    [[accounts]]
    id = "acct_plain"
    legal_name = "Plain Ltd"
    address = ["1 Main St", "Springfield"]
    email = "ap@plain.example"

    [[accounts]]
    id = "acct_discount"
    legal_name = "Discount GmbH"
    discount_pct = "12.5"

    [[accounts]]
    id = "acct_enterprise"
    legal_name = "Enterprise Corp"
    group = "enterprise"

    [[accounts]]
    id = "acct_partner"
    legal_name = "Partner Inc"
    group = "partner"
    discount_pct = "5"

    [[accounts]]
    id = "acct_override"
    legal_name = "Override Ltd"

    [[accounts.overrides]]
    model = "openai/gpt-5.5"
    effective_from = 2026-11-15T00:00:00Z
    input_per_1m = "6"
    cached_input_per_1m = "0.75"
    output_per_1m = "36"
    """
)

TESTS_DIR = Path(__file__).resolve().parent

# --- test tiers and parallel runs (README, "Tests") ---------------------------------------------
# `make test-fast` runs `pytest -m "not slow"`: the unit and SQL tests, in process, what you run
# while working. A module is slow when its tests start processes (the CLI, a JVM, the benchmark),
# kill runs, or load inputs sized to stress memory. Listed here by path, not marked in each file,
# so the tiers read in one place; a single slow test in a fast module is marked where it is.
SLOW_MODULES = frozenset(
    {
        "test_bench.py",  # the benchmark on a tiny day, in a subprocess
        "test_cli.py",  # the installed CLI end to end: a process per command
        "test_input_limits.py",  # 5 MB lines, 200K lines, 10K accounts under a memory limit
        "test_lean_install.py",  # imports every module and every --help in a subprocess
        "test_secrets.py",  # planted secrets through the CLI, a killed run's spill files
        # many nightly runs each (a one-record nightly costs about 0.6-1.0 CPU-s, docs/performance.md):
        "test_analyst.py",  # the sample nights, the documented commands through duckdb-cli
        "test_bounds.py",  # every edge value through a nightly; every single bad line of a run
        "test_empty_input.py",  # empty days and periods through nightly, statements and export
        "test_hostile_input.py",  # fuzz, nested and hostile lines, each through a nightly
        "test_incremental.py",  # nights in every split against one night of everything
        "test_jobs.py",  # exit codes through the CLI, a second run at once
        "test_json_content.py",  # repeated keys and respelled records, field by field
        "test_properties.py",  # hypothesis over whole runs
        "test_replay.py",  # the demo flow through the CLI, then replays of it
        "test_snapshot.py",  # snapshots while a CLI run holds the database
        "test_lake.py",  # several nightlies per test, each publishing the lake and the snapshot
        "test_credits.py",  # grants through nightlies, statements and replays
        "test_credit_properties.py",  # hypothesis over drawdowns and finalized periods
        "test_credit_balances.py",  # balances at many instants of a finalized and an open month
        "test_credit_note_after_refund.py",  # issued months, refunds and credit notes, PDFs, replays
        "test_credit_note_rule3.py",  # three issued months per scenario, credit notes, replays
        "test_credit_restore.py",  # issued months with grants, late retries, replays
        "test_credit_skipped_months.py",  # months without statements: issued months, replays
        "test_credit_note_rule4.py",  # four issued months per scenario, credit notes, replays
        "test_credit_note_rule5.py",  # three or four issued months per scenario, credit notes, replays
        "test_credit_note_rule6.py",  # four issued months per scenario, credit notes, replays
        "test_credit_histories.py",  # seven issued months per history, grants, credit notes
        "test_credit_note_rule7.py",  # four issued months per scenario, grants, credit notes, replays
        "test_credit_note_rule8.py",  # four issued months per scenario, grants, credit notes, replays
        "test_credit_note_rule9.py",  # five or six issued months per scenario, grants, credit notes, replays
        "test_credit_note_rule9_review.py",  # five or six issued months per history, grants, credit notes
        "test_credit_note_rule9_review9v3.py",  # five issued months, two notes, every run verified
        "test_credit_vat_cent.py",  # three issued months, a refund and a credit note
        "test_credit_open_defects.py",  # five issued months per scenario, grants, credit notes
        "test_adjustment_detail.py",  # issued statements of layouts 7 and 8, their detail CSVs, replays
        "test_rated_store.py",  # re-rates and retired lake files across several nightlies
        "test_lines_by_unit_price.py",  # issued statements of layouts 5 and 6, the CLI in a subprocess
        "test_credits_and_tax.py",  # a nightly and an issued statement with credit and tax
        "test_invoicing.py",  # issued statements rendered to PDF, replays
        "invoice/test_einvoice.py",  # issued e-invoices rendered to PDF/A-3, replays and a verify
        "invoice/test_credit_notes.py",  # issued statements, credit notes rendered to PDF, replays
        "invoice/test_credit_note_einvoice.py",  # a finalized month, four credit notes, PDF/A-3, replays
        "test_cli_operations.py",  # the installed CLI under cron, a pseudo-terminal
        "test_cli_sql_formats.py",  # the sample nights, then sql in every format
        "test_statements.py",  # a finalize killed at every point, in a subprocess
        "reports/test_parquet_export.py",  # nightly runs, then Parquet read back through polars
        "faults/test_concurrency.py",  # two real nightly processes
        "faults/test_crash.py",  # SIGKILLs a real nightly at every fault point
        "faults/test_io_errors.py",  # full and read-only disks under the CLI
        "faults/test_statements_faults.py",  # killed render workers
        "spark/test_engines_agree.py",  # the rating SQL on a local Spark (a JVM)
        "spark/test_nightly_on_executors.py",  # nightlies validating on a local Spark
        "spark/test_parse_on_executors.py",  # parsing on a local Spark
        "spark/test_remote_logs.py",  # nightlies reading --logs as a URI on a local Spark
        "spark/test_spark_kill.py",  # kills a nightly while Spark writes
        "spark/test_spark_bench.py",  # the spark-bench smoke on a local Spark
        "spark/test_spark_session.py",  # starts JVMs
    }
)

# --- test depth ----------------------------------------------------------------------------------
# Whole-run properties (each example is one or more nightlies) run at a smoke depth in `make test`
# and at full depth in `make fuzz` (INFERGATE_TEST_DEPTH=full), like the soak: the same strategies
# and assertions, fewer examples. Pure properties (a function or one query per example) keep
# their counts everywhere: they are cheap.
FULL_DEPTH = os.environ.get("INFERGATE_TEST_DEPTH", "") == "full"


def examples(full: int) -> int:
    """Hypothesis examples for a property whose examples are whole runs: ``full`` under
    ``make fuzz``, a sixth of it (at least 2) in ``make test``: a smoke that the strategy and
    the assertions run; the depth is ``make fuzz``'s (a third was ~10% of the suite's time)."""
    return full if FULL_DEPTH else max(2, full // 6)


def superseded(rule: int, *marks: pytest.MarkDecorator) -> Any:
    """A parameter of a superseded credit-note money rule compared beside the current one
    (notes issued with it re-execute with it, so its figures must not drift): run at full
    depth only, ``make fuzz``. Each superseded rule keeps at least one test in ``make test``
    that runs it as a plain parameter, where its figures (or its refusal) differ from a later
    rule's (rule 8: tests/test_credit_note_rule9_review.py's first test; rule 7:
    tests/test_credit_note_rule8.py's first; rule 6: tests/test_credit_note_rule7.py's last;
    rules 3-5: tests/test_credit_note_rule4.py's first); the seven repeats marked with this cost
    ~75 s of the suite's test time (2026-12-07)."""
    depth = deep("the current rule beside it, and one test per superseded rule")
    return pytest.param(rule, marks=[*marks, depth], id=str(rule))


def deep(covered_by: str) -> pytest.MarkDecorator:
    """A slow test of a path that a `make test` test already runs (``covered_by`` names it):
    run at full depth only, ``make fuzz``. Used for the Spark tests that stand on the
    engines-agree suite (README "Tests" lists them; ~185 s of `make test`'s test time,
    2026-12-07) and for :func:`superseded`'s repeats."""
    return pytest.mark.skipif(not FULL_DEPTH, reason=f"make fuzz runs it; make test covers it with {covered_by}")


# --- PDFs in the money scenario modules ----------------------------------------------------------
# These modules assert figures (lines, totals, credit, refunds, what replay reproduces), never
# what a page looks like, and each scenario issues several statements and credit notes: their
# WeasyPrint layout was a third of a profiled scenario's time (~0.5 s a PDF; ~0.015 s for the
# stand-in), and these modules take 17% less time with the stand-in (605 -> 499 s). Their
# PDFs are rendered by a stand-in: a real, one-line PDF of the SHA-256 of the HTML WeasyPrint
# would have been given (so replay's byte comparison still compares every byte of the HTML, and
# e-invoices still embed and validate their XML in a real PDF/A-3). The HTML itself is built as
# always. What a statement's PDF looks like is the render, statement, invoicing, CLI and replay
# modules' business: they render with WeasyPrint, as does a test marked `weasyprint` here.
PDF_STAND_IN_MODULES = frozenset(
    {
        "test_adjustment_detail.py",
        "test_credit_balances.py",
        "test_credit_histories.py",
        "test_credit_note_rule3.py",
        "test_credit_note_rule4.py",
        "test_credit_note_rule5.py",
        "test_credit_note_rule6.py",
        "test_credit_note_rule7.py",
        "test_credit_note_rule8.py",
        "test_credit_note_rule9.py",
        "test_credit_note_rule9_review.py",
        "test_credit_note_rule9_review9v3.py",
        "test_credit_open_defects.py",
        "test_credit_vat_cent.py",
        "test_credit_properties.py",
        "test_credit_restore.py",
        "test_credit_skipped_months.py",
        "test_credits.py",
        "test_credits_and_tax.py",
        "test_lines_by_unit_price.py",
    }
)


@pytest.fixture(autouse=True, scope="module")
def _pdf_stand_in(request: pytest.FixtureRequest) -> Iterator[None]:
    """Module-scoped (and autouse, so before the module's other fixtures): the scenarios a
    module builds once render with the stand-in too."""
    if request.path.relative_to(TESTS_DIR).as_posix() not in PDF_STAND_IN_MODULES:
        yield
        return
    from reports import pdf

    weasyprint_pdf = pdf.pdf_bytes

    def stand_in(html: str, **options: Any) -> bytes:
        digest = hashlib.sha256(html.encode("utf-8")).hexdigest()
        return weasyprint_pdf(f"<p>stand-in PDF of HTML {digest}</p>", **options)

    stand_in.weasyprint = weasyprint_pdf  # type: ignore[attr-defined]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pdf, "pdf_bytes", stand_in)
        yield


@pytest.fixture(autouse=True)
def _weasyprint_when_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test marked ``weasyprint`` in a stand-in module reads what its PDFs print: it renders
    them with WeasyPrint (the scenario it builds itself; not one its module built once)."""
    if request.node.get_closest_marker("weasyprint") is None:
        yield
        return
    from reports import pdf

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pdf, "pdf_bytes", getattr(pdf.pdf_bytes, "weasyprint", pdf.pdf_bytes))
        yield


def _listed_modules_exist() -> None:
    missing = sorted(m for m in SLOW_MODULES | PDF_STAND_IN_MODULES if not (TESTS_DIR / m).is_file())
    if missing:
        raise pytest.UsageError(f"tests/conftest.py lists test modules that do not exist: {', '.join(missing)}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _listed_modules_exist()
    for item in items:
        module = item.path.relative_to(TESTS_DIR).as_posix()
        if module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


# --- parallel runs: one JVM ---------------------------------------------------------------------
# `--dist loadfile` keeps a module on one worker, but the two modules that use the session-scoped
# Spark fixture (tests/spark/conftest.py) could land on both workers and start a JVM each (its
# start is most of that fixture's ~48 s). Under loadfile the tests/spark/ folder is one unit.
_ONE_WORKER_FOLDERS = ("tests/spark/",)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadfile":
        return None  # xdist's own scheduler
    from xdist.scheduler import LoadFileScheduling

    class FolderAwareLoadFile(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            folder = next((f for f in _ONE_WORKER_FOLDERS if nodeid.startswith(f)), None)
            return folder or super()._split_scope(nodeid)

    return FolderAwareLoadFile(config, log)


_counter = iter(range(1, 10**9))


def record(**fields: Any) -> dict[str, Any]:
    """A valid, billable OpenAI-shaped attempt; override any field (None removes it)."""
    n = next(_counter)
    base: dict[str, Any] = {
        "event_id": f"evt-{n}",
        "request_id": f"req-{n}",
        "attempt": 1,
        "ts": "2026-11-20T12:00:00Z",
        "account_id": "acct_plain",
        "api_key_id": "key_1",
        "model": "openai/gpt-5.5",
        "provider": "openai",
        "status": 200,
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100},
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None or k in ("usage", "finish_reason", "error_code")}


def usage(
    prompt: int, completion: int, cached: int = 0, reasoning: int | None = None, image: int | None = None
) -> dict[str, Any]:
    """OpenAI usage shape."""
    result: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
    details = {k: v for k, v in (("reasoning_tokens", reasoning), ("image_tokens", image)) if v is not None}
    if details:
        result["completion_tokens_details"] = details
    return result


def write_log(path: Path, items: Iterable[dict[str, Any] | str]) -> Path:
    """Write records (dicts) and raw lines (str) as JSON Lines; .gz by suffix."""
    text = "".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in items)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode(), mtime=0))
    else:
        path.write_text(text, encoding="utf-8")
    return path


_template: Path | None = None


def migrated_database(path: Path) -> Path:
    """Put an empty, fully migrated billing database at ``path``: a file copy of one that this
    test process migrated once through :func:`core.db.connect`.

    A fresh database runs every migration (about 0.3-0.46 CPU-s, most of it the ~470 ``COMMENT
    ON`` statements, each a DuckDB statement of its own); a copy costs a few milliseconds and
    opens as the same catalog with nothing pending (tests/test_db.py checks both). Tests of
    migrating itself (test_db.py, the fault points of the first run) create theirs the real way.
    """
    global _template
    if _template is None:
        folder = Path(tempfile.mkdtemp(prefix="infergate-template-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        candidate = folder / "migrated.duckdb"
        connect(candidate).close()  # closing checkpoints: the whole database is in this one file
        _template = candidate
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template, path)
    return path


class Billing:
    """A scratch billing database with inline reference data, driven through the real jobs.

    A new database starts as a copy of a migrated one (:func:`migrated_database`) unless
    ``migrated=False``: then the first job creates and migrates it, as in production. An
    existing one (a root copied from another test's) is kept as it is.
    """

    def __init__(self, root: Path, migrated: bool = True, settings: Settings | None = None) -> None:
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        if settings is not None:  # a root restored from a built one (:class:`BuiltOnce`): as it was
            self.settings = settings
            return
        accounts = root / "accounts.toml"
        accounts.write_text(ACCOUNTS_TOML, encoding="utf-8")
        self.settings = Settings(db_path=root / "billing.duckdb", accounts_file=accounts)
        if migrated and not self.settings.db_path.exists():  # a root copied with its database keeps it
            migrated_database(self.settings.db_path)

    def log(self, name: str, items: Iterable[dict[str, Any] | str]) -> Path:
        return write_log(self.logs / name, items)

    def nightly(self, day: str = "2026-11-20", allow_empty: bool = False) -> RunReport:
        return jobs.run_nightly(self.settings, date.fromisoformat(day), self.logs, allow_empty=allow_empty)

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        con = connect(self.settings.db_path, read_only=True)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    def one(self, sql: str, params: Any = None) -> Any:
        rows = self.query(sql, params)
        assert len(rows) == 1, rows
        return rows[0][0] if len(rows[0]) == 1 else rows[0]

    def records(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        """The rows of ``sql`` as dicts by column name."""
        con = connect(self.settings.db_path, read_only=True)
        try:
            cur = con.execute(sql, params)
            columns = [d[0] for d in cur.description]
            return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
        finally:
            con.close()

    def rated(self, event_id: str) -> dict[str, Any]:
        rows = self.records("SELECT * FROM rated_attempts WHERE event_id = ?", [event_id])
        assert rows, f"{event_id} not rated"
        return rows[0]


class BuiltOnce:
    """A billing state built once per module and restored before each test that uses it.

    Building a state runs its nightlies and statement runs (a one-record nightly costs about
    0.7 CPU-s, a finalize about 1 CPU-s of rendering); restoring it is a file copy of a few
    milliseconds. The runs record absolute paths (the log files, the output folder), so every
    test works in the same directory, emptied and copied back from a pristine copy of the
    built one first: a test never sees another's writes. The copy is of the whole directory:
    the database, its lake (``<db stem>.lake/``), its logs, reference files and outputs.
    Under ``--dist loadfile`` a module's tests run one after another in one process, so one
    directory per module is safe (as for tests/test_replay.py's ``issued``).
    """

    def __init__(self, factory: pytest.TempPathFactory, name: str, build: Callable[[Billing], Any]) -> None:
        self.work = factory.mktemp(name) / "work"
        billing = Billing(self.work)
        self.value = build(billing)  # what the build returns (documents, run ids), for the tests
        self.settings = billing.settings  # as the build left them (an issuer file, credits)
        self._pristine = factory.mktemp(f"{name}-pristine") / "work"
        shutil.copytree(self.work, self._pristine, symlinks=True)

    def restore(self) -> Billing:
        """The built state, fresh: the working directory replaced by a copy of the pristine one."""
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.copytree(self._pristine, self.work, symlinks=True)
        return Billing(self.work, settings=self.settings)


def built_once(name: str, build: Callable[[Billing], Any]) -> Any:
    """A test fixture named ``name``: ``build``'s state (its docstring says what it is) as a
    :class:`BuiltOnce`, built on its first use in a module, a fresh copy (a :class:`Billing`)
    for each test. For the states the tests use as they are; a state whose build returns
    values, or that another continues (:class:`BuiltOn`), keeps its own module-scoped fixture."""

    def restored(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Billing:
        states: dict[str, BuiltOnce] = request.module.__dict__.setdefault("_built_once_states", {})
        if name not in states:
            states[name] = BuiltOnce(tmp_path_factory, name, build)
        return states[name].restore()

    restored.__doc__ = f":func:`{build.__name__}`, built once per module, a fresh copy for each test."
    return pytest.fixture(restored, name=name)


def cli_in_process(*args: str, cwd: Path) -> Result:
    """The CLI in this process from working directory ``cwd``, stdout and stderr apart.

    For flows whose subject is what the commands do, not the process: the run is the same
    code path as the installed command (the entry point calls the same Click group), and the
    tokenizers, imports and migrations a fresh process pays for again (about 2 CPU-s a
    recounting command) are loaded once per test process. Kills, cross-process locks and
    start-up checks keep real processes.
    """
    from click.testing import CliRunner

    from pipeline.cli import cli

    runner = CliRunner(env={"INFERGATE_DB": None, "INFERGATE_QUIET": None, "INFERGATE_LOG_FORMAT": None})
    before = Path.cwd()
    os.chdir(cwd)
    try:
        return runner.invoke(cli, list(args), prog_name="infergate-billing", catch_exceptions=False)
    finally:
        os.chdir(before)


@pytest.fixture
def billing(tmp_path: Path) -> Billing:
    return Billing(tmp_path)


@pytest.fixture
def memory_db() -> duckdb.DuckDBPyConnection:
    return connect(":memory:")


def as_before_migration_027(db: Path) -> None:
    """Turn a closed database into what main wrote before migration 027: its rated rows in the
    table ``rated_attempts``, none in the lake but the analysts' copies (left out here: the next
    publication writes them again)."""
    from core.attempt_store import RATED, lake_dir, stored_table

    with connect(db) as con:
        con.execute(f"INSERT INTO {stored_table(con, RATED)} SELECT * FROM rated_attempts")
    as_before_migration_039(db)  # the attempts files as main wrote them then
    with duckdb.connect(str(db)) as con:
        con.execute("DELETE FROM lake_files WHERE table_name IN ('rated_attempts', 'rated_replaced')")
        con.execute("DELETE FROM lake_exports")
        con.execute("DELETE FROM rating_state WHERE key IN ('rated_in_lake_from_run', 'lake_values_on_read_from_run')")
        con.execute("ALTER TABLE rated_before_lake RENAME TO rated_attempts")
        con.execute("DROP TABLE held_changes")
        con.execute("DROP TABLE rated_hidden")
        con.execute("DROP TABLE lake_file_bounds")
        con.execute("DELETE FROM schema_migrations WHERE name >= '027'")
    for folder in ("rated_attempts", "rated_replaced"):
        shutil.rmtree(lake_dir(db) / folder, ignore_errors=True)


def as_before_migration_045(db: Path) -> None:
    """Turn a closed database into what main wrote before migration 045: every stored
    attempt's lookup keys in the table ``attempt_keys``, none in the lake."""
    from core.attempt_store import ATTEMPT_KEYS, lake_dir, stored_table

    with connect(db) as con:
        con.execute("CREATE TEMP TABLE every_key AS SELECT * FROM attempt_keys")
        table = stored_table(con, ATTEMPT_KEYS)
        con.execute(f"DELETE FROM {table}")
        con.execute(f"INSERT INTO {table} SELECT * FROM every_key ORDER BY run_id")
    with duckdb.connect(str(db)) as con:
        con.execute("DELETE FROM lake_files WHERE table_name = 'attempt_keys'")
        con.execute("DELETE FROM rating_state WHERE key = 'attempt_keys_in_lake_from_run'")
        con.execute("ALTER TABLE attempt_keys_before_lake RENAME TO attempt_keys")
        con.execute("DELETE FROM schema_migrations WHERE name >= '045'")
    shutil.rmtree(lake_dir(db) / "attempt_keys", ignore_errors=True)


def as_before_migration_039(db: Path) -> None:
    """Turn a closed database into what main wrote before migration 039: its rated files
    carrying the four charge columns and the unit prices as DECIMAL, its attempts files the
    usage objects as they are (each file's columns those of its table, in order), and no marker
    of the layout that computes or decodes them on read."""
    from core.attempt_store import LAKE_VIEWS, file_select, lake_dir, stored_columns

    as_before_migration_045(db)
    with duckdb.connect(str(db)) as con:
        con.execute("SET TimeZone = 'UTC'")
        lake = lake_dir(db)
        for spec in LAKE_VIEWS:
            columns = [(c, t) for c, t in stored_columns(con, spec) if c not in spec.key_columns]
            select = file_select(spec, columns, computed=True)
            for (relative,) in con.execute("SELECT path FROM lake_files WHERE table_name = ?", [spec.view]).fetchall():
                path = lake / str(relative)
                con.execute(
                    f"CREATE OR REPLACE TEMP TABLE old_layout AS SELECT {select} FROM read_parquet('{path}') AS r"
                )
                con.execute(f"COPY old_layout TO '{path}' (FORMAT parquet, COMPRESSION zstd, PARQUET_VERSION v2)")
                con.execute("UPDATE lake_files SET bytes = ? WHERE path = ?", [path.stat().st_size, relative])
        con.execute("DELETE FROM rating_state WHERE key = 'lake_values_on_read_from_run'")
        con.execute("DELETE FROM schema_migrations WHERE name >= '039'")


def edit_stored_attempts(
    db: Path, assignments: str, where: str, params: dict[str, Any] | None = None, table: str = "attempts"
) -> int:
    """``UPDATE <table> SET <assignments> WHERE <where>`` on the stored rows of a lake table
    (``attempts`` or ``rated_attempts``) of a closed database, in its table and in its lake
    files (core/attempt_store.py), as a tamperer or an older version would have left them; the
    number of rows changed."""
    from core.attempt_store import LAKE_VIEWS, database_file, lake_dir, stored_table

    [spec] = [spec for spec in LAKE_VIEWS if spec.view == table]
    con = duckdb.connect(str(db))
    try:
        con.execute("SET TimeZone = 'UTC'")
        row = con.execute(f"UPDATE {stored_table(con, spec)} SET {assignments} WHERE {where}", params).fetchone()
        changed = int(row[0]) if row else 0
        lake = lake_dir(database_file(con) or db)
        for (relative,) in con.execute("SELECT path FROM lake_files WHERE table_name = ?", [table]).fetchall():
            path = lake / str(relative)
            con.execute(f"CREATE OR REPLACE TEMP TABLE edited AS SELECT * FROM read_parquet('{path}')")
            row = con.execute(f"UPDATE edited SET {assignments} WHERE {where}", params).fetchone()
            if row and row[0]:
                changed += int(row[0])
                con.execute(f"COPY edited TO '{path}' (FORMAT parquet, COMPRESSION zstd)")
                # and the manifest's size, which the database checks on opening
                con.execute("UPDATE lake_files SET bytes = ? WHERE path = ?", [path.stat().st_size, relative])
    finally:
        con.close()
    return changed


class BuiltOn(BuiltOnce):
    """A state built on ``base``'s: ``build`` continues from a fresh copy of it, and what it
    leaves is this state's pristine copy. The runs record absolute paths, so both states live in
    the base's working directory (each restore replaces it; a module's tests run one after
    another): the base's nightlies and statement runs are run once for the two."""

    def __init__(
        self, factory: pytest.TempPathFactory, name: str, base: BuiltOnce, build: Callable[[Billing], Any]
    ) -> None:
        self.work = base.work
        billing = base.restore()
        self.value = build(billing)
        self.settings = billing.settings
        self._pristine = factory.mktemp(f"{name}-pristine") / "work"
        shutil.copytree(self.work, self._pristine, symlinks=True)
