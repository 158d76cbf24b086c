"""tiktoken (primary) and bpe-openai (fallback) must agree, and long whitespace must not crash."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.recount import count_request
from pipeline.recount._o200k import O200kCounter

CORPUS = [
    "Hello from InferGate.",
    "I'm sure they'll say we've done it; HE'S RIGHT, isn't he?",
    "数据仓库中的计费管道每天晚上运行。",
    "請求ログは日ごとにファイルへ書き出されます。カタカナ、ひらがな、漢字。",
    "Счёт за ноябрь выставлен; НДС включён.",
    "الفاتورة الشهرية جاهزة للمراجعة.",
    "बिलिंग पाइपलाइन हर रात चलती है।",
    "청구서가 발행되었습니다. 확인해 주세요!",
    "ราคาต่อหนึ่งล้านโทเค็น",
    "Ünïcödé çàféś, naïve façade, Œuvre, ß, ﬁ ligature, e\u0301 combining",
    "😀👍🏽👨‍👩‍👧‍👦🇺🇸🏳️‍🌈 emoji ✨ mixed 🤖 text",
    "def rate(tokens: int, price: Decimal) -> Decimal:\n    return tokens * price / 1_000_000\n",
    '{"model": "openai/gpt-5.5", "usage": {"prompt_tokens": 12, "completion_tokens": 34}}',
    "SELECT account_id, SUM(amount) FROM charges WHERE ts >= '2026-11-01' GROUP BY 1;",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\r\n",
    "1234567890 3.14159 -42 1e-9 0x1F 1,000,000.00",
    "    indented\n\n\n        more\t\t\ttabs   \n \n",
    "trailing spaces      ",
    "      leading spaces",
    "a" + " " * 5000 + "b",
    "\n" * 3000,
    "\r\n" * 500,
    " \t \u00a0\u2003\u3000 unicode spaces \u2028\u2029",
    "",
    " ",
    "<|endoftext|> is text here, not a special token",
]


@pytest.mark.parametrize("text", CORPUS)
def test_corpus_ids_agree(o200k: O200kCounter, text: str) -> None:
    o200k.fallback_count("")  # make sure the fallback backend is loaded
    backend = o200k._fallback
    assert backend is not None
    assert o200k.encoding.encode_ordinary(text) == backend.encode(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text())
def test_any_text_counts_agree(o200k: O200kCounter, text: str) -> None:
    assert o200k.count_one(text) == o200k.fallback_count(text)


WHITESPACE_HEAVY = st.text(alphabet=" \t\n\r\u00a0\u3000a.'1é", max_size=400)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(WHITESPACE_HEAVY)
def test_whitespace_heavy_counts_agree(o200k: O200kCounter, text: str) -> None:
    assert o200k.count_one(text) == o200k.fallback_count(text)


def test_million_spaces_count_like_bpe_openai(o200k: O200kCounter) -> None:
    text = " " * 1_000_000
    count = count_request("openai/gpt-5.5", None, text)
    assert count is not None
    assert count.output_tokens == o200k.fallback_count(text)


def test_panic_in_parallel_batch_falls_back_per_text(o200k: O200kCounter) -> None:
    texts = ["word"] * 300 + ["\t" * 1_000_000]  # >= 256 texts: the worker-thread path
    counts = o200k.count_texts(texts)
    assert counts[:300] == [1] * 300
    assert counts[300] == o200k.fallback_count("\t" * 1_000_000)


class PanicException(BaseException):
    """Stands in for pyo3's PanicException, which is recognised by name."""


def test_fallback_is_taken_on_panic(
    o200k: O200kCounter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def panic(text: str) -> list[int]:
        raise PanicException("called `Result::unwrap()` on an `Err` value")

    monkeypatch.setattr(o200k.encoding, "encode_ordinary", panic)
    assert o200k.count_one("secret words here") == 3
    assert "17-char text" in caplog.text and "secret" not in caplog.text


def test_other_base_exceptions_propagate(o200k: O200kCounter, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(text: str) -> list[int]:
        raise KeyboardInterrupt

    monkeypatch.setattr(o200k.encoding, "encode_ordinary", interrupt)
    with pytest.raises(KeyboardInterrupt):
        o200k.count_one("x")
