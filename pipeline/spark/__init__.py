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

import re

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


_TASK_COPY = re.compile(r"\S*infergate-remote-[^/\s]*/")


def spark_error_line(exc: BaseException) -> str:
    """One line saying why Spark failed, without the task's local copy of a file in it.

    py4j errors carry the Java exception (its first line says it); pyspark's own exceptions
    (``AnalysisException``, ``PythonException``) carry a message whose last ``Type: message``
    line is the cause, a Python task's traceback above it (which may name the task's copy under
    ``infergate-remote-*``, :mod:`pipeline.spark.remote`: written as the bare file name here).
    """
    java = getattr(exc, "java_exception", None)
    text = str(java) if java is not None else str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if java is None and lines:
        causes = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception)\b.*: ", line)]
        line = causes[-1] if causes else lines[0]
    else:
        line = lines[0] if lines else type(exc).__name__
    return _TASK_COPY.sub("", line)[:300]
