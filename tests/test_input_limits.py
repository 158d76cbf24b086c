"""Input limits (issue #7, part 5), small versions: a 5 MB line, 200K identical lines and 10K
accounts in one day complete under ``--memory-limit 256MB`` with the right counts, and the
process never grows past that limit plus a fixed overhead. ``make soak`` runs the full
sizes (50 MB, 10M lines, 100K accounts).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import duckdb

from core.db import connect
from tests.limits import (
    FIXED_OVERHEAD_BYTES,
    Measured,
    bytes_of,
    run_measured,
    write_identical_lines,
    write_long_lines,
    write_many_accounts,
)

LIMIT = "256MB"


def completed_within_bounds(result: Measured, limit: str = LIMIT) -> None:
    assert result.returncode == 0, result.stderr
    assert result.peak_rss_bytes < bytes_of(limit) + FIXED_OVERHEAD_BYTES, result.peak_rss_bytes >> 20


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with connect(db, read_only=True) as con:  # the views over the lake files
        return con.execute(sql).fetchall()


def test_five_megabyte_lines(tmp_path: Path) -> None:
    ids = write_long_lines(tmp_path / "logs", 5 << 20)
    result = run_measured(tmp_path / "db" / "billing.duckdb", tmp_path / "logs", LIMIT)
    completed_within_bounds(result)
    rows = dict(query(tmp_path / "db" / "billing.duckdb", "SELECT event_id, usage_source FROM rated_attempts"))
    assert rows == {i: ("estimated" if i == "long-messages" else "provider") for i in ids}


def test_two_hundred_thousand_identical_lines(tmp_path: Path) -> None:
    write_identical_lines(tmp_path / "logs", 200_000)
    result = run_measured(tmp_path / "db" / "billing.duckdb", tmp_path / "logs", LIMIT)
    completed_within_bounds(result)
    assert "read 200000 = accepted 1 + duplicates 199999 + quarantined 0" in result.stdout


def test_ten_thousand_accounts_in_one_day(tmp_path: Path) -> None:
    accounts = write_many_accounts(tmp_path, 10_000)
    db = tmp_path / "db" / "billing.duckdb"
    result = run_measured(db, tmp_path / "logs", LIMIT, accounts)
    completed_within_bounds(result)
    assert query(db, "SELECT count(*), count(DISTINCT account_id) FROM account_period_totals") == [(10_000, 10_000)]


def test_parse_slices_cover_every_line_once_and_bound_the_text_of_a_vector() -> None:
    """Short lines are parsed in big statements across files (every core, one plan), long ones
    in byte-bounded slices; a vector's worth of consecutive lines is bounded across file ends."""
    from pipeline.ingest import staging as ingest

    con = duckdb.connect()
    ingest.create_staging(con)
    sizes = {
        1: [100] * 10_000,
        2: [100] * 3000 + [40_000] * 300 + [100] * 5000,  # a heavy stretch
        3: [100] * 7,  # tiny files: a vector straddles several
        4: [600_000] * 2,  # two lines, each over half of max_bytes: one slice each
        5: [100] * 3,
        6: [100] * 4000,
    }
    for f, lengths in sizes.items():
        con.execute(
            "INSERT INTO staged_lines SELECT ?, 'f', 's', i + 1, repeat('x', (?)[i + 1]), NULL FROM range(?) t(i)",
            [f, lengths, len(lengths)],
        )
    batch = [(f, n) for f, lengths in sizes.items() for n in range(1, len(lengths) + 1)]  # the scan's order
    place = {line: i for i, line in enumerate(batch)}
    max_bytes = 1 << 20
    slices = ingest._line_slices(con, max_bytes)

    def lines_of(span: tuple[int, int, int, int]) -> list[tuple[int, int]]:
        return batch[place[(span[0], span[1])] : place[(span[2], span[3])] + 1]

    assert [line for span in slices for line in lines_of(span)] == batch  # every line once, in order
    # file 1 and the light start of file 2 in one statement, up to the batch's block (of 2048
    # lines, counted from the first line of file 1) that holds the heavy stretch
    assert slices[0] == (1, 1, 2, 6 * 2048 - 10_000)
    for span in slices:
        lines = lines_of(span)
        text = [sizes[f][n - 1] + 1 for f, n in lines]
        if sum(text) > max_bytes:  # a light run: every vector's worth of lines holds <= max_bytes
            assert len(lines) > 1
            sums = list(itertools.accumulate(text, initial=0))
            window = ingest.VECTOR_LINES
            assert max(sums[min(i + window, len(text))] - sums[i] for i in range(len(text))) <= max_bytes, span
    heavy = [s for s in slices if s[0] == s[2] == 2 and s[1] > 2048 and s[3] < 3300]
    assert len(heavy) > 1
    assert all(sum(sizes[2][n - 1] + 1 for n in range(lo, hi + 1)) <= max_bytes for _, lo, _, hi in heavy)
    assert (4, 1, 4, 1) in slices and (4, 2, 4, 2) in slices  # together over max_bytes


