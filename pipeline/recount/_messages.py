"""Parsing and validating the logged ``messages`` JSON (an OpenAI chat messages array).

Only the structure is checked here -- what the counting recipes need to read safely. Errors
name the field (``messages[1].content[0].text``) and never quote request text.
"""

from __future__ import annotations

import json
from typing import Any

from ._common import RecountError

Message = dict[str, Any]


def parse_messages(messages_json: str | None) -> list[Message]:
    """Decode the raw JSON text of the messages array.

    ``None`` and JSON ``null`` mean "no messages" (the log field is "array or null"). Anything
    else must be an array of objects whose ``role`` is a string and whose ``content`` is a
    string, null, or an array of content-part objects.
    """
    if messages_json is None:
        return []
    problem = None
    try:
        value = json.loads(messages_json)
    except json.JSONDecodeError as exc:
        problem = f"messages: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    except RecursionError:
        # hostile nesting ([[[[...]]]] thousands deep) that DuckDB's parser takes in its stride
        problem = "messages: nested too deeply to read"
    except ValueError:
        # e.g. an integer literal over Python's 4300-digit conversion limit
        problem = "messages: a value cannot be read (number too long)"
    if problem is not None:
        # Raised outside the `except` so the JSONDecodeError, whose `.doc` is the whole request
        # text, is not kept alive as __context__ for error reporters to pick up.
        raise RecountError(problem)
    if value is None:
        return []
    if not isinstance(value, list):
        raise RecountError(f"messages: expected a JSON array of objects, got {_kind(value)}")
    for index, message in enumerate(value):
        _check_message(message, f"messages[{index}]")
    return value


def _check_message(message: object, where: str) -> None:
    """One message: an object with a string role and a well-formed content."""
    if not isinstance(message, dict):
        raise RecountError(f"{where}: expected an object, got {_kind(message)}")
    role = message.get("role")
    if not isinstance(role, str):
        raise RecountError(f"{where}.role: expected a string, got {_kind(role)}")
    content = message.get("content")
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise RecountError(f"{where}.content: expected a string, null or an array of parts, got {_kind(content)}")
    for index, part in enumerate(content):
        _check_part(part, f"{where}.content[{index}]")


def _check_part(part: object, where: str) -> None:
    """A content part is an object; a ``text`` part must carry a string ``text``."""
    if not isinstance(part, dict):
        raise RecountError(f"{where}: expected a content-part object, got {_kind(part)}")
    if part.get("type") == "text" and not isinstance(part.get("text"), str):
        raise RecountError(f"{where}.text: expected a string, got {_kind(part.get('text'))}")


def text_parts(content: str | list[Message] | None) -> list[str]:
    """The text a content value carries, one string per text part.

    Non-text parts (``image_url``, ``input_audio``, ``file``...) are ignored: their token cost
    is not text tokens and no offline recipe reproduces it, so an estimate leaves them out
    (the estimate then errs in the customer's favour).
    """
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    return [part["text"] for part in content if part.get("type") == "text"]


def _kind(value: object) -> str:
    """JSON type name of a decoded value, for error messages that must not echo the value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
