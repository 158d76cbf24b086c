"""Issue 19, operations: --quiet for cron, --log-format json, progress only on a terminal.

The runs use the shared scratch database (conftest ``Billing``) through Click's CliRunner,
which gives the command no terminal, as cron does; the two checks that need a real process
(what a cron line prints, a bar on a real pseudo-terminal, which modules get imported) run
the installed command in a subprocess.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from core import console, timing
from pipeline.cli import cli
from tests.conftest import Billing, record, usage

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).with_name("infergate-billing"))
DAY = "2026-11-20"


def invoke(billing: Billing, *args: str) -> Result:
    runner = CliRunner(env={"INFERGATE_DB": None, "INFERGATE_QUIET": None, "INFERGATE_LOG_FORMAT": None})
    common = ["--db", str(billing.settings.db_path), "--accounts", str(billing.settings.accounts_file)]
    return runner.invoke(cli, [*common, *args], catch_exceptions=False)


def nightly(billing: Billing, *options: str, rate: str | None = None) -> Result:
    extra = ["--max-quarantine-rate", rate] if rate else []
    return invoke(billing, *options, "nightly", "--date", DAY, "--logs", str(billing.logs), *extra)


def good_day(billing: Billing) -> None:
    billing.log(f"requests-{DAY}.jsonl", [record(usage=usage(1000, 100)), record(usage=usage(2000, 200))])


def half_broken_day(billing: Billing) -> None:
    """One good line and one that is not JSON: 1 of 2 lines quarantined (50.0%)."""
    billing.log(f"requests-{DAY}.jsonl", [record(usage=usage(1000, 100)), "{not json"])


def events(stderr: str) -> list[dict[str, Any]]:
    """Every stderr line parsed on its own (a line that is not JSON fails the test)."""
    return [json.loads(line) for line in stderr.splitlines()]


# --- the default output is what it was ------------------------------------------------------


def test_default_text_output_is_unchanged(billing: Billing) -> None:
    half_broken_day(billing)
    result = nightly(billing, "--no-snapshot")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"requests-{DAY}.jsonl: read 2 = accepted 1 + duplicates 0 + quarantined 1",
        "rated 1 attempts of 1 requests: 1 billed, 0 held; 1 account-periods refreshed",
        "run 1 committed, with 1 problem (exit 1):",
    ]
    assert result.stderr.splitlines() == [
        "error: 1 of 2 lines quarantined (50.0% > 2.0%); see `infergate-billing quarantine`"
    ]


def test_the_ledger_row_says_what_cron_saw(billing: Billing) -> None:
    """A run whose data committed but that exits 1 (too many lines quarantined, a refused
    link) records exit code 1 and the reasons; its status stays succeeded (its data stands)."""
    half_broken_day(billing)
    (billing.logs / f"link-{DAY}.jsonl").symlink_to(billing.logs / f"requests-{DAY}.jsonl")
    assert nightly(billing, "--no-snapshot").exit_code == 1
    status, exit_code, message = billing.one("SELECT status, exit_code, message FROM runs")
    assert (status, exit_code) == ("succeeded", 1)
    assert message.endswith("; 1 of 2 lines quarantined (50.0% > 2.0%); see `infergate-billing quarantine`"), message
    assert f"link-{DAY}.jsonl" in message.split("; ")[0]
    good_day_run = invoke(billing, "nightly", "--date", DAY, "--logs", str(billing.logs), "--max-quarantine-rate", "1")
    assert good_day_run.exit_code == 1  # the link is still refused: still recorded
    assert billing.one("SELECT exit_code FROM runs WHERE run_id = 2") == 1


# --- --quiet ----------------------------------------------------------------------------------


def test_quiet_success_prints_nothing(billing: Billing) -> None:
    good_day(billing)
    result = nightly(billing, "--quiet")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
    assert billing.one("SELECT count(*) FROM rated_attempts WHERE outcome = 'billed'") == 2  # it did run


def test_quiet_quarantine_above_the_threshold_is_one_line_and_exit_1(billing: Billing) -> None:
    half_broken_day(billing)
    result = nightly(billing, "--quiet")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: run 1 (nightly): 1 of 2 lines quarantined (50.0% > 2.0%); see `infergate-billing quarantine`"
    ]


def test_quiet_several_problems_still_make_one_line(billing: Billing, tmp_path: Path) -> None:
    """A refused input (a symlink) and the quarantine threshold: two reasons, one line."""
    half_broken_day(billing)
    (billing.logs / f"link-{DAY}.jsonl").symlink_to(billing.logs / f"requests-{DAY}.jsonl")
    result = nightly(billing, "--quiet")
    assert result.exit_code == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: run 1 (nightly): ") and "; " in line and "quarantined" in line


def test_quiet_empty_day_with_a_refused_link_names_both(billing: Billing) -> None:
    """A day whose only file is empty, and a link beside it: the one --quiet line names both
    reasons, as the run's ledger row does (the empty day alone keeps its `Error:` line)."""
    (billing.logs / f"requests-{DAY}.jsonl").write_bytes(b"")
    (billing.logs / f"link-{DAY}.jsonl").symlink_to(billing.logs / f"requests-{DAY}.jsonl")
    result = nightly(billing, "--quiet")
    assert result.exit_code == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: run 1 (nightly): ") and "symbolic link" in line and "no records for" in line
    message = billing.one("SELECT message FROM runs")
    assert "symbolic link" in message and "no records for" in message


