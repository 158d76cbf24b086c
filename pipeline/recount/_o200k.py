"""OpenAI ``o200k_base`` counting: tiktoken over the vocabulary shipped in ``bpe-openai``.

Vocabulary. ``bpe-openai`` ships ``bpe_openai/data/o200k_base.tiktoken.gz``. We decompress it,
check the sha256 of the decompressed bytes against :data:`O200K_BASE_SHA256` -- the hash OpenAI
publishes for ``o200k_base.tiktoken`` (the one pinned in ``tiktoken_ext/openai_public.py``) --
and hand the file to tiktoken's own loader ``load_tiktoken_bpe(path, expected_hash=...)``, which
checks it again. The :class:`tiktoken.Encoding` is then built locally with the o200k_base regex
and special tokens copied from ``tiktoken_ext/openai_public.py`` (tiktoken 0.14.0). We never call
``tiktoken.get_encoding``, which would download the file.

tiktoken's loader caches what it reads in ``$TIKTOKEN_CACHE_DIR`` (default a shared
``data-gym-cache`` dir) keyed by path, and with caching disabled (``""``) it skips the hash
check. So for the one load call we point ``TIKTOKEN_CACHE_DIR`` at our private temporary
directory: the hash is checked and nothing is left behind. The variable is restored at once.

Fallback. tiktoken's regex engine can overflow its stack on very long whitespace runs (about a
million spaces) and pyo3 raises ``PanicException``, a BaseException. We catch exactly that and
count the text with ``bpe-openai``'s own Rust counter (``tokenizer_for_encoding("o200k_base")
.count``). We call its backend module directly because the public ``bpe_openai.Encoding``
wrapper refuses inputs of 1,000,000 characters or more -- the very inputs that need the fallback.
The test suite checks that the two tokenizers agree.

Chat overhead (openai-cookbook "How to count tokens with tiktoken", gpt-4o family):
``tokens_per_message = 3`` for every message (``<|start|>{role}<|message|>`` ... ``<|end|>``),
plus the tokens of every string-valued field of the message (``role``, ``content``, ``name``,
``tool_call_id``...), plus ``tokens_per_name = 1`` when a ``name`` is present, plus 3 for the
reply priming ``<|start|>assistant<|message|>``. Extensions of the recipe, which has no rule for
them: a ``content`` array counts each text part separately and ignores non-text parts; non-string
fields (``tool_calls``, ``function_call``, nulls) are not counted. An empty or absent messages
array counts 0 (there was no prompt to prime).
"""

from __future__ import annotations

import gzip
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import tiktoken
from tiktoken.load import load_tiktoken_bpe

from ._common import PromptPlan, check_sha256, clean_text, is_rust_panic, package_file
from ._messages import Message, text_parts

if TYPE_CHECKING:
    from bpe_openai._bindings import PyTokenizer

log = logging.getLogger(__name__)

NAME = "o200k_base"

# sha256 of the decompressed o200k_base.tiktoken, as published by OpenAI and pinned in
# tiktoken_ext/openai_public.py; bpe-openai 0.1.4 ships exactly this file (gzip-compressed).
O200K_BASE_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
_VOCAB_PACKAGE = "bpe_openai"
_VOCAB_FILE = "data/o200k_base.tiktoken.gz"
_MAX_VOCAB_BYTES = 16 * 1024 * 1024  # the real file is 3.6 MB; refuse a decompression bomb

