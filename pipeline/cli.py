"""``infergate-billing``: a thin Click adapter over the jobs in ``pipeline.jobs``.

Commands parse options, call one library function, and print. Expected failures (every
:class:`core.errors.BillingError`, plus DuckDB and OS errors) become one line on stderr,
``Error: <message>. Hint: <what to do next>``, never a traceback. Exit codes: 0 success;
1 quarantine above threshold, a failed check or run, bad reference data, no input for the
day, nothing billed in the period; 2 usage error (bad options, or a file or directory named
on the command line that does not exist). The table of exit codes, ``--quiet`` and
``--log-format json``: docs/operations.md; every message goes through ``core.console``.
"""

from __future__ import annotations

import dataclasses
import errno
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from core import console
from core.errors import BillingError

if TYPE_CHECKING:
    import duckdb

    from pipeline.jobs import RunReport, Settings

# Issue 14: `--help` and a nightly start without the heavy modules (duckdb for --help; polars,
# pydantic for --help, weasyprint, jinja2, pyarrow, rich, stdnum): every module of ours that
# pulls one in is imported inside the command that uses it, and these defaults, shown in the
# help, are copies of the constants of their modules (tests/test_cli_start.py checks equality).
DEFAULT_DB = Path("data/infergate.duckdb")  # core.db.DEFAULT_DB
DEFAULT_MEMORY_LIMIT = "2GB"  # core.db.DEFAULT_MEMORY_LIMIT
DEFAULT_TABLES_DIR = Path(__file__).parent.parent / "pricing" / "tables"  # pricing.versions
DEFAULT_ISSUER_FILE = Path("data/issuer.toml")  # pipeline.issuer.DEFAULT_ISSUER_FILE
DEFAULT_MAX_QUARANTINE_RATE = 0.02  # allow-float: a ratio; pipeline.jobs.DEFAULT_MAX_QUARANTINE_RATE
DEFAULT_MIN_REJECTIONS = 10  # reports.spend_limits.DEFAULT_MIN_REJECTIONS
PERIOD_PATTERN = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")  # reports.finance.PERIOD_PATTERN
QUERY_FORMATS = ("table", "csv", "json", "parquet")  # reports.query_output.FORMATS
IMPORT_GATEWAYS = ("litellm", "openrouter")  # sorted(pipeline.importers.GATEWAYS)

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
            if not isinstance(exc, expected_errors()):
                raise
            raise describe_failure(exc) from None

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper  # type: ignore[return-value]


def _period_bounds(period: str) -> tuple[datetime, datetime]:
    if not PERIOD_PATTERN.match(period):
        raise click.BadParameter(f"{period!r} is not YYYY-MM", param_hint="--period")
    year, month = int(period[:4]), int(period[5:])
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def _settings(ctx: click.Context, engine: str = "duckdb", spark_attempts: str | None = None) -> Settings:
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
    default=Path("data/accounts.toml"),
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
    )


def default_issuer_file() -> Path | None:
    """data/issuer.toml when it exists (run from the repository), else None (the built-in issuer)."""
    return DEFAULT_ISSUER_FILE if DEFAULT_ISSUER_FILE.is_file() else None


def period_option(required: bool = True, help: str = "UTC month, YYYY-MM.") -> Callable[[F], F]:
    return click.option("--period", required=required, help=help)


def out_option(help: str) -> Callable[[F], F]:
    return click.option(
        "--out",
        "out_dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=Path("out"),
        show_default=True,
        help=help,
    )


def require_database(settings: Settings) -> None:
    """For commands that work on billed data (rate, statements): a missing --db is a typo, not
    a new empty database in which nothing is rated or due."""
    from core.db import DatabaseMissing

    if not Path(settings.db_path).is_file():
        raise DatabaseMissing.at(settings.db_path)


