-- 035: statement layout 7 (reports.statement_model, core.statement_rules): a negative
-- prior-period adjustment of usage that prepaid credit paid is restored to the customer's
-- prepaid credit, not given back in money (nor its tax, which was never charged on it). The
-- part of it the customer paid in money is refunded in money first, then what prepaid credit
-- paid is restored (docs/credits.md "Restoring credit"). The restoration is a credit movement
-- ('restored', positive) at the start of the statement's period on the grants that paid the
-- adjusted period, latest-expiring first; restored_for names that period, so a later
-- adjustment of it never restores more than its statement drew. Statements of layouts 1-6 keep
-- their rules (their rows have NULL / 0.00 here). Re-runnable (IF NOT EXISTS, OR REPLACE), as the
-- tests that rebuild a database from before an earlier migration re-apply every later one.
ALTER TABLE credit_ledger ADD COLUMN IF NOT EXISTS restored_for VARCHAR;
COMMENT ON COLUMN credit_ledger.restored_for IS 'For a restored movement (statement layout 7 on): the issued period whose usage, paid with this grant and since found smaller, is given back as credit; NULL for every other movement.';
COMMENT ON COLUMN credit_ledger.entry_kind IS 'granted, reversed, applied (drawn by billed usage), expired, or restored (statement layout 7 on: a negative prior-period adjustment of usage this grant paid, given back as credit; restored_for names the period).';
COMMENT ON COLUMN credit_ledger.amount IS 'USD moved, positive; the sign is in entry_kind (granted and restored add, the others take).';

ALTER TABLE statement_credits ADD COLUMN IF NOT EXISTS restored_usd DECIMAL(18,2) DEFAULT 0;
COMMENT ON COLUMN statement_credits.restored_usd IS 'Credit restored in the period (statement layout 7 on): the part of negative prior-period adjustments that prepaid credit had paid, not refunded in money. 0.00 before layout 7.';
COMMENT ON COLUMN statement_credits.closing_usd IS 'opening + granted + restored - applied - expired.';

CREATE OR REPLACE VIEW statement_credit_totals AS
SELECT s.account_id, s.period, s.statement_number, s.total_usd AS charges_usd,
       c.opening_usd, c.granted_usd, c.applied_usd, c.expired_usd, c.closing_usd,
       CAST(s.total_usd + c.restored_usd - c.applied_usd AS DECIMAL(18,2)) AS net_usd,
       c.restored_usd
FROM statements s
JOIN statement_credits c USING (statement_number);
COMMENT ON VIEW statement_credit_totals IS 'Issued statements of accounts with prepaid credit: charges, the credit block, and net (charges plus credit restored less credit applied).';
COMMENT ON COLUMN statement_credit_totals.account_id IS 'The account.';
COMMENT ON COLUMN statement_credit_totals.period IS 'The statement''s period.';
COMMENT ON COLUMN statement_credit_totals.statement_number IS 'The issued statement.';
COMMENT ON COLUMN statement_credit_totals.charges_usd IS 'Usage plus adjustments (statements.total_usd).';
COMMENT ON COLUMN statement_credit_totals.opening_usd IS 'Credit balance at the start of the period.';
COMMENT ON COLUMN statement_credit_totals.granted_usd IS 'Credit granted in the period, less reversals.';
COMMENT ON COLUMN statement_credit_totals.applied_usd IS 'Credit applied to the statement.';
COMMENT ON COLUMN statement_credit_totals.expired_usd IS 'Credit expired in the period.';
COMMENT ON COLUMN statement_credit_totals.closing_usd IS 'Credit balance at the end of the period.';
COMMENT ON COLUMN statement_credit_totals.net_usd IS 'Charges plus credit restored (layout 7 on: the part of negative adjustments prepaid credit had paid, not refunded in money) less credit applied.';
COMMENT ON COLUMN statement_credit_totals.restored_usd IS 'Credit restored in the period (statement_credits.restored_usd).';

COMMENT ON COLUMN statements.layout_version IS 'The statement layout it was printed with (reports.statement_model.LAYOUT_VERSION): 1 for statements issued before layouts were versioned (and every one the first layout printed), 2 prints each line''s number (the row of the lines CSV a credit note names), 3 has the tighter spacing from the start (layouts 1 and 2 got it in a second layout when their last page was nearly empty), 4 prices each prior-period adjustment line as its own tokens x unit price, rounded (layouts 1-3: the period''s rounded line now minus the cents issued), 5 stops a negative adjustment at what was paid for the line (issued less credited by credit notes) and draws prepaid credit for the adjustments of a period without usage at its end, 6 prints one line per model, token class and unit price, summed over the price versions that priced it and rounded once (layouts 1-5: one line per price version, each rounded), 7 restores to prepaid credit the part of a negative adjustment that prepaid credit had paid (refunding in money only what was paid in money).';
