"""One error type for every expected failure, and what the operator should do next.

An *expected* failure is one a user can act on: bad reference data, a missing file, a period
with nothing to bill, a run refused because another holds the database. It is raised as a
:class:`BillingError` carrying a one-line ``message`` (what is wrong, naming the file, line or
field) and a ``hint`` (what to do next). The command line catches this one type and prints::

    error: <message>
    hint: <hint>

Anything else is a bug and keeps its traceback. ``exit_code`` says how the CLI ends: 1 for a
failed run or check (the default), 2 for a usage problem (:class:`UsageProblem`: the command
line names something that does not exist or cannot be combined).

The historic exception classes (``IngestError``, ``PriceTableError`` ...) keep their names and
their old built-in bases (``ValueError``, ``RuntimeError``) next to this one, so code and tests
that catch those still work.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

__all__ = ["BillingError", "EmptyPeriod", "MissingInput", "UsageProblem"]


class BillingError(Exception):
    """An expected failure: a one-line ``message`` and a ``hint`` of what to do next.

    ``str(error)`` is the message alone, so logs, the run ledger and older callers that print
    the exception see what they saw before. The hint defaults to the class's ``default_hint``.
    """

    exit_code: ClassVar[int] = 1
    default_hint: ClassVar[str] = ""

    def __init__(self, message: str, hint: str | None = None) -> None:
        # only the message goes to args: pickling (worker processes) rebuilds cls(message) and
        # restores the hint from __dict__
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint


class UsageProblem(BillingError):
    """The command line itself is wrong: fix the invocation (exit code 2, like Click's own)."""

    exit_code: ClassVar[int] = 2


class MissingInput(UsageProblem):
    """A file or directory named on the command line (or by its default) does not exist.

    A usage problem: the path is the operator's to correct; nothing was read or written.
    """


class EmptyPeriod(BillingError):
    """A period with nothing billed: a command asked to write it wrote nothing (exit code 1).

    An empty finance summary or a run of zero statements looks like a real result; for a
    period that should have had usage it is the sign of missing logs or a wrong ``--period``.
    Commands take ``--allow-empty`` to write (and say) it anyway.
    """

    @classmethod
    def of(cls, period: str, what: str, account_id: str | None = None) -> EmptyPeriod:
        scope = f" for account {account_id}" if account_id else ""
        return cls(
            f"no billed usage in {period}{scope}: {what}",
            hint="check --period, and that the month's logs were ingested (`infergate-billing runs list`); "
            "if the period really has nothing to bill, re-run with --allow-empty",
        )


def read_reference_file(
    path: Path, what: str, *, missing: type[BillingError], unreadable: type[BillingError], hint: str
) -> bytes:
    """The bytes of a reference file (accounts, issuer, credit grants); a missing or unreadable
    one is a ``missing`` / ``unreadable`` error naming the file and what it should have been."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise missing(f"{path}: no such {what}", hint=hint) from None
    except OSError as exc:
        raise unreadable(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
