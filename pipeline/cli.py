"""``infergate-billing``: a thin Click adapter over the jobs in ``pipeline.jobs``.

Commands parse options, call one library function, and print. Library errors become clear
one-line messages; exit codes: 0 success, 1 quarantine above threshold or a failed check,
2 usage error.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import duckdb

from pipeline import jobs, sample_logs
from pipeline.accounts import AccountsError
from pipeline.db import DEFAULT_DB, connect
from pipeline.ingest import IngestError
from pipeline.jobs import DEFAULT_MAX_QUARANTINE_RATE, RunReport, Settings
from pipeline.lock import ConcurrentRunError
from pipeline.redact import safe_error_message
from pricing.versions import DEFAULT_TABLES_DIR, PriceTableError, load_price_book
from reports.finance import PERIOD_PATTERN, write_finance_summary

F = TypeVar("F", bound=Callable[..., Any])
EXPECTED_ERRORS = (ConcurrentRunError, IngestError, PriceTableError, AccountsError, duckdb.Error, OSError)


def fail_cleanly(func: F) -> F:
    """Turn library errors into one-line messages with exit code 1, never a traceback.

    The message is :func:`safe_error_message`: one line, keys masked, and cut before any log
    data DuckDB quotes in its errors (which could be prompt text).
    """

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EXPECTED_ERRORS as exc:
            raise click.ClickException(safe_error_message(exc)) from None

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


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj
    if sys.stderr.isatty():

        def show(path: Path) -> None:
            click.echo(f"  staged {path.name}", err=True)

        return dataclasses.replace(settings, on_file=show)
    return settings


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
    "--memory-limit",
    envvar="INFERGATE_MEMORY_LIMIT",
    default=None,
    help="DuckDB memory_limit, e.g. 2GB (beyond it DuckDB spills to disk).",
)
@click.version_option(package_name="infergate-billing")
@click.pass_context
def cli(ctx: click.Context, db_path: Path, prices_dir: Path, accounts_file: Path, memory_limit: str | None) -> None:
    """InferGate usage-metering and billing pipeline.

    \b
    Example (the nightly cron job for yesterday, then the finance CSV):
      infergate-billing --db data/infergate.duckdb nightly --logs /var/log/infergate
      infergate-billing export --period 2026-11 --out out/
    """
    ctx.obj = Settings(db_path=db_path, prices_dir=prices_dir, accounts_file=accounts_file, memory_limit=memory_limit)


max_quarantine_option = click.option(
    "--max-quarantine-rate",
    type=click.FloatRange(0, 1),
    default=DEFAULT_MAX_QUARANTINE_RATE,
    show_default=True,
    help="Exit 1 if more than this share of the lines read were quarantined.",
)


def _print_report(report: RunReport, max_rate: float) -> None:
    for f in report.files:
        name = Path(f.path).name
        if f.skipped:
            click.echo(f"{name}: already ingested (sha256 {f.sha256[:12]}), skipped")
        else:
            click.echo(
                f"{name}: read {f.lines_read} = accepted {f.accepted} + duplicates "
                f"{f.duplicates} + quarantined {f.quarantined}"
            )
    if report.rated:
        r = report.rated
        click.echo(
            f"rated {r.attempts} attempts of {r.requests} requests: {r.billed} billed, "
            f"{r.held} held; {r.periods} account-periods refreshed"
        )
    if report.held_by_reason:
        held = ", ".join(f"{reason} {count}" for reason, count in report.held_by_reason.items())
        click.echo(f"held (not billed until resolved): {held}")
    click.echo(f"run {report.run_id} succeeded")
    if report.quarantine_rate() > max_rate:
        click.echo(
            f"error: {report.quarantined} of {report.lines_read} lines quarantined "
            f"({report.quarantine_rate():.1%} > {max_rate:.1%}); see `infergate-billing quarantine`",
            err=True,
        )
        sys.exit(1)


@cli.command()
@click.argument("files", nargs=-1, required=True)
@max_quarantine_option
@click.pass_context
@fail_cleanly
def ingest(ctx: click.Context, files: tuple[str, ...], max_quarantine_rate: float) -> None:
    """Ingest log files or globs (.jsonl, .jsonl.gz, .jsonl.zst, .parquet) without rating.

    Re-ingesting a file (same bytes) changes nothing; bad lines are quarantined.

    \b
    Example:
      infergate-billing ingest 'logs/requests-2026-11-*.jsonl.gz'
    """
    report = jobs.run_ingest(_settings(ctx), files)
    _print_report(report, max_quarantine_rate)


@cli.command()
@click.option("--period", help="Re-rate one UTC month, YYYY-MM.")
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), help="First UTC day (inclusive).")
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]), help="Last UTC day (exclusive).")
@click.pass_context
@fail_cleanly
def rate(ctx: click.Context, period: str | None, start: datetime | None, end: datetime | None) -> None:
    """Rate (or re-rate) every request with an attempt in a date range.

    Without options, re-rates everything ingested.

    \b
    Example:
      infergate-billing rate --period 2026-11
      infergate-billing rate --from 2026-11-01 --to 2026-11-15
    """
    if period and (start or end):
        raise click.UsageError("give --period or --from/--to, not both")
    if period:
        start, end = _period_bounds(period)
    else:
        start = start.replace(tzinfo=UTC) if start else None
        end = end.replace(tzinfo=UTC) if end else None
    _print_report(jobs.run_rate(_settings(ctx), start, end), 1.0)


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
@max_quarantine_option
@click.pass_context
@fail_cleanly
def nightly(ctx: click.Context, day: datetime | None, logs_dir: Path, max_quarantine_rate: float) -> None:
    """The nightly job: ingest one day's files, rate what they touch, refresh aggregates.

    Safe to re-run: a second run for the same day changes nothing. Attempts held for an
    unknown account or missing price are re-tried every night.

    \b
    Example (cron, 02:00 UTC):
      infergate-billing --db /srv/billing/infergate.duckdb nightly --logs /var/log/infergate
      infergate-billing nightly --date 2026-11-29 --logs data/sample_logs
    """
    when: date = day.date() if day else jobs.yesterday_utc()
    _print_report(jobs.run_nightly(_settings(ctx), when, logs_dir), max_quarantine_rate)


@cli.command()
@click.option("--period", required=True, help="UTC month, YYYY-MM.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("out"),
    show_default=True,
    help="Directory for the CSV.",
)
@click.pass_obj
@fail_cleanly
def export(settings: Settings, period: str, out_dir: Path) -> None:
    """Write the finance summary CSV for a period (one row per account).

    \b
    Example:
      infergate-billing export --period 2026-11 --out out/
    """
    _period_bounds(period)
    con = connect(settings.db_path, read_only=True)
    try:
        path = write_finance_summary(con, period, out_dir)
    finally:
        con.close()
    click.echo(f"wrote {path}")


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
    con = connect(settings.db_path, read_only=True)
    try:
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
    finally:
        con.close()


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
    book = load_price_book(settings.prices_dir, files)
    click.echo(f"ok: {len(book.versions)} price version(s) valid")


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
    con = connect(settings.db_path, read_only=True)
    try:
        rows = con.execute(
            "SELECT run_id, command, status, strftime(started_at, '%Y-%m-%d %H:%M:%S'), "
            "lines_read, accepted, quarantined, rated FROM runs ORDER BY run_id DESC LIMIT ?",
            [limit],
        ).fetchall()
    finally:
        con.close()
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
    con = connect(settings.db_path, read_only=True)
    try:
        cursor = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
        row = cursor.fetchone()
        if row is None:
            raise click.ClickException(f"no run {run_id}")
        names = [d[0] for d in cursor.description]
        files = con.execute(
            "SELECT kind, path, sha256, lines_read, accepted, duplicates, quarantined, skipped "
            "FROM run_files WHERE run_id = ? ORDER BY kind, path",
            [run_id],
        ).fetchall()
    finally:
        con.close()
    for name, value in zip(names, row, strict=True):
        click.echo(f"{name:<16} {value}")
    for kind, path, sha, lines, accepted, dups, quarantined, skipped in files:
        extra = (
            " (already ingested, skipped)"
            if skipped
            else (f" read {lines} = {accepted} + {dups} dup + {quarantined} quarantined" if lines is not None else "")
        )
        click.echo(f"{kind:<6} {sha}  {path}{extra}")


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
    for path in sample_logs.write_sample_logs(out_dir, seed):
        click.echo(f"wrote {path}")


def main() -> None:
    cli(prog_name="infergate-billing")
