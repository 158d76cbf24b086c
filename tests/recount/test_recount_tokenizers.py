"""Tokenizer fixtures, vocabulary pinning, and the model -> tokenizer mapping."""

from __future__ import annotations

import pytest
import tiktoken_ext.openai_public as openai_public

from pipeline.recount import (
    TokenCount,
    VocabularyIntegrityError,
    _deepseek,
    _o200k,
    count_request,
    tokenizer_for,
)
from pipeline.recount._deepseek import DeepSeekCounter
from pipeline.recount._o200k import O200kCounter
from pipeline.recount._registry import model_map, parse_model_map

HELLO = "Hello from InferGate."


def test_o200k_fixture_ids(o200k: O200kCounter) -> None:
    assert o200k.encoding.encode_ordinary(HELLO) == [13225, 591, 123995, 53907, 13]


def test_deepseek_fixture_ids(deepseek: DeepSeekCounter) -> None:
    ids = deepseek.tokenizer.encode(HELLO, add_special_tokens=False).ids
    assert ids == [19923, 538, 90979, 59245, 16]


@pytest.mark.parametrize(
    ("model", "tokenizer"),
    [("openai/gpt-5.5", "o200k_base"), ("deepseek-v4-flash", "deepseek_v4")],
)
def test_plain_output_is_five_tokens(model: str, tokenizer: str) -> None:
    assert count_request(model, None, HELLO) == TokenCount(0, 5, tokenizer)


def test_o200k_constants_match_installed_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our copied regex and special tokens must not drift from tiktoken_ext (no download)."""
    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", lambda *a, **k: {})
    reference = openai_public.o200k_base()
    assert reference["pat_str"] == _o200k.O200K_PAT_STR
    assert reference["special_tokens"] == _o200k.O200K_SPECIAL_TOKENS


def test_o200k_vocabulary_hash_is_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_o200k, "O200K_BASE_SHA256", "0" * 64)
    with pytest.raises(VocabularyIntegrityError, match="does not match pinned"):
        _o200k.read_vocabulary()


def test_deepseek_tokenizer_hash_is_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_deepseek, "DEEPSEEK_V4_TOKENIZER_SHA256", "0" * 64)
    with pytest.raises(VocabularyIntegrityError, match="does not match pinned"):
        _deepseek.build_tokenizer()


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("openai/gpt-5.5", "o200k_base"),
        ("openai/gpt-5.5-pro", "o200k_base"),
        ("openai/gpt-5.4-image-2", "o200k_base"),
        ("deepseek-v4-flash", "deepseek_v4"),
        ("deepseek-v4-pro", "deepseek_v4"),
        ("deepseek-chat", "deepseek_v4"),  # prefix
        ("gpt-4o", None),  # no provider prefix: not ours to guess
        ("OpenAI/gpt-5.5", None),  # case-sensitive on purpose
        ("mistral/large", None),
        ("", None),
    ],
)
def test_tokenizer_for(model: str, expected: str | None) -> None:
    assert tokenizer_for(model) == expected


def test_unmapped_model_counts_nothing() -> None:
    assert count_request("mistral/large", '[{"role": "user", "content": "hi"}]', "hi") is None


def test_packaged_map_loads() -> None:
    assert model_map().exact["deepseek-v4-pro"] == "deepseek_v4"


def test_longest_prefix_wins() -> None:
    mapping = parse_model_map('[prefix]\n"a/" = "o200k_base"\n"a/b" = "deepseek_v4"\n')
    assert mapping.lookup("a/bc") == "deepseek_v4"
    assert mapping.lookup("a/c") == "o200k_base"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[exact]\n"m" = "cl100k_base"\n', "expected one of"),
        ('[prefix]\n"" = "o200k_base"\n', "empty prefix"),
        ('[aliases]\n"m" = "o200k_base"\n', "unknown sections"),
        ('exact = "o200k_base"\n', "must be a table"),
    ],
)
def test_bad_model_map_fails_loudly(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_model_map(text)