@contextmanager
def read_only(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    """The database opened read-only for a listing or an export."""
    from core.db import connect

    con = connect(settings.db_path, read_only=True)
    try:
        yield con
    finally:
        con.close()


engine_option = click.option(
    "--engine",
    type=click.Choice(["duckdb", "spark"]),
    default="duckdb",
    show_default=True,
    help="Where the rating rules run: embedded DuckDB, or Spark (same rules; needs the spark extra, "
    "see docs/spark.md).",
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


def _print_report(report: RunReport, max_rate: float) -> None:  # allow-float: a share of lines
    out = console.current()
    for f in report.files:
        name = Path(f.path).name
        out.event(
            "file",
            step="ingest",
            file=name,
            sha256=f.sha256,
            skipped=f.skipped,
            lines_read=f.lines_read,
            accepted=f.accepted,
            duplicates=f.duplicates,
            quarantined=f.quarantined,
        )
        if out.is_json:
            continue
        if f.skipped:
            out.info(f"{name}: already ingested (sha256 {f.sha256[:12]}), skipped")
        else:
            out.info(
                f"{name}: read {f.lines_read} = accepted {f.accepted} + duplicates "
                f"{f.duplicates} + quarantined {f.quarantined}"
            )
    for f in report.empty_files():
        what = "empty file (0 bytes)" if f.size_bytes == 0 else f"no records in {f.size_bytes} bytes"
        out.warning(f"{f.path}: {what}")
    if report.rated:
        r = report.rated
        if not out.is_json:
            out.info(
                f"rated {r.attempts} attempts of {r.requests} requests: {r.billed} billed, "
                f"{r.held} held; {r.periods} account-periods refreshed"
            )
    if report.held_by_reason and not out.is_json:
        held = ", ".join(f"{reason} {count}" for reason, count in report.held_by_reason.items())
        out.info(f"held (not billed until resolved): {held}")
    if report.snapshot and not out.is_json:
        out.info(f"analyst snapshot published: {report.snapshot}")
    out.event("summary", step="report", counts=_report_counts(report), held_by_reason=report.held_by_reason,
              snapshot=report.snapshot)
    if not out.is_json:
        out.info(f"run {report.run_id} succeeded")
    if report.snapshot_error:
        out.problem(
            f"the run committed, but the analyst snapshot was not published ({report.snapshot_error}); "
            "retry with `infergate-billing snapshot`"
        )
    for reason in report.refused:  # the other files were ingested; exit 1 so that cron notices
        out.problem(reason)
    if report.quarantine_rate() > max_rate:
        out.problem(
            f"{report.quarantined} of {report.lines_read} lines quarantined "
            f"({report.quarantine_rate():.1%} > {max_rate:.1%}); see `infergate-billing quarantine`"
        )
    if out.problems:
        _exit_failed()


def _report_counts(report: RunReport) -> dict[str, int]:
    """The run's counts for the JSON ``summary`` event (the same as ``runs show``)."""
    fresh = [f for f in report.files if not f.skipped]
    counts = {
        "files_read": len(fresh),
        "files_skipped": len(report.files) - len(fresh),
        "lines_read": report.lines_read,
        "accepted": sum(f.accepted for f in fresh),
        "duplicates": sum(f.duplicates for f in fresh),
        "quarantined": report.quarantined,
    }
    if report.rated:
        r = report.rated
        counts |= {"attempts": r.attempts, "requests": r.requests, "billed": r.billed, "held": r.held,
                   "periods": r.periods}
    return counts


def _exit_failed(exit_code: int = 1) -> None:
    """End a command whose reasons were given with ``console.problem`` (one line when quiet)."""
    console.current().summarize_failure(exit_code)
    sys.exit(exit_code)


@cli.command()
@click.argument("files", nargs=-1, required=True)
@max_quarantine_option
@click.pass_context
@fail_cleanly
def ingest(ctx: click.Context, files: tuple[str, ...], max_quarantine_rate: float) -> None:  # allow-float: a share
    """Ingest log files or globs (.jsonl, .jsonl.gz, .jsonl.zst, .parquet) without rating.

    Re-ingesting a file (same bytes) changes nothing; bad lines are quarantined.

    \b
    Example:
      infergate-billing ingest 'logs/requests-2026-11-*.jsonl.gz'
    """
    from pipeline import jobs

    report = jobs.run_ingest(_settings(ctx), files)
    _print_report(report, max_quarantine_rate)


@cli.command()
@click.option("--period", help="Re-rate one UTC month, YYYY-MM.")
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), help="First UTC day (inclusive).")
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]), help="Last UTC day (exclusive).")
@engine_option
@click.option("--spark-attempts", metavar="URI", help="With --engine spark: read attempts from this Parquet path/URI.")
@click.pass_context
@fail_cleanly
def rate(
    ctx: click.Context,
    period: str | None,
    start: datetime | None,
    end: datetime | None,
    engine: str,
    spark_attempts: str | None,
) -> None:
    """Rate (or re-rate) every request with an attempt in a date range.

    Without options, re-rates everything ingested.

    \b
    Example:
      infergate-billing rate --period 2026-11
      infergate-billing rate --from 2026-11-01 --to 2026-11-15
      infergate-billing rate --period 2026-11 --engine spark
    """
    from pipeline import jobs

    if period and (start or end):
        raise click.UsageError("give --period or --from/--to, not both")
    require_database(ctx.obj)
    if period:
        start, end = _period_bounds(period)
    else:
        start = start.replace(tzinfo=UTC) if start else None
        end = end.replace(tzinfo=UTC) if end else None
    _print_report(jobs.run_rate(_settings(ctx, engine, spark_attempts), start, end), 1.0)


