"""OpenRouter generation records (``GET /api/v1/generation?id=...``) -> request-log records.

Source: OpenRouter's API reference, "Get a generation" (the ``GenerationResponse`` of its
OpenAPI document and SDKs): ``{"data": {...}}`` with ``id`` (``gen-...``), ``created_at``
(ISO 8601 with offset), ``model``, ``provider_name``, ``streamed``, ``cancelled``,
``finish_reason`` (normalized: stop, length, tool_calls, content_filter, error), ``latency``
(ms), ``total_cost`` (USD charged), ``tokens_prompt``/``tokens_completion`` (OpenRouter's own
normalized count) and ``native_tokens_prompt``/``native_tokens_completion``/
``native_tokens_reasoning``/``native_tokens_cached``/``native_tokens_completion_images`` (the
provider's own tokenizer, what the provider billed). A file is JSON Lines of such responses
or bare ``data`` objects, or a JSON list of them (docs/imports.md has the field mapping).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.importers._common import Rejected, cost_text, count, key_id, model_id, optional_count, text, timestamp
from pipeline.importers.litellm import json_lines, json_list

__all__ = ["convert", "read_rows"]

FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter"})


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | Rejected]]:
    """Generation objects of a JSON Lines file (row = line) or a JSON list (row = position)."""
    rows = json_lines(path) if path.name.endswith(".jsonl") else json_list(path)
    for number, row in rows:
        if isinstance(row, dict) and isinstance(row.get("data"), dict) and "id" not in row:
            row = row["data"]  # the API response wrapper
        yield number, row


def convert(row: dict[str, Any], account_id: str) -> dict[str, Any]:
    """One generation -> one ``infergate.request_log.v1`` record (or :class:`Rejected`)."""
    generation_id = text(row, "id")
    status, error_code, finish_reason = _outcome(row)
    record: dict[str, Any] = {
        "event_id": f"openrouter:{generation_id}",
        "request_id": generation_id,
        "attempt": 1,
        "ts": timestamp(row.get("created_at"), "created_at", naive_is_utc=False),
    }
    duration = _milliseconds(row.get("latency"))
    if duration is not None:
        record["duration_ms"] = duration
    record["account_id"] = account_id
    record["api_key_id"] = key_id("openrouter", None)
    record["endpoint"] = "/v1/chat/completions"
    record["model"] = model_id(text(row, "model"), "model")
    lacks = ["attempt", "api_key_id", "status"]
    provider = text(row, "provider_name", required=False)
    if provider:
        record["provider"] = provider.lower()
    else:
        lacks.append("provider")
    record["status"] = status
    record["error_code"] = error_code
    if isinstance(row.get("streamed"), bool):
        record["stream"] = row["streamed"]
    else:
        lacks.append("stream")
    record["finish_reason"] = finish_reason
    record["usage"] = _usage(row)
    record["upstream_cost_usd"] = cost_text(row.get("total_cost"), "total_cost")
    record["imported_from"] = {"gateway": "openrouter", "lacks": lacks}
    return record


def _outcome(row: dict[str, Any]) -> tuple[int, str | None, str | None]:
    """(status, error_code, finish_reason): OpenRouter records generations, not HTTP statuses.

    A cancelled generation is a client that went away (499, billed for what was generated, R3);
    ``finish_reason: error`` is an upstream failure mid-generation (502, not billed); else 200.
    """
    reason = row.get("finish_reason")
    if reason is not None and not isinstance(reason, str):
        raise Rejected("finish_reason", "invalid_record", "field finish_reason: expected a string or null")
    if row.get("cancelled") is True:
        return 499, "client_closed", reason if reason in FINISH_REASONS else None
    if reason == "error":
        return 502, "upstream_error", None
    if reason is not None and reason not in FINISH_REASONS:
        raise Rejected("finish_reason", "invalid_record", f"field finish_reason: unknown value {reason[:40]!r}")
    return 200, None, reason


def _milliseconds(value: Any) -> int | None:
    """``latency`` (ms, a JSON number) as whole milliseconds; not read by the rules."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        millis = int(value)
    except (TypeError, ValueError, ArithmeticError):
        return None
    return millis if millis >= 0 else None


def _usage(row: dict[str, Any]) -> dict[str, Any]:
    """OpenAI usage shape from the provider's native counts (reasoning and image tokens are part
    of the completion count, as in the provider's own usage object)."""
    for field in ("native_tokens_prompt", "native_tokens_completion"):
        if row.get(field) is None:
            raise Rejected(field, "usage_missing", f"field {field}: the provider's token count is missing")
    prompt, completion = (
        count(row["native_tokens_prompt"], "native_tokens_prompt"),
        count(row["native_tokens_completion"], "native_tokens_completion"),
    )
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    cached = optional_count(row.get("native_tokens_cached"), "native_tokens_cached")
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    details = {}
    for field, name in (
        ("native_tokens_reasoning", "reasoning_tokens"),
        ("native_tokens_completion_images", "image_tokens"),
    ):
        value = optional_count(row.get(field), field)
        if value is not None:
            details[name] = value
    if details:
        usage["completion_tokens_details"] = details
    return usage
