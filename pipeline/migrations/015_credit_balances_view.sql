-- 015: issued credit balances next to statements, for analysts (issue 17).

CREATE VIEW statement_credit_totals AS
SELECT s.account_id, s.period, s.statement_number, s.total_usd AS charges_usd,
       c.opening_usd, c.granted_usd, c.applied_usd, c.expired_usd, c.closing_usd,
       CAST(s.total_usd - c.applied_usd AS DECIMAL(18,2)) AS net_usd
FROM statements s
JOIN statement_credits c USING (statement_number);
COMMENT ON VIEW statement_credit_totals IS 'Issued statements of accounts with prepaid credit: charges, the credit block, and net (charges less credit applied).';
COMMENT ON COLUMN statement_credit_totals.account_id IS 'The account.';
COMMENT ON COLUMN statement_credit_totals.period IS 'The statement''s period.';
COMMENT ON COLUMN statement_credit_totals.statement_number IS 'The issued statement.';
COMMENT ON COLUMN statement_credit_totals.charges_usd IS 'Usage plus adjustments (statements.total_usd).';
COMMENT ON COLUMN statement_credit_totals.opening_usd IS 'Credit balance at the start of the period.';
COMMENT ON COLUMN statement_credit_totals.granted_usd IS 'Credit granted in the period, less reversals.';
COMMENT ON COLUMN statement_credit_totals.applied_usd IS 'Credit applied to the statement.';
COMMENT ON COLUMN statement_credit_totals.expired_usd IS 'Credit expired in the period.';
COMMENT ON COLUMN statement_credit_totals.closing_usd IS 'Credit balance at the end of the period.';
COMMENT ON COLUMN statement_credit_totals.net_usd IS 'Charges less credit applied.';