@cli.command()
@click.option(
    "--date",
    "day",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="The UTC day whose files to ingest (default: yesterday).",
)
@click.option(
    "--logs",
    "logs_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("data/logs"),
    show_default=True,
    help="Directory holding the day's files (names contain YYYY-MM-DD).",
)
@engine_option
@max_quarantine_option
@allow_empty_option(
    "Succeed on a day without log files, or whose files hold no record (a day without traffic); "
    "without it that is exit 1."
)
@click.pass_context
@fail_cleanly
def nightly(
    ctx: click.Context,
    day: datetime | None,
    logs_dir: Path,
    engine: str,
    max_quarantine_rate: float,  # allow-float: a share of lines, not money
    allow_empty: bool,
) -> None:
    """The nightly job: ingest one day's files, rate what they touch, refresh aggregates.

    Safe to re-run: a second run for the same day changes nothing. Attempts held for an
    unknown account or missing price are re-tried every night. No file for the day, or only
    files without records, is exit 1 (a broken log shipment must not pass as a quiet day)
    unless --allow-empty; each file without records is named in a warning.

    \b
    Example (cron, 02:00 UTC):
      infergate-billing --db /srv/billing/infergate.duckdb nightly --logs /var/log/infergate
      infergate-billing nightly --date 2026-11-29 --logs data/sample_logs
    """
    from pipeline import jobs

    when: date = day.date() if day else jobs.yesterday_utc()
    report = jobs.run_nightly(_settings(ctx, engine), when, logs_dir, allow_empty=allow_empty)
    _print_report(report, max_quarantine_rate)
    if report.files and len(report.empty_files()) == len(report.files) and not allow_empty:
        raise jobs.NoInputForDay(
            f"no records for {when.isoformat()}: every file for the day in {logs_dir} is empty "
            f"(run {report.run_id} recorded them)",
            hint="check the log shipment for that day; if the gateway really had no traffic, pass --allow-empty",
        )


@cli.command()
@period_option()
@out_option("Directory for the CSV.")
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["csv", "parquet"]),
    default="csv",
    show_default=True,
    help="csv: the finance summary; parquet: rated attempts and statement lines, partitioned by period.",
)
@allow_empty_option("Write the files even for a period with no billed usage (header only); without it, exit 1.")
@click.pass_obj
@fail_cleanly
def export(settings: Settings, period: str, out_dir: Path, file_format: str, allow_empty: bool) -> None:
    """Write the finance summary CSV for a period (one row per account with something due).

    A period with no billed usage writes nothing and exits 1 (an empty summary would look
    like a month in which nobody owes anything); --allow-empty writes the header-only file
    and says so.

    With --format parquet, write the period's rated attempts and statement lines instead, as
    hive-partitioned Parquet (OUT/rated_attempts/period=YYYY-MM/data_0.parquet, same for
    statement_lines) with exact DECIMAL columns, for polars or DuckDB.

    \b
    Example:
      infergate-billing export --period 2026-11 --out out/
      infergate-billing export --period 2026-11 --format parquet --out out/parquet
    """
    from reports.finance import write_finance_summary
    from reports.parquet_export import write_parquet

    _period_bounds(period)
    with read_only(settings) as con:
        if file_format == "parquet":
            paths = write_parquet(con, period, out_dir, allow_empty=allow_empty)
            empty = (
                allow_empty
                and not con.execute("SELECT count(*) FROM rated_attempts WHERE period = ?", [period]).fetchall()[0][0]
            )
        else:
            paths = [write_finance_summary(con, period, out_dir, allow_empty=allow_empty)]
            empty = paths[0].read_bytes().count(b"\n") <= 1  # the header line only
    for path in paths:
        console.current().info(f"wrote {path}")
    if empty:
        console.current().warning(f"no billed usage in {period}: the file(s) written hold no rows")


