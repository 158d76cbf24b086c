"""Rating on Apache Spark: the same rules (``sql/rate.sql``), transpiled, for logs beyond one machine.

DuckDB stays the embedded default. ``--engine spark`` exports the rating scope, the attempts
and the reference tables to Parquet, runs the Spark SQL generated from ``rate.sql`` (see
:mod:`pipeline.spark.sqlgen`, committed as ``sql/rate.spark.sql``) and loads the rated rows
back, so aggregation, statements and the ledger stay in DuckDB and are the same code for both
engines. Needs the optional extra ``pip install 'infergate-billing[spark]'``.

Only :mod:`pipeline.spark.sqlgen` imports sqlglot and only :mod:`pipeline.spark.session` /
:mod:`pipeline.spark.rating` import pyspark, lazily, so the DuckDB path never needs either.
"""

from __future__ import annotations

from core.errors import BillingError


class SparkEngineError(BillingError):
    """The Spark engine cannot run or refused its input (a one-line message for the CLI)."""

    default_hint = "run with --engine duckdb (the default: the same rules, embedded), or see docs/spark.md"


def require_pyspark() -> None:
    """Fail with the install hint, not an ImportError traceback, when the extra is missing."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise SparkEngineError("--engine spark needs the spark extra: pip install 'infergate-billing[spark]'") from None