def test_parse_over_spans_across_files_gives_what_a_statement_per_line_gives(tmp_path: Path) -> None:
    """Slicing is only about memory: parsing the batch in one span, in spans across file ends,
    or one line at a time gives the same rows."""
    from core.db import connect
    from pipeline.ingest import staging
    from tests.conftest import record

    for f in range(1, 4):
        lines = [json.dumps(record(event_id=f"e{f}-{i}")) for i in range(f * 2)] + ['{"event_id": 1}', " "]
        (tmp_path / f"requests-2026-11-20-{f}.jsonl").write_text("\n".join(lines) + "\n")
    paths = sorted(tmp_path.glob("*.jsonl"))
    results = []
    for slice_bytes in (64 << 20, 3000, 1):
        con = connect(":memory:")
        staging.create_staging(con)
        for order, path in enumerate(paths, start=1):
            staging.stage_file(con, path, order, "sha")
        staging.parse_staged(con, slice_bytes=slice_bytes)
        results.append(con.execute("SELECT * FROM parsed ORDER BY file_order, line_no").fetchall())
        con.close()
    assert len(results[0]) == 3 + 2 + 4 + 6 and results[0] == results[1] == results[2]


def test_recount_fetches_are_bounded_by_rows_and_bytes() -> None:
    """Wanted lines (file, line, bytes) are read in runs of one file, within both bounds."""
    from pipeline.ingest.recounting import fetch_runs as _recount_fetches

    con = duckdb.connect()
    con.execute("CREATE TEMP TABLE recount_wanted (file_order INTEGER, line_no BIGINT, bytes BIGINT)")
    assert _recount_fetches(con, 2, 25) == []
    con.execute("INSERT INTO recount_wanted VALUES (1, 6, 5), (2, 1, 10), (1, 1, 10), (1, 2, 10), (1, 5, 30)")
    # file 1, in line order: rows 0-1 and 2-3 make the row runs; the wanted text before each
    # line is 0, 10, 20, 50 bytes, so lines 1, 2, 5 start in the first 25 bytes and line 6
    # in the third stretch; file 2 starts over
    assert _recount_fetches(con, 2, 25) == [(1, 1, 2), (1, 5, 5), (1, 6, 6), (2, 1, 1)]
    assert _recount_fetches(con, 100, 1 << 20) == [(1, 1, 6), (2, 1, 1)]
    assert _recount_fetches(con, 1, 1 << 20) == [(1, 1, 1), (1, 2, 2), (1, 5, 5), (1, 6, 6), (2, 1, 1)]


def test_a_day_without_any_usage_is_recounted_the_same_in_small_fetches(tmp_path: Path, monkeypatch) -> None:
    """Every attempt recounted (R5), and reading the texts in many small fetches changes no count."""
    import json
    from datetime import date

    from pipeline.ingest import recounting as ingest
    from pipeline.sample_logs import generate_recount_day
    from tests.conftest import Billing

    lines = [json.dumps(r) for r in generate_recount_day(date(2026, 11, 20), 300, seed=7)]
    counts = {}
    fetches: list[int] = []
    real_fetches = ingest.fetch_runs
    for name, rows, size in (("default", ingest.RECOUNT_FETCH_ROWS, ingest.RECOUNT_FETCH_BYTES), ("small", 7, 4096)):
        monkeypatch.setattr(ingest, "RECOUNT_FETCH_ROWS", rows)
        monkeypatch.setattr(ingest, "RECOUNT_FETCH_BYTES", size)

        def counted(con, max_rows, max_bytes, table="recount_wanted"):  # the repeated-key check fetches too
            found = real_fetches(con, max_rows, max_bytes, table)
            if table == "recount_wanted":
                fetches.append(len(found))
            return found

        monkeypatch.setattr(ingest, "fetch_runs", counted)
        billing = Billing(tmp_path / name)
        billing.log("requests-2026-11-20.jsonl", lines)
        billing.nightly()
        counts[name] = billing.query(
            "SELECT event_id, est_input_tokens, est_output_tokens, est_tokenizer FROM attempts ORDER BY event_id"
        )
    assert len(fetches) == 2 and fetches[0] == 1 and fetches[1] >= 300 // 7
    assert len(counts["default"]) == 300
    tokenizers = {"o200k_base", "deepseek_v4"}
    assert all(tokenizer in tokenizers and i > 0 and o > 0 for _, i, o, tokenizer in counts["default"])
    assert counts["small"] == counts["default"]


def test_a_record_nested_past_the_bound_is_unreadable_for_the_recount_at_any_stack_depth() -> None:
    """Whether Python's json refuses deep nesting depends on the caller's stack depth (the CLI,
    replay and a Spark task differ); the recount's own fixed bound decides instead."""
    from pipeline.ingest.recounting import MAX_TEXT_NESTING, _texts

    def line(depth: int) -> str:
        return '{"messages": [{"role": "user", "content": ' + "[" * depth + "]" * depth + '}], "output_text": "x"}'

    def at_depth(frames: int, text: str) -> object:
        return _texts(text) if frames == 0 else at_depth(frames - 1, text)

    inside, outside = line(MAX_TEXT_NESTING - 3), line(MAX_TEXT_NESTING - 2)  # the record adds 3 levels
    for frames in (0, 200):
        assert at_depth(frames, inside) is not None
        assert at_depth(frames, outside) is None
    text = "[[[[ not nesting: inside a string ]]]]"
    assert _texts('{"output_text": "' + text + '"}') == (None, text)
    many = "{[" * MAX_TEXT_NESTING  # more brackets than the bound, all in a string: scanned, shallow
    assert _texts('{"output_text": "' + many + '"}') == (None, many)