@cli.command("statements")
@period_option()
@click.option("--account", "account_id", help="Only this account (drafts only).")
@click.option("--finalize", is_flag=True, help="Issue numbered, immutable statements for every account.")
@click.option("--issue-date", type=click.DateTime(["%Y-%m-%d"]), help="Date printed as issued (default: today, UTC).")
@out_option("Statements go to OUT/statements/PERIOD/.")
@allow_empty_option(
    "Succeed for a period (or --account) with nothing due: no statement, and with --finalize the "
    "period is closed; without it, exit 1 and nothing is recorded as issued."
)
@click.pass_context
@fail_cleanly
def statements_command(
    ctx: click.Context,
    period: str,
    account_id: str | None,
    finalize: bool,
    issue_date: datetime | None,
    out_dir: Path,
    allow_empty: bool,
) -> None:
    """Render statements (PDF, lines CSV, per-request detail CSV) for a period.

    Without --finalize, writes drafts (marked DRAFT) and can be re-run freely. With
    --finalize, issues numbered statements (IG-YYYY-MM-NNNNNN) for every account and stores
    them with their sha256; from then on the period's statements never change, and records
    that arrive late appear as prior-period adjustments on the account's next statement.

    \b
    Example (month-end):
      infergate-billing statements --period 2026-11            # drafts to review
      infergate-billing statements --period 2026-11 --finalize # issue them
    """
    from pipeline import jobs

    _period_bounds(period)
    if finalize and account_id:
        raise click.UsageError("--finalize issues the whole period; drop --account")
    require_database(ctx.obj)
    result = jobs.run_statements(
        _settings(ctx),
        period,
        out_dir,
        account_id=account_id,
        finalize=finalize,
        issue_date=issue_date.date() if issue_date else None,
        allow_empty=allow_empty,
    )
    target = out_dir / "statements" / period
    if result.already_finalized:
        console.current().info(f"{period} is finalized: its issued statements are not re-rendered ({target})")
        for path in result.restored:
            console.current().info(f"restored {path} from the stored issued copy")
        return
    kind = "issued" if finalize else "draft"
    for st in result.statements:
        doc = st.document
        console.current().info(
            f"{st.number or 'DRAFT':<20} {st.account_id:<20} total {doc.total_due:>12}  "
            f"(usage {doc.usage_total}, adjustments {doc.adjustments_total}"
            + (f", {doc.tax.heading} {doc.tax_amount})" if doc.tax is not None else ")")
        )
    folder = target if finalize else target / "drafts"
    console.current().info(f"{len(result.statements)} {kind} statement(s) in {folder}")


@cli.command()
@period_option(required=False, help="UTC month to replay, YYYY-MM.")
@click.option("--prices", help="Reprice with this version id (from the price tables) or price file (*.toml).")
@click.option("--account", "account_id", help="Only this account.")
@out_option("Replayed files and the diff go to OUT/replay-PERIOD[...]/.")
@click.option("--verify", "verify_run_id", type=int, help="Re-execute run ID from its recorded inputs instead.")
@click.pass_obj
@fail_cleanly
def replay(
    settings: Settings,
    period: str | None,
    prices: str | None,
    account_id: str | None,
    out_dir: Path,
    verify_run_id: int | None,
) -> None:
    """Audit replay: reproduce a billed period exactly, reprice it, or verify a past run.

    Works on a scratch copy; the database is only read. Without --prices, re-rates the
    period with the reference data recorded when it was finalized and checks that every
    issued statement's CSVs and HTML come out byte-identical (exit 1 if not). With
    --prices, writes old vs new amounts per account and model.

    \b
    Example:
      infergate-billing replay --period 2026-11
      infergate-billing replay --period 2026-11 --prices new-prices.toml
      infergate-billing replay --verify 42
    """
    from pipeline import replay as replay_mod

    out = console.current()
    if verify_run_id is not None:
        result = replay_mod.verify_run(settings, verify_run_id)
        for step in result.steps:
            out.info(step)
        verdict = f"{result.status}" + (f": {result.first_difference}" if result.first_difference else "")
        out.info(verdict)
        if result.status != "MATCH":
            out.problems.append(f"replay --verify {verify_run_id}: {verdict}")  # already printed above
            _exit_failed()
        return
    if not period:
        raise click.UsageError("give --period (or --verify RUN_ID)")
    _period_bounds(period)
    report = replay_mod.replay_period(settings, period, out_dir, prices=prices, account=account_id)
    if prices is None:
        for check in report.checks:
            out.info(f"{check.status:<8} {check.statement_number:<20} {check.kind:<10} {check.path}")
        verdict = f"{'MATCH' if report.matches else 'MISMATCH'}: {len(report.checks)} file(s) compared"
        out.info(verdict)
        if not report.matches:
            mismatched = sum(c.status != "MATCH" for c in report.checks)
            out.problems.append(f"replay {period}: {verdict}, {mismatched} differ")  # already printed above
            _exit_failed()
        return
    out.info(f"{'account':<20} {'model':<26} {'old':>12} {'new':>12} {'difference':>12}")
    for d in report.diffs:
        out.info(f"{d.account_id:<20} {d.model:<26} {d.old_amount:>12} {d.new_amount:>12} {d.difference:>12}")
    for account, (old, new) in replay_mod.diff_totals(report).items():
        out.info(f"{account:<20} {'TOTAL':<26} {old:>12} {new:>12} {new - old:>12}")
    out.info(f"wrote {report.written[-1]}")


