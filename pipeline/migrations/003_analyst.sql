-- 003: the analyst schema. Every table, view and column carries a COMMENT (docs/schema.md is
-- generated from them: `make schema-doc`), and stable views answer the common questions.
-- Views are read by analysts with older DuckDB clients too (the analyst snapshot is written in
-- the v1.5.0 storage format), so they use plain SQL only. Money is never divided (SPEC E1);
-- every sum of money is cast back to DECIMAL(38,20) and every day is the stored UTC usage_date,
-- never a cast of ts that would depend on the reader's session time zone (E2).

COMMENT ON TABLE schema_migrations IS 'The named migrations (pipeline/migrations/*.sql) applied to this database, in order.';
COMMENT ON COLUMN schema_migrations.name IS 'Migration file name, e.g. 001_core.sql.';
COMMENT ON COLUMN schema_migrations.applied_at IS 'When the migration was applied.';

-- runs -------------------------------------------------------------------------------------
COMMENT ON COLUMN runs.run_id IS 'Monotonic run number; every row a run writes carries it.';
COMMENT ON COLUMN runs.command IS 'The job: ingest, rate or nightly.';
COMMENT ON COLUMN runs.args IS 'The job''s arguments as JSON (dates, directories, files).';
COMMENT ON COLUMN runs.started_at IS 'When the run started (UTC).';
COMMENT ON COLUMN runs.finished_at IS 'When the run ended; NULL while running.';
COMMENT ON COLUMN runs.status IS 'running | succeeded | failed | crashed (process died; its changes were rolled back) | refused.';
COMMENT ON COLUMN runs.exit_code IS 'The process exit code the run ended with (0 success, 1 failure).';
COMMENT ON COLUMN runs.code_version IS 'Package version plus a hash of the shipped SQL (rating rules and migrations).';
COMMENT ON COLUMN runs.pid IS 'Process id of the run.';
COMMENT ON COLUMN runs.price_versions IS 'Price-table versions in force for the run, as JSON {version_id: sha256}.';
COMMENT ON COLUMN runs.accounts_sha256 IS 'sha256 of the accounts reference file the run loaded.';
COMMENT ON COLUMN runs.files_read IS 'Input files read (not already ingested).';
COMMENT ON COLUMN runs.files_skipped IS 'Input files skipped because the same bytes were already ingested.';
COMMENT ON COLUMN runs.lines_read IS 'Non-blank lines read from the files read.';
COMMENT ON COLUMN runs.accepted IS 'Records accepted into attempts.';
COMMENT ON COLUMN runs.duplicates IS 'Identical re-sent records (same event_id, same content): nothing done.';
COMMENT ON COLUMN runs.quarantined IS 'Records quarantined (see quarantine).';
COMMENT ON COLUMN runs.rated IS 'Attempts (re-)rated by the run.';
COMMENT ON COLUMN runs.message IS 'Error message of a failed or crashed run.';

-- run_files --------------------------------------------------------------------------------
COMMENT ON COLUMN run_files.run_id IS 'The run (runs.run_id).';
COMMENT ON COLUMN run_files.kind IS 'input | output.';
COMMENT ON COLUMN run_files.path IS 'File path as given to the run.';
COMMENT ON COLUMN run_files.sha256 IS 'sha256 of the file bytes.';
COMMENT ON COLUMN run_files.size_bytes IS 'File size in bytes.';
COMMENT ON COLUMN run_files.lines_read IS 'Non-blank lines read (lines_read = accepted + duplicates + quarantined).';
COMMENT ON COLUMN run_files.accepted IS 'Records of this file accepted into attempts.';
COMMENT ON COLUMN run_files.duplicates IS 'Identical duplicates of records already stored.';
COMMENT ON COLUMN run_files.quarantined IS 'Records of this file quarantined.';
COMMENT ON COLUMN run_files.skipped IS 'True when the same bytes were already ingested and nothing was done.';

