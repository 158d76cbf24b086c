"""The packages import each other in layers, never in a circle (issue 18).

``core`` is the bottom layer (errors, money, the database connection, fault points) and
imports nothing of ours; ``pricing`` may import ``core``; ``reports`` may import ``core`` and
``pricing``; ``pipeline`` (the jobs and the CLI) may import all of them. A package that
imported one above it would close a loop: ``reports`` importing ``core.db`` while
``pipeline`` imports ``reports`` is how it went wrong before.

The imports are read from the source with ``ast`` (nothing is executed), every import
statement counts, including those inside functions and ``TYPE_CHECKING`` blocks: a deferred
import still couples two packages.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Each package and the packages of ours it may import (a strict order: no cycle is possible).
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "pricing": frozenset({"core"}),
    "reports": frozenset({"core", "pricing"}),
    "pipeline": frozenset({"core", "pricing", "reports"}),
}


@dataclass(frozen=True)
class Import:
    """One import statement of ours: which file, which line, which module it names."""

    path: Path
    line: int
    module: str

    @property
    def importer(self) -> str:
        return self.path.relative_to(ROOT).parts[0]

    @property
    def imported(self) -> str:
        return self.module.split(".")[0]

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line} imports {self.module}"


def our_packages() -> set[str]:
    """The top-level packages the wheel ships (pyproject's setuptools include patterns)."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    patterns = setuptools["packages"]["find"]["include"]
    packages = [p for p in ROOT.iterdir() if (p / "__init__.py").is_file()]
    return {p.name for p in packages if any(fnmatch(p.name, pattern) for pattern in patterns)}


def imports_in(path: Path, packages: set[str]) -> Iterator[Import]:
    """Absolute imports of ``packages`` in one file (relative ones stay inside their package)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            if name.split(".")[0] in packages:
                yield Import(path, node.lineno, name)


def cross_package_imports(packages: set[str]) -> list[Import]:
    return [
        found
        for package in sorted(packages)
        for path in sorted((ROOT / package).rglob("*.py"))
        for found in imports_in(path, packages)
        if found.importer != found.imported
    ]


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a path ``[a, b, ..., a]``, or None (depth-first, three colours)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_every_package_has_a_layer() -> None:
    """A new top-level package must be given its place here before it can import or be imported."""
    assert our_packages() == set(ALLOWED)


def test_the_package_graph_has_no_cycle() -> None:
    found = cross_package_imports(set(ALLOWED))
    edges: dict[str, set[str]] = {}
    for item in found:
        edges.setdefault(item.importer, set()).add(item.imported)
    cycle = find_cycle(edges)
    if cycle:
        pairs = zip(cycle, cycle[1:], strict=False)
        examples = [str(next(i for i in found if (i.importer, i.imported) == pair)) for pair in pairs]
        raise AssertionError(f"import cycle {' -> '.join(cycle)}: " + "; ".join(examples))


def test_each_package_imports_only_the_layers_below_it() -> None:
    wrong = [str(i) for i in cross_package_imports(set(ALLOWED)) if i.imported not in ALLOWED[i.importer]]
    assert wrong == [], "imports against the layering (core < pricing < reports < pipeline):\n" + "\n".join(wrong)


def test_the_walk_sees_real_imports() -> None:
    """The walk finds imports inside functions too; without them the tests above prove nothing."""
    edges = {(i.importer, i.imported) for i in cross_package_imports(set(ALLOWED))}
    assert {("pipeline", "reports"), ("pipeline", "pricing"), ("pricing", "core"), ("reports", "core")} <= edges
    deferred = [i for i in imports_in(ROOT / "pipeline" / "replay.py", set(ALLOWED)) if i.module == "reports.atomic"]
    assert len(deferred) == 2  # one at the top, one inside a function


def test_find_cycle_reports_the_loop() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"pricing": {"pipeline"}, "pipeline": {"pricing"}}) == ["pipeline", "pricing", "pipeline"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"b"}}) == ["b", "c", "b"]
