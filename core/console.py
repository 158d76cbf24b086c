"""What a run tells people and log collectors: one place, three forms (docs/operations.md).

Every message the jobs' commands print goes through the :class:`Console` the CLI configures
from ``--quiet`` and ``--log-format``, so no command tests for those options itself:

- ``text`` (the default): today's lines, results on stdout, warnings and errors on stderr;
  on a terminal, progress bars on stderr for the long steps.
- ``--quiet``: nothing on success; on failure exactly one summary line on stderr (cron mails
  only when something is wrong). Exit codes do not change.
- ``--log-format json``: one JSON object per event on stderr (run opened, each timed step,
  each file, warnings, the outcome), nothing on stdout from the run itself, never a bar. With
  ``--quiet`` too, only the failure event is written.

A library caller (tests, replay's scratch runs) gets the default console: text, no bars.
Progress bars import ``rich`` only when one is actually shown, so ``--help`` and cron runs
never pay for it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core import timing

LOG_FORMATS = ("text", "json")


def _no_progress(count: int = 1) -> None:
    """The advance callback when no bar is shown."""


@dataclass
class Console:
    """Where messages go for one command invocation."""

    log_format: str = "text"
    quiet: bool = False
    command: str | None = None
    show_progress: bool = False  # a bar on stderr: text format, not quiet, stderr a terminal
    run_id: int | None = None
    problems: list[str] = field(default_factory=list)  # failures of a run, for the summary line
    _started: float = field(default_factory=time.perf_counter)

    @property
    def is_json(self) -> bool:
        return self.log_format == "json"

    # --- messages -------------------------------------------------------------------------

    def info(self, text: str) -> None:
        """A result line (stdout in text form; an event in JSON; nothing when quiet)."""
        if self.is_json:
            self.event("message", message=text)
        elif not self.quiet:
            print(text, flush=True)

    def warning(self, text: str) -> None:
        """Something to look at on a run that still succeeds (``warning: ...`` on stderr)."""
        if self.is_json:
            self.event("warning", message=text)
        elif not self.quiet:
            print(f"warning: {text}", file=sys.stderr, flush=True)

    def problem(self, text: str) -> None:
        """One reason the command will exit non-zero; printed now in text form (``error: ...``),
        kept for :meth:`summarize_failure` when quiet or JSON."""
        self.problems.append(text)
        if not self.quiet and not self.is_json:
            print(f"error: {text}", file=sys.stderr, flush=True)

    def summarize_failure(self, exit_code: int = 1) -> None:
        """After :meth:`problem` calls, before exiting: the one summary line (quiet) or event."""
        if not self.problems:
            return
        if self.is_json:
            self.finished("failed", exit_code, error="; ".join(self.problems))
        elif self.quiet:
            print(f"error: {self._who()}{'; '.join(self.problems)}", file=sys.stderr, flush=True)

    def failure(self, message: str, exit_code: int) -> None:
        """An error that ends the command (Click's ``Error: ...`` line), in the chosen form."""
        if self.is_json:
            error, _, hint = message.partition(". Hint: ")
            self.finished("failed", exit_code, error=error, **({"hint": hint} if hint else {}))
        else:
            print(f"Error: {message}", file=sys.stderr, flush=True)

    def _who(self) -> str:
        return f"run {self.run_id} ({self.command}): " if self.run_id is not None else ""

    # --- events (JSON form only) ----------------------------------------------------------

    def event(self, kind: str, **fields: Any) -> None:
        """One JSON object on one line of stderr: ts, event, command, run_id, then ``fields``.

        Quiet keeps only the final failure event (see :meth:`finished`)."""
        if not self.is_json or (self.quiet and not (kind == "finished" and fields.get("outcome") == "failed")):
            return
        record = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "event": kind,
            "command": self.command,
            "run_id": self.run_id,
            **fields,
        }
        print(json.dumps(record, default=str, separators=(",", ":")), file=sys.stderr, flush=True)

    def run_opened(self, run_id: int, command: str) -> None:
        """Called by the jobs when a run's ledger row exists: later events carry its id.

        A run of another command is a scratch re-execution (``replay --verify`` re-running a
        nightly on a copy): its id is not this invocation's and is not adopted.
        """
        if self.command is not None and command != self.command:
            return
        self.run_id = run_id
        self.event("run_opened", step="start")

    def step_timed(self, name: str, seconds: float) -> None:  # allow-float: wall time, not money
        self.event("step", step=name, seconds=round(seconds, 3))

    def finished(self, outcome: str, exit_code: int, **fields: Any) -> None:
        """The last event of a command: outcome ``succeeded`` or ``failed``, exit code, seconds."""
        seconds = round(time.perf_counter() - self._started, 3)
        self.event("finished", step="end", outcome=outcome, exit_code=exit_code, seconds=seconds, **fields)

    # --- progress -------------------------------------------------------------------------

    @contextmanager
    def progress(self, label: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A bar on stderr for ``total`` units of ``label`` (a terminal only); yields ``advance``."""
        if not self.show_progress or not total:
            yield _no_progress
            return
        from rich.console import Console as RichConsole
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=RichConsole(file=sys.stderr),
            transient=True,
        )
        with bar:
            task = bar.add_task(label, total=total)

            def advance(count: int = 1) -> None:
                bar.advance(task, count)

            yield advance


_current = Console()


def current() -> Console:
    """The console of this invocation (the default one outside the CLI)."""
    return _current


def configure(*, quiet: bool = False, log_format: str = "text", command: str | None = None) -> Console:
    """Install the console for one CLI invocation; JSON mode also receives the step timings."""
    global _current
    show = log_format == "text" and not quiet and sys.stderr.isatty()
    _current = Console(log_format=log_format, quiet=quiet, command=command, show_progress=show)
    timing.listener = _current.step_timed if _current.is_json else None
    return _current


def reset() -> Console:
    """Back to the library default (text, no bars, no timing listener)."""
    global _current
    _current = Console()
    timing.listener = None
    return _current