-- ingested_files ---------------------------------------------------------------------------
COMMENT ON COLUMN ingested_files.sha256 IS 'sha256 of the file bytes (the identity of an ingested file).';
COMMENT ON COLUMN ingested_files.file_name IS 'File name without directory.';
COMMENT ON COLUMN ingested_files.path IS 'Path the file was ingested from.';
COMMENT ON COLUMN ingested_files.run_id IS 'The run that ingested it.';
COMMENT ON COLUMN ingested_files.lines_read IS 'Non-blank lines read.';
COMMENT ON COLUMN ingested_files.accepted IS 'Records accepted into attempts.';
COMMENT ON COLUMN ingested_files.duplicates IS 'Identical duplicates of records already stored.';
COMMENT ON COLUMN ingested_files.quarantined IS 'Records quarantined.';
COMMENT ON COLUMN ingested_files.ingested_at IS 'When the file was ingested.';

-- attempts ---------------------------------------------------------------------------------
COMMENT ON COLUMN attempts.event_id IS 'Unique id of the log record (R1: one row per event_id).';
COMMENT ON COLUMN attempts.request_id IS 'The id the client saw; all attempts of one request share it.';
COMMENT ON COLUMN attempts.attempt IS 'Attempt number within the request (>= 1).';
COMMENT ON COLUMN attempts.ts_text IS 'ts exactly as written in the log (with its offset).';
COMMENT ON COLUMN attempts.duration_ms IS 'Duration of the attempt in milliseconds, when logged.';
COMMENT ON COLUMN attempts.account_id IS 'Account that made the request.';
COMMENT ON COLUMN attempts.api_key_id IS 'Id of the API key used (raw keys are masked as [REDACTED]).';
COMMENT ON COLUMN attempts.group_name IS 'Access group from the log (informational; pricing uses the accounts reference data).';
COMMENT ON COLUMN attempts.endpoint IS 'API endpoint, default /v1/chat/completions.';
COMMENT ON COLUMN attempts.model IS 'Model id the client asked for, e.g. openai/gpt-5.5.';
COMMENT ON COLUMN attempts.provider IS 'Upstream that served the attempt (openai, deepseek, azure, ...).';
COMMENT ON COLUMN attempts.status IS 'HTTP status of the attempt (499 = client closed the connection).';
COMMENT ON COLUMN attempts.error_code IS 'Gateway error code, e.g. rate_limit_exceeded, upstream_timeout.';
COMMENT ON COLUMN attempts.stream IS 'Whether the response was streamed.';
COMMENT ON COLUMN attempts.finish_reason IS 'stop, length, content_filter, tool_calls, or NULL when cut off.';
COMMENT ON COLUMN attempts.has_usage IS 'Whether the upstream reported a usage object.';
COMMENT ON COLUMN attempts.usage_json IS 'The usage object exactly as the upstream returned it.';
COMMENT ON COLUMN attempts.prompt_tokens IS 'usage.prompt_tokens (includes cached tokens).';
COMMENT ON COLUMN attempts.completion_tokens IS 'usage.completion_tokens (includes reasoning and image tokens).';
COMMENT ON COLUMN attempts.reasoning_tokens IS 'Reasoning tokens, a part of completion_tokens.';
COMMENT ON COLUMN attempts.image_tokens IS 'Image output tokens, a part of completion_tokens.';
COMMENT ON COLUMN attempts.has_messages IS 'Whether the log carried the request messages (the text itself is never stored).';
COMMENT ON COLUMN attempts.est_input_tokens IS 'R5: input tokens recounted offline from messages when usage was missing.';
COMMENT ON COLUMN attempts.est_output_tokens IS 'R5: output tokens recounted offline from output_text when usage was missing.';
COMMENT ON COLUMN attempts.est_tokenizer IS 'R5: the tokenizer used for the recount (o200k_base or the DeepSeek tokenizer).';
COMMENT ON COLUMN attempts.upstream_cost_usd IS 'What the upstream charged InferGate for the attempt, where the log carries it.';
COMMENT ON COLUMN attempts.content_sha256 IS 'sha256 of the minified record: a re-sent event_id with other content is a duplicate_conflict.';
COMMENT ON COLUMN attempts.source_file IS 'Log file the record came from.';
COMMENT ON COLUMN attempts.source_sha256 IS 'sha256 of that file.';
COMMENT ON COLUMN attempts.source_line IS 'Line number in that file (1-based).';
COMMENT ON COLUMN attempts.run_id IS 'The run that ingested the record.';

