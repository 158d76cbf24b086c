-- Finance summary for one period ($period = 'YYYY-MM'): one row per account with a statement.
-- A finalized period reports exactly what was issued (table statements); an open period
-- reports the draft: usage lines of the period plus pending prior-period adjustments, from
-- due_lines (sql/statement_lines_due.sql). usage_usd is the sum of rounded lines (R7), so it
-- equals the printed statement; total_usd = usage_usd + adjustments_usd (the charges).
-- Prepaid credit (issue 17), appended last: issued statements report statement_credits; open
-- ones the temp table open_credits (core/credit_ledger.py, the drawdown as of now).
-- Accounts without credit grants report 0.00 in all five. From layout 7 the net also adds the
-- credit restored (negative adjustments of usage prepaid credit paid, given back as credit):
-- credits_restored_usd, appended last (after the credit notes' columns, so that no existing
-- column moves), so that every row adds up:
--   credit_opening + credits_granted + credits_restored - credits_applied - credits_expired
--     = credit_closing, and total + credits_restored - credits_applied = net.
-- Issue 16: net_usd (the charges less prepaid credit applied: what tax is computed on),
-- tax_usd and total_due_usd = net_usd + tax_usd. An issued statement reports what it printed
-- (statement_invoicing; none before migration 016: no tax). For an open period tax_usd is NULL
-- here and tax_rate_pct is the account's rate now: reports/finance.py computes the tax with
-- core.money.tax_on, the one rounding rule, and drops tax_rate_pct.
-- Issue 16 item 4, appended last: the credit notes issued so far against the row's statement
-- (net, tax, total credited); reports/finance.py appends total_due_usd - credit_notes_usd.
-- An open period's row has no statement, hence no credit note: 0.00.
WITH draft AS (
    SELECT d.account_id,
           sum(CASE WHEN kind = 'usage' AND token_class = 'input_uncached' THEN quantity_tokens ELSE 0 END) AS input_uncached_tokens,
           sum(CASE WHEN kind = 'usage' AND token_class = 'input_cached' THEN quantity_tokens ELSE 0 END)   AS input_cached_tokens,
           sum(CASE WHEN kind = 'usage' AND token_class = 'output' THEN quantity_tokens ELSE 0 END)         AS output_tokens,
           coalesce(sum(amount) FILTER (WHERE kind = 'usage'), 0)                                            AS usage_usd,
           coalesce(sum(amount) FILTER (WHERE kind = 'adjustment'), 0)                                       AS adjustments_usd,
           -- a line of layout 6 on lists the versions that priced it (';')
           array_to_string(list_sort(list_distinct(flatten(list(string_split(price_version, ';'))))), ';')  AS price_versions
    FROM due_lines d
    GROUP BY d.account_id
),
billed AS (
    SELECT account_id, count(*) AS billed_requests
    FROM rated_attempts
    WHERE outcome = 'billed' AND period = $period
    GROUP BY account_id
),
open_period AS (
    SELECT d.account_id, CAST(NULL AS VARCHAR) AS statement_number,
           coalesce(b.billed_requests, 0) AS billed_requests,
           d.input_uncached_tokens, d.input_cached_tokens, d.output_tokens,
           d.usage_usd, d.adjustments_usd, d.usage_usd + d.adjustments_usd AS total_usd, d.price_versions,
           c.opening_usd, c.granted_usd, c.applied_usd, c.expired_usd, c.closing_usd, c.restored_usd
    FROM draft d
    LEFT JOIN billed b USING (account_id)
    LEFT JOIN open_credits c USING (account_id)
    WHERE $period NOT IN (SELECT period FROM finalized_periods)
),
issued AS (
    SELECT s.account_id, s.statement_number, s.billed_requests, s.input_uncached_tokens, s.input_cached_tokens,
           s.output_tokens, s.usage_usd, s.adjustments_usd, s.total_usd, s.price_versions,
           c.opening_usd, c.granted_usd, c.applied_usd, c.expired_usd, c.closing_usd, c.restored_usd
    FROM statements s
    LEFT JOIN statement_credits c USING (statement_number)
    WHERE s.period = $period
)
SELECT r.account_id,
       a.legal_name                                       AS account_name,
       $period                                            AS period,
       r.statement_number,
       CAST(r.billed_requests AS BIGINT)                  AS billed_requests,
       CAST(r.input_uncached_tokens AS BIGINT)            AS input_uncached_tokens,
       CAST(r.input_cached_tokens AS BIGINT)              AS input_cached_tokens,
       CAST(r.output_tokens AS BIGINT)                    AS output_tokens,
       CAST(r.usage_usd AS DECIMAL(18,2))                 AS usage_usd,
       CAST(r.adjustments_usd AS DECIMAL(18,2))           AS adjustments_usd,
       CAST(r.total_usd AS DECIMAL(18,2))                 AS total_usd,
       coalesce(r.price_versions, '')                     AS price_versions,
       CAST(coalesce(r.opening_usd, 0) AS DECIMAL(18,2))  AS credit_opening_usd,
       CAST(coalesce(r.granted_usd, 0) AS DECIMAL(18,2))  AS credits_granted_usd,
       CAST(coalesce(r.applied_usd, 0) AS DECIMAL(18,2))  AS credits_applied_usd,
       CAST(coalesce(r.expired_usd, 0) AS DECIMAL(18,2))  AS credits_expired_usd,
       CAST(coalesce(r.closing_usd, 0) AS DECIMAL(18,2))  AS credit_closing_usd,
       CAST(coalesce(si.net_usd, r.total_usd + coalesce(r.restored_usd, 0) - coalesce(r.applied_usd, 0))
            AS DECIMAL(18,2))                                            AS net_usd,
       CAST(CASE WHEN r.statement_number IS NULL THEN NULL
                 ELSE coalesce(si.tax_usd, 0) END AS DECIMAL(18,2))    AS tax_usd,
       CAST(CASE WHEN r.statement_number IS NULL THEN NULL
                 ELSE coalesce(si.total_due_usd, r.total_usd + coalesce(r.restored_usd, 0) - coalesce(r.applied_usd, 0))
            END AS DECIMAL(18,2))                                        AS total_due_usd,
       CASE WHEN ai.tax_treatment = 'domestic' THEN (SELECT max(domestic_tax_rate_pct) FROM issuer)
            ELSE CAST(0 AS DECIMAL(5,2)) END                             AS tax_rate_pct,
       CAST(coalesce(cn.net_usd, 0) AS DECIMAL(18,2))                    AS credit_notes_net_usd,
       CAST(coalesce(cn.tax_usd, 0) AS DECIMAL(18,2))                    AS credit_notes_tax_usd,
       CAST(coalesce(cn.total_usd, 0) AS DECIMAL(18,2))                  AS credit_notes_usd,
       CAST(coalesce(r.restored_usd, 0) AS DECIMAL(18,2))                AS credits_restored_usd
FROM (SELECT * FROM open_period UNION ALL SELECT * FROM issued) r
JOIN accounts a USING (account_id)
LEFT JOIN statement_invoicing si ON si.statement_number = r.statement_number
LEFT JOIN (SELECT statement_number, sum(net_usd) AS net_usd, sum(tax_usd) AS tax_usd,
                  sum(total_credited_usd) AS total_usd
           FROM credit_notes GROUP BY statement_number) cn ON cn.statement_number = r.statement_number
LEFT JOIN account_invoicing ai ON ai.account_id = r.account_id
ORDER BY r.account_id
