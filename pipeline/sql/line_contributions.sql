-- Line contributions: what a set of rated rows adds to the statement lines (sql/aggregate.sql).
-- Input: rated_rows (the caller's CTE: new_rated, rated_removed, or one part of a Spark
-- rating's rated rows, read by the executor's task that wrote it; pipeline/rated_summary.py).
-- One row per statement line the billed rows touch: (account, period, model, token class,
-- price version, unit price), the quantity, billed requests, how many of them the account's
-- override priced (NULL when none), and the exact amount. Every term is a sum of exact values
-- (integers, DECIMAL(38,20)), so the contributions of several parts add up to those of their
-- union, and aggregate.sql's line_changes is new_rated's contributions less rated_removed's.
SELECT account_id, period, model, token_class, price_version, unit_price_per_1m,
       CAST(sum(quantity) AS HUGEINT)                           AS quantity_tokens,
       CAST(count(*) AS BIGINT)                                 AS billed_requests,
       CAST(sum(1) FILTER (WHERE by_override) AS BIGINT)        AS override_requests,
       CAST(sum(amount) AS DECIMAL(38,20))                      AS amount_exact
FROM (
    SELECT account_id, period, model, price_version, price_basis = 'override' AS by_override,
           'input_uncached' AS token_class, unit_price_input_uncached AS unit_price_per_1m,
           input_uncached_tokens AS quantity, charge_input_uncached AS amount
    FROM rated_rows WHERE outcome = 'billed'
    UNION ALL
    SELECT account_id, period, model, price_version, price_basis = 'override',
           'input_cached', unit_price_input_cached, input_cached_tokens, charge_input_cached
    FROM rated_rows WHERE outcome = 'billed'
    UNION ALL
    SELECT account_id, period, model, price_version, price_basis = 'override',
           'output', unit_price_output, output_tokens, charge_output
    FROM rated_rows WHERE outcome = 'billed'
) classes
WHERE quantity > 0
GROUP BY account_id, period, model, token_class, price_version, unit_price_per_1m