-- quarantine -------------------------------------------------------------------------------
COMMENT ON COLUMN quarantine.quarantine_id IS 'Monotonic id of the quarantine entry.';
COMMENT ON COLUMN quarantine.run_id IS 'The run that quarantined the record.';
COMMENT ON COLUMN quarantine.source_file IS 'Log file of the record.';
COMMENT ON COLUMN quarantine.source_sha256 IS 'sha256 of that file (the original stays the source for re-ingest).';
COMMENT ON COLUMN quarantine.source_line IS 'Line number in that file (1-based).';
COMMENT ON COLUMN quarantine.event_id IS 'event_id of the record, when it could be read.';
COMMENT ON COLUMN quarantine.reason IS 'parse_error | invalid_record | bad_timestamp | duplicate_conflict | usage_inconsistent.';
COMMENT ON COLUMN quarantine.field IS 'The field that failed the check, e.g. usage.prompt_tokens.';
COMMENT ON COLUMN quarantine.message IS 'One-line explanation naming the field.';
COMMENT ON COLUMN quarantine.record IS 'The record with API keys masked and messages/output_text dropped (or a redacted excerpt of an unparseable line).';
COMMENT ON COLUMN quarantine.quarantined_at IS 'When it was quarantined.';
COMMENT ON COLUMN quarantine.resolved_run_id IS 'The run that accepted a fixed record with the same event_id; NULL while open.';

-- price_versions, model_prices ---------------------------------------------------------------
COMMENT ON COLUMN price_versions.version_id IS 'Price-table version id, e.g. 2026-11-01.';
COMMENT ON COLUMN price_versions.effective_from IS 'First instant (UTC) the version is in force.';
COMMENT ON COLUMN price_versions.effective_until IS 'First instant it is no longer in force (the next version''s effective_from); NULL = open-ended.';
COMMENT ON COLUMN price_versions.currency IS 'Currency of every price in the version (USD).';
COMMENT ON COLUMN price_versions.markup IS 'List price = upstream reference price x markup.';
COMMENT ON COLUMN price_versions.sha256 IS 'sha256 of the price-table file.';
COMMENT ON COLUMN price_versions.source_file IS 'The price-table file.';
COMMENT ON COLUMN model_prices.version_id IS 'Price version (price_versions.version_id).';
COMMENT ON COLUMN model_prices.model IS 'Model id.';
COMMENT ON COLUMN model_prices.display_name IS 'Model name printed on statements.';
COMMENT ON COLUMN model_prices.upstream_input_per_1m IS 'Upstream reference price per 1M input tokens (what InferGate pays).';
COMMENT ON COLUMN model_prices.upstream_cached_input_per_1m IS 'Upstream reference price per 1M cached input tokens.';
COMMENT ON COLUMN model_prices.upstream_output_per_1m IS 'Upstream reference price per 1M output tokens.';
COMMENT ON COLUMN model_prices.list_input_per_1m IS 'List price per 1M input tokens.';
COMMENT ON COLUMN model_prices.list_cached_input_per_1m IS 'List price per 1M cached input tokens (the input price when the table gives none).';
COMMENT ON COLUMN model_prices.list_output_per_1m IS 'List price per 1M output tokens.';

-- accounts reference data --------------------------------------------------------------------
COMMENT ON COLUMN account_groups.group_name IS 'Access group name.';
COMMENT ON COLUMN account_groups.multiplier IS 'Multiplier applied to list prices for accounts of the group.';
COMMENT ON COLUMN accounts.account_id IS 'Account id as it appears in the logs.';
COMMENT ON COLUMN accounts.legal_name IS 'Legal name printed on statements.';
COMMENT ON COLUMN accounts.address IS 'Billing address lines.';
COMMENT ON COLUMN accounts.email IS 'Billing e-mail address.';
COMMENT ON COLUMN accounts.group_name IS 'Access group (account_groups.group_name) whose multiplier applies.';
COMMENT ON COLUMN accounts.discount_pct IS 'Discount in percent (0-100) applied after the group multiplier.';
COMMENT ON COLUMN accounts.spend_limit_usd IS 'Monthly spend limit in USD; NULL = no limit (see view spend_limit_status).';
COMMENT ON COLUMN price_overrides.account_id IS 'The account.';
COMMENT ON COLUMN price_overrides.model IS 'The model the override prices.';
COMMENT ON COLUMN price_overrides.effective_from IS 'First instant (UTC) the override is in force.';
COMMENT ON COLUMN price_overrides.effective_until IS 'First instant it is no longer in force; NULL = open-ended.';
COMMENT ON COLUMN price_overrides.input_per_1m IS 'Final price per 1M input tokens.';
COMMENT ON COLUMN price_overrides.cached_input_per_1m IS 'Final price per 1M cached input tokens.';
COMMENT ON COLUMN price_overrides.output_per_1m IS 'Final price per 1M output tokens.';

