"""LiteLLM proxy spend logs (rows of its ``LiteLLM_SpendLogs`` table) -> request-log records.

Sources (docs/imports.md has the field-by-field mapping):

- the table, ``model LiteLLM_SpendLogs`` in LiteLLM's ``schema.prisma``: one row per request the
  proxy served, ``request_id`` its primary key, ``api_key`` the sha256 of the virtual key (never
  the key), ``spend`` LiteLLM's computed cost (a float), token columns, ``startTime``/``endTime``
  (Prisma ``DateTime``: UTC, written without an offset), ``status`` (``success``/``failure``),
  ``metadata`` (JSON, LiteLLM's ``SpendLogsMetadata``: ``usage_object`` with the provider's
  usage including cached and reasoning tokens, ``error_information.error_code`` the HTTP status
  of a failure).
- exports: ``\\copy (SELECT * FROM "LiteLLM_SpendLogs") TO 'x.csv' CSV HEADER`` (JSON columns as
  JSON text, NULL as an empty cell), or the JSON list the proxy's ``/spend/logs`` endpoint
  returns (JSON columns as objects), or JSON Lines of the same objects.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.importers._common import (
    Rejected,
    cost_text,
    count,
    key_id,
    load_json,
    model_id,
    optional_count,
    text,
    timestamp,
)

__all__ = ["convert", "read_rows"]

# LiteLLM's call types for the chat completions endpoint (litellm.types.utils.CallTypes); the
# other endpoints it proxies (embeddings, images, audio, responses) are not InferGate's
CHAT_CALL_TYPES = frozenset({"completion", "acompletion"})
# InferGate's error_code words for the statuses LiteLLM reports (informational; rules read status)
ERROR_CODES = {401: "invalid_api_key", 403: "permission_denied", 429: "rate_limit_exceeded", 504: "upstream_timeout"}

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # messages/response cells can be large


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | Rejected]]:
    """Rows of a CSV export (row 1 = first after the header), a JSON list, or JSON Lines."""
    if path.name.endswith(".csv"):
        yield from _csv_rows(path)
    elif path.name.endswith(".jsonl"):
        yield from json_lines(path)
    else:
        yield from json_list(path)


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | Rejected]]:
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:  # -sig: a BOM is not data
        reader = csv.DictReader(handle)
        for number, row in enumerate(reader, start=1):
            if None in row or None in row.values():
                message = f"row has a different number of cells than the header ({len(reader.fieldnames or [])})"
                yield number, Rejected("(row)", "parse_error", message)
            else:
                yield number, dict(row)


def json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | Rejected]]:
    """One JSON object per line (row = line number; blank lines are not rows)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, _object(line)


def json_list(path: Path) -> Iterator[tuple[int, dict[str, Any] | Rejected]]:
    """A JSON array of objects (row = 1-based position), or one object."""
    raw = path.read_text(encoding="utf-8-sig", errors="replace")
    if not raw.strip():
        return  # an empty export has no rows
    try:
        value = load_json(raw)
    except ValueError as exc:
        yield 1, Rejected("(file)", "parse_error", f"not valid JSON: {str(exc)[:80]}")
        return
    items = value if isinstance(value, list) else [value]
    for number, item in enumerate(items, start=1):
        yield number, item if isinstance(item, dict) else Rejected("(row)", "parse_error", "not a JSON object")


def _object(line: str) -> dict[str, Any] | Rejected:
    try:
        value = load_json(line)
    except ValueError as exc:
        return Rejected("(row)", "parse_error", f"not valid JSON: {str(exc)[:80]}")
    return value if isinstance(value, dict) else Rejected("(row)", "parse_error", "not a JSON object")


def json_field(row: dict[str, Any], field: str) -> dict[str, Any]:
    """A JSON column: an object in JSON exports, JSON text in CSV exports, absent as ``{}``."""
    value = row.get(field)
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = load_json(value)
        except ValueError:
            raise Rejected(field, "parse_error", f"field {field}: not valid JSON") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Rejected(field, "invalid_record", f"field {field}: expected a JSON object")
    return value


def _optional_json(row: dict[str, Any], field: str) -> dict[str, Any]:
    """A JSON column only informational fields come from: unreadable counts as absent."""
    try:
        return json_field(row, field)
    except Rejected:
        return {}


