"""Prepaid credit (issue 17) and tax (issue 16) on one statement: the shared document model.

charges - credit applied = net; tax on the net (half up, per statement); total due = net + tax.
Amounts by hand: 1,000,000 input x $7.50/1M = 7.50 and 56,667 output x $45/1M = 2.550015 ->
2.55, so charges are 10.05; a purchased grant of 5.00 is applied whole; net 5.05; VAT 19% of
5.05 = 0.9595 -> 0.96; total due 6.01.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

import pytest

from core.money import D
from pipeline import jobs
from reports.finance import FINANCE_COLUMNS, finance_summary
from tests.conftest import Billing, record, usage
from tests.test_credits import with_credits
from tests.test_invoicing import ACCOUNTS_TOML, ISSUER_TOML, _pdf_text


def _summary(billing: Billing, period: str) -> dict[str, object]:
    con = jobs.connect(billing.settings.db_path, read_only=True)
    try:
        rows = [dict(zip(FINANCE_COLUMNS, row, strict=True)) for row in finance_summary(con, period)]
    finally:
        con.close()
    return next(r for r in rows if r["account_id"] == "acct_de")


@pytest.mark.weasyprint
def test_tax_is_computed_on_the_charges_less_the_credit_applied(
    billing: Billing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "issuer.toml").write_text(ISSUER_TOML, encoding="utf-8")
    billing.settings.accounts_file.write_text(ACCOUNTS_TOML, encoding="utf-8")
    billing.settings = dataclasses.replace(billing.settings, issuer_file=tmp_path / "issuer.toml")
    with_credits(billing, "paid,acct_de,5.00,USD,2026-11-01T00:00:00Z,,purchased,INV-7,\n")
    billing.log("requests-2026-11-20.jsonl", [record(account_id="acct_de", usage=usage(1_000_000, 56_667))])
    billing.nightly("2026-11-20")

    expected = {
        "total_usd": D("10.05"),
        "credits_applied_usd": D("5.00"),
        "credit_closing_usd": D("0.00"),
        "net_usd": D("5.05"),
        "tax_usd": D("0.96"),
        "total_due_usd": D("6.01"),
    }
    draft = _summary(billing, "2026-11")  # open period: the tax computed by the same rule
    assert {k: draft[k] for k in expected} == expected

    out = tmp_path / "out"
    result = jobs.run_statements(billing.settings, "2026-11", out, finalize=True, issue_date=date(2026, 12, 1))
    doc = next(st.document for st in result.statements if st.account_id == "acct_de")
    assert (doc.credits_applied, doc.net_amount, doc.tax_amount, doc.total_due) == (
        D("5.00"),
        D("5.05"),
        D("0.96"),
        D("6.01"),
    )
    issued = _summary(billing, "2026-11")
    assert {k: issued[k] for k in expected} == expected
    text = _pdf_text(out / "statements" / "2026-11", str(doc.statement_number))
    for printed in ("Prepaid credit applied", "VAT 19% on $5.05", "$0.96", "$6.01"):
        assert printed in text, printed
    # the command's summary line adds up on screen: usage - credit + tax = total
    from pipeline.cli.report import print_statements

    capsys.readouterr()
    print_statements(result, out)
    line = next(text for text in capsys.readouterr().out.splitlines() if "acct_de" in text)
    assert "total         6.01  (usage 10.05, adjustments 0, prepaid credit applied -5.00, VAT" in line, line