-- rated_attempts ---------------------------------------------------------------------------
COMMENT ON COLUMN rated_attempts.event_id IS 'The attempt (attempts.event_id).';
COMMENT ON COLUMN rated_attempts.request_id IS 'The request; at most one attempt per (account_id, request_id) is billed (R2).';
COMMENT ON COLUMN rated_attempts.account_id IS 'Account that made the request.';
COMMENT ON COLUMN rated_attempts.attempt IS 'Attempt number within the request.';
COMMENT ON COLUMN rated_attempts.ts IS 'When the attempt started (UTC).';
COMMENT ON COLUMN rated_attempts.period IS 'Billing period: the UTC month of ts, YYYY-MM (R8).';
COMMENT ON COLUMN rated_attempts.usage_date IS 'The UTC day of ts.';
COMMENT ON COLUMN rated_attempts.model IS 'Model id.';
COMMENT ON COLUMN rated_attempts.status IS 'HTTP status of the attempt.';
COMMENT ON COLUMN rated_attempts.outcome IS 'billed | not_billed | held (billed once the account, price or token count exists).';
COMMENT ON COLUMN rated_attempts.billable IS 'True exactly when outcome = billed.';
COMMENT ON COLUMN rated_attempts.reason IS 'NULL when billed; else superseded_attempt, client_error, upstream_error, status_not_billable, no_output, unknown_account, unpriced_model or usage_missing.';
COMMENT ON COLUMN rated_attempts.usage_source IS 'provider (usage reported by the upstream) | estimated (recounted offline, R5) | NULL (no usage).';
COMMENT ON COLUMN rated_attempts.input_uncached_tokens IS 'Prompt tokens not served from cache.';
COMMENT ON COLUMN rated_attempts.input_cached_tokens IS 'Prompt tokens served from cache.';
COMMENT ON COLUMN rated_attempts.output_tokens IS 'Completion tokens (reasoning and image tokens included).';
COMMENT ON COLUMN rated_attempts.reasoning_tokens IS 'Reasoning tokens, informational: a part of output_tokens.';
COMMENT ON COLUMN rated_attempts.image_tokens IS 'Image tokens, informational: a part of output_tokens.';
COMMENT ON COLUMN rated_attempts.price_version IS 'Price version in force at ts; NULL when none.';
COMMENT ON COLUMN rated_attempts.price_basis IS 'list (list price x group multiplier x (1 - discount)) | override (the account''s final price).';
COMMENT ON COLUMN rated_attempts.unit_price_input_uncached IS 'Unit price per 1M uncached input tokens applied to the account.';
COMMENT ON COLUMN rated_attempts.unit_price_input_cached IS 'Unit price per 1M cached input tokens applied to the account.';
COMMENT ON COLUMN rated_attempts.unit_price_output IS 'Unit price per 1M output tokens applied to the account.';
COMMENT ON COLUMN rated_attempts.charge_input_uncached IS 'Exact charge for uncached input tokens (0 when not billed).';
COMMENT ON COLUMN rated_attempts.charge_input_cached IS 'Exact charge for cached input tokens (0 when not billed).';
COMMENT ON COLUMN rated_attempts.charge_output IS 'Exact charge for output tokens (0 when not billed).';
COMMENT ON COLUMN rated_attempts.upstream_cost_usd IS 'What the upstream charged InferGate, where the log carries it.';
COMMENT ON COLUMN rated_attempts.rated_run_id IS 'The run that rated the attempt last.';

