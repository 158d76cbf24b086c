"""Statements: finalize, immutability, prior-period adjustments, numbering, safety (R7, R10)."""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from pypdf import PdfReader

from core.money import D
from pipeline import jobs, replay
from tests.conftest import Billing, BuiltOnce, record, usage
from tests.forked_cli import run_cli


def finalize(billing: Billing, period: str, out: Path, issued: str, allow_empty: bool = False) -> list[str]:
    when = date.fromisoformat(issued)
    result = jobs.run_statements(billing.settings, period, out, finalize=True, issue_date=when, allow_empty=allow_empty)
    return [st.number for st in result.statements if st.number]


def pdf_text(path: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _build_november(billing: Billing) -> None:
    # acct_plain: 100k input x 7.5/1M = 0.75 ; 10k output x 45/1M = 0.45 ; total 1.20
    # acct_discount (12.5%): 100k x 6.5625/1M = 0.65625 -> 0.66 ; 10k x 39.375/1M = 0.39375 -> 0.39
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="n1", account_id="acct_plain", usage=usage(100_000, 10_000)),
            record(event_id="n2", account_id="acct_discount", usage=usage(100_000, 10_000)),
        ],
    )
    billing.nightly("2026-11-20")


def _build_november_issued(billing: Billing) -> None:
    _build_november(billing)
    finalize(billing, "2026-11", billing.root / "out", "2026-12-01")


@pytest.fixture(scope="module")
def _november_once(tmp_path_factory: pytest.TempPathFactory) -> BuiltOnce:
    return BuiltOnce(tmp_path_factory, "november", _build_november)


@pytest.fixture(scope="module")
def _november_issued_once(tmp_path_factory: pytest.TempPathFactory) -> BuiltOnce:
    return BuiltOnce(tmp_path_factory, "november-issued", _build_november_issued)


@pytest.fixture
def november(_november_once: BuiltOnce) -> tuple[Billing, Path]:
    """November rated (one nightly), nothing issued; built once per module, a fresh copy each test."""
    billing = _november_once.restore()
    return billing, billing.root / "out"


@pytest.fixture
def november_issued(_november_issued_once: BuiltOnce) -> tuple[Billing, Path]:
    """``november`` with its statements issued on 2026-12-01 (``finalize`` into ``out``)."""
    billing = _november_issued_once.restore()
    return billing, billing.root / "out"


def test_finalize_issues_numbered_statements_whose_totals_agree_everywhere(november) -> None:
    billing, out = november
    assert finalize(billing, "2026-11", out, "2026-12-01") == ["IG-2026-11-000001", "IG-2026-11-000002"]
    folder = out / "statements" / "2026-11"
    assert billing.query("SELECT statement_number, total_usd FROM statements ORDER BY 1") == [
        ("IG-2026-11-000001", D("1.05")),
        ("IG-2026-11-000002", D("1.20")),
    ]
    # the PDF prints the same total as the lines CSV and the database
    text = pdf_text(folder / "IG-2026-11-000002.pdf")
    assert "IG-2026-11-000002" in text and "Plain Ltd" in text and "$1.20" in text
    rows = list(csv.DictReader(io.StringIO((folder / "IG-2026-11-000002-lines.csv").read_text())))
    assert sum(D(r["amount_usd"]) for r in rows) == D("1.20")
    assert [(r["token_class"], r["amount_usd"]) for r in rows] == [("input_uncached", "0.75"), ("output", "0.45")]
    detail = list(csv.DictReader(io.StringIO((folder / "IG-2026-11-000002-detail.csv").read_text())))
    assert [(d["event_id"], d["charge_usd"]) for d in detail] == [("n1", "1.2")]
    stored = billing.query("SELECT file_name, sha256 FROM statement_files WHERE kind = 'pdf' ORDER BY 1")
    assert stored == [(p.name, sha(p)) for p in sorted(folder.glob("*.pdf"))]


