"""A price table that must not be used is refused on load, naming the file and the field.

SPEC section 2: loading fails if a list price differs from upstream x markup, if two versions
overlap ambiguously, or if a price is negative; and a table is data reviewed like code, so
every other mistake the loader can see (a float, a missing or misspelt field, a local time)
stops it too. Each test writes a small table inline, one mistake in it, and loads it the way
every command does (``load_price_book`` over a directory).

The valid table: markup 1.5 on upstream 2 / 8 / 0.5 (input / output / cached input) gives
list prices 3 / 12 / 0.75, computed by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from pricing.versions import PriceTableError, PriceTablesMissing, load_price_book

MODEL = """
[[models]]
model = "{model}"
display_name = "Acme M1"
upstream_input_per_1m = "2"
upstream_output_per_1m = "8"
upstream_cached_input_per_1m = "0.5"
list_input_per_1m = "3"
list_output_per_1m = "12"
list_cached_input_per_1m = "0.75"
"""

VERSION = """
version = "{version}"
effective_from = {effective_from}
currency = "USD"
markup = "1.5"
"""


def table(
    version: str = "v1", effective_from: str = "2026-11-01T00:00:00Z", models: tuple[str, ...] = ("acme/m1",)
) -> str:
    """A valid version: the text each test then breaks in one place."""
    text = VERSION.format(version=version, effective_from=effective_from)
    return text + "".join(MODEL.format(model=model) for model in models)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def refused(folder: Path, *extra: Path) -> str:
    """Load the folder (plus extra files, as `prices validate FILE` does); return the error."""
    with pytest.raises(PriceTableError) as caught:
        load_price_book(folder, extra)
    return str(caught.value)


def test_the_valid_table_loads_with_the_prices_computed_by_hand(tmp_path: Path) -> None:
    """The baseline every refusal below breaks: without it a refusal could come from the fixture."""
    write(tmp_path, "v1.toml", table())
    book = load_price_book(tmp_path)
    price = book.price("acme/m1", datetime(2026, 11, 20, tzinfo=UTC))
    assert price is not None
    assert (price.list_input_per_1m, price.list_output_per_1m, price.cached_input_price()) == (
        Decimal("3"),
        Decimal("12"),
        Decimal("0.75"),
    )
    assert book.price("acme/m1", datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC)) is None  # before the version


# --- list price != upstream x markup ------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "wrong", "message"),
    [
        (
            'list_input_per_1m = "3"',
            'list_input_per_1m = "3.01"',
            "list_input_per_1m is 3.01, but upstream 2 x markup 1.5 = 3",
        ),
        (
            'list_output_per_1m = "12"',
            'list_output_per_1m = "11.99"',
            "list_output_per_1m is 11.99, but upstream 8 x markup 1.5 = 12",
        ),
        (
            'list_cached_input_per_1m = "0.75"',
            'list_cached_input_per_1m = "0.5"',
            "list_cached_input_per_1m is 0.5, but upstream 0.5 x markup 1.5 = 0.75",
        ),
    ],
    ids=["input", "output", "cached_input"],
)
def test_a_list_price_that_is_not_upstream_times_markup(tmp_path: Path, line: str, wrong: str, message: str) -> None:
    path = write(tmp_path, "v1.toml", table().replace(line, wrong))
    assert refused(tmp_path) == f"{path}: model acme/m1: {message}"


def test_the_expected_list_price_is_written_plainly(tmp_path: Path) -> None:
    """180 x 1.5 = 270 normalizes to 2.7E+2 as a Decimal: the message prints 270."""
    text = table().replace('upstream_output_per_1m = "8"', 'upstream_output_per_1m = "180"')
    path = write(tmp_path, "v1.toml", text.replace('list_output_per_1m = "12"', 'list_output_per_1m = "271"'))
    assert refused(tmp_path) == (
        f"{path}: model acme/m1: list_output_per_1m is 271, but upstream 180 x markup 1.5 = 270"
    )


def test_a_markup_that_does_not_match_the_list_prices(tmp_path: Path) -> None:
    """The markup is the field that is wrong here: 2 x 1.6 = 3.2, not the listed 3."""
    path = write(tmp_path, "v1.toml", table().replace('markup = "1.5"', 'markup = "1.6"'))
    assert refused(tmp_path) == f"{path}: model acme/m1: list_input_per_1m is 3, but upstream 2 x markup 1.6 = 3.2"


@pytest.mark.parametrize("markup", ['"0"', '"-1.5"'])
def test_a_markup_that_is_not_positive(tmp_path: Path, markup: str) -> None:
    path = write(tmp_path, "v1.toml", table().replace('markup = "1.5"', f"markup = {markup}"))
    assert refused(tmp_path) == f"{path}: field markup: Value error, markup must be positive"


def test_a_cached_price_given_on_one_side_only(tmp_path: Path) -> None:
    path = write(tmp_path, "v1.toml", table().replace('list_cached_input_per_1m = "0.75"\n', ""))
    assert refused(tmp_path) == (
        f"{path}: model acme/m1: give both upstream_cached_input_per_1m and list_cached_input_per_1m, or neither"
    )


# --- negative prices -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("upstream_input_per_1m", "2"),
        ("upstream_output_per_1m", "8"),
        ("upstream_cached_input_per_1m", "0.5"),
        ("list_input_per_1m", "3"),
        ("list_output_per_1m", "12"),
        ("list_cached_input_per_1m", "0.75"),
    ],
)
def test_a_negative_price(tmp_path: Path, field: str, value: str) -> None:
    path = write(tmp_path, "v1.toml", table().replace(f'{field} = "{value}"', f'{field} = "-{value}"'))
    assert refused(tmp_path) == f"{path}: field models.0.{field}: Value error, price '-{value}' is negative"


def test_a_negative_price_consistent_with_the_markup_is_still_refused(tmp_path: Path) -> None:
    """-2 x 1.5 = -3 passes the markup check; the sign check must stop it first."""
    text = table().replace('upstream_input_per_1m = "2"', 'upstream_input_per_1m = "-2"')
    path = write(tmp_path, "v1.toml", text.replace('list_input_per_1m = "3"', 'list_input_per_1m = "-3"'))
    assert refused(tmp_path) == f"{path}: field models.0.upstream_input_per_1m: Value error, price '-2' is negative"


def test_the_field_names_the_model_it_belongs_to_by_position(tmp_path: Path) -> None:
    text = table(models=("acme/m1", "acme/m2"))
    second = text.index('model = "acme/m2"')
    text = text[:second] + text[second:].replace('list_output_per_1m = "12"', 'list_output_per_1m = "-12"')
    path = write(tmp_path, "v1.toml", text)
    assert refused(tmp_path) == f"{path}: field models.1.list_output_per_1m: Value error, price '-12' is negative"


# --- overlapping versions ------------------------------------------------------------------------


def test_two_versions_in_force_from_the_same_instant(tmp_path: Path) -> None:
    first = write(tmp_path, "a.toml", table(version="v1"))
    second = write(tmp_path, "b.toml", table(version="v2"))
    assert refused(tmp_path) == (
        f"{second}: effective_from 2026-11-01T00:00:00+00:00 is the same as {first}; "
        "two versions in force at once are ambiguous"
    )


def test_a_proposal_in_force_from_the_same_instant_as_a_committed_version(tmp_path: Path) -> None:
    """`prices validate proposal.toml` checks the proposal against the committed set."""
    committed = write(tmp_path / "tables", "2026-11-01.toml", table(version="2026-11-01"))
    proposal = write(tmp_path, "proposal.toml", table(version="proposal"))
    assert refused(tmp_path / "tables", proposal) == (
        f"{proposal}: effective_from 2026-11-01T00:00:00+00:00 is the same as {committed}; "
        "two versions in force at once are ambiguous"
    )


def test_the_same_instant_written_with_other_digits_is_the_same_instant(tmp_path: Path) -> None:
    first = write(tmp_path, "a.toml", table(version="v1", effective_from="2026-11-01T00:00:00Z"))
    second = write(tmp_path, "b.toml", table(version="v2", effective_from="2026-11-01T00:00:00.000Z"))
    assert refused(tmp_path).startswith(f"{second}: effective_from 2026-11-01T00:00:00+00:00 is the same as {first}")


def test_two_files_with_the_same_version_id(tmp_path: Path) -> None:
    first = write(tmp_path, "a.toml", table(version="v1", effective_from="2026-11-01T00:00:00Z"))
    second = write(tmp_path, "b.toml", table(version="v1", effective_from="2026-12-01T00:00:00Z"))
    assert refused(tmp_path) == f"{second}: version id 'v1' already used by {first}"


def test_versions_one_after_another_are_not_an_overlap(tmp_path: Path) -> None:
    """The counterpart of the refusals above: each version ends where the next one starts."""
    write(tmp_path, "a.toml", table(version="v1", effective_from="2026-11-01T00:00:00Z"))
    write(tmp_path, "b.toml", table(version="v2", effective_from="2026-11-15T00:00:00Z"))
    book = load_price_book(tmp_path)
    assert [(v.version_id, v.effective_until) for v in book.versions] == [
        ("v1", datetime(2026, 11, 15, tzinfo=UTC)),
        ("v2", None),
    ]
    assert book.in_force_at(datetime(2026, 11, 14, 23, 59, 59, tzinfo=UTC)).version_id == "v1"  # type: ignore[union-attr]
    assert book.in_force_at(datetime(2026, 11, 15, tzinfo=UTC)).version_id == "v2"  # type: ignore[union-attr]


# --- instants that are not UTC instants ----------------------------------------------------------


def test_an_effective_from_without_an_offset(tmp_path: Path) -> None:
    path = write(tmp_path, "v1.toml", table(effective_from="2026-11-01T00:00:00"))
    assert refused(tmp_path) == (
        f"{path}: field effective_from: Value error, effective_from must be an instant with an offset, "
        "e.g. 2026-11-01T00:00:00Z"
    )


def test_an_effective_from_in_another_zone(tmp_path: Path) -> None:
    path = write(tmp_path, "v1.toml", table(effective_from="2026-11-01T01:00:00+01:00"))
    assert refused(tmp_path) == f"{path}: field effective_from: Value error, effective_from must be written in UTC (Z)"


# --- values that are not exact decimals, and fields that are missing or unknown ------------------


def test_a_price_written_as_a_toml_float(tmp_path: Path) -> None:
    path = write(tmp_path, "v1.toml", table().replace('list_input_per_1m = "3"', "list_input_per_1m = 3.0"))
    assert refused(tmp_path) == (
        f"{path}: field models.0.list_input_per_1m: Value error, 3.0 is a binary float; "
        'write money as a string, e.g. "7.5"'
    )


def test_a_price_with_more_than_six_decimals(tmp_path: Path) -> None:
    text = table().replace('upstream_cached_input_per_1m = "0.5"', 'upstream_cached_input_per_1m = "0.0000002"')
    text = text.replace('list_cached_input_per_1m = "0.75"', 'list_cached_input_per_1m = "0.0000003"')
    path = write(tmp_path, "v1.toml", text)
    assert refused(tmp_path) == (
        f"{path}: field models.0.upstream_cached_input_per_1m: Value error, price '0.0000002' has more than 6 decimals"
    )


def test_a_price_that_is_not_a_number(tmp_path: Path) -> None:
    path = write(tmp_path, "v1.toml", table().replace('list_output_per_1m = "12"', 'list_output_per_1m = "12 USD"'))
    assert refused(tmp_path) == (
        f"{path}: field models.0.list_output_per_1m: Value error, '12 USD' is not a decimal number"
    )


def test_a_missing_price(tmp_path: Path) -> None:
    path = write(tmp_path, "v1.toml", table().replace('list_output_per_1m = "12"\n', ""))
    assert refused(tmp_path) == f"{path}: field models.0.list_output_per_1m: Field required"


def test_a_misspelt_field(tmp_path: Path) -> None:
    path = write(tmp_path, "v1.toml", table().replace("list_output_per_1m", "list_output_per_1M"))
    assert refused(tmp_path) == f"{path}: field models.0.list_output_per_1m: Field required"
    path.write_text(table() + 'list_output_per_1M = "12"\n', encoding="utf-8")  # the typo beside the real field
    assert refused(tmp_path) == f"{path}: field models.0.list_output_per_1M: Extra inputs are not permitted"


def test_a_version_without_models(tmp_path: Path) -> None:
    path = write(tmp_path, "v1.toml", table().split("[[models]]")[0] + "models = []\n")
    assert refused(tmp_path) == f"{path}: field models: Tuple should have at least 1 item after validation, not 0"


def test_a_version_id_that_cannot_name_a_file(tmp_path: Path) -> None:
    path = write(tmp_path, "v1.toml", table(version="2026/11"))
    assert refused(tmp_path) == f"{path}: field version: String should match pattern '^[A-Za-z0-9._-]+$'"


def test_a_model_listed_twice(tmp_path: Path) -> None:
    path = write(tmp_path, "v1.toml", table(models=("acme/m1", "acme/m1")))
    assert refused(tmp_path) == f"{path}: model listed twice: acme/m1"


def test_a_file_that_is_not_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "v1.toml", table().replace('markup = "1.5"', "markup = 1.5 x"))
    message = refused(tmp_path)
    assert message.startswith(f"{path}: cannot read price table: ")


def test_a_currency_other_than_usd(tmp_path: Path) -> None:
    """Statements and every finance column are in US dollars; a EUR table was loaded (and billed
    as dollars) until this test: the loader only refused a mix of currencies."""
    path = write(tmp_path, "v1.toml", table().replace('currency = "USD"', 'currency = "EUR"'))
    assert refused(tmp_path) == (
        f"{path}: field currency: Value error, currency 'EUR' is not USD, "
        "the only currency statements and exports are in"
    )


def test_a_price_directory_without_tables(tmp_path: Path) -> None:
    """An empty --prices directory named no directory until this test ("no price table versions found")."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "2026-11-01.toml.orig").write_text(table(), encoding="utf-8")  # not a *.toml
    assert refused(tmp_path / "empty") == f"{tmp_path / 'empty'}: no price table versions (*.toml) in this directory"


def test_a_price_directory_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(PriceTablesMissing) as caught:
        load_price_book(tmp_path / "nowhere")
    assert str(caught.value) == f"{tmp_path / 'nowhere'}: price table directory does not exist"
    assert caught.value.exit_code == 2  # a usage problem: the option names the wrong place


def test_the_committed_tables_load() -> None:
    """The shipped tables pass every check above (SPEC: the first version is effective 2026-11-01)."""
    book = load_price_book()
    assert book.versions[0].version.effective_from == datetime(2026, 11, 1, tzinfo=UTC)
    assert all(v.version.currency == "USD" for v in book.versions)