@cli.command()
@click.option("--reason", help="Only this reason code.")
@click.option("--limit", default=50, show_default=True, help="Records to list (0: only counts).")
@click.pass_obj
@fail_cleanly
def quarantine(settings: Settings, reason: str | None, limit: int) -> None:
    """List quarantined records and held attempts, with counts per reason.

    \b
    Example:
      infergate-billing quarantine --reason bad_timestamp
    """
    with read_only(settings) as con:
        counts = con.execute(
            "SELECT reason, count(*) FILTER (WHERE resolved_run_id IS NULL), count(*) FROM quarantine "
            "WHERE $r IS NULL OR reason = $r GROUP BY reason ORDER BY reason",
            {"r": reason},
        ).fetchall()
        held = con.execute(
            "SELECT reason, count(*) FROM rated_attempts WHERE outcome = 'held' AND ($r IS NULL OR reason = $r) "
            "GROUP BY reason ORDER BY reason",
            {"r": reason},
        ).fetchall()
        click.echo("quarantined (open / all):")
        for code, open_count, total in counts:
            click.echo(f"  {code:<20} {open_count:>6} / {total}")
        click.echo("held attempts:")
        for code, total in held:
            click.echo(f"  {code:<20} {total:>6}")
        rows = con.execute(
            "SELECT source_file, source_line, reason, message FROM quarantine "
            "WHERE resolved_run_id IS NULL AND ($r IS NULL OR reason = $r) "
            "ORDER BY quarantine_id LIMIT $n",
            {"r": reason, "n": limit},
        ).fetchall()
        for source, line, code, message in rows:
            click.echo(f"{Path(source).name}:{line}: {code}: {message}")


@cli.group()
def prices() -> None:
    """List and validate the versioned price tables."""


@prices.command("list")
@click.pass_obj
@fail_cleanly
def prices_list(settings: Settings) -> None:
    """List every price version with its period in force, hash and model prices.

    \b
    Example:
      infergate-billing prices list
    """
    from pricing.versions import load_price_book

    book = load_price_book(settings.prices_dir)
    for loaded in book.versions:
        v = loaded.version
        until = loaded.effective_until.isoformat() if loaded.effective_until else "open"
        click.echo(
            f"{v.version}  {v.effective_from.isoformat()} .. {until}  markup {v.markup}  "
            f"sha256 {loaded.sha256[:16]}  ({loaded.source_file})"
        )
        for m in v.models:
            click.echo(
                f"  {m.model:<26} in {m.list_input_per_1m:>10}  cached {m.cached_input_price():>10}  "
                f"out {m.list_output_per_1m:>10}  per 1M {v.currency}"
            )


@prices.command("validate")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.pass_obj
@fail_cleanly
def prices_validate(settings: Settings, files: tuple[Path, ...]) -> None:
    """Validate the price tables (plus any extra version FILES); exit 1 on the first problem.

    \b
    Example:
      infergate-billing prices validate
      infergate-billing prices validate new-version.toml
    """
    from pricing.versions import load_price_book

    book = load_price_book(settings.prices_dir, files)
    console.current().info(f"ok: {len(book.versions)} price version(s) valid")


@cli.group()
def runs() -> None:
    """The run ledger: every job run with its inputs, hashes, counts and outcome."""