def test_late_records_become_an_adjustment_on_the_next_statement(november_issued) -> None:
    billing, out = november_issued
    issued_pdf = out / "statements" / "2026-11" / "IG-2026-11-000002.pdf"
    before = sha(issued_pdf)
    billing.log(
        "requests-2026-12-01.jsonl",
        [
            # late for November: 200k input x 7.5/1M = 1.50
            record(event_id="late", account_id="acct_plain", ts="2026-11-30T10:00:00Z", usage=usage(200_000, 0)),
            record(event_id="d1", account_id="acct_plain", ts="2026-12-01T10:00:00Z", usage=usage(100_000, 10_000)),
        ],
    )
    billing.nightly("2026-12-01")
    billing.nightly("2026-12-01")
    again = jobs.run_statements(billing.settings, "2026-11", out, finalize=True)
    assert again.already_finalized and sha(issued_pdf) == before
    assert billing.rated("late")["period"] == "2026-11"

    numbers = finalize(billing, "2026-12", out, "2027-01-01")
    assert numbers == ["IG-2026-12-000003"]  # global, gap-free; acct_discount has nothing in December
    total, adjustments = billing.one(
        "SELECT total_usd, adjustments_usd FROM statements WHERE statement_number = 'IG-2026-12-000003'"
    )
    assert (total, adjustments) == (D("2.70"), D("1.50"))
    lines = billing.query(
        "SELECT kind, original_period, token_class, quantity_tokens, amount FROM statement_issued_lines "
        "WHERE statement_number = 'IG-2026-12-000003' AND kind = 'adjustment'"
    )
    assert lines == [("adjustment", "2026-11", "input_uncached", 200_000, D("1.50"))]
    text = pdf_text(out / "statements" / "2026-12" / "IG-2026-12-000003.pdf")
    assert "Late usage for 2026-11" in text and "$2.70" in text
    # the finance summary keeps November as issued and shows the adjustment in December
    from core.db import connect
    from reports.finance import finance_summary

    con = connect(billing.settings.db_path, read_only=True)
    nov = finance_summary(con, "2026-11")
    dec = finance_summary(con, "2026-12")
    assert [(r[0], r[3], r[10]) for r in nov] == [
        ("acct_discount", "IG-2026-11-000001", D("1.05")),
        ("acct_plain", "IG-2026-11-000002", D("1.20")),
    ]
    assert [(r[0], r[3], r[8], r[9], r[10]) for r in dec] == [
        ("acct_plain", "IG-2026-12-000003", D("1.20"), D("1.50"), D("2.70"))
    ]


def test_adjustment_is_issued_once(november_issued) -> None:
    billing, out = november_issued
    billing.log(
        "requests-2026-12-01.jsonl",
        [record(event_id="late", account_id="acct_discount", ts="2026-11-30T10:00:00Z", usage=usage(0, 100_000))],
    )
    billing.nightly("2026-12-01")
    finalize(billing, "2026-12", out, "2027-01-01")
    # 100k x 39.375/1M = 3.9375 -> November output line becomes 0.39375 + 3.9375 = 4.33125 -> 4.33;
    # issued 0.39, so the adjustment is 3.94
    assert billing.one("SELECT adjustments_usd FROM statements WHERE period = '2026-12'") == D("3.94")
    assert finalize(billing, "2027-01", out, "2027-02-01", allow_empty=True) == []  # nothing due in January


def test_an_adjustment_line_is_its_own_tokens_at_its_unit_price_rounded(november_issued) -> None:
    """The audit's case (R7): acct_discount's November input line was issued as 100k x
    6.5625/1M = 0.65625 -> 0.66; 100k more arrive late. The adjustment is 0.65625 -> 0.66, what
    the printed line says (layouts 1-3 printed 0.65: the period's 1.3125 -> 1.31 less the 0.66
    issued). Then 600 late tokens at 7.5/1M = 0.0045 -> 0.00, not 0.01."""
    billing, out = november_issued
    billing.log(
        "requests-2026-12-01.jsonl",
        [
            record(event_id="late", account_id="acct_discount", ts="2026-11-30T10:00:00Z", usage=usage(100_000, 0)),
            record(event_id="late2", account_id="acct_plain", ts="2026-11-30T11:00:00Z", usage=usage(600, 0)),
            record(event_id="d1", account_id="acct_plain", ts="2026-12-01T10:00:00Z", usage=usage(100_000, 10_000)),
        ],
    )
    billing.nightly("2026-12-01")
    assert finalize(billing, "2026-12", out, "2027-01-01") == ["IG-2026-12-000003", "IG-2026-12-000004"]
    adjustments = billing.query(
        "SELECT s.account_id, l.quantity_tokens, l.unit_price_per_1m, l.amount FROM statement_issued_lines l "
        "JOIN statements s USING (statement_number) WHERE l.kind = 'adjustment' ORDER BY 1"
    )
    assert adjustments == [
        ("acct_discount", 100_000, D("6.5625"), D("0.66")),
        ("acct_plain", 600, D("7.5"), D("0.00")),
    ]
    # acct_plain: usage 1.20 (as in November) and no adjustment; acct_discount: 0.66 of adjustment
    assert billing.query(
        "SELECT account_id, usage_usd, adjustments_usd, total_usd FROM statements WHERE period = '2026-12' ORDER BY 1"
    ) == [
        ("acct_discount", D("0.00"), D("0.66"), D("0.66")),
        ("acct_plain", D("1.20"), D("0.00"), D("1.20")),
    ]
    text = pdf_text(out / "statements" / "2026-12" / "IG-2026-12-000003.pdf")
    assert "$0.66" in text


