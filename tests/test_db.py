"""The database helpers: bulk inserts are exact and behave like executemany."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from core.db import BULK_ROWS, _migrations, connect, insert_many, migrate
from core.money import D
from tests.conftest import migrated_database


def test_bulk_insert_many_is_exact_and_equals_executemany() -> None:
    con = connect(":memory:")
    con.execute("CREATE TABLE t (a VARCHAR, b BIGINT, c DECIMAL(38,20), d VARCHAR[], e BOOLEAN, f VARCHAR)")
    rows = [
        (f"x{i}", i if i % 3 else None, D("0.00000000000000000001") * i + D("12345678901234567"), ["a", str(i)],
         i % 2 == 0, None)
        for i in range(BULK_ROWS * 3)
    ]  # fmt: skip
    insert_many(con, "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", rows)
    few = [(f"y{i}", i, D("1.5"), [], True, "z") for i in range(3)]  # below BULK_ROWS: executemany
    insert_many(con, "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", few)
    insert_many(con, "INSERT INTO t (a, f) VALUES (?, 'constant')", [(f"w{i}",) for i in range(BULK_ROWS)])
    insert_many(con, "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", [])
    stored = con.execute("SELECT a, b, c, d, e, f FROM t WHERE a LIKE 'x%' ORDER BY b NULLS FIRST, a").fetchall()
    assert sorted(stored, key=lambda r: (r[1] is not None, r[1] or 0, r[0])) == sorted(
        [tuple(r) for r in rows], key=lambda r: (r[1] is not None, r[1] or 0, r[0])
    )
    assert con.execute("SELECT count(*) FROM t WHERE f = 'constant' AND b IS NULL").fetchone() == (BULK_ROWS,)
    assert con.execute("SELECT sum(c) FROM t WHERE a LIKE 'y%'").fetchone() == (D("4.5"),)


# the catalog the database file holds (not a connection's TEMP objects, such as the view
# attempts over the lake files, core/attempt_store.py)
_CATALOG = {
    "tables": "SELECT table_name, comment, sql FROM duckdb_tables() WHERE NOT internal AND NOT temporary ORDER BY ALL",
    "columns": "SELECT table_name, column_name, column_index, data_type, column_default, is_nullable, comment"
    " FROM duckdb_columns() WHERE NOT internal AND database_name <> 'temp' ORDER BY ALL",
    "views": "SELECT view_name, comment, sql FROM duckdb_views() WHERE NOT internal AND NOT temporary ORDER BY ALL",
    "indexes": "SELECT index_name, table_name, is_unique, sql FROM duckdb_indexes() ORDER BY ALL",
    "constraints": "SELECT table_name, constraint_type, constraint_text FROM duckdb_constraints() ORDER BY ALL",
    "sequences": "SELECT sequence_name, start_value, comment FROM duckdb_sequences() ORDER BY ALL",
    "macros": "SELECT function_name, function_type, comment FROM duckdb_functions() WHERE NOT internal ORDER BY ALL",
    "migrations": "SELECT name FROM schema_migrations ORDER BY name",
    "state": "SELECT key, value FROM rating_state ORDER BY key",
}


def _catalog(path: Path) -> dict[str, list[tuple[object, ...]]]:
    con = connect(path, read_only=True)
    try:
        return {name: con.execute(sql).fetchall() for name, sql in _CATALOG.items()}
    finally:
        con.close()


def test_the_tests_copied_database_is_the_migrated_catalog(tmp_path: Path) -> None:
    """Billing starts from a copy of a migrated database (tests/conftest.py): it must be exactly
    what migrating a new file builds (tables, columns, views, comments, migrations applied), and
    opening it read-write must find no migration pending."""
    connect(tmp_path / "migrated.duckdb").close()
    copied = migrated_database(tmp_path / "copied" / "billing.duckdb")
    assert _catalog(copied) == _catalog(tmp_path / "migrated.duckdb")
    assert len(_catalog(copied)["migrations"]) == len(_migrations()) > 10
    con = connect(copied)
    try:
        assert migrate(con) == []
    finally:
        con.close()


def test_migration_030_merges_lines_that_differ_only_in_price_basis(tmp_path: Path) -> None:
    """A database from before 030 holds a 'list' and an 'override' line at one unit price (each
    rounded on its own, 0.045 -> 0.05 twice): the migration makes them the one line a statement
    prints, 0.09 exact rounded once, with the override's requests counted."""
    db = migrated_database(tmp_path / "billing.duckdb")
    con = connect(db)
    con.execute("DELETE FROM schema_migrations WHERE name LIKE '030_%'")
    con.execute("ALTER TABLE statement_lines DROP COLUMN override_requests")
    line = "('acct', '2026-11', 'openai/gpt-5.5', 'output', '2026-11-01', ?, 45, 1000, ?, 0.045, 0.05)"
    con.execute(f"INSERT INTO statement_lines VALUES {line}, {line}", ["list", 1, "override", 2])
    con.execute(
        "INSERT INTO statement_lines VALUES ('acct', '2026-11', 'openai/gpt-5.5', 'input_uncached', "
        "'2026-11-01', 'override', 6, 1000, 3, 0.006, 0.01)"
    )
    con.close()
    con = connect(db)  # applies 030
    rows = con.execute(
        "SELECT token_class, price_basis, quantity_tokens, billed_requests, override_requests, amount_exact, amount "
        "FROM statement_lines ORDER BY token_class"
    ).fetchall()
    con.close()
    assert rows == [
        ("input_uncached", "override", 1000, 3, 3, D("0.006"), D("0.01")),
        ("output", "list+override", 2000, 3, 2, D("0.09"), D("0.09")),
    ]


