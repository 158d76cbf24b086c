"""One local SparkSession for the whole engines-agree suite (starting a JVM costs seconds).

The session runs ``local[2]`` bound to 127.0.0.1 with the web UI off and two shuffle
partitions. Its JVM is started with ``TZ=America/Los_Angeles``, so that only the pinned
session time zone (``spark.sql.session.timeZone=UTC``) can make periods come out as UTC
months: a session left at the JVM's zone would move 2026-12-01T07:30Z into November.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.attempt_store import copy_database
from tests.conftest import Billing

JVM_ZONE = "America/Los_Angeles"
# a short-lived test JVM: the client compiler only and the serial collector start faster and
# use less CPU than the defaults (JIT tiers and GC threads pay off only in long jobs)
JVM_FLAGS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
SAMPLE_LOGS = Path(__file__).resolve().parents[2] / "data" / "sample_logs"
SAMPLE_DAYS = ("2026-11-29", "2026-11-30", "2026-12-01")
SKIP_REASON = "pyspark is not installed (pip install -e '.[spark]'; make test installs it)"


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    pytest.importorskip("pyspark", reason=SKIP_REASON)
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java runtime for PySpark (scripts/check_system.sh installs one as root)")
    from pipeline.spark.session import get_session

    saved = os.environ.get("TZ")
    os.environ["TZ"] = JVM_ZONE  # read by the JVM at launch only; Python never calls tzset()
    try:
        settings = {"spark.sql.shuffle.partitions": "2", "spark.driver.extraJavaOptions": JVM_FLAGS}
        session = get_session("local[2]", settings)
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
    yield session
    session.stop()


@dataclass(frozen=True)
class SampleNights:
    """The sample days on DuckDB, once per test process: test_engines_agree.py's DuckDB side
    and test_spark_kill.py's uninterrupted reference both are these three nightlies."""

    duckdb: Billing  # after all three days: read only, never run again
    before_last: Path  # a closed copy of its database (and lake) after the first two days


@pytest.fixture(scope="session")
def sample_nights(tmp_path_factory: pytest.TempPathFactory) -> SampleNights:
    """The three sample nightlies on DuckDB (data/accounts.toml, the committed prices), run
    in this process; the database after the first two is copied aside before the third."""
    billing = Billing(tmp_path_factory.mktemp("sample-duckdb"))
    billing.settings = dataclasses.replace(
        billing.settings, engine="duckdb", accounts_file=SAMPLE_LOGS.parent / "accounts.toml"
    )
    billing.logs = SAMPLE_LOGS
    before_last = tmp_path_factory.mktemp("sample-duckdb-before-last") / "billing.duckdb"
    for day in SAMPLE_DAYS:
        if day == SAMPLE_DAYS[-1]:
            copy_database(billing.settings.db_path, before_last)
        billing.nightly(day)
    return SampleNights(billing, before_last)
