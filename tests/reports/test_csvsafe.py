import csv
from datetime import date

import pytest

from pipeline.money import D, Decimal
from reports.csvsafe import neutralize, write_csv


@pytest.mark.parametrize(
    ("cell", "text"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("-2+3", "'-2+3"),
        ("+41 44 000 00 00", "'+41 44 000 00 00"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
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