def test_migration_034_keeps_the_listed_files_as_part_0_and_lists_several_parts_a_run(tmp_path: Path) -> None:
    """lake_files before 034 is keyed by (table_name, run_id): one file a run. The migration
    rebuilds it keyed by (table_name, run_id, part), every listed file part 0, so a Spark run's
    tasks can each list the attempts file they wrote; one part of a run is still listed once."""
    db = migrated_database(tmp_path / "billing.duckdb")
    con = connect(db)
    listed = db.with_suffix(".lake") / "attempts" / "run-000007.parquet"
    listed.parent.mkdir(parents=True)
    con.execute(f"COPY (SELECT * EXCLUDE (event_key, request_key) FROM attempts LIMIT 0) TO '{listed}'")
    row = (7, "attempts", "attempts/run-000007.parquet", 0, listed.stat().st_size)
    con.execute(
        "INSERT INTO lake_files (run_id, table_name, path, row_count, bytes, written_at) VALUES (?, ?, ?, ?, ?, now())",
        list(row),
    )
    # the table as 020 made it
    con.execute("CREATE TABLE old_lake_files AS SELECT * EXCLUDE (part) FROM lake_files")
    con.execute("DROP TABLE lake_files")
    con.execute(
        "CREATE TABLE lake_files (run_id BIGINT NOT NULL, table_name VARCHAR NOT NULL, path VARCHAR NOT NULL, "
        "row_count BIGINT NOT NULL, bytes BIGINT NOT NULL, written_at TIMESTAMPTZ NOT NULL, "
        "PRIMARY KEY (table_name, run_id))"
    )
    con.execute("INSERT INTO lake_files SELECT * FROM old_lake_files")
    con.execute("DROP TABLE old_lake_files")
    con.execute("DELETE FROM schema_migrations WHERE name LIKE '034_%'")
    con.close()
    con = connect(db)  # applies 034
    try:
        assert con.execute("SELECT run_id, table_name, path, row_count, bytes, part FROM lake_files").fetchall() == [
            (*row, 0)
        ]
        part = "INSERT INTO lake_files VALUES (7, 'attempts', ?, 1, 10, now(), ?)"
        con.execute(part, ["attempts/run-000007-part-000001.parquet", 1])
        with pytest.raises(duckdb.ConstraintException):
            con.execute(part, ["attempts/run-000007-part-000001.parquet", 1])
    finally:
        con.close()


def test_a_database_that_applied_the_lake_parts_migration_as_033_opens(tmp_path: Path) -> None:
    """Migration 034 was 033_lake_file_parts.sql on main for a few commits: a database that
    applied it under that name (and listed a Spark task's part 1 since) must not run its table
    rebuild again (every part set back to 0: a duplicate key, and no command could open it)."""
    import duckdb

    from core.attempt_store import lake_dir
    from tests.conftest import Billing, record

    billing = Billing(tmp_path)
    billing.log("requests-2026-11-20.jsonl", [record(event_id="a", request_id="r-a")])
    billing.nightly()
    db = billing.settings.db_path
    con = duckdb.connect(str(db))
    con.execute("UPDATE schema_migrations SET name = '033_lake_file_parts.sql' WHERE name = '034_lake_file_parts.sql'")
    ((first,),) = con.execute("SELECT path FROM lake_files WHERE table_name = 'attempts'").fetchall()
    lake = lake_dir(db)
    (lake / "attempts/run-000001-part-000001.parquet").write_bytes((lake / first).read_bytes())
    con.execute(
        "INSERT INTO lake_files (run_id, table_name, path, row_count, bytes, written_at, part) "
        "SELECT run_id, table_name, 'attempts/run-000001-part-000001.parquet', row_count, bytes, now(), 1 "
        "FROM lake_files WHERE table_name = 'attempts' AND part = 0"
    )
    con.close()
    con = connect(db)
    try:
        assert con.execute("SELECT part FROM lake_files WHERE table_name = 'attempts' ORDER BY 1").fetchall() == [
            (0,),
            (1,),
        ]
    finally:
        con.close()


