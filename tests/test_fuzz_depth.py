"""Every test module with a depth `make test` cuts short is one `make fuzz` runs whole.

A module that imports ``FULL_DEPTH``, ``examples``, ``superseded`` or ``deep`` from
tests/conftest.py runs fewer examples, kill points, layouts, superseded rules or tests in `make
test` than its full depth; that depth runs only when the Makefile's ``FUZZ_MODULES`` lists the
module: one left out would keep its deep cases in no target at all. (Listed ones rot too when
`make fuzz` is not run: the Spark kill's deep points still expected no keys files after
migration 045 added them, README "Tests".)
"""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
DEPTH_IMPORT = re.compile(r"^from tests\.conftest import [^\n]*\b(FULL_DEPTH|examples|superseded|deep)\b", re.MULTILINE)


def fuzz_modules() -> set[str]:
    """The Makefile's FUZZ_MODULES, as paths from the repository root."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    found = re.search(r"^FUZZ_MODULES := ((?:.*\\\n)*.*)$", makefile, re.MULTILINE)
    assert found, "the Makefile defines FUZZ_MODULES"
    return set(found.group(1).replace("\\\n", " ").split())


def modules_with_a_depth() -> set[str]:
    return {
        path.relative_to(ROOT).as_posix()
        for path in TESTS.rglob("test_*.py")
        if DEPTH_IMPORT.search(path.read_text(encoding="utf-8"))
    }


def test_make_fuzz_runs_every_module_that_make_test_runs_at_a_smoke_depth() -> None:
    listed = fuzz_modules()
    with_depth = modules_with_a_depth()
    assert "tests/spark/test_spark_kill.py" in with_depth  # the scan finds the imports it looks for
    assert with_depth - listed == set(), "add these to the Makefile's FUZZ_MODULES"
    assert all((ROOT / module).is_file() for module in listed), listed