def test_an_issued_attempt_keeps_its_price_when_its_request_is_rated_again(november_issued) -> None:
    """R10, found by an independent implementation of SPEC.md: acct_plain's November was
    issued at list price (n1: 100k input x 7.5/1M = 0.75, 10k output x 45/1M = 0.45); then
    its accounts entry gets a 50% discount, and a failed retry of n1's request arrives late.
    Rating the request again must not reprice n1 (it printed a -0.75 -0.45 +1.13 +0.23
    adjustment: 0.16 where nothing changed). A new late request for November is priced with
    the accounts data of now, like any late record: 200k x 3.75/1M = 0.75. December: 100k x
    3.75/1M = 0.375 -> 0.38 and 10k x 22.5/1M = 0.225 -> 0.23: 0.61 of usage, total 1.36."""
    billing, out = november_issued
    request = billing.rated("n1")["request_id"]
    accounts = billing.settings.accounts_file
    accounts.write_text(
        accounts.read_text().replace('email = "ap@plain.example"', 'email = "ap@plain.example"\ndiscount_pct = "50"')
    )
    billing.log(
        "requests-2026-12-01.jsonl",
        [
            record(event_id="n1-retry", request_id=request, attempt=2, account_id="acct_plain",
                   ts="2026-11-20T12:00:05Z", status=500, finish_reason=None, usage=None),
            record(event_id="late", account_id="acct_plain", ts="2026-11-30T10:00:00Z", usage=usage(200_000, 0)),
            record(event_id="d1", account_id="acct_plain", ts="2026-12-01T10:00:00Z", usage=usage(100_000, 10_000)),
        ],
    )  # fmt: skip
    billing.nightly("2026-12-01")
    n1 = billing.rated("n1")
    assert (n1["outcome"], n1["unit_price_input_uncached"], n1["unit_price_output"]) == ("billed", D("7.5"), D("45"))
    assert n1["charge_total"] == D("1.2")
    assert billing.rated("n1-retry")["reason"] == "upstream_error"
    # a re-rate of the issued month changes nothing either
    jobs.run_rate(billing.settings, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    assert billing.rated("n1")["unit_price_input_uncached"] == D("7.5")
    assert billing.rated("late")["unit_price_input_uncached"] == D("3.75")

    assert finalize(billing, "2026-12", out, "2027-01-01") == ["IG-2026-12-000003"]
    assert billing.query(
        "SELECT token_class, quantity_tokens, unit_price_per_1m, amount FROM statement_issued_lines "
        "WHERE statement_number = 'IG-2026-12-000003' AND kind = 'adjustment'"
    ) == [("input_uncached", 200_000, D("3.75"), D("0.75"))]
    assert billing.one(
        "SELECT (usage_usd, adjustments_usd, total_usd) FROM statements WHERE statement_number = 'IG-2026-12-000003'"
    ) == (D("0.61"), D("0.75"), D("1.36"))
    # an auditor's replay reproduces both months byte for byte, and every run re-executes
    for period in ("2026-11", "2026-12"):
        report = replay.replay_period(billing.settings, period, out / "replay")
        assert report.checks and report.matches, (period, report.checks)
    assert replay.verify_run(billing.settings, billing.one("SELECT max(run_id) FROM runs")).status == "MATCH"


def test_replay_reproduces_a_statement_after_an_accounts_change(november_issued) -> None:
    """A discount given after November was issued does not reprice November in the live
    database (nothing re-rates it); replay --period 2026-12 rates everything again with
    December's accounts data and printed November's lines at the discount as adjustments
    (-0.75 -0.45 +0.38 +0.23), a DIFFERS, until it kept the issued prices as the live run does."""
    billing, out = november_issued
    accounts = billing.settings.accounts_file
    accounts.write_text(
        accounts.read_text().replace('email = "ap@plain.example"', 'email = "ap@plain.example"\ndiscount_pct = "50"')
    )
    billing.log(
        "requests-2026-12-01.jsonl",
        [record(event_id="d1", account_id="acct_plain", ts="2026-12-01T10:00:00Z", usage=usage(100_000, 10_000))],
    )
    billing.nightly("2026-12-01")
    assert finalize(billing, "2026-12", out, "2027-01-01") == ["IG-2026-12-000003"]
    assert billing.one("SELECT (adjustments_usd, total_usd) FROM statements WHERE period = '2026-12'") == (
        D("0.00"),
        D("0.61"),
    )
    report = replay.replay_period(billing.settings, "2026-12", out / "replay")
    assert report.checks and report.matches, report.checks


def test_an_override_equal_to_the_list_price_prints_one_line_and_no_phantom_adjustment(
    billing: Billing, tmp_path: Path
) -> None:
    """The auditor's case: acct_override's output override (45/1M from 2026-11-15) equals the
    list price. November prints one output line, 2 x 1000 x 45/1M = 0.09 (not 0.05 + 0.05);
    December, with no late record, has no adjustment (it printed -0.10 before migration 030:
    the issued line paired with each of two current ones)."""
    from tests.test_rating import EQUAL_OVERRIDE_TOML

    billing.settings.accounts_file.write_text(EQUAL_OVERRIDE_TOML, encoding="utf-8")
    u = usage(1000, 1000)
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id="a", account_id="acct_override", ts="2026-11-10T12:00:00Z", usage=u),
            record(event_id="b", account_id="acct_override", ts="2026-11-16T12:00:00Z", usage=u),
        ],
    )
    billing.nightly()
    out = tmp_path / "out"
    assert finalize(billing, "2026-11", out, "2026-12-01") == ["IG-2026-11-000001"]
    # input 0.006 -> 0.01 (override 6) and 0.0075 -> 0.01 (list 7.5); output 0.09
    assert billing.query(
        "SELECT token_class, unit_price_per_1m, quantity_tokens, amount FROM statement_issued_lines "
        "WHERE statement_number = 'IG-2026-11-000001' ORDER BY line_no"
    ) == [
        ("input_uncached", D("6"), 1000, D("0.01")),
        ("input_uncached", D("7.5"), 1000, D("0.01")),
        ("output", D("45"), 2000, D("0.09")),
    ]
    assert billing.one("SELECT total_usd FROM statements WHERE statement_number = 'IG-2026-11-000001'") == D("0.11")

    billing.log(
        "requests-2026-12-01.jsonl",
        [record(event_id="c", account_id="acct_override", ts="2026-12-01T12:00:00Z", usage=u)],
    )
    billing.nightly("2026-12-01")
    assert finalize(billing, "2026-12", out, "2027-01-01") == ["IG-2026-12-000002"]
    # 0.006 -> 0.01 and 0.045 -> 0.05
    assert billing.one(
        "SELECT usage_usd, adjustments_usd, total_usd FROM statements WHERE statement_number = 'IG-2026-12-000002'"
    ) == (D("0.06"), D("0.00"), D("0.06"))


