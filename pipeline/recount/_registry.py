"""Model id -> tokenizer name, from the ``models.toml`` data file shipped with the package.

The mapping is data, not code, so adding a model is a reviewed one-line change. Unknown models
map to None: the caller holds the record rather than billing with a guessed tokenizer.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

KNOWN_TOKENIZERS = frozenset({"o200k_base", "deepseek_v4"})


@dataclass(frozen=True)
class ModelMap:
    """Parsed ``models.toml``: exact ids and prefixes (longest prefix first)."""

    exact: dict[str, str]
    prefixes: tuple[tuple[str, str], ...]

    def lookup(self, model: str) -> str | None:
        """Exact id first, then the longest matching prefix, else None."""
        if model in self.exact:
            return self.exact[model]
        for prefix, tokenizer in self.prefixes:
            if model.startswith(prefix):
                return tokenizer
        return None


def parse_model_map(text: str) -> ModelMap:
    """Parse and validate the TOML text; a typo in a tokenizer name fails loudly at load."""
    data = tomllib.loads(text)
    unknown_sections = set(data) - {"exact", "prefix"}
    if unknown_sections:
        raise ValueError(f"models.toml: unknown sections {sorted(unknown_sections)}")
    exact = _table(data, "exact")
    prefix = _table(data, "prefix")
    if "" in prefix:
        raise ValueError("models.toml: an empty prefix would map every model")
    ordered = tuple(sorted(prefix.items(), key=lambda kv: len(kv[0]), reverse=True))
    return ModelMap(exact=exact, prefixes=ordered)


def _table(data: dict[str, object], name: str) -> dict[str, str]:
    """One ``[name]`` table of model -> tokenizer, checked against the known tokenizers."""
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ValueError(f"models.toml: [{name}] must be a table")
    out: dict[str, str] = {}
    for key, value in table.items():
        if not isinstance(value, str) or value not in KNOWN_TOKENIZERS:
            raise ValueError(
                f"models.toml: [{name}] {key!r} maps to {value!r}, expected one of {sorted(KNOWN_TOKENIZERS)}"
            )
        out[key] = value
    return out


@cache
def model_map() -> ModelMap:
    """The packaged mapping, read once per process."""
    text = resources.files("pipeline.recount").joinpath("models.toml").read_text(encoding="utf-8")
    return parse_model_map(text)