-- statement_lines, rating_state --------------------------------------------------------------
COMMENT ON COLUMN statement_lines.account_id IS 'The account.';
COMMENT ON COLUMN statement_lines.period IS 'Billing period YYYY-MM.';
COMMENT ON COLUMN statement_lines.model IS 'Model id.';
COMMENT ON COLUMN statement_lines.token_class IS 'input_uncached | input_cached | output.';
COMMENT ON COLUMN statement_lines.price_version IS 'Price version the line was priced with.';
COMMENT ON COLUMN statement_lines.price_basis IS 'list | override.';
COMMENT ON COLUMN statement_lines.unit_price_per_1m IS 'Unit price per 1M tokens of the line.';
COMMENT ON COLUMN statement_lines.quantity_tokens IS 'Tokens of the class on the line.';
COMMENT ON COLUMN statement_lines.billed_requests IS 'Billed requests contributing to the line.';
COMMENT ON COLUMN statement_lines.amount_exact IS 'Exact sum of the line''s charges.';
COMMENT ON COLUMN statement_lines.amount IS 'amount_exact rounded half-up to the cent (R7); the statement total is the sum of these.';
COMMENT ON COLUMN rating_state.key IS 'State key, e.g. reference_fingerprint.';
COMMENT ON COLUMN rating_state.value IS 'State value.';

-- views of 001 -----------------------------------------------------------------------------
COMMENT ON COLUMN account_period_totals.account_id IS 'The account.';
COMMENT ON COLUMN account_period_totals.period IS 'Billing period YYYY-MM.';
COMMENT ON COLUMN account_period_totals.usage_usd IS 'Sum of the rounded statement lines: the statement total in USD.';
COMMENT ON COLUMN account_period_totals.usage_exact IS 'Exact sum of the statement lines before rounding.';
COMMENT ON COLUMN account_period_totals.input_uncached_tokens IS 'Billed uncached input tokens.';
COMMENT ON COLUMN account_period_totals.input_cached_tokens IS 'Billed cached input tokens.';
COMMENT ON COLUMN account_period_totals.output_tokens IS 'Billed output tokens.';
COMMENT ON COLUMN daily_usage.account_id IS 'The account.';
COMMENT ON COLUMN daily_usage.usage_date IS 'The UTC day.';
COMMENT ON COLUMN daily_usage.period IS 'Billing period YYYY-MM of the day.';
COMMENT ON COLUMN daily_usage.model IS 'Model id.';
COMMENT ON COLUMN daily_usage.billed_requests IS 'Billed requests (one billed attempt each).';
COMMENT ON COLUMN daily_usage.input_uncached_tokens IS 'Billed uncached input tokens.';
COMMENT ON COLUMN daily_usage.input_cached_tokens IS 'Billed cached input tokens.';
COMMENT ON COLUMN daily_usage.output_tokens IS 'Billed output tokens.';
COMMENT ON COLUMN daily_usage.spend_exact_usd IS 'Exact spend in USD (sum of charge_total, not rounded).';
COMMENT ON COLUMN monthly_usage.account_id IS 'The account.';
COMMENT ON COLUMN monthly_usage.period IS 'Billing period YYYY-MM.';
COMMENT ON COLUMN monthly_usage.model IS 'Model id.';
COMMENT ON COLUMN monthly_usage.billed_requests IS 'Billed requests.';
COMMENT ON COLUMN monthly_usage.input_uncached_tokens IS 'Billed uncached input tokens.';
COMMENT ON COLUMN monthly_usage.input_cached_tokens IS 'Billed cached input tokens.';
COMMENT ON COLUMN monthly_usage.output_tokens IS 'Billed output tokens.';
COMMENT ON COLUMN monthly_usage.spend_exact_usd IS 'Exact spend in USD, before statement rounding.';

-- monthly_totals: one row per period --------------------------------------------------------
CREATE VIEW monthly_totals AS
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
    FROM statement_lines
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
COMMENT ON COLUMN monthly_totals.statement_total_usd IS 'Sum of all accounts'' statement totals (rounded lines) in USD.';