@pytest.mark.parametrize(
    ("logs", "code", "needle"),
    [
        ("empty", 1, f"Error: no log file for {DAY}"),  # a day without its file: exit 1
        ("missing", 2, "logs directory does not exist"),  # a wrong --logs: a usage problem, exit 2
    ],
)
def test_quiet_broken_input_is_one_line_with_unchanged_exit_code(
    billing: Billing, tmp_path: Path, logs: str, code: int, needle: str
) -> None:
    directory = billing.logs if logs == "empty" else tmp_path / "no-such-dir"
    result = invoke(billing, "--quiet", "nightly", "--date", DAY, "--logs", str(directory))
    assert result.exit_code == code and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert needle in line and "Hint: " in line


def test_quiet_usage_error_is_one_line_without_the_usage_text(billing: Billing) -> None:
    result = invoke(billing, "--quiet", "nightly", "--no-such-option")
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: No such option") and "--no-such-option" in line


def test_quiet_from_the_environment(billing: Billing) -> None:
    """INFERGATE_QUIET=1 in a crontab's environment is the same as --quiet."""
    good_day(billing)
    runner = CliRunner(env={"INFERGATE_QUIET": "1", "INFERGATE_LOG_FORMAT": None})
    common = ["--db", str(billing.settings.db_path), "--accounts", str(billing.settings.accounts_file)]
    result = runner.invoke(cli, [*common, "nightly", "--date", DAY, "--logs", str(billing.logs)])
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")


