"""What a run did, as the operator reads it: one line per file, the rating, held attempts,
the snapshot, and a ``summary`` event (JSON); exit 1 when the run reports a problem
(refused inputs, quarantine above the threshold)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from core import console
from pipeline.cli.base import exit_failed

if TYPE_CHECKING:  # the jobs' modules import duckdb: this module is loaded on --help (issue 14)
    from pipeline.credit_notes import CreditNoteReport
    from pipeline.jobs import RunReport
    from pipeline.replay import ReplayReport, VerifyReport
    from pipeline.statements import StatementsReport


def print_report(report: RunReport) -> None:
    """The run's files, rating and outcome; exit 1 after them if it reports a problem (the
    problems the job found and recorded in the run's ledger row, or an unpublished snapshot).
    A nightly's empty day is raised as the :class:`NoInputForDay` it is, with its hint."""
    _print_files(report)
    _print_outcome(report)
    _exit_on_problems(report)


def _print_files(report: RunReport) -> None:
    from pipeline.ingest.files import input_name  # after a run: ingest is imported already

    out = console.current()
    for f in report.files:
        name = input_name(f.path)
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


def _print_outcome(report: RunReport) -> None:
    out = console.current()
    if report.rated:
        r = report.rated
        if not out.is_json:
            out.info(
                f"rated {r.attempts} attempts of {r.requests} requests: {r.billed} billed, "
                f"{r.held} held; {r.periods} account-periods refreshed"
            )
    if report.held_by_reason and not out.is_json:
        held = ", ".join(f"{reason} {count}" for reason, count in report.held_by_reason.items())
        out.info(f"held in the database, all periods (billed once resolved): {held}")
    if report.snapshot and not out.is_json:
        out.info(f"analyst snapshot published: {report.snapshot}")
    out.event(
        "summary",
        step="report",
        counts=report_counts(report),
        held_by_reason=report.held_by_reason,
        snapshot=report.snapshot,
    )
    if not out.is_json:
        problems = len(report.reasons)
        if problems:  # the data stands; the ledger row records exit code 1 and the reasons
            out.info(f"run {report.run_id} committed, with {problems} problem{'s' if problems > 1 else ''} (exit 1):")
        else:
            out.info(f"run {report.run_id} succeeded")


def _exit_on_problems(report: RunReport) -> None:
    out = console.current()
    if report.snapshot_error:
        out.problem(
            f"the run committed, but the analyst snapshot was not published ({report.snapshot_error}); "
            "retry with `infergate-billing snapshot`"
        )
    for problem in report.problems:  # refused inputs, the quarantine rate: the run's ledger row says them
        out.problem(problem)
    if report.empty_day is not None:
        if not out.problems:
            raise report.empty_day  # alone: its usual `Error: ... Hint: ...` line
        out.problem(str(report.empty_day))  # with others: one of the reasons, as in the ledger row
    if out.problems:
        exit_failed()


def report_counts(report: RunReport) -> dict[str, int]:
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
        counts |= {
            "attempts": r.attempts,
            "requests": r.requests,
            "billed": r.billed,
            "held": r.held,
            "periods": r.periods,
        }
    return counts


def print_statements(result: StatementsReport, out_dir: Path) -> None:
    """One line per statement rendered (number, account, totals), then where they went."""
    period, finalize = result.period, result.finalized
    target = out_dir / "statements" / period
    out = console.current()
    if result.already_finalized:
        out.info(f"{period} is finalized: its issued statements are not re-rendered ({target})")
        for path in result.restored:
            out.info(f"restored {path} from the stored issued copy")
        return
    kind = "issued" if finalize else "draft"
    for st in result.statements:
        doc = st.document
        out.info(
            f"{st.number or 'DRAFT':<20} {st.account_id:<20} total {doc.total_due:>12}  "
            f"(usage {doc.usage_total}, adjustments {doc.adjustments_total}"
            + (f", prepaid credit applied -{doc.credits_applied:.2f}" if doc.credits else "")
            + (f", {doc.tax.heading} {doc.tax_amount})" if doc.tax is not None else ")")
        )
    folder = target if finalize else target / "drafts"
    out.info(f"{len(result.statements)} {kind} statement(s) in {folder}")


def print_verify(result: VerifyReport, run_id: int) -> None:
    """``replay --verify``: the steps, then MATCH or the first difference (exit 1 if not MATCH)."""
    out = console.current()
    for line in result.steps:
        out.info(line)
    verdict = f"{result.status}" + (f": {result.first_difference}" if result.first_difference else "")
    out.info(verdict)
    if result.status != "MATCH":
        out.problems.append(f"replay --verify {run_id}: {verdict}")  # already printed above
        exit_failed()


def print_replay(report: ReplayReport, period: str, repriced: bool) -> None:
    """``replay --period``: each issued file compared (exit 1 on a mismatch), or old vs new amounts."""
    out = console.current()
    if not repriced:
        for check in report.checks:
            out.info(f"{check.status:<8} {check.statement_number:<20} {check.kind:<10} {check.path}")
        verdict = f"{'MATCH' if report.matches else 'MISMATCH'}: {len(report.checks)} file(s) compared"
        out.info(verdict)
        if not report.matches:
            mismatched = sum(c.status != "MATCH" for c in report.checks)
            out.problems.append(f"replay {period}: {verdict}, {mismatched} differ")  # already printed above
            exit_failed()
        return
    if report.priced_with is not None:
        version, source, sha, issued_sha = report.priced_with
        out.info(f"repriced with version {version} from {source} (sha256 {sha[:12]})")
        if issued_sha is not None and issued_sha != sha:
            out.warning(
                f"version {version} in {source} is not the one {period} was issued with "
                f"(sha256 {issued_sha[:12]} then, {sha[:12]} now): the differences below are its edits"
            )
    out.info(f"{'account':<20} {'model':<26} {'old':>12} {'new':>12} {'difference':>12}")
    for d in report.diffs:
        out.info(f"{d.account_id:<20} {d.model:<26} {d.old_amount:>12} {d.new_amount:>12} {d.difference:>12}")
    from pipeline.replay import diff_totals

    for account, (old, new) in diff_totals(report).items():
        out.info(f"{account:<20} {'TOTAL':<26} {old:>12} {new:>12} {new - old:>12}")
    out.info(f"wrote {report.written[-1]}")


def print_credit_note(result: CreditNoteReport) -> None:
    """The note's number, what it credits, and where its files went."""
    doc, out = result.document, console.current()
    out.info(
        f"{result.number:<20} for {doc.statement_number}: {len(doc.lines)} line(s) {doc.lines_total}, "
        f"net {doc.net_amount}" + (f" ({doc.refunded} {doc.refunded_label[0].lower()}{doc.refunded_label[1:]}, "
                                   "not credited)" if doc.refunded else "")
        + (f", {doc.tax.heading} {doc.tax_amount}" if doc.tax else "")
        + f", total credited {doc.total_credited}"
    )  # fmt: skip
    for path in result.written:
        out.info(f"wrote {path}")