-- top_accounts: accounts ranked by spend within each period -----------------------------------
CREATE VIEW top_accounts AS
WITH spend AS (
    SELECT period, account_id,
           count(*)                                  AS billed_requests,
           CAST(sum(charge_total) AS DECIMAL(38,20)) AS spend_exact_usd
    FROM rated_attempts
    WHERE outcome = 'billed'
    GROUP BY period, account_id
)
SELECT s.period,
       row_number() OVER (PARTITION BY s.period ORDER BY s.spend_exact_usd DESC, s.account_id) AS spend_rank,
       s.account_id,
       a.legal_name,
       s.billed_requests,
       s.spend_exact_usd,
       CAST(coalesce(t.usage_usd, 0) AS DECIMAL(18,2)) AS statement_total_usd
FROM spend s
LEFT JOIN accounts a ON a.account_id = s.account_id
LEFT JOIN account_period_totals t ON t.account_id = s.account_id AND t.period = s.period;
COMMENT ON VIEW top_accounts IS 'Accounts ranked by exact billed spend within each period (rank 1 = largest; ties broken by account_id). Top 10: WHERE period = P AND spend_rank <= 10.';
COMMENT ON COLUMN top_accounts.period IS 'Billing period YYYY-MM.';
COMMENT ON COLUMN top_accounts.spend_rank IS 'Rank by spend_exact_usd within the period, 1 = largest.';
COMMENT ON COLUMN top_accounts.account_id IS 'The account.';
COMMENT ON COLUMN top_accounts.legal_name IS 'Legal name (NULL for an account missing from the reference data).';
COMMENT ON COLUMN top_accounts.billed_requests IS 'Billed requests.';
COMMENT ON COLUMN top_accounts.spend_exact_usd IS 'Exact billed spend in USD.';
COMMENT ON COLUMN top_accounts.statement_total_usd IS 'The account''s statement total for the period (sum of rounded lines).';

-- non_billed_by_reason ---------------------------------------------------------------------
CREATE VIEW non_billed_by_reason AS
SELECT period, account_id, model, outcome, reason,
       count(*)                                                       AS attempts,
       count(DISTINCT request_id)                                     AS requests,
       CAST(sum(input_uncached_tokens + input_cached_tokens) AS BIGINT) AS input_tokens,
       CAST(sum(output_tokens) AS BIGINT)                             AS output_tokens,
       CAST(coalesce(sum(upstream_ref_cost), 0) AS DECIMAL(38,20))    AS upstream_ref_cost_usd,
       count(*) FILTER (WHERE upstream_ref_cost IS NULL)              AS attempts_without_ref_price
FROM rated_attempts
WHERE outcome <> 'billed'
GROUP BY period, account_id, model, outcome, reason;
COMMENT ON VIEW non_billed_by_reason IS 'Attempts that were not billed (not_billed) or not yet (held), per period, account, model and reason, with the upstream reference cost InferGate bore for them.';
COMMENT ON COLUMN non_billed_by_reason.period IS 'Billing period YYYY-MM.';
COMMENT ON COLUMN non_billed_by_reason.account_id IS 'The account.';
COMMENT ON COLUMN non_billed_by_reason.model IS 'Model id.';
COMMENT ON COLUMN non_billed_by_reason.outcome IS 'not_billed | held.';
COMMENT ON COLUMN non_billed_by_reason.reason IS 'The reason code (SPEC section 3).';
COMMENT ON COLUMN non_billed_by_reason.attempts IS 'Attempts with this reason.';
COMMENT ON COLUMN non_billed_by_reason.requests IS 'Distinct requests they belong to.';
COMMENT ON COLUMN non_billed_by_reason.input_tokens IS 'Input tokens (cached and uncached) the upstream reported or the recount estimated.';
COMMENT ON COLUMN non_billed_by_reason.output_tokens IS 'Output tokens the upstream reported or the recount estimated.';
COMMENT ON COLUMN non_billed_by_reason.upstream_ref_cost_usd IS 'Exact upstream reference cost of these attempts (tokens x upstream price).';
COMMENT ON COLUMN non_billed_by_reason.attempts_without_ref_price IS 'Attempts with no upstream price in force (unpriced_model): their cost is unknown, not zero.';

