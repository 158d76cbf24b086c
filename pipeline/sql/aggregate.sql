-- Aggregates: draft statement lines for the (account, period) pairs a run touched.
-- Input: affected_periods(account_id, period), rated_attempts.
-- R7: lines are summed at full precision and then rounded half-up to the cent; the
-- statement total is the sum of its rounded lines (view account_period_totals).

DELETE FROM statement_lines
WHERE (account_id, period) IN (SELECT account_id, period FROM affected_periods);

INSERT INTO statement_lines
SELECT account_id, period, model, token_class,
       coalesce(price_version, 'none') AS price_version, price_basis, unit_price_per_1m,
       CAST(sum(quantity) AS BIGINT)                 AS quantity_tokens,
       count(*)                                      AS billed_requests,
       CAST(sum(amount) AS DECIMAL(38,20))           AS amount_exact,
       CAST(round(sum(amount), 2) AS DECIMAL(18,2))  AS amount
FROM (
    SELECT account_id, period, model, price_version, price_basis,
           'input_uncached' AS token_class, unit_price_input_uncached AS unit_price_per_1m,
           input_uncached_tokens AS quantity, charge_input_uncached AS amount
    FROM rated_attempts
    WHERE outcome = 'billed' AND (account_id, period) IN (SELECT account_id, period FROM affected_periods)
    UNION ALL
    SELECT account_id, period, model, price_version, price_basis,
           'input_cached', unit_price_input_cached, input_cached_tokens, charge_input_cached
    FROM rated_attempts
    WHERE outcome = 'billed' AND (account_id, period) IN (SELECT account_id, period FROM affected_periods)
    UNION ALL
    SELECT account_id, period, model, price_version, price_basis,
           'output', unit_price_output, output_tokens, charge_output
    FROM rated_attempts
    WHERE outcome = 'billed' AND (account_id, period) IN (SELECT account_id, period FROM affected_periods)
) classes
WHERE quantity > 0
GROUP BY account_id, period, model, token_class, price_version, price_basis, unit_price_per_1m;
