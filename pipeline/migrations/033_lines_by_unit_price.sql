-- 033: statement layout 6 (reports.statement_model, core.statement_rules): a statement line is
-- one (model, token class, unit price), summed over the price versions that priced its tokens at
-- that price and rounded once (SPEC R7: summed at full precision, then rounded). Before, a new
-- price version inside a period split every line it did not reprice into one line per version,
-- each rounded on its own: up to a cent per pair away from the one line an independent
-- implementation of SPEC.md prints (8 of 52 such pairs in a differential run). statement_lines
-- keeps one row per price version (exact, maintained by difference each night, what an auditor
-- replaying a version reads); printed_statement_lines is what statements print, and the views
-- that sum statement lines in statement terms read it, so they equal the statements: merged for
-- an account's period not issued yet or issued with layout 6 on, per version for one whose
-- lines were issued with an earlier layout (its own statement, or adjustments on a later one). Statements issued before keep their lines (replay re-issues each with
-- its own layout's rules). The views are re-created unchanged but for the table they read, with
-- their comments (CREATE OR REPLACE drops them).
CREATE OR REPLACE VIEW printed_statement_lines AS
WITH per_version AS (  -- lines issued per version (layouts 1-5) for the account's period
    SELECT s.account_id, l.original_period, bool_or(coalesce(s.layout_version, 1) < 6) AS split
    FROM statement_issued_lines l
    JOIN statements s ON s.statement_number = l.statement_number
    GROUP BY s.account_id, l.original_period
),
keyed AS (
    SELECT l.*, NOT coalesce(v.split, FALSE) AS by_unit_price
    FROM statement_lines l
    LEFT JOIN per_version v ON v.account_id = l.account_id AND v.original_period = l.period
)
SELECT account_id, period, model, token_class,
       array_to_string(list_sort(list_distinct(list(price_version))), ';')  AS price_versions,
       unit_price_per_1m,
       CAST(sum(quantity_tokens) AS BIGINT)                                  AS quantity_tokens,
       CAST(sum(billed_requests) AS BIGINT)                                  AS billed_requests,
       CAST(sum(amount_exact) AS DECIMAL(38,20))                             AS amount_exact,
       CAST(CASE WHEN any_value(by_unit_price) THEN round(sum(amount_exact), 2) ELSE sum(amount) END
            AS DECIMAL(18,2))                                                AS amount
FROM keyed
GROUP BY account_id, period, model, token_class, unit_price_per_1m,
         CASE WHEN by_unit_price THEN '' ELSE price_version END;
COMMENT ON VIEW printed_statement_lines IS 'Statement lines as statements print them: from layout 6 one per account, period, model, token class and unit price, summed over the price versions that priced it and rounded half-up to cents once; an account''s period whose lines were issued with an earlier layout (on its own statement or as adjustments on a later one) keeps one line per price version, as printed. statement_lines has the exact rows per price version.';
COMMENT ON COLUMN printed_statement_lines.account_id IS 'The account.';
COMMENT ON COLUMN printed_statement_lines.period IS 'Billing period YYYY-MM.';
COMMENT ON COLUMN printed_statement_lines.model IS 'Model id.';
COMMENT ON COLUMN printed_statement_lines.token_class IS 'input_uncached | input_cached | output.';
COMMENT ON COLUMN printed_statement_lines.price_versions IS 'The price versions that priced the line, joined by '';'' (sorted).';
COMMENT ON COLUMN printed_statement_lines.unit_price_per_1m IS 'Unit price in USD per 1M tokens.';
COMMENT ON COLUMN printed_statement_lines.quantity_tokens IS 'Billed tokens of the class.';
COMMENT ON COLUMN printed_statement_lines.billed_requests IS 'Billed requests on the line.';
COMMENT ON COLUMN printed_statement_lines.amount_exact IS 'Exact sum of the charges, before rounding.';
COMMENT ON COLUMN printed_statement_lines.amount IS 'The printed amount: amount_exact rounded half-up to cents (R7); for a period whose lines were issued before layout 6, the sum of its per-version rounded lines.';
-- rated_attempts is each connection's TEMP view over the lake (core/attempt_store.py), made
-- after migrating: a stand-in with its columns lets the views that read it bind here.
CREATE OR REPLACE TEMP VIEW rated_attempts AS SELECT * FROM rated_before_lake;

CREATE OR REPLACE VIEW account_period_totals AS
SELECT account_id, period,
       sum(amount)          AS usage_usd,
       sum(amount_exact)    AS usage_exact,
       sum(CASE WHEN token_class = 'input_uncached' THEN quantity_tokens ELSE 0 END) AS input_uncached_tokens,
       sum(CASE WHEN token_class = 'input_cached' THEN quantity_tokens ELSE 0 END)   AS input_cached_tokens,
       sum(CASE WHEN token_class = 'output' THEN quantity_tokens ELSE 0 END)         AS output_tokens
FROM printed_statement_lines
GROUP BY account_id, period;
COMMENT ON VIEW account_period_totals IS 'Per account and period, as rated NOW: the sum of the current rounded statement lines and tokens per class. For a finalized period this includes records that arrived after it was issued, so it can differ from the issued statement and the finance summary; statement_reconciliation has both.';
COMMENT ON COLUMN account_period_totals.account_id IS 'The account.';
COMMENT ON COLUMN account_period_totals.period IS 'Billing period YYYY-MM.';
COMMENT ON COLUMN account_period_totals.usage_usd IS 'Sum of the current rounded statement lines: the period''s usage as rated now. Equals the issued statement''s usage only while no late record has arrived (see statement_reconciliation.issued_usage_usd).';
COMMENT ON COLUMN account_period_totals.usage_exact IS 'Exact sum of the current statement lines before rounding (as rated now).';
COMMENT ON COLUMN account_period_totals.input_uncached_tokens IS 'Billed uncached input tokens.';
COMMENT ON COLUMN account_period_totals.input_cached_tokens IS 'Billed cached input tokens.';
COMMENT ON COLUMN account_period_totals.output_tokens IS 'Billed output tokens.';

CREATE OR REPLACE VIEW monthly_totals AS
WITH periods AS (
    SELECT DISTINCT period FROM rated_attempts
),
billed AS (
    SELECT period,
           count(DISTINCT account_id)                          AS billed_accounts,
           count(*)                                            AS billed_requests,
           CAST(sum(input_uncached_tokens) AS BIGINT)          AS input_uncached_tokens,
           CAST(sum(input_cached_tokens) AS BIGINT)            AS input_cached_tokens,
           CAST(sum(output_tokens) AS BIGINT)                  AS output_tokens,
           CAST(sum(charge_total) AS DECIMAL(38,20))           AS spend_exact_usd
    FROM rated_attempts
    WHERE outcome = 'billed'
    GROUP BY period
),
other AS (
    SELECT period,
           count(*) FILTER (WHERE outcome = 'not_billed')      AS not_billed_attempts,
           count(*) FILTER (WHERE outcome = 'held')            AS held_attempts
    FROM rated_attempts
    GROUP BY period
),
lines AS (
    SELECT period, CAST(sum(amount) AS DECIMAL(18,2)) AS statement_total_usd
    FROM printed_statement_lines
    GROUP BY period
)
SELECT p.period,
       coalesce(b.billed_accounts, 0)                               AS billed_accounts,
       coalesce(b.billed_requests, 0)                               AS billed_requests,
       o.not_billed_attempts,
       o.held_attempts,
       coalesce(b.input_uncached_tokens, 0)                         AS input_uncached_tokens,
       coalesce(b.input_cached_tokens, 0)                           AS input_cached_tokens,
       coalesce(b.output_tokens, 0)                                 AS output_tokens,
       coalesce(b.spend_exact_usd, CAST(0 AS DECIMAL(38,20)))       AS spend_exact_usd,
       coalesce(l.statement_total_usd, CAST(0 AS DECIMAL(18,2)))    AS statement_total_usd
FROM periods p
JOIN other o ON o.period = p.period
LEFT JOIN billed b ON b.period = p.period
LEFT JOIN lines l ON l.period = p.period;
COMMENT ON VIEW monthly_totals IS 'One row per billing period over all accounts: billed accounts and requests, non-billed and held attempts, billed tokens, exact spend and the sum of the (rounded) statement totals.';
COMMENT ON COLUMN monthly_totals.period IS 'Billing period YYYY-MM.';
COMMENT ON COLUMN monthly_totals.billed_accounts IS 'Accounts with at least one billed request.';
COMMENT ON COLUMN monthly_totals.billed_requests IS 'Billed requests.';
COMMENT ON COLUMN monthly_totals.not_billed_attempts IS 'Attempts not billed (superseded, client or upstream error, no output, ...).';
COMMENT ON COLUMN monthly_totals.held_attempts IS 'Attempts held until their account, price or token count exists.';
COMMENT ON COLUMN monthly_totals.input_uncached_tokens IS 'Billed uncached input tokens.';
COMMENT ON COLUMN monthly_totals.input_cached_tokens IS 'Billed cached input tokens.';
COMMENT ON COLUMN monthly_totals.output_tokens IS 'Billed output tokens.';
COMMENT ON COLUMN monthly_totals.spend_exact_usd IS 'Exact billed spend in USD (sum of charge_total).';
COMMENT ON COLUMN monthly_totals.statement_total_usd IS 'Sum over all accounts of the period''s usage as rated now (current rounded lines); for an issued period the issued figures are in statement_reconciliation.';

CREATE OR REPLACE VIEW margin_by_model AS
WITH attempts_cost AS (
    SELECT period, model,
           count(*) FILTER (WHERE outcome = 'billed')                                         AS billed_requests,
           count(*) FILTER (WHERE outcome <> 'billed')                                        AS unbilled_attempts,
           CAST(coalesce(sum(charge_total) FILTER (WHERE outcome = 'billed'), 0) AS DECIMAL(38,20))       AS revenue_exact_usd,
           CAST(coalesce(sum(upstream_ref_cost) FILTER (WHERE outcome = 'billed'), 0) AS DECIMAL(38,20))  AS billed_upstream_cost_usd,
           CAST(coalesce(sum(upstream_ref_cost) FILTER (WHERE outcome = 'not_billed'), 0) AS DECIMAL(38,20)) AS not_billed_upstream_cost_usd,
           CAST(coalesce(sum(upstream_ref_cost) FILTER (WHERE outcome = 'held'), 0) AS DECIMAL(38,20))    AS held_upstream_cost_usd,
           CAST(coalesce(sum(upstream_ref_cost), 0) AS DECIMAL(38,20))                        AS upstream_cost_usd,
           count(*) FILTER (WHERE upstream_ref_cost IS NULL)                                  AS attempts_without_ref_price,
           count(upstream_cost_usd)                                                           AS reported_cost_attempts,
           CAST(sum(upstream_cost_usd) AS DECIMAL(38,20))                                     AS reported_upstream_cost_usd,
           CAST(sum(upstream_ref_cost) FILTER (WHERE upstream_cost_usd IS NOT NULL) AS DECIMAL(38,20)) AS ref_cost_of_reported_usd
    FROM rated_attempts
    GROUP BY period, model
),
invoiced AS (
    SELECT period, model, CAST(sum(amount) AS DECIMAL(18,2)) AS revenue_statements_usd
    FROM printed_statement_lines
    GROUP BY period, model
)
SELECT c.period, c.model, c.billed_requests, c.unbilled_attempts,
       c.revenue_exact_usd,
       coalesce(i.revenue_statements_usd, CAST(0 AS DECIMAL(18,2)))         AS revenue_statements_usd,
       c.billed_upstream_cost_usd, c.not_billed_upstream_cost_usd, c.held_upstream_cost_usd,
       CAST(c.not_billed_upstream_cost_usd + c.held_upstream_cost_usd AS DECIMAL(38,20)) AS unbilled_upstream_cost_usd,
       c.upstream_cost_usd,
       CAST(c.revenue_exact_usd - c.upstream_cost_usd AS DECIMAL(38,20))     AS margin_exact_usd,
       c.attempts_without_ref_price,
       c.reported_cost_attempts, c.reported_upstream_cost_usd, c.ref_cost_of_reported_usd
FROM attempts_cost c
LEFT JOIN invoiced i ON i.period = c.period AND i.model = c.model;
COMMENT ON VIEW margin_by_model IS 'Margin per period and model: billed revenue against the upstream reference cost of every attempt, billed or not (failed after upstream usage, superseded retries, held), plus the upstream cost the logs reported where they carry it.';
COMMENT ON COLUMN margin_by_model.period IS 'Billing period YYYY-MM.';
COMMENT ON COLUMN margin_by_model.model IS 'Model id.';
COMMENT ON COLUMN margin_by_model.billed_requests IS 'Billed requests.';
COMMENT ON COLUMN margin_by_model.unbilled_attempts IS 'Attempts not billed or held.';
COMMENT ON COLUMN margin_by_model.revenue_exact_usd IS 'Exact billed revenue in USD (sum of charge_total).';
COMMENT ON COLUMN margin_by_model.revenue_statements_usd IS 'Revenue as rated now in statement terms: the sum of the model''s current rounded statement lines over all accounts (late records of an issued period included).';
COMMENT ON COLUMN margin_by_model.billed_upstream_cost_usd IS 'Upstream reference cost of the billed attempts.';
COMMENT ON COLUMN margin_by_model.not_billed_upstream_cost_usd IS 'Upstream reference cost of attempts that were not billable (errors after upstream usage, superseded retries, no output).';
COMMENT ON COLUMN margin_by_model.held_upstream_cost_usd IS 'Upstream reference cost of held attempts (not billed yet).';
COMMENT ON COLUMN margin_by_model.unbilled_upstream_cost_usd IS 'not_billed_upstream_cost_usd + held_upstream_cost_usd: what InferGate paid upstream and did not bill.';
COMMENT ON COLUMN margin_by_model.upstream_cost_usd IS 'Total upstream reference cost: billed + not billed + held.';
COMMENT ON COLUMN margin_by_model.margin_exact_usd IS 'revenue_exact_usd - upstream_cost_usd, exact.';
COMMENT ON COLUMN margin_by_model.attempts_without_ref_price IS 'Attempts with no upstream price in force: their cost is missing from upstream_cost_usd.';
COMMENT ON COLUMN margin_by_model.reported_cost_attempts IS 'Attempts whose log record carried upstream_cost_usd.';
COMMENT ON COLUMN margin_by_model.reported_upstream_cost_usd IS 'Sum of upstream_cost_usd as reported in the logs; NULL when no attempt carried it.';
COMMENT ON COLUMN margin_by_model.ref_cost_of_reported_usd IS 'Upstream reference cost of the same attempts, to compare with reported_upstream_cost_usd.';

CREATE OR REPLACE VIEW statement_reconciliation AS
WITH rated_now AS (
    SELECT account_id, period, CAST(sum(amount) AS DECIMAL(18,2)) AS usage_usd
    FROM printed_statement_lines
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
COMMENT ON COLUMN statement_reconciliation.late_pending_usd IS 'The part of late_usage_usd not billed yet: late tokens not adjusted yet appear as adjustment lines on the account''s next finalized statement. Since layout 4 an adjustment line is its own tokens x unit price, rounded, so a line issued, then adjusted, can differ by a cent of rounding from the whole line rounded now: such cents stay here and are never billed (each printed line adds up instead).';

DROP VIEW IF EXISTS temp.rated_attempts;

COMMENT ON COLUMN statements.layout_version IS 'The statement layout it was printed with (reports.statement_model.LAYOUT_VERSION): 1 for statements issued before layouts were versioned (and every one the first layout printed), 2 prints each line''s number (the row of the lines CSV a credit note names), 3 has the tighter spacing from the start (layouts 1 and 2 got it in a second layout when their last page was nearly empty), 4 prices each prior-period adjustment line as its own tokens x unit price, rounded (layouts 1-3: the period''s rounded line now minus the cents issued), 5 stops a negative adjustment at what was paid for the line (issued less credited by credit notes) and draws prepaid credit for the adjustments of a period without usage at its end, 6 prints one line per model, token class and unit price, summed over the price versions that priced it and rounded once (layouts 1-5: one line per price version, each rounded).';
COMMENT ON TABLE statement_lines IS 'Exact statement lines, one per account, period, model, token class, price version and unit price: exact sum, and amount rounded half-up to cents. Statements from layout 6 print the lines at one unit price merged across price versions and rounded once: view printed_statement_lines.';
COMMENT ON COLUMN statement_issued_lines.price_version IS 'Price version of the unit price; from layout 6 the versions that priced the line at that unit price, sorted and joined by '';'' (also in the lines CSV).';
