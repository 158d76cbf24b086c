-- 015: issued credit balances next to statements, for analysts (issue 17).

CREATE VIEW statement_credit_totals AS
SELECT s.account_id, s.period, s.statement_number, s.total_usd AS charges_usd,
       c.opening_usd, c.granted_usd, c.applied_usd, c.expired_usd, c.closing_usd,
       CAST(s.total_usd - c.applied_usd AS DECIMAL(18,2)) AS net_usd
FROM statements s
JOIN statement_credits c USING (statement_number);
COMMENT ON VIEW statement_credit_totals IS 'Issued statements of accounts with prepaid credit: charges, the credit block, and net (charges less credit applied).';
