"""The SparkSession billing runs in, with the settings exact money and UTC periods depend on.

Runtime SQL settings (pinned on every session we use, also one that spark-submit made, and
read back: a cluster's ``spark-defaults.conf`` must not change a charge):

- ``spark.sql.session.timeZone=UTC`` (SPEC E2): ``DATE_FORMAT(ts, 'yyyy-MM')`` and
  ``CAST(ts AS DATE)`` take the period and usage day in the session time zone; in any other
  zone an attempt at 23:30Z on the 30th would move to the next month.
- ``spark.sql.decimalOperations.allowPrecisionLoss=false`` (E3): with the default ``true``,
  Spark fits a product whose exact precision exceeds 38 digits by cutting its scale, so
  ``DECIMAL(36,14) * DECIMAL(7,6)`` becomes ``DECIMAL(38,14)`` (the last 6 digits of a charge
  are rounded away) and ``DECIMAL(38,20) + DECIMAL(38,20)`` becomes ``DECIMAL(38,19)``. With
  ``false`` the scale is kept (``DECIMAL(38,20)``) and only integer digits are bounded.
- ``spark.sql.ansi.enabled=true``: a decimal that overflows its type, or a bad cast, raises an
  error instead of silently becoming NULL (a NULL charge would be a free request).
- ``spark.sql.storeAssignmentPolicy=ANSI``: no silent lossy casts when writing typed output.
- ``spark.sql.parquet.outputTimestampType=TIMESTAMP_MICROS``: Spark writes ``ts`` as a UTC
  instant (isAdjustedToUTC) that DuckDB reads as ``TIMESTAMPTZ``; the default INT96 carries
  no time-zone meaning.
- ``spark.sql.parquet.datetimeRebaseModeInWrite/InRead=CORRECTED``: proleptic Gregorian dates
  and timestamps on both sides, as DuckDB writes them (no Julian-calendar rebasing).

Static settings for a local session (``local[N]``, tests and single-machine runs): the driver
binds to 127.0.0.1 (``SPARK_LOCAL_IP`` defaults to it) and the web UI is off, so rating opens
no port beyond the loopback; few shuffle partitions, because billing batches are small for
Spark's default of 200. Under ``spark-submit`` the cluster's own static settings are used.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.spark import SparkEngineError, require_pyspark

SQL_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.decimalOperations.allowPrecisionLoss": "false",
    "spark.sql.ansi.enabled": "true",
    "spark.sql.storeAssignmentPolicy": "ANSI",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.parquet.datetimeRebaseModeInWrite": "CORRECTED",
    "spark.sql.parquet.datetimeRebaseModeInRead": "CORRECTED",
}

LOCAL_CONF: dict[str, str] = {
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
}

DEFAULT_MASTER = "local[*]"
MASTER_ENV = "INFERGATE_SPARK_MASTER"


def _quiet_logging_option() -> str:
    """The driver JVM option pointing Log4j 2 at the bundled errors-only configuration (its
    start-up notices are not for a cron job's mail; docs/spark.md)."""
    from importlib import resources

    config = resources.files("pipeline.spark").joinpath("log4j2.properties")
    return f"-Dlog4j2.configurationFile={Path(str(config)).as_uri()}"


def _under_spark_submit() -> bool:
    """spark-submit starts the JVM first and hands its gateway port to Python (pyspark's own test)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def get_session(master: str | None = None, extra: Mapping[str, str] | None = None) -> Any:
    """The active SparkSession (e.g. a test's or spark-submit's), else a new one; always pinned.

    ``master`` (else ``$INFERGATE_SPARK_MASTER``, else ``local[*]``) applies only when no session
    exists and we are not under spark-submit; ``extra`` adds static settings such as
    ``spark.driver.memory`` for a new session.
    """
    require_pyspark()
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    if spark is None:
        builder = SparkSession.builder.appName("infergate-billing")
        if not _under_spark_submit():
            chosen = master or os.environ.get(MASTER_ENV) or DEFAULT_MASTER
            builder = builder.master(chosen)
            if chosen.startswith("local"):
                # the JVM reads this at start: without it Spark picks the first non-loopback interface
                os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
                for key, value in LOCAL_CONF.items():
                    builder = builder.config(key, value)
                # a CLI run prints the run's report, not Spark's start-up log: the driver JVM
                # (spark-submit's, in client mode) reads SPARK_SUBMIT_OPTS, so the options a
                # user keeps in spark.driver.extraJavaOptions stay as they are
                submit_opts = os.environ.get("SPARK_SUBMIT_OPTS", "")
                if "-Dlog4j2.configurationFile=" not in submit_opts:  # the user's own wins
                    os.environ["SPARK_SUBMIT_OPTS"] = f"{submit_opts} {_quiet_logging_option()}".strip()
                builder = builder.config("spark.log.level", "ERROR")
                # Python tasks (parsing on executors) import this package: in local mode they run
                # the driver's interpreter (its venv), not whatever `python3` is first on PATH
                # (read by the JVM at start, like SPARK_LOCAL_IP)
                os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        for key, value in {**SQL_CONF, **(extra or {})}.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")
    pin_session(spark)
    return spark


def pin_session(spark: Any) -> None:
    """Set the runtime SQL settings and read them back: a refused setting stops the run."""
    for key, value in SQL_CONF.items():
        spark.conf.set(key, value)
    found = {key: spark.conf.get(key) for key in SQL_CONF}
    wrong = {key: value for key, value in found.items() if value.upper() != SQL_CONF[key].upper()}
    if wrong:
        raise SparkEngineError(f"Spark session settings not as pinned: {wrong}")
