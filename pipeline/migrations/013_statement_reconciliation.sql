-- 013: issued totals next to totals as rated now (issue 20, item 7).
-- Once a period is finalized, what was issued (table statements, what the finance summary
-- exports) never changes, but records that arrive late for the period are still rated into
-- statement_lines. The views that sum statement_lines (account_period_totals, top_accounts,
-- monthly_totals, margin_by_model) therefore show the period as rated NOW, which for an issued
-- period can differ from what was issued by the late records; those reach the customer as
-- adjustment lines on a later statement (R10). This view puts the two side by side, with the
-- adjustments between them, under names that say which is which; the existing columns keep
-- their definitions and their comments now say "as rated now". Plain SQL only (the analyst
-- snapshot is read by DuckDB 1.5 clients too); money is DECIMAL(18,2), never divided.

CREATE VIEW statement_reconciliation AS
WITH rated_now AS (
    SELECT account_id, period, CAST(sum(amount) AS DECIMAL(18,2)) AS usage_usd
    FROM statement_lines
    GROUP BY account_id, period
),
issued AS (
    SELECT account_id, period, statement_number, issue_date, usage_usd, adjustments_usd, total_usd
    FROM statements
),
adjusted_later AS (
    SELECT s.account_id, l.original_period AS period, CAST(sum(l.amount) AS DECIMAL(18,2)) AS usd
    FROM statement_issued_lines l
    JOIN statements s ON s.statement_number = l.statement_number
    WHERE l.kind = 'adjustment'
    GROUP BY s.account_id, l.original_period
),
account_periods AS (
    SELECT account_id, period FROM rated_now
    UNION SELECT account_id, period FROM issued
    UNION SELECT account_id, period FROM adjusted_later
),
joined AS (
    SELECT k.account_id, k.period, f.period IS NOT NULL AS finalized,
           i.statement_number, i.issue_date, i.usage_usd, i.adjustments_usd, i.total_usd,
           coalesce(r.usage_usd, CAST(0 AS DECIMAL(18,2)))  AS rated_now_usage_usd,
           coalesce(a.usd, CAST(0 AS DECIMAL(18,2)))        AS adjusted_usd
    FROM account_periods k
    LEFT JOIN finalized_periods f ON f.period = k.period
    LEFT JOIN issued i ON i.account_id = k.account_id AND i.period = k.period
    LEFT JOIN rated_now r ON r.account_id = k.account_id AND r.period = k.period
    LEFT JOIN adjusted_later a ON a.account_id = k.account_id AND a.period = k.period
)
SELECT account_id, period,
       CASE WHEN finalized THEN 'issued' ELSE 'open' END                               AS period_status,
       statement_number,
       issue_date,
       CASE WHEN finalized THEN coalesce(usage_usd, CAST(0 AS DECIMAL(18,2))) END       AS issued_usage_usd,
       CASE WHEN finalized THEN coalesce(adjustments_usd, CAST(0 AS DECIMAL(18,2))) END AS issued_adjustments_usd,
       CASE WHEN finalized THEN coalesce(total_usd, CAST(0 AS DECIMAL(18,2))) END       AS issued_total_usd,
       rated_now_usage_usd,
       CASE WHEN finalized THEN CAST(rated_now_usage_usd - coalesce(usage_usd, 0) AS DECIMAL(18,2)) END
                                                                                         AS late_usage_usd,
       CASE WHEN finalized THEN adjusted_usd END                                         AS late_adjusted_usd,
       CASE WHEN finalized THEN CAST(rated_now_usage_usd - coalesce(usage_usd, 0) - adjusted_usd AS DECIMAL(18,2)) END
                                                                                         AS late_pending_usd
