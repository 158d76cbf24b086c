-- Rating rules over one scope of attempts: R3 status, R2 one bill per request, R4/R5 token
-- classes, R6 price, R8 period. Read it top to bottom; each step is one rule.
--
-- Logical input tables (bound by the caller, so the same text can run on another engine):
--   scoped_attempts  every attempt of the requests being rated (whole request groups)
--   price_versions   version_id, effective_from, effective_until (NULL = open-ended)
--   model_prices     per version and model: list_* and upstream_* prices per 1M tokens
--   accounts, account_groups, price_overrides   accounts reference data
--   issued_prices    event_id, price_basis and unit prices of the attempts billed on an
--                    issued statement (a finalized period), as they were billed (R10)
-- Output: one row per attempt, the columns of table rated_attempts (less rated_run_id).
--
-- Engine rules (SPEC section 7): money is never divided (E1); ts is TIMESTAMPTZ and periods
-- are taken in the UTC session time zone (E2); every DECIMAL step has an explicit size (E3):
-- tokens DECIMAL(12,0), unit prices DECIMAL(24,14), charges DECIMAL(38,20); every window
-- ORDER BY ends in a unique key (E4). Every product has an operand of more than 18 digits
-- (DuckDB keeps DECIMAL(<=18) x DECIMAL(<=18) at 18 digits and overflows). With token counts
-- < 10^12 (parse.sql) and unit prices < 10^10, tokens x price is < 10^22: exact in
-- DECIMAL(36,14) (22 integer digits) before the 10^-6, and a class charge (< 10^16 USD) in
-- DECIMAL(38,20) (18 integer digits) after.
WITH
-- R4/R5 Token classes. Provider usage when the log had it (cached tokens are a part of the
-- prompt, reasoning and image tokens a part of the completion: never added on top);
-- otherwise the offline recount estimate made at ingest (R5), which has no cached part.
tokens AS (
    SELECT a.*,
           CASE WHEN a.has_usage THEN 'provider'
                WHEN a.est_output_tokens IS NOT NULL THEN 'estimated' END      AS usage_source,
           CASE WHEN a.has_usage THEN a.prompt_tokens - a.cached_tokens
                ELSE a.est_input_tokens END                                     AS t_input_uncached,
           CASE WHEN a.has_usage THEN a.cached_tokens ELSE 0 END                AS t_input_cached,
           CASE WHEN a.has_usage THEN a.completion_tokens
                ELSE a.est_output_tokens END                                    AS t_output,
           CASE WHEN a.has_usage THEN a.reasoning_tokens ELSE 0 END             AS t_reasoning,
           CASE WHEN a.has_usage THEN a.image_tokens ELSE 0 END                 AS t_image
    FROM scoped_attempts a
),
-- R3 Status. 2xx and 499 (client closed: bill what was generated) may be billed; any other
-- status is not, even when the upstream reported usage. Zero-output insurance: a cut-off
-- attempt (finish_reason null) that produced no output tokens is not billed. Without usage,
-- "no output" is known from the text the gateway kept: an empty output_text, or messages
-- kept without any output_text. An attempt without usage and without either text is not
-- known to have produced nothing: it stays billable and is held as usage_missing (R5).
status_rule AS (
    SELECT t.*,
           CASE
               WHEN t.status BETWEEN 200 AND 299 OR t.status = 499 THEN
                   CASE WHEN t.finish_reason IS NULL
                         AND ((t.has_usage AND t.completion_tokens = 0)
                              OR (NOT t.has_usage AND coalesce(t.output_text_chars, 0) = 0
                                  AND (t.has_messages OR t.output_text_chars IS NOT NULL)))
                        THEN 'no_output' END
               WHEN t.status BETWEEN 400 AND 499 THEN 'client_error'
               WHEN t.status BETWEEN 500 AND 599 THEN 'upstream_error'
               ELSE 'status_not_billable'
           END AS status_reason
    FROM tokens t
),
-- R2 One bill per request. Within (account_id, request_id) the billable attempt with the
-- highest attempt number is the one billed; ties: later ts, then larger event_id. ts is
-- stored to the microsecond (TIMESTAMPTZ), so "later" goes on in the fraction digits past the
-- sixth as written in the log (ts_text; offsets are whole minutes, so those digits compare
-- the same whatever the offset), right-padded to 12 digits: 10:00:00.0000002Z is later than
-- 10:00:00.0000001Z. The pattern avoids backslashes, which Spark's literals would unescape.
ranked AS (
    SELECT s.*,
           row_number() OVER (
               PARTITION BY s.account_id, s.request_id
               ORDER BY CASE WHEN s.status_reason IS NULL THEN 0 ELSE 1 END,
                        s.attempt DESC, s.ts DESC,
                        rpad(regexp_extract(s.ts_text, '[.][0-9]{6}([0-9]*)', 1), 12, '0') DESC,
                        s.event_id DESC
           ) AS billing_rank
    FROM status_rule s
),
-- R6 Price: the version in force at ts (effective_from <= ts < effective_until) ...
in_force AS (
    SELECT r.event_id, v.version_id
    FROM ranked r
    JOIN price_versions v
      ON r.ts >= v.effective_from AND (v.effective_until IS NULL OR r.ts < v.effective_until)
),
-- ... then the account's override for the model in force at ts (a final price), else the
-- list price x the multiplier of the account's group x (1 - discount_pct / 100).
-- R10 Issued statements never change: an attempt already billed in a finalized period keeps
-- the price basis and unit prices it was billed with when its request is rated again (a late
-- retry, a re-rate of the period), whatever the accounts data says now. Price versions never
-- change for past requests (an edit is refused), so only the accounts data could reprice it.
priced AS (
    SELECT r.*,
           f.version_id                                              AS price_version,
           acc.account_id IS NOT NULL                                AS account_known,
           ip.event_id IS NOT NULL                                   AS price_issued,
           ip.unit_price_input_uncached AS i_input, ip.unit_price_input_cached AS i_cached,
           ip.unit_price_output AS i_output,
           CASE WHEN ip.event_id IS NOT NULL AND acc.account_id IS NOT NULL THEN ip.price_basis
                WHEN o.account_id IS NOT NULL AND acc.account_id IS NOT NULL THEN 'override'
                WHEN mp.model IS NOT NULL THEN 'list' END             AS price_basis,
           CAST(coalesce(g.multiplier, 1)
                * (1 - acc.discount_pct * CAST(0.01 AS DECIMAL(3,2))) AS DECIMAL(12,8)) AS price_factor,
           o.input_per_1m AS o_input, o.cached_input_per_1m AS o_cached, o.output_per_1m AS o_output,
           mp.list_input_per_1m, mp.list_cached_input_per_1m, mp.list_output_per_1m,
           mp.upstream_input_per_1m, mp.upstream_cached_input_per_1m, mp.upstream_output_per_1m
    FROM ranked r
    LEFT JOIN in_force f ON f.event_id = r.event_id
    LEFT JOIN model_prices mp ON mp.version_id = f.version_id AND mp.model = r.model
    LEFT JOIN accounts acc ON acc.account_id = r.account_id
    LEFT JOIN account_groups g ON g.group_name = acc.group_name
    LEFT JOIN price_overrides o
      ON o.account_id = r.account_id AND o.model = r.model
     AND r.ts >= o.effective_from AND (o.effective_until IS NULL OR r.ts < o.effective_until)
    LEFT JOIN issued_prices ip ON ip.event_id = r.event_id
),
unit_prices AS (
    SELECT p.*,
           CAST(CASE WHEN price_issued AND account_known THEN i_input
                     WHEN price_basis = 'override' THEN o_input
                     ELSE CAST(list_input_per_1m AS DECIMAL(24,14)) * price_factor END AS DECIMAL(24,14))        AS unit_price_input_uncached,
           CAST(CASE WHEN price_issued AND account_known THEN i_cached
                     WHEN price_basis = 'override' THEN o_cached
                     ELSE CAST(list_cached_input_per_1m AS DECIMAL(24,14)) * price_factor END AS DECIMAL(24,14)) AS unit_price_input_cached,
           CAST(CASE WHEN price_issued AND account_known THEN i_output
                     WHEN price_basis = 'override' THEN o_output
                     ELSE CAST(list_output_per_1m AS DECIMAL(24,14)) * price_factor END AS DECIMAL(24,14))       AS unit_price_output
    FROM priced p
),
-- The verdict for each attempt: billed (no reason), not billed (R2/R3 reason), or held until
-- the missing reference data or token count exists (nothing is ever billed at zero).
decided AS (
    SELECT u.*,
           CASE
               WHEN status_reason IS NOT NULL THEN status_reason
               WHEN billing_rank > 1 THEN 'superseded_attempt'
               WHEN NOT account_known THEN 'unknown_account'
               WHEN price_basis IS NULL THEN 'unpriced_model'
               -- no provider usage and no recount (no text, unreadable text, or no tokenizer
               -- mapped for the model): the usage cannot be established
               WHEN usage_source IS NULL THEN 'usage_missing'
           END AS reason
    FROM unit_prices u
),
-- Charge per class = tokens x unit price x 0.000001, exact (scale 20), never rounded here.
charged AS (
    SELECT d.*,
           CASE WHEN reason IS NULL THEN CAST(CAST(CAST(t_input_uncached AS DECIMAL(12,0)) * unit_price_input_uncached AS DECIMAL(36,14))
                * CAST(0.000001 AS DECIMAL(7,6)) AS DECIMAL(38,20)) ELSE CAST(0 AS DECIMAL(38,20)) END AS charge_input_uncached,
           CASE WHEN reason IS NULL THEN CAST(CAST(CAST(t_input_cached AS DECIMAL(12,0)) * unit_price_input_cached AS DECIMAL(36,14))
                * CAST(0.000001 AS DECIMAL(7,6)) AS DECIMAL(38,20)) ELSE CAST(0 AS DECIMAL(38,20)) END AS charge_input_cached,
           CASE WHEN reason IS NULL THEN CAST(CAST(CAST(t_output AS DECIMAL(12,0)) * unit_price_output AS DECIMAL(36,14))
                * CAST(0.000001 AS DECIMAL(7,6)) AS DECIMAL(38,20)) ELSE CAST(0 AS DECIMAL(38,20)) END AS charge_output,
           -- what the attempt cost InferGate at the upstream reference price (margin report).
           -- Prices are widened to DECIMAL(24,14) before the product: DuckDB keeps a product of
           -- two DECIMALs of <= 18 digits at 18 digits, which overflowed at ~5.6e9 tokens
           CAST((CAST(coalesce(t_input_uncached, 0) AS DECIMAL(12,0)) * CAST(upstream_input_per_1m AS DECIMAL(24,14))
               + CAST(coalesce(t_input_cached, 0) AS DECIMAL(12,0)) * CAST(upstream_cached_input_per_1m AS DECIMAL(24,14))
               + CAST(coalesce(t_output, 0) AS DECIMAL(12,0)) * CAST(upstream_output_per_1m AS DECIMAL(24,14)))
               * CAST(0.000001 AS DECIMAL(7,6)) AS DECIMAL(38,20)) AS upstream_ref_cost
    FROM decided d
)
SELECT
    event_id, request_id, account_id, attempt, ts,
    strftime(ts, '%Y-%m')                                       AS period,      -- R8, UTC
    CAST(ts AS DATE)                                            AS usage_date,  -- UTC day
    model, status,
    CASE WHEN reason IS NULL THEN 'billed'
         WHEN reason IN ('unknown_account', 'unpriced_model', 'usage_missing') THEN 'held'
         ELSE 'not_billed' END                                  AS outcome,
    reason IS NULL                                              AS billable,
    reason,
    usage_source,
    CAST(coalesce(t_input_uncached, 0) AS BIGINT)               AS input_uncached_tokens,
    CAST(coalesce(t_input_cached, 0) AS BIGINT)                 AS input_cached_tokens,
    CAST(coalesce(t_output, 0) AS BIGINT)                       AS output_tokens,
    CAST(coalesce(t_reasoning, 0) AS BIGINT)                    AS reasoning_tokens,
    CAST(coalesce(t_image, 0) AS BIGINT)                        AS image_tokens,
    price_version,
    price_basis,
    unit_price_input_uncached, unit_price_input_cached, unit_price_output,
    charge_input_uncached, charge_input_cached, charge_output,
    CAST(charge_input_uncached + charge_input_cached + charge_output AS DECIMAL(38,20)) AS charge_total,
    upstream_ref_cost,
    upstream_cost_usd
FROM charged
