"""``ts_text`` in the attempts lake files (core/attempt_store.py ``_ts_form``): stored as its
form ("#" + separator + fraction digits + zone) when ``ts`` written in that form gives the text
back byte for byte, else as it is; the views write it out again. The text is what the log
wrote and what analysts and replay read, so the round trip must be exact for every spelling
parse.sql accepts, whatever the session's time zone."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.attempt_store import ATTEMPTS, encode_columns, lake_dir
from pipeline import replay
from tests.conftest import Billing, record

# parse.sql's ts: the text upper-cased, fraction digits past the sixth dropped, cast with its offset
PARSED_TS = "CAST(regexp_replace(upper(?), '(\\.[0-9]{6})[0-9]+', '\\1') AS TIMESTAMPTZ)"


# the attempts files' encoding of ts_text alone (its helper column included), as a run writes it
TS_TEXT_ONLY = dataclasses.replace(ATTEMPTS, encoded=tuple(e for e in ATTEMPTS.encoded if e[0] == "ts_text"))
[(_, _, DECODED)] = TS_TEXT_ONLY.encoded


def round_trip(con: duckdb.DuckDBPyConnection, text: str) -> tuple[str, str]:
    """(stored, read back) of ``text`` through the encoding and the decoding."""
    row = f"SELECT ?::VARCHAR AS ts_text, {PARSED_TS} AS ts"
    encoded = encode_columns(TS_TEXT_ONLY, row)
    (stored,) = con.execute(f"SELECT ts_text FROM ({encoded})", [text, text]).fetchone() or ("",)
    (back,) = con.execute(f"SELECT {DECODED} FROM ({row}) r", [stored, text]).fetchone() or ("",)
    return stored, back


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'Asia/Kolkata'")  # the form must not depend on the session's zone
    return connection


def spelled(instant: datetime, minutes: int, separator: str, fraction: str, zone: str | None) -> str:
    """``instant`` written as RFC 3339 in the offset ``minutes`` (zone: "Z"/"z" for 0, else
    ``None`` for +hh:mm/-hh:mm; -00:00 when minutes is 0 and zone is "-")."""
    local = instant + timedelta(minutes=minutes)
    if zone in ("Z", "z"):
        written = zone
    else:
        sign = "-" if minutes < 0 or zone == "-" else "+"
        written = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    dot = f".{fraction}" if fraction else ""
    return local.strftime(f"%Y-%m-%d{separator}%H:%M:%S") + dot + written


@settings(max_examples=300, deadline=None)
@given(
    seconds=st.integers(0, 30 * 365 * 86400),
    minutes=st.integers(-(23 * 60 + 59), 23 * 60 + 59),
    separator=st.sampled_from(["T", "t", " "]),
    fraction=st.text("0123456789", max_size=12),
    zone=st.sampled_from(["Z", "z", None, "-"]),
)
def test_every_accepted_spelling_reads_back_as_written(
    con: duckdb.DuckDBPyConnection, seconds: int, minutes: int, separator: str, fraction: str, zone: str | None
) -> None:
    instant = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    if zone in ("Z", "z", "-"):
        minutes = 0
    text = spelled(instant, minutes, separator, fraction, zone)
    stored, back = round_trip(con, text)
    assert back == text
    # the form is taken whenever ts holds every digit (else the text is kept, and nothing is saved)
    assert stored.startswith("#") == (len(fraction) <= 6), (text, stored)
    if stored.startswith("#"):
        assert "." not in stored  # the Spark rating's tie past the microsecond reads no digits in a form


def test_the_forms_of_common_spellings(con: duckdb.DuckDBPyConnection) -> None:
    assert round_trip(con, "2026-11-30T23:30:00-08:00") == ("#T0-08:00", "2026-11-30T23:30:00-08:00")
    assert round_trip(con, "2026-12-01 05:30:00.120+05:30") == ("# 3+05:30", "2026-12-01 05:30:00.120+05:30")
    assert round_trip(con, "2026-11-20t12:00:00.000001z") == ("#t6z", "2026-11-20t12:00:00.000001z")
    assert round_trip(con, "2026-11-20T12:00:00-00:00") == ("#T0-00:00", "2026-11-20T12:00:00-00:00")
    kept = "2026-11-20T12:00:00.1234567Z"  # the seventh digit is not in ts: stored as written
    assert round_trip(con, kept) == (kept, kept)


def test_a_nightly_stores_forms_and_the_view_reads_every_text_as_the_log_wrote_it(billing: Billing) -> None:
    spellings = {
        "a": "2026-11-20T12:00:00Z",
        "b": "2026-11-20 04:00:00.5-08:00",
        "c": "2026-11-20t17:30:00.123456+05:30",
        "d": "2026-11-20T12:00:00.1234567891Z",
        "e": "2026-11-20T12:00:00.000-00:00",
    }
    billing.log("requests-2026-11-20.jsonl", [record(event_id=k, ts=v) for k, v in spellings.items()])
    billing.nightly()
    assert dict(billing.query("SELECT event_id, ts_text FROM attempts")) == spellings
    [path] = (lake_dir(billing.settings.db_path) / "attempts").glob("*.parquet")
    stored = dict(duckdb.sql(f"SELECT event_id, ts_text FROM '{path}'").fetchall())
    assert stored == {"a": "#T0Z", "b": "# 1-08:00", "c": "#t6+05:30", "d": spellings["d"], "e": "#T3-00:00"}
    # a re-execution reads and writes them alike
    assert replay.verify_run(billing.settings, 1).status == "MATCH"
