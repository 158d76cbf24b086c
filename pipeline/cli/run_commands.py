"""The commands that run a job and record it in the ledger: ingest, rate, nightly,
statements, replay. Each parses its options, calls one function of ``pipeline.jobs`` or
``pipeline.replay``, and prints the result with ``pipeline.cli.report``."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from core.errors import UsageProblem
from core.period import Period
from pipeline.cli.base import (
    DAY,
    LOGS_LOCATION,
    allow_empty_option,
    cli,
    engine_option,
    fail_cleanly,
    job_settings,
    max_quarantine_option,
    out_option,
    period_option,
    require_database,
)

if TYPE_CHECKING:
    from pipeline.jobs import Settings

from pipeline.cli.report import print_credit_note, print_replay, print_report, print_statements, print_verify


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

    print_report(jobs.run_ingest(job_settings(ctx), files, max_quarantine_rate=max_quarantine_rate))


@cli.command()
@period_option(required=False, help="Re-rate one UTC month, YYYY-MM.")
@click.option("--from", "start", type=DAY, help="First UTC day (inclusive).")
@click.option("--to", "end", type=DAY, help="Last UTC day (exclusive).")
@engine_option
@click.option("--spark-attempts", metavar="URI", help="With --engine spark: read attempts from this Parquet path/URI.")
@click.pass_context
@fail_cleanly
def rate(
    ctx: click.Context,
    period: Period | None,
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
    if period and (start or end):
        raise click.UsageError("give --period or --from/--to, not both")
    if start and end and end <= start:
        raise click.UsageError(f"--to {end:%Y-%m-%d} is not after --from {start:%Y-%m-%d} (--to is exclusive)")
    require_database(ctx.obj)
    if period:
        start, end = period.bounds()
    else:
        start = start.replace(tzinfo=UTC) if start else None
        end = end.replace(tzinfo=UTC) if end else None
    from pipeline import jobs

    print_report(jobs.run_rate(job_settings(ctx, engine, spark_attempts), start, end))


@cli.command()
@click.option(
    "--date",
    "day",
    type=DAY,
    default=None,
    help="The UTC day whose files to ingest (default: yesterday).",
)
@click.option(
    "--logs",
    "logs_dir",
    type=LOGS_LOCATION,
    default=Path("data/logs"),
    show_default=True,
    help="Directory holding the day's files (names contain YYYY-MM-DD); with --engine spark also a URI "
    "the cluster reads (s3a://, hdfs://, file://).",
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
    logs_dir: Path | str,
    engine: str,
    max_quarantine_rate: float,  # allow-float: a share of lines, not money
    allow_empty: bool,
) -> None:
    """The nightly job: ingest one day's files, rate what they touch, refresh aggregates.

    Safe to re-run: a second run for the same day changes nothing. Attempts held for an
    unknown account or missing price are rated again by the first nightly after the reference
    data changes (add the account or the price; `quarantine` lists them). No file for the day, or only
    files without records, is exit 1 (a broken log shipment must not pass as a quiet day)
    unless --allow-empty; each file without records is named in a warning.

    \b
    Example (cron, 02:00 UTC):
      infergate-billing --db /srv/billing/infergate.duckdb nightly --logs /var/log/infergate
      infergate-billing nightly --date 2026-11-29 --logs data/sample_logs
      infergate-billing nightly --engine spark --logs s3a://gateway-logs/infergate/
    """
    from pipeline import jobs

    when: date = day.date() if day else jobs.yesterday_utc()
    report = jobs.run_nightly(
        job_settings(ctx, engine), when, logs_dir, allow_empty=allow_empty, max_quarantine_rate=max_quarantine_rate
    )
    print_report(report)


@cli.command("statements")
@period_option()
@click.option("--account", "account_id", help="Only this account (drafts only).")
@click.option("--finalize", is_flag=True, help="Issue numbered, immutable statements for every account.")
@click.option("--issue-date", type=DAY, help="Date printed as issued (default: today, UTC).")
@out_option("Statements go to OUT/statements/PERIOD/.")
@allow_empty_option(
    "Succeed for a period (or --account) with nothing due: no statement, and with --finalize the "
    "period is closed; without it, exit 1 and nothing is recorded as issued."
)
@click.pass_context
@fail_cleanly
def statements_command(
    ctx: click.Context,
    period: Period,
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
    if finalize and account_id:
        raise click.UsageError("--finalize issues the whole period; drop --account")
    require_database(ctx.obj)
    from pipeline import jobs

    result = jobs.run_statements(
        job_settings(ctx),
        str(period),
        out_dir,
        account_id=account_id,
        finalize=finalize,
        issue_date=issue_date.date() if issue_date else None,
        allow_empty=allow_empty,
    )
    print_statements(result, out_dir)


@cli.command("credit-note")
@click.option("--statement", "statement_number", required=True, help="The issued statement to credit.")
@click.option("--reason", required=True, help="Why it is credited (printed on the credit note).")
@click.option("--line", "line_nos", type=click.IntRange(min=1), multiple=True,
              help="Credit line N: the Nth row of the statement's lines CSV (repeat for more).")  # fmt: skip
@click.option("--all", "all_lines", is_flag=True, help="Credit every line not yet credited.")
@click.option("--issue-date", type=DAY, help="Date printed as issued (default: today, UTC).")
@out_option("The credit note goes to OUT/credit_notes/PERIOD/ (the statement's period).")
@click.pass_context
@fail_cleanly
def credit_note_command(
    ctx: click.Context,
    statement_number: str,
    reason: str,
    line_nos: tuple[int, ...],
    all_lines: bool,
    issue_date: datetime | None,
    out_dir: Path,
) -> None:
    """Issue a credit note against an issued statement: some of its lines, or all of them.

    Numbered in its own gap-free sequence (CN-YYYY-NNNNNN), immutable, stored with its PDF
    and lines CSV; each statement line can be credited once. Tax follows the statement's
    treatment (docs/invoicing.md, Credit notes).

    \b
    Example:
      infergate-billing credit-note --statement IG-2026-11-000042 --line 2 --line 3 \\
          --reason "Outage on 12 November: output tokens not delivered" --out out/
      infergate-billing credit-note --statement IG-2026-11-000042 --all --reason "Billed twice"
    """
    from pipeline.credit_notes import issue_credit_note  # the renderer: imported when a note is issued

    require_database(ctx.obj)
    if bool(line_nos) == all_lines:
        raise UsageProblem(
            "give the lines to credit, or --all, not both nor neither",
            hint="--line N (repeatable; N = row N of the statement's lines CSV) or --all",
        )
    result = issue_credit_note(
        job_settings(ctx),
        statement_number,
        reason,
        out_dir,
        line_nos=list(line_nos) if line_nos else None,
        issue_date=issue_date.date() if issue_date else None,
    )
    print_credit_note(result)


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
    period: Period | None,
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

    if verify_run_id is not None:
        print_verify(replay_mod.verify_run(settings, verify_run_id), verify_run_id)
        return
    if not period:
        raise click.UsageError("give --period (or --verify RUN_ID)")
    report = replay_mod.replay_period(settings, str(period), out_dir, prices=prices, account=account_id)
    print_replay(report, str(period), repriced=prices is not None)