-- estimated_usage_share --------------------------------------------------------------------
-- Shares are ratios of counts, computed in integers and rounded half-up to 0.01 percent:
-- round(100 x e / b, 2) = floor((20000 e + b) / 2b) / 100. No money is divided.
CREATE VIEW estimated_usage_share AS
WITH billed AS (
    SELECT period, account_id, model,
           count(*)                                                          AS billed_requests,
           count(*) FILTER (WHERE usage_source = 'estimated')                AS estimated_requests,
           CAST(sum(input_uncached_tokens + input_cached_tokens + output_tokens) AS BIGINT) AS billed_tokens,
           CAST(coalesce(sum(input_uncached_tokens + input_cached_tokens + output_tokens)
                FILTER (WHERE usage_source = 'estimated'), 0) AS BIGINT)     AS estimated_tokens,
           CAST(sum(charge_total) AS DECIMAL(38,20))                          AS spend_exact_usd,
           CAST(coalesce(sum(charge_total) FILTER (WHERE usage_source = 'estimated'), 0)
                AS DECIMAL(38,20))                                            AS estimated_spend_exact_usd
    FROM rated_attempts
    WHERE outcome = 'billed'
    GROUP BY period, account_id, model
)
SELECT period, account_id, model, billed_requests, estimated_requests,
       CAST(CAST((20000 * CAST(estimated_requests AS HUGEINT) + billed_requests) // (2 * CAST(billed_requests AS HUGEINT))
            AS DECIMAL(18,0)) * CAST(0.01 AS DECIMAL(3,2)) AS DECIMAL(5,2))  AS estimated_request_pct,
       billed_tokens, estimated_tokens,
       CASE WHEN billed_tokens > 0 THEN
           CAST(CAST((20000 * CAST(estimated_tokens AS HUGEINT) + billed_tokens) // (2 * CAST(billed_tokens AS HUGEINT))
                AS DECIMAL(18,0)) * CAST(0.01 AS DECIMAL(3,2)) AS DECIMAL(5,2)) END AS estimated_token_pct,
       spend_exact_usd, estimated_spend_exact_usd
FROM billed;
COMMENT ON VIEW estimated_usage_share IS 'How much billed usage was recounted offline (R5, usage_source = estimated) rather than reported by the upstream, per period, account and model.';
COMMENT ON COLUMN estimated_usage_share.period IS 'Billing period YYYY-MM.';
COMMENT ON COLUMN estimated_usage_share.account_id IS 'The account.';
COMMENT ON COLUMN estimated_usage_share.model IS 'Model id.';
COMMENT ON COLUMN estimated_usage_share.billed_requests IS 'Billed requests.';
COMMENT ON COLUMN estimated_usage_share.estimated_requests IS 'Billed requests whose tokens were estimated.';
COMMENT ON COLUMN estimated_usage_share.estimated_request_pct IS '100 x estimated_requests / billed_requests, rounded half-up to 0.01.';
COMMENT ON COLUMN estimated_usage_share.billed_tokens IS 'Billed tokens (input + output).';
COMMENT ON COLUMN estimated_usage_share.estimated_tokens IS 'Billed tokens that were estimated.';
COMMENT ON COLUMN estimated_usage_share.estimated_token_pct IS '100 x estimated_tokens / billed_tokens, rounded half-up to 0.01; NULL when no tokens were billed.';
COMMENT ON COLUMN estimated_usage_share.spend_exact_usd IS 'Exact billed spend in USD.';
COMMENT ON COLUMN estimated_usage_share.estimated_spend_exact_usd IS 'Exact spend in USD of the estimated requests.';

-- margin_by_model --------------------------------------------------------------------------
CREATE VIEW margin_by_model AS
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
    FROM statement_lines
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
COMMENT ON COLUMN margin_by_model.revenue_statements_usd IS 'Revenue as invoiced: the sum of the model''s rounded statement lines over all accounts.';
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

