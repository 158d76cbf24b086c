"""Credit note rule 6: a note stores per line the part it printed as already given back by
refunds and notes (rules 3-5's ``given_back_of``, ``credit_note_lines.printed_given_back_usd``)
beside rule 2's part refunded for its own period (``printed_refunded_usd``), so the refund cap
of statement layout 13 (issued less credited less the parts printed) counts as credited only
what notes gave back (docs/credits.md, "Closed (credit note rule 6)"). Found by the random
billing histories (seeds 64 and 77 of tests/test_credit_histories.py), made small.

acct_de (19% VAT), openai/gpt-5.5 input at 7.50/1M, prepaid credit from a grant; every figure
worked out by hand. "Even": money asked less money given back is 0.00, and the prepaid credit
used (applied less restored) is what the credit notes kept as prepaid.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb

from core.db import connect
from core.money import D
from pipeline import replay
from tests.conftest import Billing
from tests.test_credit_histories import History
from tests.test_credit_note_after_refund import _figures, _money, _note, _replays_match
from tests.test_credit_restore import _attempt, _german_account_with, _statement


def _asked_then_partly_refunded(billing: Billing, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Grant 7.50 from 1 November. November: r1 1,000,000 = 7.50, all prepaid. December: r1
    1,400,000, +3.00 of November in money. January: r1 1,200,000, -1.50 of November refunded in
    money (what is left of November's money: 3.00). The statements and the output folder."""
    out = _german_account_with(billing, tmp_path, "g,acct_de,7.50,USD,2026-11-01T00:00:00Z,,purchased,INV-g,\n")
    _attempt(billing, "2026-11-03", "e1", "r1", 1, "2026-11-02T09:00:00Z", 1_000_000)
    nov = _statement(billing, out, "2026-11", date(2026, 12, 1))
    _attempt(billing, "2026-12-03", "e2", "r1", 2, "2026-11-02T09:05:00Z", 1_400_000)
    dec = _statement(billing, out, "2026-12", date(2027, 1, 1))
    _attempt(billing, "2027-01-03", "e3", "r1", 3, "2026-11-02T09:10:00Z", 1_200_000)
    jan = _statement(billing, out, "2027-01", date(2027, 2, 1))
    return nov, dec, jan, out


def _printed_parts(billing: Billing, number: str) -> tuple[Decimal, Decimal | None, Decimal | None]:
    """A note's one line: its amount credited, the part it stored as printed refunded (rule 2's)
    and as printed given back (rule 6 on)."""
    amount, refunded, given_back = billing.one(
        "SELECT amount_usd, printed_refunded_usd, printed_given_back_usd FROM credit_note_lines "
        "WHERE credit_note_number = ?",
        [number],
    )
    return amount, refunded, given_back


def test_a_note_on_an_ask_printing_part_as_given_back_leaves_its_credit_restorable(
    billing: Billing, tmp_path: Path
) -> None:
    nov, dec, jan, out = _asked_then_partly_refunded(billing, tmp_path)
    # a note on December's ask: 3.00, of which 1.50 printed as given back (January's refund),
    # credits 1.50 + 0.29 (19%). November's money is then all given back: 3.00 - 1.50 - 1.50.
    # Rule 6 stores the 1.50 it printed as given back (none as refunded: rule 2's part is for the
    # statement's own period); rule 5 stored nothing
    note = _note(billing, str(dec.statement_number), out, lines=(1,), issue_date=date(2027, 2, 5)).document
    assert _money(note) == (D("3.00"), D("0.00"), D("1.50"), D("1.50"), "on_net", D("0.29"), D("1.79"))
    assert _printed_parts(billing, str(note.credit_note_number)) == (D("3.00"), D("0.00"), D("1.50"))
    # February: r1 to 0 tokens, -9.00 of November (issued for it: 7.50 + 3.00 - 1.50). Paid
    # for it: 7.50 of credit, no money left (3.00 asked, 1.50 refunded, 1.50 credited). The cap
    # is issued less what notes gave back: 9.00 - (3.00 - 1.50) = 7.50, all restored to the
    # grant (rule 5's note, stored without the 1.50: 9.00 - 3.00 = 6.00, the refund of January
    # subtracted twice)
    _attempt(billing, "2027-02-03", "e4", "r1", 4, "2026-11-02T09:15:00Z", 0)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    assert _figures(feb) == (D("-7.50"), D("7.50"), D("0.00"), D("0.00"), D("0.00"))
    even = History(statements=[nov, dec, jan, feb], notes=[note])
    assert (even.money, even.credit_used) == (D("0.00"), even.kept)
    _replays_match(billing, tmp_path, periods=("2026-12", "2027-02"))


def test_a_rule_5_note_keeps_storing_only_its_own_periods_refunded_part(billing: Billing, tmp_path: Path) -> None:
    # the same note issued under rule 5 (as a run recorded before rule 6 re-executes): it prints
    # the same figures and stores no part given back (NULL), so statements count it as before
    # (February restores 6.00) and replay reproduces what was issued
    nov, dec, jan, out = _asked_then_partly_refunded(billing, tmp_path)
    note = _note(billing, str(dec.statement_number), out, rule=5, lines=(1,), issue_date=date(2027, 2, 5)).document
    assert _money(note) == (D("3.00"), D("0.00"), D("1.50"), D("1.50"), "on_net", D("0.29"), D("1.79"))
    assert _printed_parts(billing, str(note.credit_note_number)) == (D("3.00"), D("0.00"), None)
    _attempt(billing, "2027-02-03", "e4", "r1", 4, "2026-11-02T09:15:00Z", 0)
    feb = _statement(billing, out, "2027-02", date(2027, 3, 1))
    assert _figures(feb) == (D("-6.00"), D("6.00"), D("0.00"), D("0.00"), D("0.00"))
    _replays_match(billing, tmp_path, verify=True, periods=("2026-12", "2027-02"))
    # as main wrote it before migration 049: verify reads it as it is (read only, not migrated:
    # the column is not compared; before, a Binder Error), then after the upgrade
    last = billing.one("SELECT max(run_id) FROM runs WHERE status = 'succeeded'")
    with duckdb.connect(str(billing.settings.db_path)) as con:
        con.execute("ALTER TABLE credit_note_lines DROP COLUMN printed_given_back_usd")
        con.execute("ALTER TABLE credit_note_lines DROP COLUMN printed_ask_restored_usd")  # 052's
        con.execute("DELETE FROM schema_migrations WHERE name >= '049'")
    assert replay.verify_run(billing.settings, last).status == "MATCH"
    connect(billing.settings.db_path).close()  # the upgrade: migration 049
    assert _printed_parts(billing, str(note.credit_note_number)) == (D("3.00"), D("0.00"), None)
    assert replay.verify_run(billing.settings, last).status == "MATCH"
