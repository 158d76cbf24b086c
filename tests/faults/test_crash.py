"""A nightly run SIGKILLed anywhere leaves the database as before or as after, never half, and
a re-run converges to the tables and finance CSV bytes of an uninterrupted run.

Kills at every named fault point (``core/faults.py``) and at seeded random instants; the
seed is printed (``INFERGATE_FAULT_SEED`` replays it, ``INFERGATE_RANDOM_KILLS`` sets how many).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.faults import POINTS
from tests.conftest import FULL_DEPTH, examples
from tests.faults.harness import (
    DAYS,
    FRESH_POINTS,
    GOLDEN,
    RUN_POINTS,
    Scenario,
    cli,
    nightly_args,
    seed_from_env,
)

RANDOM_KILLS = int(os.environ.get("INFERGATE_RANDOM_KILLS", examples(5)))
COMMITTED = ("after_commit#1", "after_close#1")
# `make test` kills at one point of each step of the run (a kill before the commit must leave
# "before" wherever it lands, so points of one step repeat each other), the lake publication
# and both sides of the commit; `make fuzz` (INFERGATE_TEST_DEPTH=full) at every point. Each
# kill is a scenario copy, a forked run and a re-run (~2 CPU-s); all 29 were ~20% of the suite.
SMOKE_POINTS = (
    "after_lock#1",
    "staged_file#2",
    "after_dedup#1",
    "sql:store_batch.sql#3",
    "after_ingest#1",
    "rate:after_delete#1",
    "sql:aggregate.sql#2",
    "after_lake#1",
    "before_commit#1",
    "after_commit#1",
    "after_close#1",
)
KILL_POINTS = RUN_POINTS if FULL_DEPTH else SMOKE_POINTS


def test_uninterrupted_run_matches_the_golden_csvs(scenario: Scenario) -> None:
    assert scenario.after_csv == {p.name: p.read_bytes() for p in sorted(GOLDEN.iterdir())}


def _trace(db: Path, day: str, trace: Path) -> list[str]:
    done = cli(db, *nightly_args(day), env={"INFERGATE_FAULT_TRACE": str(trace)})
    assert done.returncode == 0, done.stderr
    return trace.read_text().split()


def test_every_point_the_run_passes_is_tested(scenario: Scenario, tmp_path: Path) -> None:
    """A point added to the pipeline without a kill test here, or a dead point, fails."""
    db = tmp_path / "billing.duckdb"
    assert _trace(db, DAYS[0], tmp_path / "fresh.trace")[:2] == list(FRESH_POINTS[:2])
    assert set(FRESH_POINTS) <= set(_trace(tmp_path / "fresh2.duckdb", DAYS[0], tmp_path / "fresh2.trace"))
    _trace(db, DAYS[1], tmp_path / "day2.trace")
    passed = _trace(db, DAYS[2], tmp_path / "run.trace")
    assert passed == list(RUN_POINTS)
    assert {p.split("#")[0] for p in passed + list(FRESH_POINTS)} == set(POINTS)


def test_the_smoke_points_are_run_points() -> None:
    assert set(SMOKE_POINTS) <= set(RUN_POINTS)


@pytest.mark.parametrize("point", KILL_POINTS)
def test_killed_at_a_named_point(scenario: Scenario, tmp_path: Path, point: str) -> None:
    assert scenario.kill(tmp_path / "work", point=point) == ("after" if point in COMMITTED else "before")


@pytest.mark.parametrize("point", FRESH_POINTS)
def test_first_run_killed_on_an_empty_database(scenario: Scenario, tmp_path: Path, point: str) -> None:
    expected = "after" if point in COMMITTED else "before"
    assert scenario.kill(tmp_path / "work", point=point, fresh=True) == expected


def test_killed_at_random_instants(scenario: Scenario, tmp_path: Path) -> None:
    seed = seed_from_env()
    delays = scenario.random_delays(RANDOM_KILLS, seed)
    print(f"random kills: INFERGATE_FAULT_SEED={seed} delays={[round(d, 3) for d in delays]}")
    outcomes = []
    for i, delay in enumerate(delays):
        try:
            outcomes.append(scenario.kill(tmp_path / f"kill{i}", delay=delay))
        except AssertionError as exc:
            raise AssertionError(f"INFERGATE_FAULT_SEED={seed}, kill {i} after {delay:.3f}s: {exc}") from exc
    print(f"random kills: outcomes {outcomes}")
