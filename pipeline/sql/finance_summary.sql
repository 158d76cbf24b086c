-- Finance summary for one period ($period = 'YYYY-MM'): one row per account with billed usage.
-- usage_usd is the sum of the account's rounded statement lines (R7), so it equals the
-- statement total; adjustments_usd carries prior-period adjustments once statements exist.
WITH billed AS (
    SELECT account_id, count(*) AS billed_requests
    FROM rated_attempts
    WHERE outcome = 'billed' AND period = $period
    GROUP BY account_id
),
lines AS (
    SELECT account_id,
           sum(CASE WHEN token_class = 'input_uncached' THEN quantity_tokens ELSE 0 END) AS input_uncached_tokens,
           sum(CASE WHEN token_class = 'input_cached' THEN quantity_tokens ELSE 0 END)   AS input_cached_tokens,
           sum(CASE WHEN token_class = 'output' THEN quantity_tokens ELSE 0 END)         AS output_tokens,
           sum(amount)                                                                   AS usage_usd,
           string_agg(DISTINCT price_version, ';' ORDER BY price_version)                AS price_versions
    FROM statement_lines
    WHERE period = $period
    GROUP BY account_id
)
SELECT b.account_id,
       a.legal_name                                         AS account_name,
       $period                                              AS period,
       CAST(NULL AS VARCHAR)                                AS statement_number,
       b.billed_requests,
       CAST(coalesce(l.input_uncached_tokens, 0) AS BIGINT) AS input_uncached_tokens,
       CAST(coalesce(l.input_cached_tokens, 0) AS BIGINT)   AS input_cached_tokens,
       CAST(coalesce(l.output_tokens, 0) AS BIGINT)         AS output_tokens,
       CAST(coalesce(l.usage_usd, 0) AS DECIMAL(18,2))      AS usage_usd,
       CAST(0 AS DECIMAL(18,2))                             AS adjustments_usd,
       CAST(coalesce(l.usage_usd, 0) AS DECIMAL(18,2))      AS total_usd,
       coalesce(l.price_versions, '')                       AS price_versions
FROM billed b
JOIN accounts a USING (account_id)
LEFT JOIN lines l USING (account_id)
ORDER BY b.account_id
