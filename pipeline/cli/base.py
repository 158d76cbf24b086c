"""The command group, its global options, and what every command shares.

Shared here: the option decorators and parameter types (``--period`` as a
:class:`core.period.Period`, ``--out`` as an output directory), the settings a job reads,
the read-only connection for listings and exports, and the one translation of expected
failures into ``Error: <message>. Hint: <what to do next>`` (docs/operations.md).
"""

from __future__ import annotations

import dataclasses
import errno
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from core import console
from core.defaults import (
    DEFAULT_ACCOUNTS_FILE,
    DEFAULT_DB,
    DEFAULT_ISSUER_FILE,
    DEFAULT_MAX_QUARANTINE_RATE,
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_TABLES_DIR,
)
from core.errors import BillingError, UsageProblem
from core.money import D, Decimal, MoneyError
from core.period import Period, PeriodError

if TYPE_CHECKING:
    import duckdb

    from pipeline.jobs import Settings

# Issue 14: `--help` and a nightly start without the heavy modules (duckdb for --help; polars,
# pydantic, weasyprint, jinja2, pyarrow, rich, stdnum): every module of ours that pulls one in
# is imported inside the function that uses it, and these defaults, shown in the help, are
# the light core.defaults module (tests/test_cli_start.py checks that no module keeps a copy).

F = TypeVar("F", bound=Callable[..., Any])


def expected_errors() -> tuple[type[BaseException], ...]:
    """Every expected failure is a BillingError; DuckDB and the OS raise their own types, which
    are translated here (a disk that is full or read-only, a database another process holds).
    ``duckdb.Error`` only once DuckDB is loaded: before that no DuckDB error can have happened."""
    duckdb = sys.modules.get("duckdb")
    return (BillingError, OSError) if duckdb is None else (BillingError, duckdb.Error, OSError)


class CommandFailed(click.ClickException):
    """One line on stderr, ``Error: <message>. Hint: <hint>``; exit code 1.

    One line, so that a cron mail or a log grep for ``Error:`` carries what to do as well.
    """

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(f"{message.rstrip('.')}. Hint: {hint}" if hint else message)


class CommandMisused(CommandFailed):
    """The same line for a usage problem; exit code 2, as for Click's own usage errors."""

    exit_code = 2


def _os_hint(exc: BaseException) -> str:
    """What to do about a DuckDB or OS error (no hint where the reason says it all)."""
    duckdb = sys.modules.get("duckdb")
    if duckdb is not None and isinstance(exc, duckdb.Error):
        if "lock" in str(exc).lower():
            return (
                "another process has the database open (a run, or a live query); retry when it has "
                "finished, or query the analyst snapshot with `infergate-billing sql`"
            )
        return ""
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "make that location writable, or point --out / --db elsewhere"
    if isinstance(exc, OSError) and exc.errno == errno.ENOENT:
        return "check the path"
    return ""


def describe_failure(exc: BaseException) -> CommandFailed:
    """The one-line message, the hint and the exit code for an expected failure.

    The message is :func:`safe_error_message`: one line, keys masked, and cut before any log
    data DuckDB quotes in its errors (which could be prompt text); the hint is masked too.
    """
    from pipeline.redact import mask_secrets, safe_error_message

    if isinstance(exc, BillingError):
        hint, code = exc.hint, exc.exit_code
    else:
        hint, code = _os_hint(exc), 1
    hint = mask_secrets(" ".join(hint.split()))
    return (CommandMisused if code == 2 else CommandFailed)(safe_error_message(exc), hint)


