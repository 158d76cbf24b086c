"""Spark side of rating: bind Parquet inputs as the logical tables of rate.sql, run, write Parquet.

This module knows nothing of DuckDB: its inputs are Parquet paths or URIs, so the same code
runs in a local session and on a cluster. Types are checked, never coerced (SPEC E5): an
attempts dataset whose ``ts`` is a naive timestamp or whose token counts are strings is
refused rather than cast, and a money column that comes out of the SQL as anything but its
exact DECIMAL type stops the run instead of being written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.db import sql_text
from pipeline.spark import SparkEngineError
from pipeline.spark.sqlgen import TARGET

# The columns of `attempts` that rate.sql reads, with the Spark type each must already have.
ATTEMPT_COLUMNS: dict[str, str] = {
    "event_id": "string",
    "request_id": "string",
    "account_id": "string",
    "attempt": "bigint",
    "ts": "timestamp",  # an instant (TIMESTAMP_LTZ); timestamp_ntz would be a naive time (E2)
    "ts_text": "string",  # R2's tie on ts goes on in the digits past the microsecond
    "model": "string",
    "status": "int",
    "finish_reason": "string",
    "has_usage": "boolean",
    "prompt_tokens": "bigint",
    "completion_tokens": "bigint",
    "cached_tokens": "bigint",
    "reasoning_tokens": "bigint",
    "image_tokens": "bigint",
    "output_text_chars": "bigint",
    "has_messages": "boolean",
    "est_input_tokens": "bigint",
    "est_output_tokens": "bigint",
    "upstream_cost_usd": "decimal(38,20)",
}

REFERENCE_TABLES = ("price_versions", "model_prices", "accounts", "account_groups", "price_overrides")
# the logical tables rate.sql reads beside the attempts, written to ``reference_dir``: the
# reference data, and the prices billed on issued statements that a re-rate keeps (R10)
INPUT_TABLES = (*REFERENCE_TABLES, "issued_prices")

# Output columns that carry money, with the exact type rated_attempts stores.
MONEY_COLUMNS: dict[str, str] = {
    "unit_price_input_uncached": "decimal(24,14)",
    "unit_price_input_cached": "decimal(24,14)",
    "unit_price_output": "decimal(24,14)",
    "charge_input_uncached": "decimal(38,20)",
    "charge_input_cached": "decimal(38,20)",
    "charge_output": "decimal(38,20)",
    "charge_total": "decimal(38,20)",
    "upstream_ref_cost": "decimal(38,20)",
    "upstream_cost_usd": "decimal(38,20)",
}


@dataclass(frozen=True)
class RatingInputs:
    """Where the inputs are: attempts (any superset of the scope), the scope, the reference tables.

    ``scope`` holds (account_id, request_id) pairs: whole request groups, because R2 chooses
    among a request's attempts (None: every request of the attempts is in scope). ``earlier``:
    more attempts, read beside ``attempts`` (a nightly's probed scope: the earlier attempts of
    its requests, beside its own files). ``reference_dir`` holds ``<table>.parquet`` for each
    of :data:`INPUT_TABLES`.
    """

    attempts: str
    scope: str | None
    reference_dir: str
    earlier: str | None = None


def check_types(columns: dict[str, str], schema: Any, what: str) -> None:
    """Refuse a dataset whose columns are missing or of another type (never cast them)."""
    found = {field.name: field.dataType.simpleString() for field in schema.fields}
    for name, expected in columns.items():
        if name not in found:
            raise SparkEngineError(f"{what}: column {name} is missing")
        if found[name] != expected:
            raise SparkEngineError(f"{what}: column {name} is {found[name]}, expected {expected}")


def bind_inputs(spark: Any, inputs: RatingInputs) -> None:
    """Register the logical tables of rate.sql as temp views of this session."""
    scoped = _attempts(spark, inputs.attempts)
    if inputs.earlier is not None:
        scoped = scoped.unionByName(_attempts(spark, inputs.earlier))
    if inputs.scope is not None:
        scope = spark.read.parquet(inputs.scope).select("account_id", "request_id")
        scoped = scoped.join(scope, ["account_id", "request_id"], "left_semi")
    scoped.createOrReplaceTempView("scoped_attempts")
    for table in INPUT_TABLES:
        spark.read.parquet(f"{inputs.reference_dir.rstrip('/')}/{table}.parquet").createOrReplaceTempView(table)


def _attempts(spark: Any, uri: str) -> Any:
    """The columns of :data:`ATTEMPT_COLUMNS` of the attempts at ``uri``, their types checked."""
    attempts = spark.read.parquet(uri)
    check_types(ATTEMPT_COLUMNS, attempts.schema, f"attempts {uri}")
    return attempts.select(*ATTEMPT_COLUMNS)


def count_requests(spark: Any, rated_uri: str) -> int:
    """The distinct requests of the rated rows at ``rated_uri`` (a rating whose scope was every
    request of its attempts: the driver has no scope table to count)."""
    return int(spark.read.parquet(rated_uri).select("account_id", "request_id").distinct().count())


def rate(spark: Any, inputs: RatingInputs) -> Any:
    """The rated attempts of the scope as a DataFrame: the committed Spark SQL over the inputs."""
    bind_inputs(spark, inputs)
    rated = spark.sql(sql_text(TARGET))
    check_types(MONEY_COLUMNS, rated.schema, "rated attempts")
    return rated


def write_rated(rated: Any, out: str) -> None:
    """Write the rated attempts as Parquet (a directory of part files), replacing ``out``."""
    rated.write.mode("overwrite").parquet(out)
