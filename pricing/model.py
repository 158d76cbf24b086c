"""The price model: plain, immutable, validated values for one price-table version.

A price table is data reviewed in git like code. Loading is loud: a list price that is not
exactly upstream x markup, a negative price, a float written where a decimal string belongs,
a currency other than USD, or a missing field stops the load with a message naming the file
and the field (``tests/pricing/`` has one test per refusal).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from core.money import D, Decimal, max_scale

# A price is written with at most this many decimals, so that every unit price derived from
# it (x group multiplier x discount factor) stays exact in DECIMAL(24,14) (SPEC E3).
PRICE_MAX_SCALE = 6


def _exact_price(value: Any) -> Decimal:
    price = D(value)
    if price < 0:
        raise ValueError(f"price {value!r} is negative")
    if max_scale(price) > PRICE_MAX_SCALE:
        raise ValueError(f"price {value!r} has more than {PRICE_MAX_SCALE} decimals")
    return price


Price = Annotated[Decimal, BeforeValidator(_exact_price)]
ExactDecimal = Annotated[Decimal, BeforeValidator(D)]


class ModelPrice(BaseModel):
    """Prices of one model in one version, per 1M tokens, in the version's currency."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(min_length=1)
    display_name: str = Field(min_length=1)
    upstream_input_per_1m: Price
    upstream_output_per_1m: Price
    list_input_per_1m: Price
    list_output_per_1m: Price
    upstream_cached_input_per_1m: Price | None = None
    list_cached_input_per_1m: Price | None = None

    def cached_input_price(self) -> Decimal:
        """Absent a cached-input price, cached input costs the input price (SPEC section 2)."""
        if self.list_cached_input_per_1m is None:
            return self.list_input_per_1m
        return self.list_cached_input_per_1m

    def upstream_cached_input_price(self) -> Decimal:
        if self.upstream_cached_input_per_1m is None:
            return self.upstream_input_per_1m
        return self.upstream_cached_input_per_1m


class PriceVersion(BaseModel):
    """One version of the price table, in force from ``effective_from`` until the next one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    effective_from: datetime
    currency: str
    markup: ExactDecimal
    source: str = ""
    models: tuple[ModelPrice, ...] = Field(min_length=1)

    @field_validator("effective_from")
    @classmethod
    def _must_be_utc_instant(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("effective_from must be an instant with an offset, e.g. 2026-11-01T00:00:00Z")
        if value.utcoffset().total_seconds() != 0:  # type: ignore[union-attr]
            raise ValueError("effective_from must be written in UTC (Z)")
        return value

    @field_validator("currency")
    @classmethod
    def _must_be_usd(cls, value: str) -> str:
        # Statements print USD and every finance column is *_usd (SPEC section 2: "a currency
        # (USD)"); a table in another currency would bill its numbers as dollars.
        if value != "USD":
            raise ValueError(f"currency {value!r} is not USD, the only currency statements and exports are in")
        return value

    @field_validator("markup")
    @classmethod
    def _markup_positive(cls, value: Decimal) -> Decimal:
        if value <= 0:
            raise ValueError("markup must be positive")
        return value

    def price_of(self, model: str) -> ModelPrice | None:
        return next((m for m in self.models if m.model == model), None)
