"""Credit note rule 3: a credit note on a later statement crediting its adjustment lines of an
earlier period Q gives back at most what is left of the money asked for Q (docs/invoicing.md,
"Money already given back for an earlier period"). acct_de (19% VAT), openai/gpt-5.5 input at
7.50/1M (output 45/1M); every figure worked out by hand. The scenarios after the first two
are a review's (each failed on the first version of rule 3).
"""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

import pytest

from core.db import connect
from core.money import D
from pipeline import credit_notes, jobs, statements
from pipeline.cli.report import print_credit_note
from tests.conftest import Billing, BuiltOn, BuiltOnce
from tests.test_credit_note_after_refund import _figures, _money, _note, _replays_match
from tests.test_credit_restore import _attempt, _german_account_with, _ledger, _statement
from tests.test_invoicing import _pdf_text


def _refund(billing: Billing):  # type: ignore[no-untyped-def]
    """No grants (all money), 19% VAT. November: 1,000,000 input x 7.50/1M = 7.50 + VAT 1.425
    -> 1.43 = 8.93. December: a retry of 900,000 refunds -0.75 (VAT -0.14). Statements into
    ``<root>/out``. Returns November's and December's statements."""
    out = _german_account_with(billing, billing.root, "")
    _attempt(billing, "2026-11-07", "a1", "r1", 1, "2026-11-07T09:00:00Z", 1_000_000)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    assert (nov.net_amount, nov.tax_amount, nov.total_due) == (D("7.50"), D("1.43"), D("8.93"))
    _attempt(billing, "2026-12-10", "a2", "r1", 2, "2026-11-07T09:05:00Z", 900_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    assert _figures(dec) == (D("-0.75"), D("0.00"), D("-0.75"), D("-0.14"), D("-0.89"))
    return nov, dec


def _ask_again(billing: Billing, january_tokens: int):  # type: ignore[no-untyped-def]
    """After :func:`_refund`, January: a third attempt of ``january_tokens`` asks the difference
    again as a positive adjustment of November (January's line 1). Returns January's statement."""
    _attempt(billing, "2027-01-12", "a3", "r1", 3, "2026-11-07T09:10:00Z", january_tokens)
    return _statement(billing, billing.root / "out", "2027-01", date(2027, 2, 1))


@pytest.fixture(scope="module")
def _refunded_once(tmp_path_factory: pytest.TempPathFactory) -> BuiltOnce:
    return BuiltOnce(tmp_path_factory, "refunded", _refund)


@pytest.fixture(scope="module")
def _asked_again_once(tmp_path_factory: pytest.TempPathFactory, _refunded_once: BuiltOnce) -> BuiltOnce:
    return BuiltOn(tmp_path_factory, "asked-again", _refunded_once, lambda billing: _ask_again(billing, 1_000_000))


@pytest.fixture
def refunded(_refunded_once: BuiltOnce):  # type: ignore[no-untyped-def]
    """:func:`_refund` built once per module, a fresh copy for each test: the billing, November's
    and December's statements, the output folder."""
    billing = _refunded_once.restore()
    nov, dec = _refunded_once.value
    return billing, nov, dec, billing.root / "out"


@pytest.fixture
def asked_again(_refunded_once: BuiltOnce, _asked_again_once: BuiltOnce):  # type: ignore[no-untyped-def]
    """``refunded`` then January's attempt of 1,000,000 tokens (+0.75 of November, asked again),
    built once per module: the billing, the three statements, the output folder."""
    billing = _asked_again_once.restore()
    nov, dec = _refunded_once.value
    return billing, nov, dec, _asked_again_once.value, billing.root / "out"


def _jan_note(billing: Billing, number: str, out: Path, rule: int = credit_notes.MONEY_RULE):  # type: ignore[no-untyped-def]
    return credit_notes.issue_credit_note(
        billing.settings, number, "Outage on 7 November", out, line_nos=[1], issue_date=date(2027, 2, 10),
        money_rule=rule,
    )  # fmt: skip


def test_a_note_on_a_later_statements_ask_for_november_after_novembers_own_note_credits_nothing_again(
    asked_again, tmp_path: Path
) -> None:
    """Credit note rule 3. November asks 7.50, December refunds 0.75, January asks the 0.75
    again (+100,000 tokens): 8.25 asked for November in money. A note on November's line
    credits 7.50 (December's refund and January's ask cancel out, rule 2), so with December's
    0.75 all 8.25 is given back; a note on January's +0.75 then credited 0.75 + 0.14 a second
    time (rule 2: capped by January's own net only)."""
    billing, nov, dec, jan, out = asked_again
    assert _figures(jan) == (D("0.75"), D("0.00"), D("0.75"), D("0.14"), D("0.89"))
    jan_number = str(jan.statement_number)
    # before November's note, January's line could be credited in full: 7.50 + 0.75 - 0.75
    # (December's refund) = 7.50 of November's money is left, more than its 0.75
    con = connect(billing.settings.db_path, read_only=True)
    try:
        first = credit_notes.plan(con, jan_number, [1])
    finally:
        con.close()
    assert (first.net, first.tax, first.refunded) == (D("0.75"), D("0.14"), D("0.00"))
    nov_note = _note(billing, str(nov.statement_number), out).document
    assert _money(nov_note) == (D("7.50"), D("0.00"), D("0.00"), D("7.50"), "on_net", D("1.43"), D("8.93"))
    with pytest.raises(credit_notes.CreditNoteError) as refused:
        _jan_note(billing, jan_number, out)
    message = refused.value.message
    assert (
        f"line 1 of {jan_number} (0.75) is already given back: the money asked for 2026-11 is given back (on "
        f"credit note {nov_note.credit_note_number}, statement {dec.statement_number})" in message
    ), message
    # rule 2 would have credited it: 8.93 + 0.89 asked, 0.89 + 8.93 + 0.89 given back
    con = connect(billing.settings.db_path, read_only=True)
    try:
        old = credit_notes.plan(con, jan_number, [1], money_rule=2)
    finally:
        con.close()
    assert (old.net, old.tax) == (D("0.75"), D("0.14"))
    assert nov.total_due + jan.total_due + dec.total_due - nov_note.total_credited == 0
    _replays_match(billing, tmp_path, periods=("2026-11", "2026-12", "2027-01"))


@pytest.mark.weasyprint
def test_a_note_on_a_later_ask_credits_what_is_left_of_the_periods_money(
    refunded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """January asks 1.50 (+200,000 tokens) after December refunded 0.75: 9.00 asked for
    November in money. November's note credits 7.50 (December's refund is taken back by
    January's larger ask), so 0.75 of November's money is left: a note on January's 1.50 line
    credits 0.75 + VAT 0.1425 -> 0.14, the other 0.75 already given back."""
    billing, nov, dec, out = refunded
    jan = _ask_again(billing, 1_100_000)
    # +200,000 x 7.50/1M = 1.50, VAT 0.285 -> 0.29
    assert _figures(jan) == (D("1.50"), D("0.00"), D("1.50"), D("0.29"), D("1.79"))
    nov_note = _note(billing, str(nov.statement_number), out).document
    assert _money(nov_note) == (D("7.50"), D("0.00"), D("0.00"), D("7.50"), "on_net", D("1.43"), D("8.93"))
    issued = _jan_note(billing, str(jan.statement_number), out)
    doc = issued.document
    assert _money(doc) == (D("1.50"), D("0.00"), D("0.75"), D("0.75"), "on_net", D("0.14"), D("0.89"))
    givers = f"credit note {nov_note.credit_note_number}, statement {dec.statement_number}"
    assert doc.refunded_on == givers
    # in money: 7.50 + 1.50 asked, 0.75 + 7.50 + 0.75 given back
    assert D("7.50") + D("1.50") - D("0.75") - nov_note.net_amount - doc.net_amount == 0
    assert billing.query(
        "SELECT money_rule, refunded_usd, refunded_on FROM credit_notes WHERE statement_number = ?",
        [jan.statement_number],
    ) == [(credit_notes.MONEY_RULE, D("0.75"), givers)]  # fmt: skip
    assert billing.query(
        "SELECT c.line_no, c.amount_usd, c.refunded_usd FROM credit_note_lines c JOIN credit_notes n "
        "USING (credit_note_number) WHERE n.statement_number = ?",
        [jan.statement_number],
    ) == [(1, D("1.50"), D("0.00"))]  # fmt: skip (not rule 2's tokens refunded: no hold-back)
    capsys.readouterr()
    print_credit_note(issued)
    assert f"net 0.75 (0.75 already given back on {givers}, not credited)" in capsys.readouterr().out
    path = out / "credit_notes" / "2027-01" / f"{doc.credit_note_number}-lines.csv"
    rows = [(r["kind"], r["model_name"], r["amount_usd"]) for r in csv.DictReader(io.StringIO(path.read_text("utf-8")))]
    assert rows[1:] == [
        ("refunded", f"Already given back on {givers}, not credited", "-0.75"),
        ("tax", "VAT 19%", "0.14"),
    ]
    text = " ".join(_pdf_text(out / "credit_notes" / "2027-01", doc.credit_note_number).split())
    for printed in (f"Already given back on {givers}, not credited", "$0.89", "nothing is refunded twice"):
        assert printed in text, printed
    # February: a fourth attempt with 1,200,000 tokens: +100,000 that no statement billed or
    # refunded before and no note credited, so February bills them: +0.75, VAT 0.14 (the part
    # of January's line not credited is not held back, unlike rule 2's refunded tokens)
    _attempt(billing, "2027-02-12", "a4", "r1", 4, "2026-11-07T09:15:00Z", 1_200_000)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    assert _figures(feb) == (D("0.75"), D("0.00"), D("0.75"), D("0.14"), D("0.89"))
    # (a run of rule 3 re-executing under replay --verify: the partial-refund test's)
    _replays_match(billing, tmp_path, periods=("2026-11", "2026-12", "2027-01", "2027-02"))


def _issue(billing: Billing, number: str, out: Path, lines: tuple[int, ...], when: date):  # type: ignore[no-untyped-def]
    return credit_notes.issue_credit_note(
        billing.settings, number, "review", out, line_nos=list(lines), issue_date=when
    ).document


def _plan(billing: Billing, number: str, lines: tuple[int, ...]):  # type: ignore[no-untyped-def]
    con = connect(billing.settings.db_path, read_only=True)
    try:
        return credit_notes.plan(con, number, list(lines))
    finally:
        con.close()


def _line_nos(billing: Billing, number: str) -> dict[tuple[str, str, str], int]:
    """(kind, original_period, token_class) -> line_no of an issued statement."""
    rows = billing.query(
        "SELECT kind, original_period, token_class, line_no FROM statement_issued_lines WHERE statement_number = ?",
        [number],
    )
    return {(k, p, t): int(n) for k, p, t, n in rows}


def _november_december(billing: Billing, tmp_path: Path, nov_tokens: int, nov_retry: int, dec_tokens: int):  # type: ignore[no-untyped-def]
    """(Prices start 2026-11-01.) Nov: r0 ``nov_tokens`` input; Dec: r0's retry ``nov_retry``
    (an adjustment of Nov on Dec's statement) and r1 ``dec_tokens`` (Dec's usage). No grants."""
    out = _german_account_with(billing, tmp_path, "")
    _attempt(billing, "2026-11-03", "o1", "r0", 1, "2026-11-03T09:00:00Z", nov_tokens)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    _attempt(billing, "2026-12-05", "o2", "r0", 2, "2026-11-03T09:05:00Z", nov_retry)
    _attempt(billing, "2026-12-07", "a1", "r1", 1, "2026-12-07T09:00:00Z", dec_tokens)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    return nov, dec, out


def test_januarys_note_first_then_novembers_then_february_bills_the_new_tokens(asked_again) -> None:
    """The docs' example in the other order: Nov 7.50 (1.0M), Dec -0.75 (0.9M), Jan +0.75
    (1.0M). January's note first: 0.75 + 0.14; November's note: 6.75 + 1.29 (December's refund
    printed as already refunded). Feb: 1.1M tokens, 100,000 never billed nor credited: +0.75,
    as in the other order. Rule 2 stored November's 0.75 as refunded tokens to hold back, though
    January had brought them back and its note credited them: February billed 0.00."""
    billing, nov, dec, jan, out = asked_again
    jan_doc = _issue(billing, str(jan.statement_number), out, (1,), date(2027, 2, 10))
    assert _money(jan_doc) == (D("0.75"), D("0.00"), D("0.00"), D("0.75"), "on_net", D("0.14"), D("0.89"))
    nov_doc = _issue(billing, str(nov.statement_number), out, (1,), date(2027, 2, 10))
    assert _money(nov_doc) == (D("7.50"), D("0.00"), D("0.75"), D("6.75"), "remainder", D("1.29"), D("8.04"))
    # money for Nov: asked 7.50 + 0.75 = 8.25; given 0.75 (Dec) + 0.75 + 6.75 = 8.25. Nov's line
    # holds no refunded tokens back: December's came back in January (credited there)
    assert billing.query(
        "SELECT c.refunded_usd FROM credit_note_lines c JOIN credit_notes n USING (credit_note_number) "
        "WHERE n.statement_number = ?", [nov.statement_number]
    ) == [(D("0.00"),)]  # fmt: skip
    _attempt(billing, "2027-02-12", "a4", "r1", 4, "2026-11-07T09:15:00Z", 1_100_000)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    assert _figures(feb) == (D("0.75"), D("0.00"), D("0.75"), D("0.14"), D("0.89"))


def test_a_january_note_of_usage_and_a_november_adjustment_keeps_the_prepaid_part(
    billing: Billing, tmp_path: Path
) -> None:
    """Grant 1.00 from 2027-01-01 (January only). Nov 7.50 (1.0M); Dec -0.75 (0.9M); Jan: r2
    200,000 tokens = usage 1.50 + r1's 1.1M = +1.50 of Nov; 1.00 prepaid applied to the usage
    (layout 7: usage first), net 2.00 = 0.50 usage money + 1.50 Nov money. Nov's note: 7.50
    (Dec's 0.75 and Jan's 1.50 ask: nothing stands). Left of Nov: 7.50 - 7.50 + 1.50 - 0.75 =
    0.75. A Jan note on both lines may credit the usage money 0.50 + 0.75 left of Nov = 1.25
    (1.00 stays prepaid, 0.75 already given back): 7.50 - 0.75 + 2.00 = 8.75 paid in money,
    0.75 + 7.50 + 1.25 given back. Before, the given-back part was not taken off January's
    money left: it credited 2.00."""
    out = _german_account_with(billing, tmp_path, "g,acct_de,1.00,USD,2027-01-01T00:00:00Z,,purchased,INV-1,\n")
    _attempt(billing, "2026-11-07", "a1", "r1", 1, "2026-11-07T09:00:00Z", 1_000_000)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    assert (nov.net_amount, nov.tax_amount) == (D("7.50"), D("1.43"))
    _attempt(billing, "2026-12-10", "a2", "r1", 2, "2026-11-07T09:05:00Z", 900_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    assert _figures(dec) == (D("-0.75"), D("0.00"), D("-0.75"), D("-0.14"), D("-0.89"))
    _attempt(billing, "2027-01-05", "b1", "r2", 1, "2027-01-05T09:00:00Z", 200_000)
    _attempt(billing, "2027-01-12", "a3", "r1", 3, "2026-11-07T09:10:00Z", 1_100_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert (jan.usage_total, jan.adjustments_total, jan.credits_applied, jan.net_amount) == (
        D("1.50"), D("1.50"), D("1.00"), D("2.00"))  # fmt: skip
    nov_doc = _issue(billing, str(nov.statement_number), out, (1,), date(2027, 2, 10))
    assert _money(nov_doc)[3] == D("7.50")
    lines = _line_nos(billing, str(jan.statement_number))
    both = (lines[("usage", "2027-01", "input_uncached")], lines[("adjustment", "2026-11", "input_uncached")])
    p = _plan(billing, str(jan.statement_number), both)
    # lines 3.00, 1.00 prepaid kept, 0.75 already given back, net 1.25
    assert (p.lines_total, p.prepaid_retained, p.refunded, p.net) == (D("3.00"), D("1.00"), D("0.75"), D("1.25"))


def test_q_statements_adjustments_of_an_earlier_period_are_not_qs_money(billing: Billing, tmp_path: Path) -> None:
    """The fixed defect again, when Q's statement also carries a positive adjustment of an
    earlier period. Q = Dec. Nov 4.50 (600,000); Dec: usage 7.50 + 3.00 of Nov (r0 back to
    1.0M), net 10.50. Jan -0.75 of Dec, Feb +0.75 of Dec. Dec's note on its usage line: 7.50.
    Dec's money (8.25 asked: 7.50 + Feb's 0.75) is all given back (Jan 0.75 + note 7.50), so
    Feb's note is refused. Counting Dec's net as Dec's money took Nov's 3.00 as Dec's (10.50 -
    7.50 + 0.75 - 0.75 = 3.00) and credited 0.75 + 0.14 a second time."""
    _, dec, out = _november_december(billing, tmp_path, 600_000, 1_000_000, 1_000_000)
    assert (dec.usage_total, dec.adjustments_total, dec.net_amount) == (D("7.50"), D("3.00"), D("10.50"))
    _attempt(billing, "2027-01-10", "a2", "r1", 2, "2026-12-07T09:05:00Z", 900_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert _figures(jan)[:3] == (D("-0.75"), D("0.00"), D("-0.75"))
    _attempt(billing, "2027-02-12", "a3", "r1", 3, "2026-12-07T09:10:00Z", 1_000_000)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    assert _figures(feb)[:3] == (D("0.75"), D("0.00"), D("0.75"))
    usage_line = _line_nos(billing, str(dec.statement_number))[("usage", "2026-12", "input_uncached")]
    dec_doc = _issue(billing, str(dec.statement_number), out, (usage_line,), date(2027, 3, 10))
    assert _money(dec_doc)[3] == D("7.50")
    with pytest.raises(credit_notes.CreditNoteError) as refused:
        _plan(billing, str(feb.statement_number), (1,))
    assert f"is already given back: the money asked for 2026-12 is given back (on credit note " \
        f"{dec_doc.credit_note_number}, statement {jan.statement_number})" in refused.value.message  # fmt: skip


def test_a_later_ask_for_a_period_whose_statement_net_is_negative_is_credited(billing: Billing, tmp_path: Path) -> None:
    """Q = Dec. Nov 7.50 (1.0M). Dec: usage 1.00 (133,334 tokens) + -3.00 of Nov (r0 down to
    600,000): net -2.00. Jan: r1 up to 333,334: +1.50 of Dec, net 1.50 + 0.29. Nothing of
    Dec's money was ever given back (no note, no refund of Dec): a note on Jan's line must
    credit 1.50 + 0.29: Dec's money is its usage 1.00 (not its net, -2.00) + Jan's 1.50. Counting
    the net, 'left of Dec' was -2.00 + 1.50 = -0.50 -> 0: refused, with a message naming nothing."""
    _, dec, out = _november_december(billing, tmp_path, 1_000_000, 600_000, 133_334)
    assert (dec.usage_total, dec.adjustments_total, dec.net_amount) == (D("1.00"), D("-3.00"), D("-2.00"))
    _attempt(billing, "2027-01-10", "a2", "r1", 2, "2026-12-07T09:05:00Z", 333_334)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert _figures(jan)[:3] == (D("1.50"), D("0.00"), D("1.50"))
    try:
        p = _plan(billing, str(jan.statement_number), (1,))
    except credit_notes.CreditNoteError as refused:
        pytest.fail(f"refused: {refused.message}")
    assert (p.net, p.tax, p.refunded) == (D("1.50"), D("0.29"), D("0.00"))


def test_the_prepaid_part_of_a_january_adjustment_stays_paid_with_prepaid_credit(
    billing: Billing, tmp_path: Path
) -> None:
    """Grant 0.50 from 2027-01-01. Nov 7.50; Dec -0.75; Jan +1.50 of Nov (1.1M), 0.50 prepaid
    applied to it: net 1.00 (money asked for Nov 1.00). Nov's note: 7.50 (Dec's refund taken
    back by Jan's 1.00 ask). Left of Nov: 7.50 - 7.50 + 1.00 - 0.75 = 0.25. Jan's note on the
    line credits 0.25, 0.50 paid with prepaid credit, 0.75 already given back (it printed 1.25
    'already given back' and 0.00 prepaid: rule 3 compared the line's amount, not its money)."""
    out = _german_account_with(billing, tmp_path, "g,acct_de,0.50,USD,2027-01-01T00:00:00Z,,purchased,INV-1,\n")
    _attempt(billing, "2026-11-07", "a1", "r1", 1, "2026-11-07T09:00:00Z", 1_000_000)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    _attempt(billing, "2026-12-10", "a2", "r1", 2, "2026-11-07T09:05:00Z", 900_000)
    _statement(billing, out, "2026-12", date(2027, 1, 1))
    _attempt(billing, "2027-01-12", "a3", "r1", 3, "2026-11-07T09:10:00Z", 1_100_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert (jan.adjustments_total, jan.credits_applied, jan.net_amount) == (D("1.50"), D("0.50"), D("1.00"))
    assert _money(_issue(billing, str(nov.statement_number), out, (1,), date(2027, 2, 10)))[3] == D("7.50")
    p = _plan(billing, str(jan.statement_number), (1,))
    assert p.net == D("0.25")
    assert (p.prepaid_retained, p.refunded) == (D("0.50"), D("0.75"))


def _november(billing: Billing, tmp_path: Path, grants: str, request: str = "r1"):  # type: ignore[no-untyped-def]
    """acct_de with the prepaid ``grants``; November: ``request``'s attempt 1 of 1,000,000 input
    tokens (7.50), issued on 1 December. The output folder and November's statement."""
    out = _german_account_with(billing, tmp_path, grants)
    _attempt(billing, "2026-11-07", "a1", request, 1, "2026-11-07T09:00:00Z", 1_000_000)
    return out, _statement(billing, out, "2026-11", date(2026, 12, 1))


def test_a_refund_after_a_note_credited_the_later_ask_restores_credit_instead_of_refunding_money(
    billing: Billing, tmp_path: Path
) -> None:
    """Statement layout 10 (docs/credits.md "Restoring credit"). Grant 7.50. November: 7.50
    (1,000,000 x 7.50/1M), all of it paid with the grant: nothing asked in money. December: a
    retry of 1,200,000 asks +1.50 of November in money (the grant is used up), VAT 0.285 ->
    0.29, total 1.79; a credit note on that line gives the 1.79 back. January: a third attempt
    of 1,000,000 gives -1.50 of November back. Of what was asked for November nothing is left
    in money (0.00 + 1.50 asked - 1.50 credited), so the 1.50 goes back to the grant that paid
    November: net -1.50 + 1.50 restored = 0.00, no tax. Layouts 7-9 still counted December's
    credited ask as November's money and refunded 1.50 + 0.29 a second time."""
    out, nov = _november(billing, tmp_path, "g,acct_de,7.50,USD,2026-11-01T00:00:00Z,,purchased,INV-1,\n")
    assert (nov.credits_applied, nov.net_amount, nov.total_due) == (D("7.50"), D("0.00"), D("0.00"))
    _attempt(billing, "2026-12-10", "a2", "r1", 2, "2026-11-07T09:05:00Z", 1_200_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    assert _figures(dec) == (D("1.50"), D("0.00"), D("1.50"), D("0.29"), D("1.79"))
    dec_note = _note(billing, str(dec.statement_number), out, issue_date=date(2027, 1, 10)).document
    assert _money(dec_note) == (D("1.50"), D("0.00"), D("0.00"), D("1.50"), "on_net", D("0.29"), D("1.79"))
    _attempt(billing, "2027-01-12", "a3", "r1", 3, "2026-11-07T09:10:00Z", 1_000_000)
    con = connect(billing.settings.db_path, read_only=True)
    try:  # the rule of layouts 7-9: all of it refunded in money again
        old = statements.due_lines(con, "2027-01", "acct_de", layout_version=9)["acct_de"]
    finally:
        con.close()
    assert [(ln.kind, ln.amount, ln.restored) for ln in old] == [("adjustment", D("-1.50"), D("0.00"))]
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert jan.layout_version >= 10  # the current layout: layout 10's rule on
    assert _figures(jan) == (D("-1.50"), D("1.50"), D("0.00"), D("0.00"), D("0.00"))
    assert jan.adjustments[0].description.endswith("; $1.50 of it restored to prepaid credit")
    assert jan.credits is not None
    assert (jan.credits.opening, jan.credits.restored, jan.credits.closing) == (D("0.00"), D("1.50"), D("1.50"))
    assert _ledger(billing, "2027-01") == [("g", "restored", "01-01 00:00", D("1.50"), "2026-11")]
    # in money: 1.79 asked, 1.79 credited, nothing refunded again
    assert nov.total_due + dec.total_due + jan.total_due - dec_note.total_credited == 0
    _replays_match(billing, tmp_path, periods=("2027-01",))  # January, as issued


# Statement layout 10's money left of a period, a review's scenarios: the first two failed on a
# first version that left a credited line's whole money out instead of what its note gave back;
# the last two fail on layouts 7-9 too (a note gives back its statement's money first, which
# may be another line's)


def test_a_note_that_credited_part_of_a_later_ask_leaves_a_new_ask_to_be_refunded_in_money(
    billing: Billing, tmp_path: Path
) -> None:
    """Grant 7.50. Nov 1,000,000 = 7.50 all prepaid. Dec: retry 1,200,000 asks +1.50 of Nov in
    money (1.79). Jan: retry 1,100,000 refunds -0.75 of Nov in money (-0.89). A note on Dec's
    +1.50 line (rule 3): 0.75 left of Nov's money -> credits 0.75 + 0.14, 0.75 already given
    back. Feb: retry 1,300,000 asks +1.50 of Nov in money (1.79), no note. Mar: retry 1,100,000
    gives -1.50 of Nov back: that is exactly Feb's money ask, never given back -> 1.50 in money.
    Money asked for Nov and not given back: 1.50 (Dec) + 1.50 (Feb) - 0.75 (Jan) - 0.75 (note) = 1.50."""
    out, nov = _november(billing, tmp_path, "g,acct_de,7.50,USD,2026-11-01T00:00:00Z,,purchased,INV-1,\n")
    assert (nov.credits_applied, nov.net_amount) == (D("7.50"), D("0.00"))
    _attempt(billing, "2026-12-10", "a2", "r1", 2, "2026-11-07T09:05:00Z", 1_200_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    assert _figures(dec) == (D("1.50"), D("0.00"), D("1.50"), D("0.29"), D("1.79"))
    _attempt(billing, "2027-01-12", "a3", "r1", 3, "2026-11-07T09:10:00Z", 1_100_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert _figures(jan) == (D("-0.75"), D("0.00"), D("-0.75"), D("-0.14"), D("-0.89"))
    dec_note = _note(billing, str(dec.statement_number), out, issue_date=date(2027, 2, 10)).document
    assert (dec_note.net_amount, dec_note.refunded) == (D("0.75"), D("0.75"))
    _attempt(billing, "2027-02-12", "a4", "r1", 4, "2026-11-07T09:15:00Z", 1_300_000)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    assert _figures(feb) == (D("1.50"), D("0.00"), D("1.50"), D("0.29"), D("1.79"))
    _attempt(billing, "2027-03-12", "a5", "r1", 5, "2026-11-07T09:20:00Z", 1_100_000)
    mar = _statement(billing, out, "2027-03", date(2027, 4, 1))
    # Feb's 1.50 was asked in money and never given back: refunded in money
    assert _figures(mar) == (D("-1.50"), D("0.00"), D("-1.50"), D("-0.29"), D("-1.79"))


def test_a_note_capped_by_the_later_statements_net_leaves_part_of_the_ask_paid_in_money(
    billing: Billing, tmp_path: Path
) -> None:
    """Grant 7.50 from 1 Dec. Nov: r0 1,000,000 = 7.50 in money. Dec: r1 1,000,000 = 7.50 all
    prepaid. Jan (no usage): r0's retry 900,000 refunds -0.75 of Nov in money, r1's retry
    1,200,000 asks +1.50 of Dec in money: net 0.75, VAT 0.14, due 0.89. A note on Jan's +1.50
    line credits Jan's whole net, 0.75 + 0.14 (the other 0.75 offset by the Nov refund). Of the
    1.50 asked for Dec, 0.75 stands paid in money. Feb: r1's third attempt 1,000,000 gives -1.50
    of Dec back: 0.75 in money (+0.14 VAT) and 0.75 restored."""
    out, nov = _november(billing, tmp_path, "g,acct_de,7.50,USD,2026-12-01T00:00:00Z,,purchased,INV-1,\n", "r0")
    assert (nov.credits_applied, nov.net_amount) == (D("0.00"), D("7.50"))
    _attempt(billing, "2026-12-07", "b1", "r1", 1, "2026-12-07T09:00:00Z", 1_000_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    assert (dec.credits_applied, dec.net_amount) == (D("7.50"), D("0.00"))
    _attempt(billing, "2027-01-12", "a2", "r0", 2, "2026-11-07T09:05:00Z", 900_000)
    _attempt(billing, "2027-01-13", "b2", "r1", 2, "2026-12-07T09:05:00Z", 1_200_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert _figures(jan) == (D("0.75"), D("0.00"), D("0.75"), D("0.14"), D("0.89"))
    line = next(n for n, a in enumerate(jan.adjustments, 1) if a.amount == D("1.50"))
    # rule 3 (rule 5 credits the line's 1.50 beyond Jan's net: tests/test_credit_note_rule5.py)
    jan_note = _note(billing, str(jan.statement_number), out, lines=(line,), issue_date=date(2027, 2, 10), rule=3)
    jan_note = jan_note.document
    assert (jan_note.net_amount, jan_note.prepaid_retained) == (D("0.75"), D("0.75"))
    _attempt(billing, "2027-02-12", "b3", "r1", 3, "2026-12-07T09:10:00Z", 1_000_000)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    assert _figures(feb) == (D("-1.50"), D("0.75"), D("-0.75"), D("-0.14"), D("-0.89"))


def test_a_note_crediting_more_than_its_lines_money_gives_back_the_other_lines_money(
    billing: Billing, tmp_path: Path
) -> None:
    """Grant g 15.00 from Nov pays Nov (r0 1,000,000 = 7.50) and Dec (r1 1,000,000 = 7.50). Grant
    h 1.00 from 1 Jan. Jan (no usage): r0's retry 1,200,000 asks +1.50 of Nov (line 1), r1's
    retry 1,200,000 +1.50 of Dec (line 2); h pays 1.00 (to line 1 by adjustment_money: Nov's
    money share 0.50, Dec's 1.50); net 2.00, VAT 0.38. A note on line 1 credits 1.50 + 0.29 (the
    statement's net first: nothing retained): 0.50 of line 1's money and 1.00 of line 2's. Feb:
    r1's third attempt 1,000,000 gives -1.50 of Dec back: 0.50 of Dec's ask is still paid in
    money, so 0.50 in money (VAT 0.095 -> 0.10) and 1.00 restored to g (layouts 7-9: 1.50 in
    money, with the note 1.00 + 0.19 more than the customer paid)."""
    out, nov = _november(
        billing,
        tmp_path,
        "g,acct_de,15.00,USD,2026-11-01T00:00:00Z,,purchased,INV-1,\n"
        "h,acct_de,1.00,USD,2027-01-01T00:00:00Z,,purchased,INV-2,\n",
        "r0",
    )
    assert (nov.credits_applied, nov.net_amount) == (D("7.50"), D("0.00"))
    _attempt(billing, "2026-12-07", "b1", "r1", 1, "2026-12-07T09:00:00Z", 1_000_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    assert (dec.credits_applied, dec.net_amount) == (D("7.50"), D("0.00"))
    _attempt(billing, "2027-01-12", "a2", "r0", 2, "2026-11-07T09:05:00Z", 1_200_000)
    _attempt(billing, "2027-01-13", "b2", "r1", 2, "2026-12-07T09:05:00Z", 1_200_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert (jan.credits_applied, jan.net_amount, jan.tax_amount) == (D("1.00"), D("2.00"), D("0.38"))
    jan_note = _note(billing, str(jan.statement_number), out, lines=(1,), issue_date=date(2027, 2, 10)).document
    assert (jan_note.prepaid_retained, jan_note.net_amount, jan_note.tax_amount) == (D("0.00"), D("1.50"), D("0.29"))
    _attempt(billing, "2027-02-12", "b3", "r1", 3, "2026-12-07T09:10:00Z", 1_000_000)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    assert _figures(feb) == (D("-1.50"), D("1.00"), D("-0.50"), D("-0.10"), D("-0.60"))


def test_a_note_on_a_later_usage_line_gives_back_the_adjustments_money_its_net_held(
    billing: Billing, tmp_path: Path
) -> None:
    """Grant g 7.50 from Nov pays Nov (1,000,000 = 7.50). Grant h 5.00 from 1 Dec. Dec: usage
    r2 600,000 = 4.50 (line 1) and r1's retry 1,200,000 +1.50 of Nov (line 2); h applies 5.00:
    4.50 to usage, 0.50 to the adjustment (its money share 1.00); net 1.00, VAT 0.19. A note on
    Dec's usage line credits Dec's whole net 1.00 + 0.19 (net first; 3.50 kept as prepaid):
    the adjustment's 1.00 of money, as h paid the usage. Jan: r1's third attempt 1,000,000
    gives -1.50 of Nov back: nothing of Nov's money is left (0.00 + 1.00 asked - 1.00 given
    back), so all 1.50 is restored to g (layouts 7-9: 1.00 + 0.19 in money a second time)."""
    out, nov = _november(
        billing,
        tmp_path,
        "g,acct_de,7.50,USD,2026-11-01T00:00:00Z,,purchased,INV-1,\n"
        "h,acct_de,5.00,USD,2026-12-01T00:00:00Z,,purchased,INV-2,\n",
    )
    assert (nov.credits_applied, nov.net_amount) == (D("7.50"), D("0.00"))
    _attempt(billing, "2026-12-07", "b1", "r2", 1, "2026-12-07T09:00:00Z", 600_000)
    _attempt(billing, "2026-12-10", "a2", "r1", 2, "2026-11-07T09:05:00Z", 1_200_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    assert (dec.credits_applied, dec.net_amount, dec.tax_amount) == (D("5.00"), D("1.00"), D("0.19"))
    dec_note = _note(billing, str(dec.statement_number), out, lines=(1,), issue_date=date(2027, 1, 10)).document
    assert (dec_note.net_amount, dec_note.prepaid_retained) == (D("1.00"), D("3.50"))
    _attempt(billing, "2027-01-12", "a3", "r1", 3, "2026-11-07T09:10:00Z", 1_000_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    assert _figures(jan) == (D("-1.50"), D("1.50"), D("0.00"), D("0.00"), D("0.00"))


def test_a_statement_that_refunded_a_credited_ask_again_keeps_its_net_as_its_money(
    billing: Billing, tmp_path: Path
) -> None:
    """Layout 10 counts a period's own money as the lower of its statement's net (less its notes)
    and what it asked for its usage: a refund of an earlier period netted on that statement may
    have given back more than that period's money, out of this statement's money. Grant g 7.50
    from November, h 2.50 from January. November 7.50, all g. December +1.50 of November in
    money (1.79), credited by a note. January, issued with layout 9: -1.50 of November refunded
    in money again (layout 9's defect), usage 7.50, h applies 2.50: net 7.50 - 1.50 - 2.50 =
    3.50. February: r2 down to 333,333 tokens, -666,667 x 7.50/1M = -5.0000025 -> -5.00 of
    January: 3.50 in money (January's net, not its usage money 7.50 - 2.50 = 5.00: 1.50 of that
    went to November's second refund) and 1.50 restored to h; VAT -0.665 -> -0.67, due -4.17.
    Over the four months the money asked and given back is even: 1.79 - 1.79 + 4.17 - 4.17."""
    grants = (
        "g,acct_de,7.50,USD,2026-11-01T00:00:00Z,,purchased,INV-1,\n"
        "h,acct_de,2.50,USD,2027-01-01T00:00:00Z,,purchased,INV-2,\n"
    )
    out, _ = _november(billing, tmp_path, grants)
    _attempt(billing, "2026-12-10", "a2", "r1", 2, "2026-11-07T09:05:00Z", 1_200_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    dec_note = _note(billing, str(dec.statement_number), out, issue_date=date(2027, 1, 10)).document
    assert (dec.total_due, dec_note.total_credited) == (D("1.79"), D("1.79"))
    _attempt(billing, "2027-01-12", "a3", "r1", 3, "2026-11-07T09:10:00Z", 1_000_000)
    _attempt(billing, "2027-01-13", "b1", "r2", 1, "2027-01-13T09:00:00Z", 1_000_000)
    run = jobs.run_statements(
        billing.settings, "2027-01", out, finalize=True, issue_date=date(2027, 2, 1), layout_version=9
    )
    jan = next(st.document for st in run.statements if st.account_id == "acct_de")
    assert (jan.adjustments_total, jan.credits_restored, jan.credits_applied) == (D("-1.50"), D("0.00"), D("2.50"))
    assert (jan.net_amount, jan.total_due) == (D("3.50"), D("4.17"))
    _attempt(billing, "2027-02-05", "b2", "r2", 2, "2027-01-13T09:05:00Z", 333_333)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    assert _figures(feb) == (D("-5.00"), D("1.50"), D("-3.50"), D("-0.67"), D("-4.17"))