@runs.command("list")
@click.option("--limit", default=20, show_default=True)
@click.pass_obj
@fail_cleanly
def runs_list(settings: Settings, limit: int) -> None:
    """List recent runs, newest first.

    \b
    Example:
      infergate-billing runs list --limit 5
    """
    with read_only(settings) as con:
        rows = con.execute(
            "SELECT run_id, command, status, strftime(started_at, '%Y-%m-%d %H:%M:%S'), "
            "lines_read, accepted, quarantined, rated FROM runs ORDER BY run_id DESC LIMIT ?",
            [limit],
        ).fetchall()
    click.echo(
        f"{'run':>5}  {'command':<10} {'status':<10} {'started (UTC)':<19}  {'read':>8} {'accepted':>8} "
        f"{'quarant.':>8} {'rated':>8}"
    )
    for run_id, command, status, started, read, accepted, quarantined, rated in rows:
        click.echo(
            f"{run_id:>5}  {command:<10} {status:<10} {started:<19}  {read:>8} {accepted:>8} "
            f"{quarantined:>8} {rated:>8}"
        )


@runs.command("show")
@click.argument("run_id", type=int)
@click.pass_obj
@fail_cleanly
def runs_show(settings: Settings, run_id: int) -> None:
    """Show one run: arguments, code version, reference hashes, files with sha256 and counts.

    \b
    Example:
      infergate-billing runs show 42
    """
    with read_only(settings) as con:
        cursor = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
        row = cursor.fetchone()
        if row is None:
            raise BillingError(
                f"no run {run_id} in {settings.db_path}", hint="`infergate-billing runs list` lists the runs"
            )
        names = [d[0] for d in cursor.description]
        files = con.execute(
            "SELECT kind, path, sha256, lines_read, accepted, duplicates, quarantined, skipped "
            "FROM run_files WHERE run_id = ? ORDER BY kind, path",
            [run_id],
        ).fetchall()
        digests = con.execute(
            "SELECT name, rows, digest FROM run_outputs WHERE run_id = ? ORDER BY name", [run_id]
        ).fetchall()
    for name, value in zip(names, row, strict=True):
        click.echo(f"{name:<16} {value}")
    for kind, path, sha, lines, accepted, dups, quarantined, skipped in files:
        extra = (
            " (already ingested, skipped)"
            if skipped
            else (f" read {lines} = {accepted} + {dups} dup + {quarantined} quarantined" if lines is not None else "")
        )
        click.echo(f"{kind:<6} {sha}  {path}{extra}")
    for name, rows, digest in digests:
        click.echo(f"wrote  {rows} row(s) of {name}, digest {digest}")


@cli.command("sample-logs")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("data/sample_logs"),
    show_default=True,
)
@click.option("--seed", default=20261129, show_default=True, help="Random seed (same seed, same bytes).")
@fail_cleanly
def sample_logs_command(out_dir: Path, seed: int) -> None:
    """Write deterministic, realistic sample logs that exercise every rating rule.

    \b
    Example:
      infergate-billing sample-logs --out data/sample_logs
    """
    from pipeline import sample_logs

    for path in sample_logs.write_sample_logs(out_dir, seed):
        console.current().info(f"wrote {path}")


@cli.command("schema-doc")
@fail_cleanly
def schema_doc() -> None:
    """Print the database schema as Markdown, from its COMMENTs (this is docs/schema.md).

    Describes every table, view and column of a database with all migrations applied.

    \b
    Example:
      infergate-billing schema-doc > docs/schema.md
    """
    from reports.schema_doc import current_schema_markdown

    click.echo(current_schema_markdown(), nl=False)


@cli.command()
@click.option("--period", required=True, help="UTC month, YYYY-MM.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("out"),
    show_default=True,
    help="Directory for margin-YYYY-MM.csv.",
)
@click.pass_obj
@fail_cleanly
def margin(settings: Settings, period: str, out_dir: Path) -> None:
    """Margin per model: billed revenue against upstream reference cost.

    The cost counts every attempt InferGate paid upstream for, billed or not (failed after
    upstream usage, superseded retries, held). Writes the exact figures to CSV and prints
    them rounded to cents.

    \b
    Example:
      infergate-billing margin --period 2026-11 --out out/
    """
    from core.db import connect
    from reports.margin import format_margin, margin_rows, margin_totals, write_margin_csv

    _period_bounds(period)
    con = connect(settings.db_path, read_only=True)
    try:
        path = write_margin_csv(con, period, out_dir)
        text = format_margin(margin_rows(con, period), margin_totals(con, period))
    finally:
        con.close()
    click.echo(f"margin {period} (USD, upstream reference prices of the same price version)")
    click.echo(text)
    console.current().info(f"wrote {path}")