def test_drafts_change_freely_and_do_not_number(november) -> None:
    billing, out = november
    result = jobs.run_statements(billing.settings, "2026-11", out)
    assert [st.number for st in result.statements] == [None, None]
    assert (out / "statements" / "2026-11" / "drafts" / "draft-acct_plain-2026-11.pdf").exists()
    assert "DRAFT" in pdf_text(out / "statements" / "2026-11" / "drafts" / "draft-acct_plain-2026-11.pdf")
    assert billing.one("SELECT count(*) FROM statements") == 0


def test_missing_issued_file_is_restored_and_a_changed_one_refused(november_issued) -> None:
    billing, out = november_issued
    pdf = out / "statements" / "2026-11" / "IG-2026-11-000001.pdf"
    original = pdf.read_bytes()
    pdf.unlink()
    result = jobs.run_statements(billing.settings, "2026-11", out)
    assert result.restored == [pdf] and pdf.read_bytes() == original
    pdf.write_bytes(b"%PDF-1.7 forged")
    from pipeline.statements import StatementError

    with pytest.raises(StatementError, match="differs from the issued statement"):
        jobs.run_statements(billing.settings, "2026-11", out)


def test_hostile_account_names_render_and_export_harmlessly(billing: Billing, tmp_path: Path) -> None:
    text = billing.settings.accounts_file.read_text()
    text = text.replace('legal_name = "Plain Ltd"', "legal_name = '<img src=\"file:///etc/passwd\"> Plain'")
    text = text.replace('legal_name = "Discount GmbH"', 'legal_name = \'=HYPERLINK("http://evil.example","x")\'')
    billing.settings.accounts_file.write_text(text)
    billing.log("requests-2026-11-20.jsonl", [record(account_id="acct_plain"), record(account_id="acct_discount")])
    billing.nightly()
    out = tmp_path / "out"
    finalize(billing, "2026-11", out, "2026-12-01")
    pdfs = sorted((out / "statements" / "2026-11").glob("*.pdf"))
    assert any('<img src="file:///etc/passwd"> Plain' in pdf_text(p) for p in pdfs)
    assert all("root:" not in pdf_text(p) for p in pdfs)
    from core.db import connect
    from reports.finance import write_finance_summary

    path = write_finance_summary(connect(billing.settings.db_path, read_only=True), "2026-11", out)
    names = [row["account_name"] for row in csv.DictReader(io.StringIO(path.read_text()))]
    assert '\'=HYPERLINK("http://evil.example","x")' in names


