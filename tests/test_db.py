"""The database helpers: bulk inserts are exact and behave like executemany."""

from __future__ import annotations

from core.db import BULK_ROWS, connect, insert_many
from core.money import D


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
