import csv
import io
from datetime import date

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.db import insert_many
from core.money import EXACT, D, Decimal
from reports.csvsafe import csv_bytes, neutralize, sql_csv_lines, write_csv


@pytest.mark.parametrize(
    ("cell", "text"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("-2+3", "'-2+3"),
        ("+41 44 000 00 00", "'+41 44 000 00 00"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r'=1"),
        ("a\r=1+1", "a\r'=1+1"),
        ("a\n+1", "a\n'+1"),
        ("a\r\n-1", "a\r\n'-1"),
        ("a\n\r@x", "a\n\r'@x"),
        ("a\n\t=1", "a\n'\t=1"),
        ("a\nb=1", "a\nb=1"),
        ("Northwind Analytics GmbH", "Northwind Analytics GmbH"),
        ("a=b", "a=b"),
        ("", ""),
        (None, ""),
        (42, "42"),
        (-7, "-7"),
        (D("-1.23"), "-1.23"),
        (D("1764.770"), "1764.770"),
        (D("1E+3"), "1000"),
        (D("0.000001"), "0.000001"),
        (D("-0.00"), "0.00"),
        (date(2026, 11, 1), "2026-11-01"),
    ],
)
def test_neutralize(cell, text):
    assert neutralize(cell) == text


@pytest.mark.parametrize("cell", [1.5, True, object(), Decimal("NaN")])
def test_neutralize_refuses_what_is_not_a_cell(cell):
    with pytest.raises((TypeError, ValueError)):
        neutralize(cell)


def test_write_csv_is_exact_and_deterministic(tmp_path):
    path = tmp_path / "lines.csv"
    rows = [
        ["acct_1", '=HYPERLINK("http://x")', D("-1.23"), 1_250_000],
        ["acct_2", "@SUM(A1)", D("56.25"), None],
        ["acct_3", "-2+3", D("0"), 0],
        ["acct_4", 'Caf\u00e9, "Zurich"\nAG', D("1174.69"), 3],
    ]
    write_csv(path, ["account_id", "account_name", "usage_usd", "tokens"], rows)
    data = path.read_bytes()
    assert data == (
        b"account_id,account_name,usage_usd,tokens\n"
        b'acct_1,"\'=HYPERLINK(""http://x"")",-1.23,1250000\n'
        b"acct_2,'@SUM(A1),56.25,\n"
        b"acct_3,'-2+3,0,0\n"
        b'acct_4,"Caf\xc3\xa9, ""Zurich""\nAG",1174.69,3\n'
    )
    with open(path, newline="", encoding="utf-8") as handle:
        read = list(csv.reader(handle))
    assert read[1][2] == "-1.23" and read[4][1] == 'Caf\u00e9, "Zurich"\nAG'
    write_csv(path, ["account_id", "account_name", "usage_usd", "tokens"], rows)
    assert path.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["lines.csv"]


def test_write_csv_refuses_ragged_rows(tmp_path):
    with pytest.raises(ValueError, match="row 1 has 1 cells, header has 2"):
        write_csv(tmp_path / "x.csv", ["a", "b"], [["only one"]])
    assert not (tmp_path / "x.csv").exists()


# sql_csv_lines: the same bytes as csv_bytes, written by DuckDB (the detail CSVs of millions of rows)
_SQL_KINDS = (("t", "text"), ("i", "integer"), ("d", "decimal"), ("e", "decimal"))


def _sql_lines(rows):
    # a bare DuckDB: the expression reads no billing table, and migrating a schema per case
    # (core.db.connect) cost 0.3 s each, most of this module's time
    con = duckdb.connect()
    con.execute("CREATE TABLE r (n INTEGER, t VARCHAR, i BIGINT, d DECIMAL(24,14), e DECIMAL(38,20))")
    insert_many(con, "INSERT INTO r VALUES (?, ?, ?, ?, ?)", [(n, *row) for n, row in enumerate(rows)])
    lines = con.execute(f"SELECT line FROM ({sql_csv_lines(_SQL_KINDS, 'r', keep=('n',))}) ORDER BY n").fetchall()
    return b"".join((line + "\n").encode() for (line,) in lines)


def _python_bytes(rows):
    # normalize() under the default 28-digit context would round a 29-digit DECIMAL(38,20);
    # the SQL is exact (real charges have far fewer digits, so the files never differed)
    exact = [tuple(v.normalize(EXACT) if isinstance(v, Decimal) else v for v in row) for row in rows]
    return csv_bytes(("t", "i", "d", "e"), exact).split(b"\n", 1)[1]


@pytest.mark.parametrize(
    "text",
    ["plain", "=1+1", "-2", "+1", "@x", "\t=1", "\r=1", "a,b", 'say "hi"', "two\nlines", "cr\rinside", "",
     "=\u0301accent", "é,\"", "'quoted", " lead", "a\x00b", "a\r=1+1", "a\n+2", "a\r\n-3", "a\r\t=4",
     'a,"b"\r@SUM(A1)', "\r\r=1", "\n"],
)  # fmt: skip
def test_sql_csv_lines_matches_csv_bytes(text):
    rows = [(text, -7, D("2.50000000000000"), D("0E-20")), (None, None, None, None), (text, 0, D("100"), D("1.5"))]
    assert _sql_lines(rows) == _python_bytes(rows)


@pytest.mark.slow  # 60 hypothesis examples, a DuckDB each
@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12) | st.none(),
            st.integers(-(10**12), 10**12) | st.none(),
            st.decimals(min_value=-(10**9), max_value=10**9, places=14, allow_nan=False) | st.none(),
            st.decimals(min_value=-(10**17), max_value=10**17, places=20, allow_nan=False) | st.none(),
        ),
        max_size=8,
    )
)
def test_sql_csv_lines_matches_csv_bytes_for_any_row(rows):
    assert _sql_lines(rows) == _python_bytes(rows)