-- spend_limit_status -----------------------------------------------------------------------
-- Cumulative exact spend per account and period in the total order (ts, event_id) (SPEC E4);
-- charges are never negative, so the first attempt past the limit is where it was crossed.
CREATE VIEW spend_limit_status AS
WITH billed AS (
    SELECT r.account_id, r.period, r.usage_date, r.ts, r.charge_total, a.spend_limit_usd,
           row_number() OVER (PARTITION BY r.account_id, r.period ORDER BY r.ts, r.event_id) AS seq,
           sum(r.charge_total) OVER (PARTITION BY r.account_id, r.period ORDER BY r.ts, r.event_id
                                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)  AS cumulative_usd
    FROM rated_attempts r
    JOIN accounts a ON a.account_id = r.account_id
    WHERE r.outcome = 'billed' AND a.spend_limit_usd IS NOT NULL
)
SELECT period, account_id,
       any_value(spend_limit_usd)                                            AS spend_limit_usd,
       CAST(sum(charge_total) AS DECIMAL(38,20))                              AS spend_exact_usd,
       CAST(sum(charge_total) - any_value(spend_limit_usd) AS DECIMAL(38,20)) AS over_limit_usd,
       sum(charge_total) > any_value(spend_limit_usd)                         AS exceeded,
       arg_min(usage_date, seq) FILTER (WHERE cumulative_usd > spend_limit_usd) AS crossed_on,
       arg_min(ts, seq) FILTER (WHERE cumulative_usd > spend_limit_usd)         AS crossed_at
FROM billed
GROUP BY period, account_id;
COMMENT ON VIEW spend_limit_status IS 'Per period, every account with a spend_limit_usd and billed usage: exact spend against the monthly limit, and the UTC day and attempt time at which the cumulative exact spend first went above it.';
COMMENT ON COLUMN spend_limit_status.period IS 'Billing period YYYY-MM.';
COMMENT ON COLUMN spend_limit_status.account_id IS 'The account.';
COMMENT ON COLUMN spend_limit_status.spend_limit_usd IS 'The account''s monthly limit (accounts.spend_limit_usd).';
COMMENT ON COLUMN spend_limit_status.spend_exact_usd IS 'Exact billed spend in the period.';
COMMENT ON COLUMN spend_limit_status.over_limit_usd IS 'spend_exact_usd - spend_limit_usd: how far above the limit (negative: headroom left).';
COMMENT ON COLUMN spend_limit_status.exceeded IS 'True when the spend is strictly above the limit.';
COMMENT ON COLUMN spend_limit_status.crossed_on IS 'UTC day of the billed attempt that took the cumulative spend above the limit; NULL when not exceeded.';
COMMENT ON COLUMN spend_limit_status.crossed_at IS 'Start time (UTC) of that attempt; NULL when not exceeded.';

-- rejections_by_account --------------------------------------------------------------------
CREATE VIEW rejections_by_account AS
SELECT period, account_id,
       count(*) FILTER (WHERE status = 429)                 AS rate_limited_429,
       count(*) FILTER (WHERE status = 403)                 AS forbidden_403,
       count(*) FILTER (WHERE status IN (429, 403))         AS rejections,
       count(*)                                             AS attempts,
       count(DISTINCT usage_date) FILTER (WHERE status IN (429, 403)) AS days_with_rejections
FROM rated_attempts
GROUP BY period, account_id
HAVING count(*) FILTER (WHERE status IN (429, 403)) > 0;
COMMENT ON VIEW rejections_by_account IS 'Per period, accounts whose attempts were rejected with 429 (rate limited) or 403 (forbidden), with counts against all their attempts.';
COMMENT ON COLUMN rejections_by_account.period IS 'Billing period YYYY-MM.';
COMMENT ON COLUMN rejections_by_account.account_id IS 'The account.';
COMMENT ON COLUMN rejections_by_account.rate_limited_429 IS 'Attempts with status 429.';
COMMENT ON COLUMN rejections_by_account.forbidden_403 IS 'Attempts with status 403.';
COMMENT ON COLUMN rejections_by_account.rejections IS 'rate_limited_429 + forbidden_403.';
COMMENT ON COLUMN rejections_by_account.attempts IS 'All attempts of the account in the period.';
COMMENT ON COLUMN rejections_by_account.days_with_rejections IS 'UTC days with at least one such rejection.';
