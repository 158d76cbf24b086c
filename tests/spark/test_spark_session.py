"""The Spark session settings that exact money and UTC periods depend on, checked on a live session."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.spark.conftest import JVM_ZONE, SKIP_REASON

pytest.importorskip("pyspark", reason=SKIP_REASON)

from pipeline.spark.session import SQL_CONF, pin_session  # noqa: E402

PRODUCT = "CAST(1.5 AS DECIMAL(36,14)) * CAST(0.000001 AS DECIMAL(7,6))"
SUM = "CAST(1 AS DECIMAL(38,20)) + CAST(1 AS DECIMAL(38,20))"


def result_type(spark: Any, expression: str) -> str:
    return str(spark.sql(f"SELECT {expression} AS x").schema["x"].dataType.simpleString())


@contextmanager
def setting(spark: Any, key: str, value: str) -> Iterator[None]:
    try:
        spark.conf.set(key, value)
        yield
    finally:
        pin_session(spark)


def test_every_pinned_setting_is_in_force(spark: Any) -> None:
    for key, value in SQL_CONF.items():
        assert spark.conf.get(key).upper() == value.upper(), key


def test_local_session_listens_on_loopback_only(spark: Any) -> None:
    conf = spark.sparkContext.getConf()
    assert conf.get("spark.driver.bindAddress") == "127.0.0.1"
    assert conf.get("spark.driver.host") == "127.0.0.1"
    assert conf.get("spark.ui.enabled") == "false"


def test_charge_product_keeps_scale_20_and_sums_keep_scale_20(spark: Any) -> None:
    assert result_type(spark, PRODUCT) == "decimal(38,20)"
    assert result_type(spark, SUM) == "decimal(38,20)"
    assert spark.sql(f"SELECT {PRODUCT} AS x").first()["x"].as_tuple().exponent == -20


def test_spark_default_would_cut_the_scale_of_a_charge(spark: Any) -> None:
    """Why allowPrecisionLoss is pinned: Spark's default rounds away the last 6 digits."""
    with setting(spark, "spark.sql.decimalOperations.allowPrecisionLoss", "true"):
        assert result_type(spark, PRODUCT) == "decimal(38,14)"
        assert result_type(spark, SUM) == "decimal(38,19)"


def test_overflow_is_an_error_not_null(spark: Any) -> None:
    """ANSI mode: a charge that does not fit its type stops the run instead of becoming NULL."""
    with pytest.raises(Exception, match="(?i)overflow|cannot be represented|NUMERIC_VALUE_OUT_OF_RANGE"):
        spark.sql("SELECT CAST(CAST(1e30 AS DECIMAL(38,0)) AS DECIMAL(38,20)) AS x").collect()


def test_periods_are_utc_although_the_jvm_is_not(spark: Any) -> None:
    jvm_zone = spark.sparkContext._jvm.java.util.TimeZone.getDefault().getID()
    assert jvm_zone == JVM_ZONE  # the fixture's premise: the JVM alone would get this wrong
    row = spark.sql(
        "SELECT current_timezone() AS tz, DATE_FORMAT(ts, 'yyyy-MM') AS period, CAST(ts AS DATE) AS day "
        "FROM (SELECT TIMESTAMP_MICROS(1796110200000000) AS ts)"  # 2026-12-01T07:30:00Z
    ).first()
    assert (row["tz"], row["period"], str(row["day"])) == ("UTC", "2026-12", "2026-12-01")
