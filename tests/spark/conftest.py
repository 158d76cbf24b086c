"""One local SparkSession for the whole engines-agree suite (starting a JVM costs seconds).

The session runs ``local[2]`` bound to 127.0.0.1 with the web UI off and two shuffle
partitions. Its JVM is started with ``TZ=America/Los_Angeles``, so that only the pinned
session time zone (``spark.sql.session.timeZone=UTC``) can make periods come out as UTC
months: a session left at the JVM's zone would move 2026-12-01T07:30Z into November.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

JVM_ZONE = "America/Los_Angeles"
# a short-lived test JVM: the client compiler only and the serial collector start faster and
# use less CPU than the defaults (JIT tiers and GC threads pay off only in long jobs)
JVM_FLAGS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
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
