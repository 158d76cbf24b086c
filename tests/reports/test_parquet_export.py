"""Parquet export: hive-partitioned by period, DECIMAL exact through polars and DuckDB."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from core.db import connect
from core.money import D
from reports.parquet_export import write_parquet
from tests.conftest import Billing, BuiltOnce, record, usage


def _build_exported(billing: Billing) -> None:
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            # acct_discount: 12.5 % off. 333 x 0.14745 x 0.875 / 1M = 0.0000429619..: many digits
            record(event_id="n1", account_id="acct_discount", model="deepseek-v4-flash", usage=usage(333, 77)),
            record(event_id="n2", ts="2026-11-30T23:59:59.999999Z", usage=usage(1000, 100)),
            record(event_id="d1", ts="2026-12-01T00:00:00Z", usage=usage(1000, 100)),
            record(event_id="n3", status=500, finish_reason=None, usage=usage(10, 1)),
        ],
    )
    billing.nightly()
    con = connect(billing.settings.db_path, read_only=True)
    try:
        for period in ("2026-11", "2026-12"):
            write_parquet(con, period, billing.root / "parquet")
    finally:
        con.close()


@pytest.fixture(scope="module")
def _exported_once(tmp_path_factory: pytest.TempPathFactory) -> BuiltOnce:
    return BuiltOnce(tmp_path_factory, "exported", _build_exported)


@pytest.fixture
def exported(_exported_once: BuiltOnce) -> tuple[Billing, Path]:
    """November and December exported as Parquet into ``<root>/parquet``: built once per
    module, a fresh copy for each test."""
    billing = _exported_once.restore()
    return billing, billing.root / "parquet"


def test_layout_is_hive_partitioned_by_period(exported: tuple[Billing, Path]) -> None:
    _, out = exported
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        "rated_attempts/period=2026-11/data_0.parquet",
        "rated_attempts/period=2026-12/data_0.parquet",
        "statement_lines/period=2026-11/data_0.parquet",
        "statement_lines/period=2026-12/data_0.parquet",
    ]


def test_polars_reads_decimals_exactly(exported: tuple[Billing, Path]) -> None:
    billing, out = exported
    frame = pl.read_parquet(out / "rated_attempts" / "**" / "*.parquet", hive_partitioning=True).sort("event_id")
    assert frame.schema["charge_total"] == pl.Decimal(38, 20)
    assert frame.schema["unit_price_input_uncached"] == pl.Decimal(24, 14)
    assert frame.schema["ts"] == pl.Datetime("us", "UTC")
    expected = billing.query("SELECT event_id, period, charge_total, upstream_ref_cost FROM rated_attempts ORDER BY 1")
    columns = ("event_id", "period", "charge_total", "upstream_ref_cost")
    got = list(zip(*(frame[c].to_list() for c in columns), strict=True))
    assert got == expected
    # the many-digit charge, by hand: 333 x 0.12901875 / 1M + 77 x 0.25803750 / 1M
    charge = dict(zip(frame["event_id"].to_list(), frame["charge_total"].to_list(), strict=True))["n1"]
    assert charge == D("0.00004296324375") + D("0.0000198688875")
    lines = pl.read_parquet(out / "statement_lines" / "**" / "*.parquet", hive_partitioning=True)
    assert lines.schema["amount"] == pl.Decimal(18, 2) and lines.schema["amount_exact"] == pl.Decimal(38, 20)


def test_duckdb_reads_back_the_same_rows_and_types(exported: tuple[Billing, Path]) -> None:
    billing, out = exported
    con = connect(billing.settings.db_path, read_only=True)
    try:
        for table in ("rated_attempts", "statement_lines"):
            source = f"read_parquet('{out}/{table}/**/*.parquet', hive_partitioning = true)"
            columns = [c for (c,) in con.execute(f"SELECT column_name FROM (DESCRIBE {table})").fetchall()]
            select = ", ".join(columns)
            assert con.execute(f"DESCRIBE SELECT {select} FROM {source}").fetchall() == [
                (*row[:2], "YES", None, None, None) for row in con.execute(f"DESCRIBE {table}").fetchall()
            ]
            for a, b in ((table, source), (source, table)):
                diff = f"SELECT count(*) FROM (SELECT {select} FROM {a} EXCEPT ALL SELECT {select} FROM {b})"
                assert con.execute(diff).fetchall() == [(0,)], (table, a)
    finally:
        con.close()


def test_re_export_replaces_the_partition_and_keeps_the_others(exported: tuple[Billing, Path]) -> None:
    billing, out = exported
    before = (out / "rated_attempts" / "period=2026-12" / "data_0.parquet").read_bytes()
    billing.log("requests-2026-11-21.jsonl", [record(event_id="n4", ts="2026-11-21T08:00:00Z")])
    billing.nightly("2026-11-21")
    con = connect(billing.settings.db_path, read_only=True)
    try:
        write_parquet(con, "2026-11", out)
    finally:
        con.close()
    november = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{out}/rated_attempts/period=2026-11/*')")
    assert november.fetchall() == [(4,)]
    assert (out / "rated_attempts" / "period=2026-12" / "data_0.parquet").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left behind
