"""The commands that read the database and print or write what they find: export,
margin, spend-limits, balances, quarantine, runs, sql, snapshot. Each opens the database
read-only (``read_only``) and calls one query or report function."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from core import console
from core.errors import BillingError
from core.money import Decimal
from core.period import Period
from pipeline.cli.base import AMOUNT, allow_empty_option, cli, fail_cleanly, out_option, period_option, read_only
from reports.statement_model import HELD_OR_QUARANTINED
from reports.texttable import cell_text, render_table

if TYPE_CHECKING:
    from pipeline.jobs import Settings

# Shown in --help: copies of their modules' constants, which import duckdb (tests/test_cli_start.py).
DEFAULT_MIN_REJECTIONS = 10  # reports.spend_limits.DEFAULT_MIN_REJECTIONS
QUERY_FORMATS = ("table", "csv", "json", "parquet")  # reports.query_output.FORMATS


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
def export(settings: Settings, period: Period, out_dir: Path, file_format: str, allow_empty: bool) -> None:
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
    from reports.exports import export_period

    with read_only(settings) as con:
        paths, empty = export_period(con, str(period), out_dir, file_format, allow_empty=allow_empty)
    for path in paths:
        console.current().info(f"wrote {path}")
    if empty:
        console.current().warning(f"no billed usage in {period}: the file(s) written hold no rows")


@cli.command()
@period_option()
@out_option("Directory for margin-YYYY-MM.csv.")
@click.pass_obj
@fail_cleanly
def margin(settings: Settings, period: Period, out_dir: Path) -> None:
    """Margin per model: billed revenue against upstream reference cost.

    The cost counts every attempt InferGate paid upstream for, billed or not (failed after
    upstream usage, superseded retries, held). Writes the exact figures to CSV and prints
    them rounded to cents.

    \b
    Example:
      infergate-billing margin --period 2026-11 --out out/
    """
    from reports.margin import margin_report

    with read_only(settings) as con:
        path, text = margin_report(con, str(period), out_dir)
    click.echo(text)
    console.current().info(f"wrote {path}")


@cli.command("spend-limits")
@period_option()
@click.option(
    "--min-rejections",
    type=click.IntRange(min=1),
    default=DEFAULT_MIN_REJECTIONS,
    show_default=True,
    help="List accounts with at least this many 429/403 rejections.",
)
@out_option("Directory for spend-limits-YYYY-MM.csv and rejections-YYYY-MM.csv.")
@click.pass_obj
@fail_cleanly
def spend_limits(settings: Settings, period: Period, min_rejections: int, out_dir: Path) -> None:
    """Accounts above their monthly spend limit, and accounts often rejected (429/403).

    For each account whose exact billed spend went above accounts.spend_limit_usd: by how
    much, and the UTC day its cumulative spend crossed the limit.

    \b
    Example:
      infergate-billing spend-limits --period 2026-11 --min-rejections 10
    """
    from reports.spend_limits import spend_limit_report

    with read_only(settings) as con:
        paths, text = spend_limit_report(con, str(period), out_dir, min_rejections)
    click.echo(text)
    for path in paths:
        console.current().info(f"wrote {path}")


@cli.command("balances")
@click.option(
    "--as-of",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
    help="Instant (UTC unless an offset is given; a date means its 00:00 UTC). Default: now.",
)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "parquet"]), default="table", show_default=True)
@click.option("--out", "out_path", type=click.Path(path_type=Path, dir_okay=False), help="File for csv/parquet.")
@click.option(
    "--threshold", type=AMOUNT, default="0", show_default=True, help="Alert when a balance is below this (USD)."
)
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
    threshold: Decimal,
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
    from reports.balances import BALANCE_COLUMNS, balances, write_balances

    if fmt != "table" and out_path is None:
        raise click.BadParameter("--format csv/parquet needs --out FILE", param_hint="--out")
    when = (as_of or datetime.now(UTC)).replace(tzinfo=(as_of.tzinfo if as_of else None) or UTC).astimezone(UTC)
    with read_only(settings) as con:
        rows = balances(con, when, threshold=threshold, days=days, window_days=window_days)
    if alerts_only:
        rows = [r for r in rows if r.alert]
    if out_path is not None:
        write_balances(rows, out_path, "csv" if fmt == "table" else fmt)
        console.current().info(f"wrote {out_path}")
        return
    click.echo(render_table(BALANCE_COLUMNS, [[cell_text(c) for c in r.row()] for r in rows]))


@cli.command()
@click.option("--reason", type=click.Choice(HELD_OR_QUARANTINED), help="Only this reason code.")
@click.option(
    "--limit", type=click.IntRange(min=0), default=50, show_default=True, help="Records to list (0: only counts)."
)
@click.pass_obj
@fail_cleanly
def quarantine(settings: Settings, reason: str | None, limit: int) -> None:
    """List quarantined records and held attempts, with counts per reason.

    Open quarantined records come first, then held attempts (rated, waiting for an account,
    a price or a usage), oldest first, up to --limit lines in all.

    \b
    Example:
      infergate-billing quarantine --reason bad_timestamp
      infergate-billing quarantine --reason unknown_account --limit 100
    """
    from pipeline import ledger

    with read_only(settings) as con:
        summary = ledger.quarantine_summary(con, reason, limit)
    click.echo("quarantined (open: not yet resolved by a corrected record / all):")
    for code, open_count, total in summary.counts:
        click.echo(f"  {code:<20} {open_count:>6} / {total}")
    if not summary.counts:
        click.echo("  none")
    click.echo("held attempts (billed once resolved):")
    for code, total in summary.held:
        click.echo(f"  {code:<20} {total:>6}")
    if not summary.held:
        click.echo("  none")
    for source, line, code, message in summary.records:
        click.echo(f"{Path(source).name}:{line}: {code}: {message}")
    for source, line, code, event_id, account_id, model, ts in summary.held_records:
        click.echo(
            f"{Path(source).name}:{line}: {code} (held): event {event_id}, account {account_id}, model {model}, "
            f"{ts.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}; billed once resolved"
        )
    listed = len(summary.records) + len(summary.held_records)
    total = sum(open_count for _, open_count, _ in summary.counts) + sum(n for _, n in summary.held)
    if limit and total > listed:
        click.echo(f"({total - listed} more; raise --limit to list them)")


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
    from pipeline import ledger

    with read_only(settings) as con:
        rows = ledger.recent_runs(con, limit)
    click.echo(
        f"{'run':>5}  {'command':<10} {'status':<10} {'started (UTC)':<19}  {'read':>8} {'accepted':>8} "
        f"{'quarant.':>8} {'rated':>8}"
    )
    for r in rows:
        click.echo(
            f"{r.run_id:>5}  {r.command:<10} {r.status:<10} {r.started:<19}  {r.lines_read:>8} {r.accepted:>8} "
            f"{r.quarantined:>8} {r.rated:>8}"
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
    from pipeline import ledger

    with read_only(settings) as con:
        run = ledger.run_detail(con, run_id, settings.db_path)
    for name, value in run.fields:
        click.echo(f"{name:<16} {value}")
    for kind, path, sha, lines, accepted, dups, quarantined, skipped in run.files:
        extra = (
            " (already ingested, skipped)"
            if skipped
            else (f" read {lines} = {accepted} + {dups} dup + {quarantined} quarantined" if lines is not None else "")
        )
        click.echo(f"{kind:<6} {sha}  {path}{extra}")
    for name, rows, digest in run.outputs:
        click.echo(f"wrote  {rows} row(s) of {name}, digest {digest}")


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
      infergate-billing sql --format json "SELECT * FROM monthly_totals" | jq .statement_total_usd
      infergate-billing sql --format parquet --out lines.parquet "SELECT * FROM statement_lines"
    """
    if fmt == "parquet" and out_file is None:
        raise click.UsageError("--format parquet writes a file: give --out FILE.parquet")
    if not query.strip():
        raise click.UsageError('the query is empty: give one SQL query, e.g. "SELECT * FROM monthly_totals"')
    import duckdb

    from pipeline import snapshot
    from reports import query_output

    con = snapshot.open_for_query(settings.db_path, settings.snapshot_path, live)
    try:
        written = query_output.write_query_result(
            con, query, fmt, out_file, max_rows=max_rows, overwrite=overwrite, echo=click.echo
        )
    except duckdb.IOException as exc:
        if live or "No files found that match the pattern" not in str(exc):
            raise
        # the snapshot's views name the lake files by absolute path: the database was moved,
        # or a file was lost (publishing again says which, or re-points the views)
        raise BillingError(
            f"the analyst snapshot reads lake files that are missing or not where it was published: {exc}",
            hint="run `infergate-billing snapshot`: it re-points the views after the database and its .lake "
            "directory were moved or restored, or names the lake files that are missing",
        ) from exc
    finally:
        con.close()
    if out_file is not None and written is not None:
        console.current().info(f"wrote {written} row(s) to {out_file}")