LIVE = ("=", "+", "-", "@", "\t", "\r")
BREAKS = ("\r", "\n", "\r\n", "\n\r", "\r\r")
WRAPS = ("{}", ",{}", '"{}"', 'x,"y"{}', "{},")


@pytest.mark.parametrize("brk", BREAKS)
@pytest.mark.parametrize("start", ("=", "+", "-", "@", "\t"))
@pytest.mark.parametrize("wrap", WRAPS)
def test_no_cell_or_physical_line_starts_with_a_live_formula(brk, start, wrap):
    # issue 20 item 11: a CR inside a cell was written unquoted and a reader started a new row
    hostile = wrap.format(f"id{brk}{start}1+1")
    rows = [["evt_1", hostile, D("1.50")], [hostile, "plain", D("-2")], [f"{start}x", hostile, 3]]
    data = csv_bytes(["a", "b", "amount"], rows)
    read = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert len(read) == 1 + len(rows) and all(len(r) == 3 for r in read)
    assert read[1][2] == "1.50" and read[2][2] == "-2"  # numbers stay numbers
    for row in read:
        for cell in row:
            assert cell[:1] not in LIVE or cell in ("-2",), cell
            for piece in cell.replace("\r", "\n").split("\n")[1:]:
                assert piece[:1] not in LIVE[:5], cell
    # the text survives, with a ' before each formula start
    assert read[1][1] == "'" * hostile.startswith(tuple(LIVE)) + hostile.replace(f"{brk}{start}", f"{brk}'{start}")
    # a reader that splits physical lines itself sees no live formula at a line start either
    for line in data.decode("utf-8").replace("\r", "\n").split("\n"):
        assert line[:1] not in LIVE[:5] or line.startswith("-2"), line
    # and DuckDB writes the same bytes (statement detail CSVs)
    assert _sql_lines([(hostile, 1, D("1"), D("2"))]) == _python_bytes([(hostile, 1, D("1"), D("2"))])


def test_normal_cells_are_written_as_the_csv_module_writes_them():
    # the golden CSVs stay byte-identical: for data without CR the quoting is csv.QUOTE_MINIMAL's
    rows = [["acct_1", 'Caf\u00e9, "Z"', "two\nlines", "", None, 7, D("-1.20")], ["", "", "", "", "", "", ""]]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([[neutralize(c) for c in r] for r in [list("abcdefg"), *rows]])
    assert csv_bytes(list("abcdefg"), rows) == buffer.getvalue().encode()
    single = io.StringIO()
    csv.writer(single, lineterminator="\n").writerows([["h"], [""]])
    assert csv_bytes(["h"], [[None]]) == single.getvalue().encode() == b'h\n""\n'
