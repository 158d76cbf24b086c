"""Load, validate and identify the versioned price tables in ``pricing/tables/``.

Each ``*.toml`` file is one version. The set of versions forms a timeline: a request is
priced by the version whose ``effective_from`` <= its ``ts`` < the next version's
``effective_from``. Every version is identified by a sha256 over its canonical JSON form, so
an audit can prove which prices were used even if the file's comments or layout change.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from core.defaults import DEFAULT_TABLES_DIR
from core.errors import BillingError, MissingInput
from core.money import EXACT, Decimal
from pricing.model import ModelPrice, PriceVersion


class PriceTableError(BillingError, ValueError):
    """A price table that must not be used, with the file and field that is wrong."""

    default_hint = (
        "fix that price table (in --prices, default pricing/tables) and check the set with "
        "`infergate-billing prices validate`; nothing was rated"
    )


class PriceTablesMissing(PriceTableError, MissingInput):
    """The price-table directory named by --prices does not exist: a usage error."""


@dataclass(frozen=True)
class LoadedVersion:
    """A validated version, where it came from, its content hash and when it stops."""

    version: PriceVersion
    source_file: str
    sha256: str
    effective_until: datetime | None

    @property
    def version_id(self) -> str:
        return self.version.version


def canonical_json(version: PriceVersion) -> str:
    """Key-sorted JSON of the parsed version with decimals as strings: the hashed form."""
    data = version.model_dump(mode="json")
    data["effective_from"] = version.effective_from.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    data["models"] = sorted(data["models"], key=lambda m: m["model"])
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def content_hash(version: PriceVersion) -> str:
    return hashlib.sha256(canonical_json(version).encode()).hexdigest()


def parse_version_file(path: Path) -> PriceVersion:
    """Parse and validate one version file; errors name the file and the field."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PriceTableError(f"{path}: cannot read price table: {exc}") from None
    try:
        version = PriceVersion.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise PriceTableError(f"{path}: field {field}: {first['msg']}") from None
    _check_markup(path, version)
    return version


def _check_markup(path: Path, version: PriceVersion) -> None:
    """List price must be exactly upstream x markup for every priced token class."""
    for price in version.models:
        pairs: list[tuple[str, Decimal | None, Decimal | None]] = [
            ("input", price.upstream_input_per_1m, price.list_input_per_1m),
            ("output", price.upstream_output_per_1m, price.list_output_per_1m),
            ("cached_input", price.upstream_cached_input_per_1m, price.list_cached_input_per_1m),
        ]
        for klass, upstream, listed in pairs:
            if (upstream is None) != (listed is None):
                raise PriceTableError(
                    f"{path}: model {price.model}: give both upstream_{klass}_per_1m and "
                    f"list_{klass}_per_1m, or neither"
                )
            if upstream is None or listed is None:
                continue
            expected = EXACT.multiply(upstream, version.markup)
            if listed != expected:
                raise PriceTableError(
                    f"{path}: model {price.model}: list_{klass}_per_1m is {listed}, but "
                    f"upstream {upstream} x markup {version.markup} = {expected.normalize():f}"
                )
    models = [p.model for p in version.models]
    duplicated = sorted({m for m in models if models.count(m) > 1})
    if duplicated:
        raise PriceTableError(f"{path}: model listed twice: {', '.join(duplicated)}")


@dataclass(frozen=True)
class PriceBook:
    """All versions, ordered by ``effective_from``, with each one's end derived."""

    versions: tuple[LoadedVersion, ...]

    def in_force_at(self, instant: datetime) -> LoadedVersion | None:
        for loaded in reversed(self.versions):
            if loaded.version.effective_from <= instant:
                return loaded
        return None

    def by_id(self, version_id: str) -> LoadedVersion:
        for loaded in self.versions:
            if loaded.version_id == version_id:
                return loaded
        known = ", ".join(v.version_id for v in self.versions)
        raise PriceTableError(
            f"no price version {version_id!r} (known: {known})",
            hint="give a version id from `infergate-billing prices list`, or the path of a price file (*.toml)",
        )

    def price(self, model: str, instant: datetime) -> ModelPrice | None:
        loaded = self.in_force_at(instant)
        return loaded.version.price_of(model) if loaded else None

    def hashes(self) -> dict[str, str]:
        return {v.version_id: v.sha256 for v in self.versions}


def build_price_book(parsed: Iterable[tuple[str, PriceVersion]]) -> PriceBook:
    """Order versions on the timeline and refuse ambiguous or inconsistent sets."""
    items = sorted(parsed, key=lambda item: item[1].effective_from)
    if not items:
        raise PriceTableError("no price table versions found")
    seen_ids: dict[str, str] = {}
    for source, version in items:
        if version.version in seen_ids:
            raise PriceTableError(
                f"{source}: version id {version.version!r} already used by {seen_ids[version.version]}"
            )
        seen_ids[version.version] = source
    for (src_a, a), (src_b, b) in zip(items, items[1:], strict=False):
        if a.effective_from == b.effective_from:
            raise PriceTableError(
                f"{src_b}: effective_from {b.effective_from.isoformat()} is the same as {src_a}; "
                "two versions in force at once are ambiguous"
            )
    loaded = []
    for index, (source, version) in enumerate(items):
        until = items[index + 1][1].effective_from if index + 1 < len(items) else None
        loaded.append(LoadedVersion(version, source, content_hash(version), until))
    return PriceBook(tuple(loaded))


def load_price_book(directory: Path = DEFAULT_TABLES_DIR, extra_files: Iterable[Path] = ()) -> PriceBook:
    """Load every ``*.toml`` version in ``directory`` (plus ``extra_files``) and validate the set."""
    if not directory.is_dir():
        raise PriceTablesMissing(
            f"{directory}: price table directory does not exist",
            hint="give the directory of price versions (*.toml) with --prices (or INFERGATE_PRICES)",
        )
    files = sorted(directory.glob("*.toml")) + list(extra_files)
    if not files:
        raise PriceTableError(f"{directory}: no price table versions (*.toml) in this directory")
    return build_price_book((str(path), parse_version_file(path)) for path in files)
