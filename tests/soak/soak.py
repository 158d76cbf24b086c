"""``make soak``: the reliability checks of issue #7 at full size, with a summary of counts.

Not part of ``make test`` (it takes tens of minutes and several GB of disk). Sizes come
from the environment, defaults in brackets:

    INFERGATE_SOAK_KILLS      random-instant kills of the nightly            [200]
    INFERGATE_FUZZ_EXAMPLES   hypothesis examples of the hostile-input fuzz  [400]
    INFERGATE_SOAK_SECRETS    rounds of the planted-secrets check            [5]
    INFERGATE_SOAK_LINE_MB    the one long line, MB                          [50]
    INFERGATE_SOAK_LINES      identical lines in one file                    [10000000]
    INFERGATE_SOAK_ACCOUNTS   distinct accounts in one day                   [100000]
    INFERGATE_FAULT_SEED      seed of the random kills                       [fresh, printed]

Every check raises on the first violation (a half-written database, a crash, a lost line, a
leaked key, a run over its memory bound); at the end it prints what it tried.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.faults.harness import FRESH_POINTS, ROOT, RUN_POINTS, Scenario, seed_from_env
from tests.limits import (
    FIXED_OVERHEAD_BYTES,
    bytes_of,
    run_measured,
    write_identical_lines,
    write_long_lines,
    write_many_accounts,
)


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.monotonic()


def crash(work: Path, summary: dict[str, object]) -> None:
    started = step("crash: every named fault point, then random instants")
    scenario = Scenario.build(work / "scenario")
    outcomes: Counter[str] = Counter()
    for point in RUN_POINTS:
        outcomes[scenario.kill(work / f"point-{point.replace(':', '_').replace('#', '_')}", point=point)] += 1
    for point in FRESH_POINTS:
        safe = point.replace(":", "_").replace("#", "_")
        outcomes[scenario.kill(work / f"fresh-{safe}", point=point, fresh=True)] += 1
    seed = seed_from_env()
    delays = scenario.random_delays(env_int("INFERGATE_SOAK_KILLS", 200), seed)
    print(f"random kills: INFERGATE_FAULT_SEED={seed}", flush=True)
    random_outcomes: Counter[str] = Counter()
    for i, delay in enumerate(delays):
        try:
            random_outcomes[scenario.kill(work / f"random-{i}", delay=delay)] += 1
        except AssertionError as exc:
            raise AssertionError(f"INFERGATE_FAULT_SEED={seed}, kill {i} after {delay:.3f}s: {exc}") from exc
        if (i + 1) % 25 == 0:
            print(f"  {i + 1}/{len(delays)} random kills: {dict(random_outcomes)}", flush=True)
    summary["named fault points killed"] = f"{len(RUN_POINTS) + len(FRESH_POINTS)} ({dict(outcomes)})"
    summary["random kills"] = f"{len(delays)} (seed {seed}; {dict(random_outcomes)})"
    summary["crash time"] = f"{time.monotonic() - started:.0f} s"


def fuzz(work: Path, summary: dict[str, object]) -> None:
    started = step("hostile input: hypothesis fuzz")
    examples = env_int("INFERGATE_FUZZ_EXAMPLES", 400)
    work.mkdir(parents=True, exist_ok=True)
    counts = work / "fuzz-counts.txt"
    env = {**os.environ, "INFERGATE_FUZZ_EXAMPLES": str(examples), "INFERGATE_FUZZ_COUNT_FILE": str(counts)}
    test = "tests/test_hostile_input.py"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", test, "-k", "fuzz"], cwd=ROOT, env=env)
    if done.returncode:
        raise AssertionError("the hostile-input fuzz failed (its output is above)")
    rows = [tuple(map(int, line.split())) for line in counts.read_text().split("\n") if line]
    summary["fuzz examples run"] = len(rows)
    summary["hostile records fuzzed"] = sum(r[0] for r in rows)
    summary["injured files"] = sum(r[1] for r in rows)
    summary["lines accounted for"] = sum(r[2] for r in rows)
    summary["fuzz time"] = f"{time.monotonic() - started:.0f} s"


def secret_rounds(work: Path, summary: dict[str, object]) -> None:
    from tests.test_secrets import plant_and_search

    step("secrets: planted keys and texts, searched everywhere")
    rounds = env_int("INFERGATE_SOAK_SECRETS", 5)
    keys = markers = 0
    for i in range(rounds):
        planted = plant_and_search(work / f"secrets-{i}")  # raises on any leak
        keys, markers = keys + len(planted.keys), markers + len(planted.markers)
    summary["secrets planted"] = f"{keys} keys + {markers} prompt/output markers in {rounds} rounds"
    summary["secrets found"] = "0 (any hit raises)"


def limits(work: Path, summary: dict[str, object]) -> None:
    step("input limits at full size")
    line_mb = env_int("INFERGATE_SOAK_LINE_MB", 50)
    lines = env_int("INFERGATE_SOAK_LINES", 10_000_000)
    accounts = env_int("INFERGATE_SOAK_ACCOUNTS", 100_000)
    cases = []
    write_long_lines(work / "long" / "logs", line_mb << 20)
    cases.append((f"two {line_mb} MB lines", work / "long", "2GB", None))
    write_identical_lines(work / "same" / "logs", lines)
    cases.append((f"{lines:,} identical lines", work / "same", "1GB", None))
    accounts_file = write_many_accounts(work / "accounts", accounts)
    cases.append((f"{accounts:,} accounts", work / "accounts", "512MB", accounts_file))
    for title, root, limit, accounts_file in cases:
        print(f"  {title} under --memory-limit {limit} ...", flush=True)
        kwargs = {"accounts": accounts_file} if accounts_file else {}
        result = run_measured(root / "db" / "billing.duckdb", root / "logs", limit, **kwargs)
        if result.returncode:
            raise AssertionError(f"{title}: exit {result.returncode}: {result.stderr}")
        bound = bytes_of(limit) + FIXED_OVERHEAD_BYTES
        if result.peak_rss_bytes > bound:
            raise AssertionError(f"{title}: peak RSS {result.peak_rss_bytes >> 20} MB over {bound >> 20} MB")
        last = [line for line in result.stdout.splitlines() if line.startswith("requests-")]
        summary[title] = (
            f"ok in {result.seconds:.0f} s, peak RSS {result.peak_rss_bytes >> 20} MB (bound {bound >> 20} MB)"
            + (f"; {last[0].split(': ', 1)[1]}" if last else "")
        )


def main() -> None:
    summary: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="infergate-soak-") as tmp:
        work = Path(tmp)
        crash(work / "crash", summary)
        fuzz(work / "fuzz", summary)
        secret_rounds(work / "secrets", summary)
        limits(work / "limits", summary)
    print("\n== soak summary")
    for key, value in summary.items():
        print(f"  {key:<28} {value}")


if __name__ == "__main__":
    main()