def convert(row: dict[str, Any], account_id: str) -> dict[str, Any]:
    """One spend-log row -> one ``infergate.request_log.v1`` record (or :class:`Rejected`)."""
    call_type = text(row, "call_type")
    if call_type not in CHAT_CALL_TYPES:
        raise Rejected("call_type", "unsupported_call", f"field call_type: {call_type!r} is not a chat completion")
    request_id = text(row, "request_id")
    metadata = json_field(row, "metadata")
    status, error_code = _status(row, metadata)
    lacks = ["attempt"]
    record: dict[str, Any] = {
        "event_id": f"litellm:{request_id}",
        "request_id": request_id,
        "attempt": 1,
        "ts": timestamp(row.get("startTime"), "startTime", naive_is_utc=True),
    }
    duration = _duration_ms(row)
    if duration is not None:
        record["duration_ms"] = duration
    record["account_id"] = account_id
    record["api_key_id"] = key_id("litellm", row.get("api_key") or None)
    record["endpoint"] = "/v1/chat/completions"
    model_field = "model_group" if row.get("model_group") else "model"
    record["model"] = model_id(text(row, model_field), model_field)
    provider = text(row, "custom_llm_provider", required=False)
    if provider:
        record["provider"] = provider.lower()
    else:
        lacks.append("provider")
    record["status"] = status
    record["error_code"] = error_code
    stream = _optional_json(row, "proxy_server_request").get("stream")
    if isinstance(stream, bool):
        record["stream"] = stream
    else:
        lacks.append("stream")
    finish_reason = _finish_reason(row)
    if finish_reason is not None:
        record["finish_reason"] = finish_reason
    else:
        lacks.append("finish_reason")
    record["usage"] = _usage(row, metadata)
    record["upstream_cost_usd"] = cost_text(row.get("spend"), "spend")
    record["imported_from"] = {"gateway": "litellm", "lacks": lacks}
    return record


def _status(row: dict[str, Any], metadata: dict[str, Any]) -> tuple[int, str | None]:
    """HTTP status: 200 for ``success`` (and for rows older than the status column, which
    LiteLLM wrote only for successes); a failure's status is its ``error_code``."""
    value = row.get("status") or metadata.get("status") or "success"
    if value == "success":
        return 200, None
    if value != "failure":
        raise Rejected(
            "status", "invalid_record", f"field status: expected success or failure, got {str(value)[:40]!r}"
        )
    info = metadata.get("error_information") or {}
    code = info.get("error_code") if isinstance(info, dict) else None
    if isinstance(code, str) and code.strip().isdigit():
        code = int(code)
    if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
        field = "metadata.error_information.error_code"
        raise Rejected(field, "status_unknown", f"field {field}: a failure without an HTTP status code")
    default = "upstream_error" if code >= 500 else "invalid_request" if code >= 400 else None
    return code, ERROR_CODES.get(code, default)


def _finish_reason(row: dict[str, Any]) -> str | None:
    """From the stored response (``store_prompts_in_spend_logs``), else unknown."""
    choices = _optional_json(row, "response").get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        reason = choices[0].get("finish_reason")
        return reason if isinstance(reason, str) else None
    return None


def _duration_ms(row: dict[str, Any]) -> int | None:
    """``request_duration_ms``, else endTime - startTime; not read by the rules, so best effort."""
    explicit = row.get("request_duration_ms")
    if explicit not in (None, ""):
        try:
            return optional_count(explicit, "request_duration_ms")
        except Rejected:
            return None
    try:
        start = datetime.fromisoformat(str(row.get("startTime")).strip())
        end = datetime.fromisoformat(str(row.get("endTime")).strip())
    except ValueError:
        return None
    if (start.tzinfo is None) != (end.tzinfo is None):
        return None
    millis = (end - start) // _MILLISECOND
    return millis if millis >= 0 else None


def _usage(row: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    """OpenAI usage shape from the token columns plus ``metadata.usage_object``'s details."""
    prompt = count(row.get("prompt_tokens"), "prompt_tokens")
    completion = count(row.get("completion_tokens"), "completion_tokens")
    total = optional_count(row.get("total_tokens"), "total_tokens")
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion if total is None else total,
    }
    detail = metadata.get("usage_object")
    detail = detail if isinstance(detail, dict) else {}
    prompt_details = detail.get("prompt_tokens_details")
    prompt_details = prompt_details if isinstance(prompt_details, dict) else {}
    completion_details = detail.get("completion_tokens_details")
    completion_details = completion_details if isinstance(completion_details, dict) else {}
    where = "metadata.usage_object."
    cached = optional_count(prompt_details.get("cached_tokens"), where + "prompt_tokens_details.cached_tokens")
    if cached is None:  # DeepSeek's own field, then Anthropic-style naming LiteLLM also passes through
        for name in ("prompt_cache_hit_tokens", "cache_read_input_tokens"):
            cached = optional_count(detail.get(name), where + name)
            if cached is not None:
                break
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    details = {}
    for name in ("reasoning_tokens", "image_tokens"):
        value = optional_count(completion_details.get(name), f"{where}completion_tokens_details.{name}")
        if value is not None:
            details[name] = value
    if details:
        usage["completion_tokens_details"] = details
    return usage


_MILLISECOND = timedelta(milliseconds=1)