# Copied from tiktoken_ext/openai_public.py (tiktoken 0.14.0), o200k_base().
O200K_PAT_STR = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
O200K_SPECIAL_TOKENS = {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3

# Batching. tiktoken's encode_ordinary_batch submits one thread-pool future per text; for
# chat-sized texts (~300 chars) the future costs more than the encoding, and on a 2-CPU box it
# measured ~3x slower than a plain loop (and slower even on 100 KB texts). encode_ordinary
# releases the GIL, so we keep the parallelism but give each worker a contiguous slice of
# texts: one future per slice. Below _PARALLEL_MIN_TEXTS a plain loop is cheaper still.
_PARALLEL_MIN_TEXTS = 256
_WORKERS = min(8, os.cpu_count() or 1)

_env_lock = threading.Lock()


def read_vocabulary() -> bytes:
    """The decompressed, hash-checked o200k_base vocabulary shipped by bpe-openai."""
    path = package_file(_VOCAB_PACKAGE, _VOCAB_FILE)
    with gzip.open(path, "rb") as unzipped:
        data = unzipped.read(_MAX_VOCAB_BYTES + 1)
    if len(data) > _MAX_VOCAB_BYTES:
        raise ValueError(f"{path}: decompresses beyond the size limit")
    check_sha256(data, O200K_BASE_SHA256, str(path))
    return data


@contextmanager
def _tiktoken_cache_dir(path: str) -> Iterator[None]:
    """Temporarily point tiktoken's loader cache at ``path`` (see module docstring)."""
    with _env_lock:
        saved = os.environ.get("TIKTOKEN_CACHE_DIR")
        os.environ["TIKTOKEN_CACHE_DIR"] = path
        try:
            yield
        finally:
            if saved is None:
                del os.environ["TIKTOKEN_CACHE_DIR"]
            else:
                os.environ["TIKTOKEN_CACHE_DIR"] = saved


def build_encoding() -> tiktoken.Encoding:
    """Build the o200k_base Encoding offline from the shipped vocabulary."""
    data = read_vocabulary()
    with tempfile.TemporaryDirectory(prefix="recount-o200k-") as tmp:
        path = Path(tmp, "o200k_base.tiktoken")
        path.write_bytes(data)
        with _tiktoken_cache_dir(str(Path(tmp, "cache"))):
            ranks = load_tiktoken_bpe(str(path), expected_hash=O200K_BASE_SHA256)
    return tiktoken.Encoding(
        NAME,
        pat_str=O200K_PAT_STR,
        mergeable_ranks=ranks,
        special_tokens=O200K_SPECIAL_TOKENS,
    )


def _bpe_openai_counter() -> PyTokenizer:
    """bpe-openai's Rust o200k_base tokenizer (its ``.count(text)`` is the fallback)."""
    with warnings.catch_warnings():
        # bpe-openai's import uses the deprecated importlib.resources.open_binary; not ours.
        warnings.simplefilter("ignore", DeprecationWarning)
        from bpe_openai import _bindings

    return _bindings.tokenizer_for_encoding(NAME)


class O200kCounter:
    """Counts o200k_base tokens; one instance per process (see ``pipeline.recount``)."""

    name = NAME

    def __init__(self) -> None:
        self.encoding = build_encoding()
        self._fallback: PyTokenizer | None = None
        self._fallback_lock = threading.Lock()

    def fallback_count(self, text: str) -> int:
        """Count with bpe-openai; loaded only the first time tiktoken panics."""
        fallback = self._fallback
        if fallback is None:
            with self._fallback_lock:
                if self._fallback is None:
                    self._fallback = _bpe_openai_counter()
                fallback = self._fallback
        return fallback.count(text)

    def count_one(self, text: str) -> int:
        """Plain tokens of one (already cleaned) text, surviving tiktoken panics."""
        try:
            return len(self.encoding.encode_ordinary(text))
        except BaseException as exc:
            if not is_rust_panic(exc):
                raise
            # Only the length is logged: the text itself must never reach a log.
            log.warning("tiktoken panicked on a %d-char text; counted with bpe-openai", len(text))
            return self.fallback_count(text)

    def _count_slice(self, texts: Sequence[str]) -> list[int]:
        """Count a slice of texts in one worker (cleaning included, so it runs in parallel too)."""
        return [self.count_one(clean_text(t)) for t in texts]

    def count_texts(self, texts: Sequence[str]) -> list[int]:
        """Plain token counts of many texts; large batches are spread over worker threads.

        Each text goes through :meth:`count_one`, so a panic on one text sends only that text
        to the fallback.
        """
        if _WORKERS == 1 or len(texts) < _PARALLEL_MIN_TEXTS:
            return self._count_slice(texts)
        size = -(-len(texts) // (_WORKERS * 4))  # a few slices per worker evens out the load
        slices = [texts[i : i + size] for i in range(0, len(texts), size)]
        with ThreadPoolExecutor(_WORKERS) as pool:
            return [n for counts in pool.map(self._count_slice, slices) for n in counts]

    def prompt_plan(self, messages: list[Message]) -> PromptPlan:
        """Cookbook chat overhead plus the texts whose tokens complete the prompt count."""
        if not messages:
            return PromptPlan(0)
        overhead = TOKENS_PER_MESSAGE * len(messages) + REPLY_PRIMING
        texts: list[str] = []
        for message in messages:
            for key, value in message.items():
                if isinstance(value, str):
                    texts.append(value)
                    if key == "name":
                        overhead += TOKENS_PER_NAME
                elif key == "content":
                    texts.extend(text_parts(value))
        return PromptPlan(overhead, [t for t in texts if t])
