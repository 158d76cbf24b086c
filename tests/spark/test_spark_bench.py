"""The smoke of ``make spark-bench``: a tiny day through the nightly comparison, in the suite's
Spark session, so the benchmark cannot rot between full runs (its figures are not checked:
performance targets live in the benchmark, not in tests)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import deep
from tests.spark.conftest import SKIP_REASON

pytest.importorskip("pyspark", reason=SKIP_REASON)


@deep("tests/spark/test_nightly_on_executors.py's nights on alternating engines")
def test_spark_bench_nightly_smoke_runs_both_engines_and_finds_no_difference(
    spark: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("spark_bench", root / "bench" / "spark_bench.py")
    assert spec is not None and spec.loader is not None
    spark_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(spark_bench)
    monkeypatch.chdir(root)  # the bench reads data/accounts.toml
    # --uri: the Spark nightly reads the day through Hadoop (pipeline/spark/remote.py), as make spark-bench may
    # two nights, as make spark-bench runs them: the second probes a history
    # and a night resending the first night's records: all duplicates, on both engines
    argv = ["--nightly", "--nights", "2", "--resend", "--n", "300", "--masters", spark.sparkContext.master, "--uri"]
    spark_bench.main(argv)
    out = capsys.readouterr().out
    assert "attempts/s" in out and "spark local[2] n1" in out and "spark local[2] n2" in out
    assert "duckdb resend" in out and "spark local[2] resend" in out and " MB " in out
    differing = [line for line in out.splitlines() if "rows that differ" in line]
    assert len(differing) == 3 and all(line.endswith(": 0") for line in differing), out