# Every point a finalize run passes, in order (the trace test below checks the list).
FINALIZE_POINTS = (
    "after_lock",
    "after_ledger_row",
    "statements:after_render",
    "statements:after_stage",
    "ledger:after_runs_update",
    "statements:before_commit",
    "statements:after_commit",
    "statements:after_publish",
    "after_close",
)
FINALIZE_COMMITTED = ("statements:after_commit", "statements:after_publish", "after_close")


def _finalize_command(billing, out: Path) -> list[str]:
    """The finalize's arguments, for a CLI process forked from the warm server (tests/forked_cli.py)."""
    return [
        "--db",
        str(billing.settings.db_path),
        "--accounts",
        str(billing.settings.accounts_file),
        "statements",
        "--period",
        "2026-11",
        "--finalize",
        "--issue-date",
        "2026-12-01",
        "--out",
        str(out),
    ]


def test_every_point_a_finalize_passes_is_tested(november, tmp_path: Path) -> None:
    from core.faults import STATEMENT_POINTS

    billing, out = november
    trace = tmp_path / "finalize.trace"
    done = run_cli(_finalize_command(billing, out), env={"INFERGATE_FAULT_TRACE": str(trace)}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [p.split("#")[0] for p in trace.read_text().split()] == list(FINALIZE_POINTS)
    assert set(STATEMENT_POINTS) <= set(FINALIZE_POINTS)


@pytest.mark.parametrize("point", FINALIZE_POINTS)
def test_finalize_killed_anywhere_converges(november, point: str) -> None:
    billing, out = november
    args = _finalize_command(billing, out)
    killed = run_cli(args, env={"INFERGATE_FAULT": point}, timeout=120)
    assert killed.returncode == -9
    issued = billing.one("SELECT count(*) FROM statements")
    assert issued == (2 if point in FINALIZE_COMMITTED else 0)  # before or after, never one of two
    assert run_cli(args, timeout=120).returncode == 0
    folder = out / "statements" / "2026-11"
    stored = billing.query("SELECT file_name, sha256 FROM statement_files WHERE kind <> 'html' ORDER BY 1")
    assert len(stored) == 6 and stored == [(name, sha(folder / name)) for name, _ in stored]
    assert sorted(p.name for p in folder.iterdir()) == [name for name, _ in stored]  # no staged leftovers
    assert [n for (n,) in billing.query("SELECT statement_number FROM statements ORDER BY 1")] == [
        "IG-2026-11-000001",
        "IG-2026-11-000002",
    ]


HOSTILE_ACCOUNT_IDS = ("../../etc/x", "a/b", "..", "acct_" + "x" * 200, "caf\u00e9-\u65e5\u672c", ".hidden", "-rf")


def test_draft_names_from_hostile_account_ids_stay_inside_out(billing: Billing, tmp_path: Path) -> None:
    # issue 20 item 12: draft-{account_id}-{period} with "../" wrote outside --out
    entries = "".join(
        f'\n[[accounts]]\nid = "{a}"\nlegal_name = "Hostile {n}"\n' for n, a in enumerate(HOSTILE_ACCOUNT_IDS)
    )
    billing.settings.accounts_file.write_text(billing.settings.accounts_file.read_text() + entries)
    billing.log(
        "requests-2026-11-20.jsonl",
        [record(event_id=f"h{n}", account_id=a, usage=usage(1000, 100)) for n, a in enumerate(HOSTILE_ACCOUNT_IDS)]
        + [record(event_id="plain", account_id="acct_plain", usage=usage(1000, 100))],
    )
    billing.nightly()
    out = tmp_path / "deep" / "out"
    jobs.run_statements(billing.settings, "2026-11", out)
    drafts = out / "statements" / "2026-11" / "drafts"
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file() and p.name != "billing.duckdb")
    # everything written is a plain file directly in the drafts folder, nothing elsewhere
    assert all(p.parent == drafts.relative_to(tmp_path) for p in written if p.suffix in (".pdf", ".csv")), written
    assert not (tmp_path / "etc").exists() and not (out / "statements" / "2026-11" / "x").exists()
    names = {p.name for p in drafts.iterdir()}
    assert len(names) == 3 * (len(HOSTILE_ACCOUNT_IDS) + 1)  # a PDF and two CSVs each
    # a safe id keeps its name (so do issued names); others are slug + '+' + 12 hex of sha256
    assert "draft-acct_plain-2026-11.pdf" in names
    digest = hashlib.sha256(b"../../etc/x").hexdigest()[:12]
    assert f"draft-etc_x+{digest}-2026-11.pdf" in names
    assert all(len(n) < 120 for n in names)
    # the detail CSV of the hostile account is its own usage
    detail = list(csv.DictReader(io.StringIO((drafts / f"draft-etc_x+{digest}-2026-11-detail.csv").read_text())))
    assert [d["event_id"] for d in detail] == ["h0"]


