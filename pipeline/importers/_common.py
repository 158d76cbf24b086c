"""What both gateway converters share: rejections, field parsers, model ids, key ids.

A converter turns one source row into one ``infergate.request_log.v1`` record or raises
:class:`Rejected` naming the field and the reason; it never guesses a value the rules read.
Values are parsed from text or exact JSON numbers (JSON is read with ``parse_float=D``), so a
cost never passes through a binary float.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from core.money import D, MoneyError
from pipeline.redact import mask_secrets

__all__ = [
    "INFERGATE_MODELS",
    "Rejected",
    "cost_text",
    "count",
    "key_id",
    "load_json",
    "model_id",
    "optional_count",
    "text",
    "timestamp",
]

# The model ids of infergate-api-docs.txt section 4, by their bare upstream name. A source
# names a model with or without a provider prefix ("openai/gpt-5.5", "azure/gpt-5.5",
# "deepseek/deepseek-v4-pro") and sometimes with a dated snapshot suffix ("gpt-5.5-2026-08-07").
INFERGATE_MODELS = {
    "gpt-5.5-pro": "openai/gpt-5.5-pro",
    "gpt-5.5": "openai/gpt-5.5",
    "gpt-5.4-image-2": "openai/gpt-5.4-image-2",
    "deepseek-v4-flash": "deepseek-v4-flash",
    "deepseek-v4-pro": "deepseek-v4-pro",
}
_SNAPSHOT_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")
# the pipeline stores upstream_cost_usd as DECIMAL(38,20) and accepts at most 20 decimals
_COST_QUANTUM = D("1e-20")
_MAX_COUNT = 10**12


class Rejected(Exception):
    """A source row that cannot be mapped: the field and a reason code, and a one-line message."""

    def __init__(self, field: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason
        self.message = mask_secrets(message)


def load_json(raw: str) -> Any:
    """Parse JSON with every non-integer number as an exact Decimal (never a binary float)."""
    return json.loads(raw, parse_float=D)


def text(row: Mapping[str, Any], field: str, *, required: bool = True) -> str | None:
    """A non-empty string field (CSV cells are strings; an empty cell is a missing value)."""
    value = row.get(field)
    if value is None or value == "":
        if required:
            raise Rejected(field, "invalid_record", f"field {field}: required but missing or empty")
        return None
    if not isinstance(value, str):
        raise Rejected(field, "invalid_record", f"field {field}: expected a string, got {type(value).__name__}")
    if mask_secrets(value) != value:  # an id or name holding a key is corrupt, and must not be written
        raise Rejected(field, "invalid_record", f"field {field}: holds what looks like an API key")
    return value


def count(value: Any, field: str) -> int:
    """A required token count (see :func:`optional_count`)."""
    result = optional_count(value, field)
    if result is None:
        raise Rejected(field, "invalid_record", f"field {field}: required token count is missing")
    return result


def optional_count(value: Any, field: str) -> int | None:
    """A token count: a JSON integer or a CSV cell of digits, 0 <= n < 10^12; absent is ``None``.

    As in the pipeline's own input, ``12.5``, ``12.0``, ``-1`` or ``true`` are not counts.
    """
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _MAX_COUNT:
        raise Rejected(
            field, "invalid_record", f"field {field}: expected an integer count >= 0, got {str(value)[:40]!r}"
        )
    return value


def timestamp(value: Any, field: str, *, naive_is_utc: bool) -> str:
    """An RFC 3339 timestamp with an explicit offset, as the pipeline requires (R8).

    ``naive_is_utc`` is for sources whose storage is UTC by contract (LiteLLM's Postgres
    columns, written by Prisma, which stores every DateTime in UTC without an offset).
    """
    if not isinstance(value, str) or not value.strip():
        raise Rejected(field, "bad_timestamp", f"field {field}: expected a timestamp string, got {str(value)[:40]!r}")
    try:
        if len(value.strip()) <= 10:  # a date alone is not an instant
            raise ValueError(value)
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise Rejected(field, "bad_timestamp", f"field {field}: {value[:40]!r} is not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        if not naive_is_utc:
            raise Rejected(field, "bad_timestamp", f"field {field}: {value[:40]!r} has no UTC offset")
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.isoformat()


def cost_text(value: Any, field: str) -> str | None:
    """An upstream cost in USD as a plain decimal string, or ``None`` when the source has none.

    Exporters write the source's binary float as its shortest decimal text (``1.2e-05``); that
    text is taken exactly. Digits beyond 20 decimals (below 10^-20 USD, float noise) are rounded
    half-up, because the pipeline keeps upstream costs at that scale.
    """
    if value is None or value == "":
        return None
    try:
        amount = D(value)
    except MoneyError as exc:
        raise Rejected(field, "invalid_record", f"field {field}: {exc}") from None
    if amount < 0:
        raise Rejected(field, "invalid_record", f"field {field}: negative cost {value}")
    if amount.as_tuple().exponent < -20:  # type: ignore[operator]
        amount = amount.quantize(_COST_QUANTUM)
    return format(amount.normalize() if amount else D(0), "f")


def model_id(name: str | None, field: str) -> str:
    """InferGate's model id for a source model name, or a rejection naming the name."""
    if not name:
        raise Rejected(field, "invalid_record", f"field {field}: required but missing or empty")
    bare = _SNAPSHOT_SUFFIX.sub("", name.strip().lower().rsplit("/", 1)[-1])
    if bare in INFERGATE_MODELS:
        return INFERGATE_MODELS[bare]
    known = ", ".join(INFERGATE_MODELS.values())
    raise Rejected(field, "unmapped_model", f"field {field}: {name[:60]!r} is not an InferGate model ({known})")


def key_id(prefix: str, value: Any) -> str:
    """An ``api_key_id`` that is never a key: a raw key is replaced by its sha256 hex digest.

    LiteLLM stores keys hashed (sha256 hex of the key), so hashing a raw key that slipped into
    an export gives the same id the gateway itself would have stored.
    """
    if not value:
        return f"{prefix}:unknown"
    if not isinstance(value, str):
        raise Rejected("api_key", "invalid_record", f"field api_key: expected a string, got {type(value).__name__}")
    if mask_secrets(value) != value:
        value = hashlib.sha256(value.encode()).hexdigest()
    return f"{prefix}:{value}"