@cli.command("spend-limits")
@click.option("--period", required=True, help="UTC month, YYYY-MM.")
@click.option(
    "--min-rejections",
    type=click.IntRange(min=1),
    default=DEFAULT_MIN_REJECTIONS,
    show_default=True,
    help="List accounts with at least this many 429/403 rejections.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("out"),
    show_default=True,
    help="Directory for spend-limits-YYYY-MM.csv and rejections-YYYY-MM.csv.",
)
@click.pass_obj
@fail_cleanly
def spend_limits(settings: Settings, period: str, min_rejections: int, out_dir: Path) -> None:
    """Accounts above their monthly spend limit, and accounts often rejected (429/403).

    For each account whose exact billed spend went above accounts.spend_limit_usd: by how
    much, and the UTC day its cumulative spend crossed the limit.

    \b
    Example:
      infergate-billing spend-limits --period 2026-11 --min-rejections 10
    """
    from core.db import connect
    from reports.spend_limits import format_spend_limits, limit_breaches, rejections, write_spend_limit_csvs

    _period_bounds(period)
    con = connect(settings.db_path, read_only=True)
    try:
        paths = write_spend_limit_csvs(con, period, out_dir, min_rejections)
        text = format_spend_limits(
            period, limit_breaches(con, period), rejections(con, period, min_rejections), min_rejections
        )
    finally:
        con.close()
    click.echo(text)
    for path in paths:
        console.current().info(f"wrote {path}")


@cli.command("balances")
@click.option(
    "--as-of",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"]),
    help="Instant (UTC unless an offset is given; a date means its 00:00 UTC). Default: now.",
)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "parquet"]), default="table", show_default=True)
@click.option("--out", "out_path", type=click.Path(path_type=Path, dir_okay=False), help="File for csv/parquet.")
@click.option("--threshold", default="0", show_default=True, help="Alert when a balance is below this (USD).")
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=7,
    show_default=True,
    help="Alert when projected to run out within DAYS.",
)
@click.option(
    "--window-days",
    type=click.IntRange(min=1),
    default=7,
    show_default=True,
    help="Days of recent usage to project with.",
)
@click.option("--alerts-only", is_flag=True, help="List only accounts with an alert.")
@click.pass_obj
@fail_cleanly
def balances_command(
    settings: Settings,
    as_of: datetime | None,
    fmt: str,
    out_path: Path | None,
    threshold: str,
    days: int,
    window_days: int,
    alerts_only: bool,
) -> None:
    """Prepaid credit balance of every account with grants, as of an instant, and alerts.

    The balance is exact from the credit ledger (docs/credits.md). An account is flagged
    below_threshold, or runs_out_soon when at its usage of the last --window-days days it
    would run out within --days. CSV/Parquet are what the gateway loads to enforce its
    balance limit.

    \b
    Example:
      infergate-billing balances --as-of 2026-12-01 --threshold 50 --days 5
      infergate-billing balances --format csv --out out/balances.csv
    """
    from core.db import connect
    from core.money import D, MoneyError
    from reports.balances import BALANCE_COLUMNS, balances, write_balances
    from reports.texttable import cell_text, render_table

    if fmt != "table" and out_path is None:
        raise click.BadParameter("--format csv/parquet needs --out FILE", param_hint="--out")
    when = (as_of or datetime.now(UTC)).replace(tzinfo=(as_of.tzinfo if as_of else None) or UTC).astimezone(UTC)
    try:
        limit = D(threshold)
    except MoneyError:
        raise click.BadParameter(f"{threshold!r} is not an amount", param_hint="--threshold") from None
    con = connect(settings.db_path, read_only=True)
    try:
        rows = balances(con, when, threshold=limit, days=days, window_days=window_days)
    finally:
        con.close()
    if alerts_only:
        rows = [r for r in rows if r.alert]
    if out_path is not None:
        write_balances(rows, out_path, "csv" if fmt == "table" else fmt)
        console.current().info(f"wrote {out_path}")
        return
    click.echo(render_table(BALANCE_COLUMNS, [[cell_text(c) for c in r.row()] for r in rows]))


@cli.command("snapshot")
@click.pass_obj
@fail_cleanly
def snapshot_command(settings: Settings) -> None:
    """Publish the read-only analyst snapshot of the database now.

    Every run (nightly, ingest, rate) already publishes it after its commit; this is for a
    database changed otherwise. The snapshot is written in DuckDB's v1.5.0 storage format,
    so the duckdb command-line client from PyPI (duckdb-cli 1.5.x) can open it.

    \b
    Example:
      infergate-billing --db data/infergate.duckdb snapshot
      duckdb -readonly data/infergate.analyst.duckdb
    """
    from pipeline import snapshot

    path = snapshot.publish_now(settings.db_path, settings.snapshot_path, settings.memory_limit)
    console.current().info(f"analyst snapshot published: {path}")