def test_a_cron_line_prints_nothing_and_exits_0(billing: Billing) -> None:
    """The real command as cron runs it: no terminal, stdin from /dev/null, a bare environment."""
    good_day(billing)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(billing.root), "LANG": "C.UTF-8"}
    args = ["--db", str(billing.settings.db_path), "--accounts", str(billing.settings.accounts_file), "--quiet"]
    done = subprocess.run(
        [CLI, *args, "nightly", "--date", DAY, "--logs", str(billing.logs)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    again = subprocess.run(  # the second night's file is missing: one line, exit 1
        [CLI, *args, "nightly", "--date", "2026-11-21", "--logs", str(billing.logs)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert again.returncode == 1 and again.stdout == ""
    assert len(again.stderr.splitlines()) == 1 and again.stderr.startswith("Error: no log file for 2026-11-21")


# --- --log-format json ---------------------------------------------------------------------------


@pytest.mark.parametrize("timings", [None, "1"])
def test_json_log_parses_line_by_line_with_run_id_steps_counts_and_outcome(
    billing: Billing, timings: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also with INFERGATE_TIMINGS set (make bench): its text lines must not enter the JSON log."""
    if timings:
        monkeypatch.setenv("INFERGATE_TIMINGS", timings)
    else:
        monkeypatch.delenv("INFERGATE_TIMINGS", raising=False)
    good_day(billing)
    result = nightly(billing, "--log-format", "json")
    assert result.exit_code == 0
    assert result.stdout == ""  # the run's lines are events now
    log = events(result.stderr)
    assert {e["event"] for e in log} >= {"run_opened", "step", "file", "summary", "finished"}
    assert all(e["run_id"] == 1 and e["command"] == "nightly" and "ts" in e for e in log)
    steps = {e["step"]: e["seconds"] for e in log if e["event"] == "step"}
    assert {"stage", "ingest", "rate", "commit"} <= set(steps) and all(s >= 0 for s in steps.values())
    (file_event,) = [e for e in log if e["event"] == "file"]
    assert (file_event["lines_read"], file_event["accepted"], file_event["quarantined"]) == (2, 2, 0)
    (summary,) = [e for e in log if e["event"] == "summary"]
    assert summary["counts"]["billed"] == 2 and summary["counts"]["lines_read"] == 2
    assert log[0]["event"] == "run_opened"
    assert log[-1]["event"] == "finished" and log[-1]["outcome"] == "succeeded" and log[-1]["exit_code"] == 0


def test_json_failure_is_an_event_with_the_reason(billing: Billing) -> None:
    half_broken_day(billing)
    result = nightly(billing, "--log-format", "json")
    assert result.exit_code == 1 and result.stdout == ""
    last = events(result.stderr)[-1]
    assert (last["event"], last["outcome"], last["exit_code"], last["run_id"]) == ("finished", "failed", 1, 1)
    assert last["error"] == "1 of 2 lines quarantined (50.0% > 2.0%); see `infergate-billing quarantine`"


def test_json_error_raised_before_a_run_has_error_and_hint(billing: Billing) -> None:
    result = invoke(billing, "--log-format", "json", "nightly", "--date", DAY, "--logs", str(billing.logs))
    assert result.exit_code == 1
    (event,) = events(result.stderr)
    assert event["outcome"] == "failed" and event["run_id"] is None
    assert event["error"].startswith(f"no log file for {DAY}") and "--allow-empty" in event["hint"]


def test_json_and_quiet_write_only_the_failure(billing: Billing) -> None:
    good_day(billing)
    ok = nightly(billing, "--log-format", "json", "--quiet")
    assert (ok.exit_code, ok.stdout, ok.stderr) == (0, "", "")
    logs = str(billing.logs)
    failed = invoke(billing, "--quiet", "--log-format", "json", "nightly", "--date", "2026-11-21", "--logs", logs)
    assert failed.exit_code == 1
    (event,) = events(failed.stderr)
    assert event["outcome"] == "failed"


def test_each_invocation_starts_from_the_default_console(billing: Billing) -> None:
    """CliRunner runs commands in one process: --quiet must not leak into the next call."""
    good_day(billing)
    nightly(billing, "--quiet", "--log-format", "json")
    now = console.current()
    assert (now.quiet, now.log_format, now.show_progress, timing.listener) == (False, "text", False, None)
    again = nightly(billing)
    assert "already ingested" in again.stdout


# --- progress bars ------------------------------------------------------------------------------


def test_no_progress_without_a_terminal(billing: Billing) -> None:
    """CliRunner's stderr is no terminal: no bar, no escape codes, only the report."""
    good_day(billing)
    result = nightly(billing, "--no-snapshot")
    assert result.exit_code == 0 and result.stderr == ""
    assert "\x1b[" not in result.stdout and "ingest files" not in result.output


def _run_on_a_pty(args: list[str]) -> tuple[int, str]:
    """Run the installed command with stderr on a pseudo-terminal; (exit code, what the terminal saw)."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100"}
    for name in ("INFERGATE_QUIET", "INFERGATE_LOG_FORMAT", "NO_COLOR"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [CLI, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal, cwd=ROOT, env=env
    )
    os.close(terminal)
    seen = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the command closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(controller)
    return proc.wait(timeout=120), seen.decode("utf-8", "replace")


def test_a_terminal_gets_a_progress_bar_and_quiet_or_json_do_not(billing: Billing) -> None:
    billing.log(f"requests-{DAY}.jsonl", [record(usage=usage(1000, 100))])
    billing.log(f"requests-{DAY}-eu.jsonl", [record(usage=usage(2000, 200))])
    base = ["--db", str(billing.settings.db_path), "--accounts", str(billing.settings.accounts_file)]
    code, seen = _run_on_a_pty([*base, "ingest", str(billing.logs / "*.jsonl")])
    assert code == 0 and "ingest files" in seen
    code, seen = _run_on_a_pty([*base, "rate"])
    assert code == 0
    code, seen = _run_on_a_pty([*base, "statements", "--period", "2026-11", "--out", str(billing.root / "out")])
    assert code == 0 and "render statements" in seen
    for option in (["--quiet"], ["--log-format", "json"]):
        billing.log(f"requests-{DAY}-{option[-1].strip('-')}.jsonl", [record(usage=usage(10, 1))])
        code, seen = _run_on_a_pty([*base, *option, "ingest", str(billing.logs / "*.jsonl")])
        assert code == 0 and "ingest files" not in seen and "\x1b[?25l" not in seen  # no bar, no cursor hiding


def _modules_after(args: list[str]) -> set[str]:
    """Top-level modules imported by a CLI invocation in a fresh interpreter (no terminal)."""
    code = (
        "import sys\nfrom pipeline.cli import main\nsys.argv = ['infergate-billing', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('MODULES', ' '.join(sorted({m.split('.')[0] for m in sys.modules})), file=sys.__stderr__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, timeout=300)
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("MODULES ")]
    return set(line.split()[1:])


def test_rich_is_imported_only_for_a_bar(billing: Billing) -> None:
    """CLI start time (issue 14): --help and a run without a terminal never import rich."""
    assert "rich" not in _modules_after(["--help"])
    good_day(billing)
    base = ["--db", str(billing.settings.db_path), "--accounts", str(billing.settings.accounts_file)]
    assert "rich" not in _modules_after([*base, "nightly", "--date", DAY, "--logs", str(billing.logs)])


def test_quarantine_lists_held_attempts_with_their_file_and_line(billing: Billing) -> None:
    """``quarantine --reason unknown_account`` names each held attempt (the operator's to-do
    list: which account to add), not only their count; quarantined lines come first."""
    billing.log(
        f"requests-{DAY}.jsonl",
        [
            record(event_id="ok", request_id="r-ok", usage=usage(10, 10)),
            record(event_id="stranger-2", request_id="r-s2", account_id="acct_nobody", ts=f"{DAY}T09:00:00Z"),
            record(event_id="stranger-1", request_id="r-s1", account_id="acct_nobody", ts=f"{DAY}T08:00:00Z"),
            "{not json",
        ],
    )
    assert nightly(billing, rate="1").exit_code == 0
    held = invoke(billing, "quarantine", "--reason", "unknown_account")
    assert held.exit_code == 0
    listed = [line for line in held.stdout.splitlines() if "(held)" in line]
    assert listed == [
        f"requests-{DAY}.jsonl:3: unknown_account (held): event stranger-1, account acct_nobody, "
        f"model openai/gpt-5.5, {DAY}T08:00:00Z; billed once resolved",
        f"requests-{DAY}.jsonl:2: unknown_account (held): event stranger-2, account acct_nobody, "
        f"model openai/gpt-5.5, {DAY}T09:00:00Z; billed once resolved",
    ]
    everything = invoke(billing, "quarantine", "--limit", "2").stdout.splitlines()
    assert everything[-3:] == [
        f"requests-{DAY}.jsonl:4: parse_error: line is not valid JSON",
        listed[0],
        "(1 more; raise --limit to list them)",
    ]
    assert invoke(billing, "quarantine", "--limit", "-1").exit_code == 2  # a usage error, not DuckDB's
    assert not [
        line
        for line in invoke(billing, "quarantine", "--reason", "parse_error").stdout.splitlines()
        if "(held)" in line
    ]