FROM joined;
COMMENT ON VIEW statement_reconciliation IS 'Per account and period: what was issued (the finance summary''s figures for a finalized period) next to what the period amounts to as rated now, and the late-record adjustments between them: rated_now_usage_usd = issued_usage_usd + late_adjusted_usd + late_pending_usd.';
COMMENT ON COLUMN statement_reconciliation.account_id IS 'The account.';
COMMENT ON COLUMN statement_reconciliation.period IS 'Billing period YYYY-MM.';
COMMENT ON COLUMN statement_reconciliation.period_status IS 'issued (the period is finalized: its statements never change) | open (drafts only; every issued_* and late_* column is NULL).';
COMMENT ON COLUMN statement_reconciliation.statement_number IS 'The account''s issued statement for the period; NULL when the period is open or nothing was due at finalization.';
COMMENT ON COLUMN statement_reconciliation.issue_date IS 'Issue date of that statement.';
COMMENT ON COLUMN statement_reconciliation.issued_usage_usd IS 'Usage of the period as issued on its own statement (statements.usage_usd; usage_usd of the finance summary); 0 for an account without a statement in an issued period.';
COMMENT ON COLUMN statement_reconciliation.issued_adjustments_usd IS 'Prior-period adjustments printed on this statement (for EARLIER periods; adjustments_usd of the finance summary).';
COMMENT ON COLUMN statement_reconciliation.issued_total_usd IS 'Total due of the statement: issued_usage_usd + issued_adjustments_usd (total_usd of the finance summary).';
COMMENT ON COLUMN statement_reconciliation.rated_now_usage_usd IS 'The period''s usage as rated now: the sum of its rounded statement lines, late records included (account_period_totals.usage_usd, top_accounts.statement_total_usd).';
COMMENT ON COLUMN statement_reconciliation.late_usage_usd IS 'rated_now_usage_usd - issued_usage_usd: usage of the period rated after it was issued (late records).';
COMMENT ON COLUMN statement_reconciliation.late_adjusted_usd IS 'The part of late_usage_usd already billed: adjustment lines for this period on later issued statements.';
COMMENT ON COLUMN statement_reconciliation.late_pending_usd IS 'The part of late_usage_usd not billed yet: it appears as adjustment lines on the account''s next finalized statement.';

-- The existing columns that sum statement_lines show the period as rated now: say so.
COMMENT ON VIEW account_period_totals IS 'Per account and period, as rated NOW: the sum of the current rounded statement lines and tokens per class. For a finalized period this includes records that arrived after it was issued, so it can differ from the issued statement and the finance summary; statement_reconciliation has both.';
COMMENT ON COLUMN account_period_totals.usage_usd IS 'Sum of the current rounded statement lines: the period''s usage as rated now. Equals the issued statement''s usage only while no late record has arrived (see statement_reconciliation.issued_usage_usd).';
COMMENT ON COLUMN account_period_totals.usage_exact IS 'Exact sum of the current statement lines before rounding (as rated now).';
COMMENT ON COLUMN top_accounts.statement_total_usd IS 'The account''s usage for the period as rated now (sum of the current rounded lines, account_period_totals.usage_usd); for an issued period see statement_reconciliation.issued_total_usd.';
COMMENT ON COLUMN monthly_totals.statement_total_usd IS 'Sum over all accounts of the period''s usage as rated now (current rounded lines); for an issued period the issued figures are in statement_reconciliation.';
COMMENT ON COLUMN margin_by_model.revenue_statements_usd IS 'Revenue as rated now in statement terms: the sum of the model''s current rounded statement lines over all accounts (late records of an issued period included).';

-- Where a record came from: the file's name and sha256, never the path as a run spelled it
-- (issue 20, item 3). Rows written before this migration may hold that path; replay --verify
-- compares the file-name part only.
COMMENT ON COLUMN attempts.source_file IS 'Name of the log file the record came from (file name only; older rows may hold the path the run was given). The file is identified by source_sha256.';
COMMENT ON COLUMN quarantine.source_file IS 'Name of the log file of the record (file name only; older rows may hold the path the run was given).';
COMMENT ON COLUMN run_files.path IS 'Path of the file: an input''s absolute path (replay --verify re-reads it from there and checks its sha256); an output as written (relative when --out was).';
