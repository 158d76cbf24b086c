"""A lint on the SQL text, read as SQL (sqlglot's DuckDB parser), so comments never count.

- E1: no division in the files that compute money (rate, aggregate and its line contributions, finance summary): in
  DuckDB ``DECIMAL / INTEGER`` is a DOUBLE; scale by multiplying with an exact DECIMAL literal.
- E2: no cast to a naive ``TIMESTAMP`` in any DuckDB SQL file: it drops the offset.
- E4: no ``QUALIFY`` over ``*``: Spark has no QUALIFY, and sqlglot can only rewrite it into a
  subquery faithfully when the selected columns are spelled out.
"""

from __future__ import annotations

import pytest

from core.db import sql_text
from pipeline.spark.sqlgen import SQL_DIR

sqlglot = pytest.importorskip("sqlglot", reason="sqlglot is not installed (pip install -e '.[spark]')")
exp = sqlglot.exp

MONEY_FILES = (
    "rate.sql",
    "aggregate.sql",
    "line_contributions.sql",
    "finance_summary.sql",
    "statement_lines_due.sql",
    "credit_usage.sql",
)
DUCKDB_FILES = sorted(p.name for p in SQL_DIR.glob("*.sql") if not p.name.endswith(".spark.sql"))
NAIVE = (exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPNTZ)
CHARGE_SCALING = "* CAST(0.000001 AS DECIMAL(7,6))"


def is_star(node: exp.Expression) -> bool:
    return isinstance(node, exp.Star) or (isinstance(node, exp.Column) and isinstance(node.this, exp.Star))


def lint(text: str, money: bool) -> list[str]:
    """Every violation in ``text`` (DuckDB dialect), one line each, naming the rule."""
    found = []
    for statement in sqlglot.parse(text, read="duckdb"):
        if money:
            for node in statement.find_all(exp.Div, exp.IntDiv):
                found.append(f"E1 division on money: {node.sql('duckdb')}")
        for cast in statement.find_all(exp.Cast):  # TRY_CAST, ::TIMESTAMP and TIMESTAMP '...' too
            if cast.to.is_type(*NAIVE):
                found.append(f"E2 naive TIMESTAMP cast: {cast.sql('duckdb')}")
        for select in statement.find_all(exp.Select):
            if select.args.get("qualify") and any(is_star(e) for e in select.expressions):
                found.append(f"E4 QUALIFY over *: {select.sql('duckdb')[:80]}")
    return found


@pytest.mark.parametrize("name", DUCKDB_FILES)
def test_sql_files_pass_the_lint(name: str) -> None:
    assert lint(sql_text(name), money=name in MONEY_FILES) == []


def test_money_files_exist() -> None:
    assert set(MONEY_FILES) <= set(DUCKDB_FILES)


def test_division_on_money_is_caught() -> None:
    """The check behind the demonstration: `x / 1000000` instead of the exact scaling."""
    source = sql_text("rate.sql")
    assert source.count(CHARGE_SCALING) == 4
    broken = source.replace(CHARGE_SCALING, "/ 1000000")
    problems = lint(broken, money=True)
    assert len(problems) == 4 and all(p.startswith("E1") for p in problems)


def test_duckdb_division_on_decimal_is_a_double(memory_db) -> None:
    """Why E1 exists: the result is a binary float, not a decimal."""
    row = memory_db.execute("SELECT typeof(CAST(1.935 AS DECIMAL(18,6)) / 1000000)").fetchone()
    assert row == ("DOUBLE",)


@pytest.mark.parametrize(
    "snippet",
    [
        "SELECT CAST(ts_text AS TIMESTAMP) FROM t",
        "SELECT ts_text::TIMESTAMP FROM t",
        "SELECT TRY_CAST(ts_text AS TIMESTAMP) FROM t",
        "SELECT * FROM t WHERE ts >= TIMESTAMP '2026-11-30 23:30:00'",
    ],
)
def test_naive_timestamp_casts_are_caught(snippet: str) -> None:
    assert [p[:2] for p in lint(snippet, money=False)] == ["E2"]


def test_instant_casts_pass() -> None:
    assert lint("SELECT CAST(ts_text AS TIMESTAMPTZ), TIMESTAMPTZ '2026-12-01 00:00:00Z' FROM t", money=False) == []


@pytest.mark.parametrize("columns", ["*", "t.*", "a, *"])
def test_qualify_over_star_is_caught(columns: str) -> None:
    sql = f"SELECT {columns} FROM t QUALIFY row_number() OVER (PARTITION BY a ORDER BY b, id) = 1"
    assert [p[:2] for p in lint(sql, money=False)] == ["E4"]


def test_qualify_over_explicit_columns_passes() -> None:
    sql = "SELECT a, b, id FROM t QUALIFY row_number() OVER (PARTITION BY a ORDER BY b, id) = 1"
    assert lint(sql, money=False) == []