def test_a_stored_issued_file_name_that_is_a_path_is_refused(november_issued) -> None:
    billing, out = november_issued
    from core.db import connect

    con = connect(billing.settings.db_path)
    con.execute("UPDATE statement_files SET file_name = '../../escaped.pdf' WHERE file_name = 'IG-2026-11-000001.pdf'")
    con.close()
    (out / "statements" / "2026-11" / "IG-2026-11-000001.pdf").unlink()
    from pipeline.statements import StatementError

    with pytest.raises(StatementError, match="not a plain file name"):
        jobs.run_statements(billing.settings, "2026-11", out, finalize=True, issue_date=date(2026, 12, 1))
    assert not (out / "escaped.pdf").exists() and not (out / "statements" / "escaped.pdf").exists()


def test_detail_csv_with_line_breaks_in_ids_starts_no_row_with_a_formula(billing: Billing, tmp_path: Path) -> None:
    # issue 20 item 11: a CR inside request_id was written unquoted; a reader started a row at =1+1
    hostile = {"cr": "r\r=1+1", "lf": "r\n+2", "crlf": "r\r\n-3", "tab": "r\r\t=4", "at": 'r,"x"\r@SUM(A1)'}
    billing.log(
        "requests-2026-11-20.jsonl",
        [
            record(event_id=f"e-{k}", request_id=v, account_id="acct_plain", usage=usage(1000, 100))
            for k, v in hostile.items()
        ],
    )
    billing.nightly()
    out = tmp_path / "out"
    finalize(billing, "2026-11", out, "2026-12-01")
    data = (out / "statements" / "2026-11" / "IG-2026-11-000001-detail.csv").read_bytes()
    rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
    assert len(rows) == 1 + len(hostile)
    assert all(len(r) == len(rows[0]) for r in rows)
    cells = [c for r in rows for c in r]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    # after any line break inside a cell, the next character is never a live formula start
    for cell in cells:
        for piece in cell.replace("\r\n", "\n").replace("\r", "\n").split("\n")[1:]:
            assert piece[:1] not in ("=", "+", "-", "@", "\t"), cell
    event, request = rows[0].index("event_id"), rows[0].index("request_id")
    by_event = {r[event]: r[request] for r in rows[1:]}
    assert by_event["e-cr"] == "r\r'=1+1" and by_event["e-crlf"] == "r\r\n'-3"
    # a reader that splits physical lines itself sees no formula either
    for line in data.decode().replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        assert line[:1] not in ("=", "+", "-", "@", "\t")