def test_a_scratch_database_migrated_without_comments_has_the_same_catalog() -> None:
    """Replay's in-memory scratch skips the COMMENT ON statements (two thirds of a fresh
    migration's time): the same tables, columns, types and views, the same migrations recorded,
    and no comment; a database file is never migrated that way."""
    catalog = (
        "SELECT table_name, column_name, data_type, comment IS NOT NULL AND comment <> '' FROM duckdb_columns() "
        "WHERE schema_name = 'main' ORDER BY ALL"
    )
    full, scratch = connect(":memory:"), connect(":memory:", documented=False)
    try:
        documented = full.execute(catalog).fetchall()
        bare = scratch.execute(catalog).fetchall()
        assert [row[:3] for row in bare] == [row[:3] for row in documented]
        assert sum(row[3] for row in documented) > 400 and not any(row[3] for row in bare)
        views = "SELECT view_name, sql FROM duckdb_views() WHERE NOT internal ORDER BY 1"
        assert scratch.execute(views).fetchall() == full.execute(views).fetchall()
        names = "SELECT name FROM schema_migrations ORDER BY 1"
        assert scratch.execute(names).fetchall() == full.execute(names).fetchall() == [(n,) for n, _ in _migrations()]
    finally:
        full.close()
        scratch.close()
    with pytest.raises(ValueError, match="only an in-memory scratch"):
        connect(Path("never.duckdb"), documented=False)


def test_a_listing_refuses_a_database_an_earlier_version_wrote_until_migrate(tmp_path: Path) -> None:
    """A reader never migrates: after an upgrade, before the first run, export (any listing)
    names the migrations missing and the command that applies them, instead of failing on a
    column the queries expect (credit_note_lines.printed_refunded_usd, migration 048)."""
    from tests.conftest import cli_in_process

    db = migrated_database(tmp_path / "billing.duckdb")
    with duckdb.connect(str(db)) as con:  # as main wrote it before migration 048 (and 049-052)
        con.execute("ALTER TABLE credit_note_lines DROP COLUMN printed_refunded_usd")
        con.execute("ALTER TABLE credit_note_lines DROP COLUMN printed_given_back_usd")
        con.execute("ALTER TABLE credit_note_lines DROP COLUMN printed_ask_restored_usd")
        con.execute("DROP TABLE credit_note_money")
        con.execute("DELETE FROM schema_migrations WHERE name >= '048'")
    # the database by its name in the working directory: an error message is cut at 300 characters
    # (redact.safe_error_message), and a worker's tmp path in it cut the list of five pending
    # migrations before its closing parenthesis
    name = db.relative_to(tmp_path)
    export = ("--db", str(name), "export", "--period", "2026-11", "--out", str(tmp_path / "out"), "--allow-empty")
    refused = cli_in_process(*export, cwd=tmp_path)
    assert refused.exit_code == 1
    # more than three pending: the error names the first and the last, so it is never cut
    assert "5 schema migration(s) not applied yet (048_statement_layout_13.sql to 052_credit_note_rule_9.sql)" in (
        refused.stderr
    )
    assert f"infergate-billing --db {name} migrate" in refused.stderr
    assert not (tmp_path / "out").exists()
    applied = cli_in_process("--db", str(name), "migrate", cwd=tmp_path)
    pending = (  # migrate's report names every one it applied
        "048_statement_layout_13.sql, 049_credit_note_rule_6.sql, 050_credit_note_rule_7.sql, "
        "051_credit_note_rule_8.sql, 052_credit_note_rule_9.sql"
    )
    assert applied.exit_code == 0 and f"applied 5 migration(s): {pending}" in applied.stdout
    again = cli_in_process("--db", str(name), "migrate", cwd=tmp_path)
    assert again.exit_code == 0 and "no migration pending" in again.stdout
    after = cli_in_process(*export, cwd=tmp_path)
    assert after.exit_code == 0, after.stderr


def test_pending_migrations_are_named_in_full_up_to_three_then_as_a_range() -> None:
    """The refusal names what is missing without growing past the 300 characters an error keeps."""
    from pipeline.cli.base import _migration_range

    assert _migration_range(["051_a.sql"]) == "051_a.sql"
    assert _migration_range(["050_a.sql", "051_b.sql", "052_c.sql"]) == "050_a.sql, 051_b.sql, 052_c.sql"
    assert _migration_range([f"0{n}_x.sql" for n in range(10, 60)]) == "010_x.sql to 059_x.sql"
