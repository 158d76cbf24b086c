"""Commands about the reference data and the tools around the pipeline: prices, import,
sample-logs, schema-doc, lake."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from core import console
from pipeline.cli.base import cli, fail_cleanly, max_quarantine_option, out_option, require_database

if TYPE_CHECKING:
    from pipeline.jobs import Settings

IMPORT_GATEWAYS = ("litellm", "openrouter")  # sorted(pipeline.importers.GATEWAYS), which imports duckdb


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

    # a FILE that is one of the tables themselves is validated with them, not as a second copy
    tables = Path(settings.prices_dir).resolve()
    book = load_price_book(settings.prices_dir, tuple(f for f in files if f.resolve().parent != tables))
    console.current().info(f"ok: {len(book.versions)} price version(s) valid")


@cli.command("sample-logs")
@out_option(None, default=Path("data/sample_logs"))
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


@cli.command("migrate")
@click.pass_obj
@fail_cleanly
def migrate_command(settings: Settings) -> None:
    """Apply the schema migrations an upgrade brought, now (every run does it first anyway).

    Listings and exports read the database without changing it, so after an upgrade they
    refuse a database an earlier version wrote until it is migrated: by this command, or by
    the next nightly. All pending migrations apply in one transaction; none pending, nothing
    changes. It takes the run lock: refused while a run is writing.

    \b
    Example:
      infergate-billing --db data/infergate.duckdb migrate
    """
    from core.db import connect, pending_migrations
    from pipeline.lock import exclusive_run

    require_database(settings)
    with exclusive_run(settings.db_path, "migrate"):
        con = connect(settings.db_path, read_only=True)
        try:
            pending = pending_migrations(con)
        finally:
            con.close()
        connect(settings.db_path).close()  # a read-write open applies them, in one transaction
    console.current().info(
        f"applied {len(pending)} migration(s): {', '.join(pending)}" if pending else "no migration pending"
    )


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


@cli.command("import")
@click.option(
    "--from",
    "gateway",
    type=click.Choice(IMPORT_GATEWAYS),
    required=True,
    help="The gateway whose logs FILES are.",
)
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@out_option(
    "Directory for the request-log files (one .jsonl.gz per UTC day) and rejected/.", default=None, required=True
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
    Example (the shipped sample holds 2 rows that cannot be mapped, on purpose: they are
    written to out/imported/rejected/, and accepted here with --max-quarantine-rate 0.5):
      infergate-billing import --from litellm data/imports/litellm_spendlogs.csv \\
          --account acct_acme --out out/imported --max-quarantine-rate 0.5
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
            f"{report.rejected} of {report.rows_read} rows rejected, above --max-quarantine-rate "
            f"{max_quarantine_rate}; the converted files are written, the rejected rows (file, row, field, reason) "
            f"are in {out_dir / 'rejected'}"
        )


@cli.group()
def lake() -> None:
    """The Parquet lake beside the database (<db>.lake/): what it holds, and deleting what no
    view reads any more."""


@lake.command("status")
@click.pass_obj
@fail_cleanly
def lake_status_command(settings: Settings) -> None:
    """Files and bytes per lake folder, and the retired rated files a vacuum can delete.

    \b
    Example:
      infergate-billing lake status
    """
    from pipeline.cli.base import read_only
    from pipeline.vacuum import lake_status

    with read_only(settings) as con:
        rows = lake_status(con)
    click.echo(f"{'folder':<16} {'files read':>10} {'MB':>10}   retired by a re-rate (on disk: files, MB; deleted)")
    for row in rows:
        retired = (
            f"   {row.retired_on_disk}, {row.retired_size / 1e6:,.2f} MB; {row.retired_deleted} deleted"
            if row.folder == "rated_attempts"
            else ""
        )
        click.echo(f"{row.folder:<16} {row.files:>10} {row.size / 1e6:>10,.2f}{retired}")
    click.echo("(`lake vacuum --dry-run` lists the retired files it can delete now)")


@lake.command("vacuum")
@click.option(
    "--older-than",
    "older_than_hours",
    type=click.IntRange(min=0, max=24 * 366 * 10),
    default=24,
    show_default=True,
    help="Hours since the first snapshot published without a file (an older one may still be open).",
)
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.pass_obj
@fail_cleanly
def lake_vacuum_command(settings: Settings, older_than_hours: int, dry_run: bool) -> None:
    """Delete the retired rated files (every row re-rated by a later run), and the keys files
    runs merged into others.

    A re-rate (new reference data, a price edit, `rate`) retires the rated files of its days;
    they stay on disk for the analyst snapshot published before it. This deletes those that no
    snapshot has named for --older-than hours (the first publication after the re-rate dropped
    them) and the published snapshot does not name. Give it the nightly's --snapshot if that is
    not the default. The database is not changed (its manifest keeps which run wrote and which
    replaced each file); it holds the run lock, so run it from cron after the nightly.

    \b
    Example:
      infergate-billing lake vacuum --dry-run
      infergate-billing --quiet lake vacuum --older-than 48
    """
    from datetime import timedelta

    from pipeline import snapshot
    from pipeline.vacuum import vacuum

    published = settings.snapshot_path or snapshot.default_snapshot_path(settings.db_path)
    report = vacuum(settings.db_path, published, timedelta(hours=older_than_hours), dry_run=dry_run)
    out = console.current()
    verb = "would delete" if dry_run else "deleted"
    for file in report.deleted:
        out.info(f"{verb} {file.path} (run {file.run_id}, retired by run {file.retired_by}, {file.size:,} bytes)")
    out.info(f"{verb} {len(report.deleted)} retired file(s), {report.freed / 1e6:,.2f} MB")
    if report.merged_keys:
        size = f", {sum(p.stat().st_size for p in report.merged_keys) / 1e6:,.2f} MB" if dry_run else ""
        out.info(f"{verb} {len(report.merged_keys)} keys file(s) merged into others by later runs{size}")
    if report.kept_unpublished:
        out.info(
            f"kept {len(report.kept_unpublished)}: no snapshot has been published since they were retired "
            "(publish one: infergate-billing snapshot)"
        )
    if report.kept_recent:
        out.info(f"kept {len(report.kept_recent)}: the snapshot that dropped them is under {older_than_hours} h old")
    if report.kept_for_snapshot:
        out.info(f"kept {len(report.kept_for_snapshot)}: the published snapshot ({published}) still reads them")