def test_a_draft_for_an_account_that_does_not_exist_is_refused(billing: Billing, tmp_path: Path) -> None:
    """--account with a typo names the problem instead of "nothing due" or, on a finalized
    period, a silent success; the refusal is recorded as a failed run, nothing is written."""
    from core.errors import UsageProblem

    billing.log("requests-2026-11-20.jsonl", [record(event_id="n1", account_id="acct_plain", usage=usage(1000, 10))])
    billing.nightly()
    with pytest.raises(UsageProblem, match="--account acct_plian: no such account"):
        jobs.run_statements(billing.settings, "2026-11", tmp_path / "out", account_id="acct_plian")
    assert not (tmp_path / "out").exists()
    assert billing.one("SELECT status FROM runs WHERE command = 'statements'") == "failed"
    drafts = jobs.run_statements(billing.settings, "2026-11", tmp_path / "out", account_id="acct_plain")
    assert [st.account_id for st in drafts.statements] == ["acct_plain"]


def test_a_period_is_issued_only_once_it_has_ended_and_in_date_order(november) -> None:
    """The walkthrough's case: `statements --period 2026-12 --finalize` on 5 December issued
    final statements for the whole month (the rest of it would have become January's
    adjustments); and an issue date before an issued statement's broke the date order."""
    from core.errors import UsageProblem

    billing, out = november
    with pytest.raises(UsageProblem, match="2026-11 has not ended on the issue date 2026-11-30"):
        finalize(billing, "2026-11", out, "2026-11-30")
    assert billing.one("SELECT count(*) FROM statements") == 0
    # issued late (5 January): December, over by then, cannot be issued before that date
    assert finalize(billing, "2026-11", out, "2027-01-05") == ["IG-2026-11-000001", "IG-2026-11-000002"]
    billing.log("requests-2026-12-01.jsonl", [record(event_id="d1", ts="2026-12-01T10:00:00Z")])
    billing.nightly("2026-12-01")
    with pytest.raises(
        UsageProblem, match=r"issue date 2027-01-01 is before IG-2026-11-000002 was issued \(2027-01-05\)"
    ):
        finalize(billing, "2026-12", out, "2027-01-01")
    assert finalize(billing, "2026-12", out, "2027-01-05") == ["IG-2026-12-000003"]


def test_statements_refuse_an_accounts_file_other_than_the_one_rated(
    billing: Billing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The walkthrough's case: finance renames a customer in the accounts file and issues
    statements without rating: they printed the old name, for good. Given on the command line,
    the file is refused until a rating has loaded it; as the default file (the database may
    have been rated with another on purpose, the review's case) it is a warning."""
    import dataclasses

    from pipeline.jobs import ReferenceChanged

    billing.log("requests-2026-11-20.jsonl", [record(event_id="a")])
    billing.nightly()
    accounts = billing.settings.accounts_file
    accounts.write_text(accounts.read_text().replace("Plain Ltd", "Plain Holdings Ltd"), encoding="utf-8")
    given = dataclasses.replace(billing.settings, explicit_reference=frozenset({"--accounts"}))
    with pytest.raises(ReferenceChanged, match="differs from the accounts file the database was last rated with"):
        jobs.run_statements(given, "2026-11", tmp_path / "out")
    capsys.readouterr()
    drafts = jobs.run_statements(billing.settings, "2026-11", tmp_path / "out")  # the default file: warned
    assert [st.document.account.name for st in drafts.statements] == ["Plain Ltd"]
    assert "differs from the accounts file the database was last rated with" in capsys.readouterr().err
    billing.nightly()  # the rating loads the edited file
    result = jobs.run_statements(given, "2026-11", tmp_path / "out")
    assert [st.document.account.name for st in result.statements] == ["Plain Holdings Ltd"]


def test_a_run_issued_before_the_date_rule_still_verifies(november) -> None:
    """Replay re-executes what a recorded run did: a period issued on its own last day (allowed
    before 2026-12-05) is re-issued so, and verifies."""
    from pipeline import replay

    billing, out = november
    jobs.run_statements(
        billing.settings, "2026-11", out, finalize=True, issue_date=date(2026, 11, 30), reexecution=True
    )
    last = billing.one("SELECT max(run_id) FROM runs WHERE status = 'succeeded'")
    assert replay.verify_run(billing.settings, last).status == "MATCH"