def fail_cleanly(func: F) -> F:
    """Turn expected failures into one line on stderr with exit code 1 or 2, never a traceback."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            # a reader that went away (`runs list | head`): Click ends quietly on EPIPE itself
            if not isinstance(exc, expected_errors()) or isinstance(exc, BrokenPipeError):
                raise
            raise describe_failure(exc) from None

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper  # type: ignore[return-value]


class PeriodType(click.ParamType):
    """``--period``: a UTC month ``YYYY-MM``, given to the command as a :class:`Period`."""

    name = "text"  # the metavar stays TEXT, as in every command's help before the type existed

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Period:
        if isinstance(value, Period):
            return value
        try:
            return Period.parse(value)
        except PeriodError:
            # the option's name unquoted (Invalid value for --period: ...), as the message always read
            hint = "/".join(param.opts) if param is not None else None
            raise click.BadParameter(f"{value!r} is not YYYY-MM", ctx, param, param_hint=hint) from None


class AmountType(click.ParamType):
    """An amount in USD, given to the command as an exact Decimal (``core.money.D``)."""

    name = "text"  # the metavar stays TEXT

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Decimal:
        if isinstance(value, Decimal):
            return value
        try:
            return D(value)
        except MoneyError:
            hint = "/".join(param.opts) if param is not None else None
            raise click.BadParameter(f"{value!r} is not an amount", ctx, param, param_hint=hint) from None


class OutDir(click.Path):
    """``--out``: a directory to write into (created when missing; a file there is refused)."""

    def __init__(self) -> None:
        super().__init__(path_type=Path, file_okay=False)


class DayType(click.DateTime):
    """A UTC day ``YYYY-MM-DD`` (click's DateTime, same help), whose error for a well-formed
    string that is no day of the calendar (2026-11-31) says so instead of "does not match"."""

    def __init__(self) -> None:
        super().__init__(["%Y-%m-%d"])

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
            try:
                datetime.strptime(value, "%Y-%m-%d")
            except ValueError:
                self.fail(f"{value!r} is not a calendar date (YYYY-MM-DD)", param, ctx)
        return super().convert(value, param, ctx)


class LogsLocationType(click.Path):
    """``--logs``: a local directory (a ``Path``, as click.Path gives it), or a URI such as
    ``s3a://bucket/logs`` kept as text for the cluster's file system (``--engine spark``)."""

    def __init__(self) -> None:
        super().__init__(path_type=Path, file_okay=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from pipeline.ingest.files import is_uri

        if is_uri(value):
            return value
        return super().convert(value, param, ctx)


PERIOD = PeriodType()
AMOUNT = AmountType()
DAY = DayType()
LOGS_LOCATION = LogsLocationType()


def job_settings(ctx: click.Context, engine: str = "duckdb", spark_attempts: str | None = None) -> Settings:
    from pipeline.spark import require_pyspark

    if engine == "spark":
        require_pyspark()
    elif spark_attempts:
        raise click.UsageError("--spark-attempts needs --engine spark")
    settings: Settings = dataclasses.replace(ctx.obj, engine=engine, spark_attempts=spark_attempts)
    return settings  # progress on a terminal: core.console's bars, not on_file


class ConsoleFailure(click.ClickException):
    """A Click failure shown through the console: one ``Error:`` line when quiet (no usage
    text), a ``finished`` event under --log-format json."""

    def __init__(self, original: click.ClickException) -> None:
        super().__init__(original.format_message())
        self.exit_code = original.exit_code  # type: ignore[misc]  # Click reads it per instance
        self.console = console.current()  # shown after the invocation reset the console

    def show(self, file: Any = None) -> None:
        self.console.failure(self.format_message(), self.exit_code)


class BillingGroup(click.Group):
    """The command group: ends every subcommand with the console's outcome (JSON: a
    ``finished`` event), and routes its failures through the console when quiet or JSON."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            try:
                result = super().invoke(ctx)  # runs cli() first, which configures the console
            except click.exceptions.Exit:
                raise
            except click.ClickException as exc:
                if console.current().quiet or console.current().is_json:
                    raise ConsoleFailure(exc) from None
                raise
            console.current().finished("succeeded", 0)
            return result
        finally:
            console.reset()  # the options hold for this invocation only (CliRunner reuses the process)


@click.group(cls=BillingGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--db",
    "db_path",
    type=click.Path(path_type=Path),
    envvar="INFERGATE_DB",
    default=DEFAULT_DB,
    show_default=True,
    help="DuckDB database file.",
)
@click.option(
    "--prices",
    "prices_dir",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="INFERGATE_PRICES",
    default=DEFAULT_TABLES_DIR,
    show_default="pricing/tables",
    help="Directory of price-table versions (*.toml).",
)
@click.option(
    "--accounts",
    "accounts_file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="INFERGATE_ACCOUNTS",
    default=DEFAULT_ACCOUNTS_FILE,
    show_default=True,
    help="Accounts reference file.",
)
@click.option(
    "--credits",
    "credits_file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="INFERGATE_CREDITS",
    default=None,
    show_default="data/credits.csv if it exists",
    help="Prepaid credit grants file (append-only CSV, docs/credits.md).",
)
@click.option(
    "--issuer",
    "issuer_file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="INFERGATE_ISSUER",
    default=None,
    show_default="data/issuer.toml if it exists, else the built-in issuer",
    help="Issuer reference file: legal name, address, tax IDs, remittance, terms, tax rate.",
)
@click.option(
    "--memory-limit",
    envvar="INFERGATE_MEMORY_LIMIT",
    default=DEFAULT_MEMORY_LIMIT,
    show_default=True,
    help="DuckDB memory_limit for a run (beyond it DuckDB spills to <db>.tmp/ on disk).",
)
@click.option(
    "--force-price-edit",
    is_flag=True,
    help="Accept an edited price version that already priced attempts (re-rates open periods).",
)
@click.option(
    "--snapshot",
    "snapshot_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="INFERGATE_SNAPSHOT",
    default=None,
    show_default="<db>.analyst.duckdb",
    help="Read-only analyst copy of the database, republished after every run.",
)
@click.option("--no-snapshot", is_flag=True, help="Do not publish the analyst snapshot after runs.")
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    envvar="INFERGATE_QUIET",
    help="For cron: print nothing on success, one summary line on failure (exit codes unchanged).",
)
@click.option(
    "--log-format",
    type=click.Choice(console.LOG_FORMATS),
    envvar="INFERGATE_LOG_FORMAT",
    default="text",
    show_default=True,
    help="json: one JSON object per event on stderr (run id, step, counts, timings, outcome).",
)
@click.version_option(package_name="infergate-billing")
@click.pass_context
def cli(
    ctx: click.Context,
    db_path: Path,
    prices_dir: Path,
    accounts_file: Path,
    credits_file: Path | None,
    issuer_file: Path | None,
    memory_limit: str | None,
    force_price_edit: bool,
    snapshot_path: Path | None,
    no_snapshot: bool,
    quiet: bool,
    log_format: str,
) -> None:
    """InferGate usage-metering and billing pipeline.

    \b
    Example (the nightly cron job for yesterday, then the finance CSV):
      infergate-billing --db data/infergate.duckdb --quiet nightly --logs /var/log/infergate
      infergate-billing export --period 2026-11 --out out/
    """
    from pipeline import snapshot
    from pipeline.jobs import Settings

    console.configure(quiet=quiet, log_format=log_format, command=ctx.invoked_subcommand)
    _refuse_missing_reference_paths(ctx)
    snapshot_path = None if no_snapshot else (snapshot_path or snapshot.default_snapshot_path(db_path))
    if snapshot_path is not None and snapshot_path.resolve() == db_path.resolve():
        raise click.BadParameter("the snapshot must be another file than the database", param_hint="--snapshot")
    ctx.obj = Settings(
        db_path=db_path,
        prices_dir=prices_dir,
        accounts_file=accounts_file,
        credits_file=credits_file,
        issuer_file=issuer_file if issuer_file is not None else default_issuer_file(),
        memory_limit=memory_limit,
        force_price_edit=force_price_edit,
        snapshot_path=snapshot_path,
        explicit_reference=frozenset(flag for name, flag in _REFERENCE_OPTIONS if _given(ctx, name)),
    )


# Commands that load reference files themselves and name a missing one in their own words.
LOADS_REFERENCE_FILES = frozenset({"nightly", "rate", "ingest", "import", "prices"})
_REFERENCE_OPTIONS = (
    ("prices_dir", "--prices"),
    ("accounts_file", "--accounts"),
    ("credits_file", "--credits"),
    ("issuer_file", "--issuer"),
)


def _given(ctx: click.Context, name: str) -> bool:
    """Whether option ``name`` was given on the command line or in its environment variable
    (not its default)."""
    source = ctx.get_parameter_source(name)
    return source in (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)


def _refuse_missing_reference_paths(ctx: click.Context) -> None:
    """A reference path given on the command line (or in its environment variable) that does
    not exist is a usage error for every command (exit 2), not silently ignored by those that
    read the database's copy: `statements --issuer /nope.toml` printed the stored issuer."""
    if ctx.invoked_subcommand in LOADS_REFERENCE_FILES:
        return
    for name, flag in _REFERENCE_OPTIONS:
        value = ctx.params.get(name)
        if value is not None and _given(ctx, name) and not Path(value).exists():
            problem = UsageProblem(
                f"{value}: no such file or directory ({flag})",
                hint=f"give an existing path with {flag}, or leave it out to use the default",
            )
            raise describe_failure(problem)


def default_issuer_file() -> Path | None:
    """data/issuer.toml when it exists (run from the repository), else None (the built-in issuer)."""
    return DEFAULT_ISSUER_FILE if DEFAULT_ISSUER_FILE.is_file() else None


def period_option(required: bool = True, help: str = "UTC month, YYYY-MM.") -> Callable[[F], F]:
    return click.option("--period", type=PERIOD, required=required, help=help)


def out_option(help: str | None, default: Path | None = Path("out"), required: bool = False) -> Callable[[F], F]:
    return click.option(
        "--out",
        "out_dir",
        type=OutDir(),
        default=default,
        required=required,
        show_default=default is not None,
        help=help,
    )


def require_database(settings: Settings) -> None:
    """For commands that work on billed data (rate, statements): a missing --db is a typo, not
    a new empty database in which nothing is rated or due."""
    from core.db import DatabaseMissing

    if not Path(settings.db_path).is_file():
        raise DatabaseMissing.at(settings.db_path)


def _migration_range(pending: list[str]) -> str:
    """The pending migrations as an error names them: up to three by name, more as the first
    and the last (an error message is cut at 300 characters, ``redact.safe_error_message``: a
    list growing with every release would lose its end, and ``migrate`` applies them all)."""
    return ", ".join(pending) if len(pending) <= 3 else f"{pending[0]} to {pending[-1]}"


@contextmanager
def read_only(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    """The database opened read-only for a listing or an export. A reader never migrates, so
    a database an earlier version wrote (after an upgrade, before the first run) is refused
    with the command that migrates it, not read with a schema the queries do not expect."""
    from core.db import connect, pending_migrations

    con = connect(settings.db_path, read_only=True)
    try:
        pending = pending_migrations(con)
        if pending:
            raise BillingError(
                f"{settings.db_path} was written by an earlier version: {len(pending)} schema migration(s) not "
                f"applied yet ({_migration_range(pending)})",
                hint=f"apply them with `infergate-billing --db {settings.db_path} migrate` (the next nightly "
                "applies them too); a listing or an export never changes the database",
            )
        yield con
    finally:
        con.close()


engine_option = click.option(
    "--engine",
    type=click.Choice(["duckdb", "spark"]),
    default="duckdb",
    show_default=True,
    help="Where the rating rules run (and, for nightly, where each line is validated): embedded DuckDB, "
    "or Spark (same rules and messages; needs the spark extra, see docs/spark.md).",
)

max_quarantine_option = click.option(
    "--max-quarantine-rate",
    type=click.FloatRange(0, 1),
    default=DEFAULT_MAX_QUARANTINE_RATE,
    show_default=True,
    help="Exit 1 if more than this share of the lines read were quarantined.",
)


def allow_empty_option(help: str) -> Callable[[F], F]:
    return click.option("--allow-empty", is_flag=True, help=help)


def exit_failed(exit_code: int = 1) -> None:
    """End a command whose reasons were given with ``console.problem`` (one line when quiet)."""
    console.current().summarize_failure(exit_code)
    sys.exit(exit_code)