@cli.command()
@click.argument("query")
@click.option("--live", is_flag=True, help="Query the live database read-only instead of the snapshot.")
@click.option("--max-rows", default=200, show_default=True, help="Rows to print at most (table format only).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(QUERY_FORMATS),
    default="table",
    show_default=True,
    help="table: padded text; csv: spreadsheet-safe CSV; json: JSON Lines, DECIMAL as strings; "
    "parquet: DuckDB's Parquet with exact DECIMALs (needs --out). csv/json/parquet hold every row.",
)
@click.option(
    "--out",
    "out_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the result to this file (default: stdout); an existing file is refused.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@click.pass_obj
@fail_cleanly
def sql(
    settings: Settings, query: str, live: bool, max_rows: int, fmt: str, out_file: Path | None, overwrite: bool
) -> None:
    """Run one read-only SQL query on the analyst snapshot and print or write the result.

    The snapshot can be read while a nightly run holds the database. --live reads the
    database itself (read-only): refused while a job writes it, and while it is open a job
    cannot start, so keep live queries short. Money (DECIMAL) stays exact in every format.

    \b
    Example:
      infergate-billing sql "SELECT * FROM monthly_totals ORDER BY period"
      infergate-billing sql --format csv --out totals.csv "SELECT * FROM monthly_totals"
      infergate-billing sql --format json "SELECT * FROM monthly_totals" | jq .total_usd
      infergate-billing sql --format parquet --out lines.parquet "SELECT * FROM statement_lines"
    """
    from pipeline import snapshot
    from reports import query_output

    if fmt == "parquet" and out_file is None:
        raise click.UsageError("--format parquet writes a file: give --out FILE.parquet")
    con = snapshot.open_for_query(settings.db_path, settings.snapshot_path, live)
    try:
        written = query_output.write_query_result(
            con, query, fmt, out_file, max_rows=max_rows, overwrite=overwrite, echo=click.echo
        )
    finally:
        con.close()
    if out_file is not None and written is not None:
        console.current().info(f"wrote {written} row(s) to {out_file}")


# --- import: other gateways' logs (docs/imports.md) ---------------------------------------


@cli.command("import")
@click.option(
    "--from",
    "gateway",
    type=click.Choice(IMPORT_GATEWAYS),
    required=True,
    help="The gateway whose logs FILES are.",
)
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Directory for the request-log files (one .jsonl.gz per UTC day) and rejected/.",
)
@click.option("--account", "account_id", required=True, help="The InferGate account id the requests belong to.")
@max_quarantine_option
@fail_cleanly
def import_command(
    gateway: str,
    files: tuple[Path, ...],
    out_dir: Path,
    account_id: str,
    max_quarantine_rate: float,  # allow-float: a share of rows, not money
) -> None:
    """Convert LiteLLM spend logs or OpenRouter generations into InferGate request logs.

    LiteLLM: rows of its LiteLLM_SpendLogs table as CSV (psql \\copy ... CSV HEADER), a
    JSON list (/spend/logs) or JSON Lines. OpenRouter: /api/v1/generation objects as JSON
    Lines or a JSON list. Writes OUT/<gateway>-<file>-<YYYY-MM-DD>.jsonl.gz, which
    `nightly --date D --logs OUT` ingests; rows that cannot be mapped go to
    OUT/rejected/<gateway>-<file>.jsonl with file, row, field and reason. Exits 1 when more
    than --max-quarantine-rate of the rows were rejected. The mapping: docs/imports.md.

    \b
    Example:
      infergate-billing import --from litellm data/imports/litellm_spendlogs.csv \\
          --account acct_acme --out out/imported
      infergate-billing nightly --date 2026-11-20 --logs out/imported
    """
    from pipeline import importers

    report = importers.run_import(gateway, files, out_dir, account_id)
    for result in report.files:
        console.current().info(
            f"{result.path.name}: read {result.rows_read} = converted {result.converted} + rejected {result.rejected}"
        )
        for path in result.outputs:
            console.current().info(f"  wrote {path}")
        if result.rejects_file is not None:
            console.current().info(f"  rejected rows: {result.rejects_file}")
    if report.rows_read and report.rejected > max_quarantine_rate * report.rows_read:
        raise click.ClickException(
            f"{report.rejected} of {report.rows_read} rows rejected, above --max-quarantine-rate {max_quarantine_rate}"
        )


def main() -> None:
    cli(prog_name="infergate-billing")
