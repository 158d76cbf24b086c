"""The committed Spark SQL is generated from rate.sql by the pinned sqlglot, and is not stale."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from core.db import sql_text
from pipeline.spark import SparkEngineError, sqlgen

sqlglot = pytest.importorskip("sqlglot", reason="sqlglot is not installed (pip install -e '.[spark]')")

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
LOGICAL_TABLES = {
    "scoped_attempts",
    "price_versions",
    "model_prices",
    "accounts",
    "account_groups",
    "price_overrides",
    "issued_prices",
}


def test_committed_spark_sql_is_fresh() -> None:
    fresh = sqlgen.generate(sql_text(sqlgen.SOURCE))
    assert sql_text(sqlgen.TARGET) == fresh, "pipeline/sql/rate.spark.sql is stale: run `make spark-sql`"
    assert sqlgen.main(["--check"]) == 0


def test_the_spark_extra_pins_exact_versions() -> None:
    extra = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]["spark"]
    assert f"sqlglot=={sqlgen.SQLGLOT_PIN}" in extra
    assert any(req.startswith("pyspark==") for req in extra)


def test_another_sqlglot_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlgen, "version", lambda name: "0.0.1")
    with pytest.raises(SparkEngineError, match="is generated with"):
        sqlgen.generate(sql_text(sqlgen.SOURCE))


def tables(text: str, dialect: str) -> set[str]:
    """Tables the statement reads, less its own CTE names."""
    tree = sqlglot.parse_one(text, read=dialect)
    ctes = {cte.alias for cte in tree.find_all(sqlglot.exp.CTE)}
    return {t.name for t in tree.find_all(sqlglot.exp.Table)} - ctes


@pytest.mark.parametrize(("name", "dialect"), [("rate.sql", "duckdb"), ("rate.spark.sql", "spark")])
def test_rating_sql_names_only_logical_tables(name: str, dialect: str) -> None:
    assert tables(sql_text(name), dialect) == LOGICAL_TABLES
