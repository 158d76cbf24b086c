"""Chat overhead recipes, message validation, surrogates, and count_many batching."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline import recount
from pipeline.recount import RecountError, TokenCount, _o200k, count_many, count_request
from pipeline.recount._deepseek import DeepSeekCounter, render_prompt
from pipeline.recount._o200k import O200kCounter

GPT = "openai/gpt-5.5"
DSV4 = "deepseek-v4-pro"
TWO_MESSAGES = json.dumps(
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hello from InferGate."},
    ]
)


def test_openai_two_message_overhead_by_hand(o200k: O200kCounter) -> None:
    n = o200k.count_one
    # The pieces, checked against the tokenizer so the arithmetic below is honest.
    assert (n("system"), n("user"), n("You are terse."), n("Hello from InferGate.")) == (1, 1, 4, 5)
    # cookbook: per message 3 + tokens of each string field; + 3 reply priming
    #   system: 3 + 1 ("system") + 4 ("You| are| terse|.")         = 8
    #   user:   3 + 1 ("user")   + 5 ("Hello| from| Infer|Gate|.") = 9
    #   priming:                                                      3
    assert count_request(GPT, TWO_MESSAGES, None) == TokenCount(8 + 9 + 3, 0, "o200k_base")


def test_openai_name_costs_one_extra(o200k: O200kCounter) -> None:
    messages = json.dumps([{"role": "user", "name": "alice", "content": "Hi"}])
    n = o200k.count_one
    expected = 3 + n("user") + n("alice") + 1 + n("Hi") + 3
    assert count_request(GPT, messages, None) == TokenCount(expected, 0, "o200k_base")


def test_openai_content_parts_count_text_only(o200k: O200kCounter) -> None:
    parts = [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "this picture."},
    ]
    messages = json.dumps([{"role": "user", "content": parts}])
    n = o200k.count_one
    expected = 3 + n("user") + n("Describe") + n("this picture.") + 3
    assert count_request(GPT, messages, None) == TokenCount(expected, 0, "o200k_base")


def test_openai_non_string_fields_are_not_counted(o200k: O200kCounter) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = json.dumps([{"role": "assistant", "content": None, "tool_calls": [call]}])
    assert count_request(GPT, messages, None) == TokenCount(3 + 1 + 3, 0, "o200k_base")


def test_deepseek_two_message_overhead_by_hand(deepseek: DeepSeekCounter) -> None:
    n = deepseek.count_one
    assert (n("You are terse."), n("Hello from InferGate.")) == (5, 5)  # You| are| t|erse|.
    #   <｜begin▁of▁sentence｜>                       1
    #   system "You are terse." (no marker)            5
    #   <｜User｜> + "Hello from InferGate."            1 + 5
    #   <｜Assistant｜></think> (priming, last is user)  2
    assert count_request(DSV4, TWO_MESSAGES, None) == TokenCount(1 + 5 + 6 + 2, 0, "deepseek_v4")


def test_deepseek_multi_turn_by_hand(deepseek: DeepSeekCounter) -> None:
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello", "reasoning_content": "dropped in history"},
        {"role": "user", "content": "Bye"},
    ]
    n = deepseek.count_one
    # BOS + (User Hi Assistant </think>) + (Hello EOS) + (User Bye Assistant </think>)
    expected = 1 + (1 + n("Hi") + 2) + (n("Hello") + 1) + (1 + n("Bye") + 2)
    count = count_request(DSV4, json.dumps(messages), None)
    assert count == TokenCount(expected, 0, "deepseek_v4")


def test_deepseek_render_tool_round_trip() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "get", "arguments": '{"n": 2}'}}
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "user", "content": [{"type": "text", "text": "ok?"}, {"type": "image_url"}]},
    ]
    assert render_prompt(messages) == (
        "<｜begin▁of▁sentence｜><｜User｜>Q<｜Assistant｜></think>"
        '\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name="get">\n'
        '<｜DSML｜parameter name="n" string="false">2</｜DSML｜parameter>\n'
        "</｜DSML｜invoke>\n</｜DSML｜tool_calls><｜end▁of▁sentence｜>"
        "<｜User｜><tool_result>sunny</tool_result>\n\nok?<｜Assistant｜></think>"
    )


def test_deepseek_unknown_role_is_refused() -> None:
    messages = json.dumps([{"role": "function", "content": "x"}])
    with pytest.raises(RecountError, match=r"messages\[0\]\.role"):
        count_request(DSV4, messages, None)


@pytest.mark.parametrize("model", [GPT, DSV4])
@pytest.mark.parametrize("messages_json", [None, "null", "[]"])
def test_no_messages_count_zero(model: str, messages_json: str | None) -> None:
    count = count_request(model, messages_json, None)
    assert count is not None
    assert (count.input_tokens, count.output_tokens) == (0, 0)


@pytest.mark.parametrize(
    ("messages_json", "field"),
    [
        ('{"role": "user", "content": "hunter2"}', r"messages: expected a JSON array"),
        ('[{"role": "user", "content": "hunter2"', r"messages: invalid JSON"),
        ('["hunter2"]', r"messages\[0\]: expected an object"),
        ('[{"content": "hunter2"}]', r"messages\[0\]\.role"),
        ('[{"role": "user", "content": 7}]', r"messages\[0\]\.content"),
        ('[{"role": "user", "content": ["hunter2"]}]', r"messages\[0\]\.content\[0\]"),
        ('[{"role": "user", "content": [{"type": "text"}]}]', r"content\[0\]\.text"),
    ],
)
def test_invalid_messages_name_the_field(messages_json: str, field: str) -> None:
    with pytest.raises(RecountError, match=field) as caught:
        count_request(GPT, messages_json, None)
    assert "hunter2" not in str(caught.value)  # text is never echoed
    assert caught.value.__context__ is None  # nor kept alive (JSONDecodeError.doc)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("model", [GPT, DSV4])
def test_lone_surrogates_are_replaced(model: str) -> None:
    """json.loads accepts "\\ud800"; it is counted as U+FFFD instead of crashing."""
    lone = count_request(model, '[{"role": "user", "content": "a\\ud800b"}]', "x\udfffy")
    replaced = count_request(model, '[{"role": "user", "content": "a\\ufffdb"}]', "x\ufffdy")
    assert lone == replaced
    assert lone is not None and lone.output_tokens > 0


def test_surrogate_pair_joins_like_tiktoken(o200k: O200kCounter) -> None:
    pair = "\ud83d\ude00"  # two UTF-16 halves of U+1F600, as a str
    count = count_request(GPT, None, pair)
    assert count is not None
    assert count.output_tokens == len(o200k.encoding.encode_ordinary("\U0001f600"))


def _rows() -> list[tuple[str, str | None, str | None]]:
    rows: list[tuple[str, str | None, str | None]] = []
    for i in range(150):
        messages = json.dumps([{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Q{i}?"}])
        model = (GPT, DSV4, "mistral/large")[i % 3]
        rows.append((model, messages if i % 5 else None, f"Answer {i}." if i % 7 else None))
    return rows


def test_count_many_matches_count_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recount, "_CHUNK_ROWS", 64)  # several chunks
    monkeypatch.setattr(_o200k, "_PARALLEL_MIN_TEXTS", 16)  # and o200k's worker-thread path
    rows = _rows()
    expected = [count_request(*row) for row in rows]
    assert count_many(iter(rows)) == expected
    assert expected[2] is None and expected[0] is not None


def test_count_many_reports_the_bad_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recount, "_CHUNK_ROWS", 4)
    rows = _rows()[:10]
    rows[6] = (GPT, "[1]", None)
    with pytest.raises(RecountError, match=r"row 6: messages\[0\]") as caught:
        count_many(rows)
    assert caught.value.row == 6
