-- Aggregates: keep the draft statement lines current, by difference.
-- Input: new_rated_lines and removed_lines, the line contributions (sql/line_contributions.sql)
-- of new_rated (the rows a rating just wrote: summed per part by the executors' tasks on the
-- Spark path, pipeline/rated_summary.py) and of rated_removed (the rows they replaced).
-- A statement line is a sum over the billed attempts of one (account, period, model, token
-- class, price version, unit price), what a statement prints (from layout 6 summed over the
-- price versions of one unit price: view printed_statement_lines): quantity, billed requests, the
-- exact amount, and how many of the requests were priced by the account's override (an
-- override equal to the list-derived price shares the line: price_basis 'list+override',
-- migration 030). So the line after a rating is the line before, plus what new_rated adds, minus what
-- rated_removed took away; every term is exact (BIGINT counts, DECIMAL(38,20) amounts), so
-- the result is the same as summing the period again from rated_attempts, which a nightly
-- then never has to read (docs/performance.md). A line whose last attempt went away is
-- deleted.
-- R7: lines are summed at full precision and then rounded half-up to the cent; the
-- statement total is the sum of its rounded lines (view account_period_totals).

CREATE OR REPLACE TEMP TABLE line_changes AS
SELECT account_id, period, model, token_class,
       coalesce(price_version, 'none') AS price_version, unit_price_per_1m,
       CAST(sum(sign * quantity_tokens) AS BIGINT)                                       AS quantity_tokens,
       CAST(sum(sign * billed_requests) AS BIGINT)                                      AS billed_requests,
       CAST(sum(sign * override_requests) AS BIGINT)                                    AS override_requests,
       CAST(sum(CASE WHEN sign = 1 THEN amount_exact ELSE -amount_exact END) AS DECIMAL(38,20)) AS amount_exact
FROM (
    SELECT 1 AS sign, * FROM new_rated_lines
    UNION ALL
    SELECT -1 AS sign, * FROM removed_lines
) contributions
GROUP BY account_id, period, model, token_class, coalesce(price_version, 'none'), unit_price_per_1m;

CREATE OR REPLACE TEMP TABLE lines_after AS
SELECT c.account_id, c.period, c.model, c.token_class, c.price_version, c.unit_price_per_1m,
       CAST(coalesce(l.quantity_tokens, 0) + c.quantity_tokens AS BIGINT)                 AS quantity_tokens,
       CAST(coalesce(l.billed_requests, 0) + c.billed_requests AS BIGINT)                 AS billed_requests,
       CAST(coalesce(l.override_requests, 0) + coalesce(c.override_requests, 0) AS BIGINT) AS override_requests,
       CAST(coalesce(l.amount_exact, 0) + c.amount_exact AS DECIMAL(38,20))               AS amount_exact
FROM line_changes c
LEFT JOIN statement_lines l
  ON l.account_id = c.account_id AND l.period = c.period AND l.model = c.model
 AND l.token_class = c.token_class AND l.price_version = c.price_version
 AND l.unit_price_per_1m = c.unit_price_per_1m;

DELETE FROM statement_lines
WHERE (account_id, period, model, token_class, price_version, unit_price_per_1m) IN (
    SELECT account_id, period, model, token_class, price_version, unit_price_per_1m
    FROM line_changes
);

INSERT INTO statement_lines BY NAME
SELECT account_id, period, model, token_class, price_version,
       CASE WHEN override_requests = 0 THEN 'list'
            WHEN override_requests = billed_requests THEN 'override'
            ELSE 'list+override' END AS price_basis,
       unit_price_per_1m, quantity_tokens, billed_requests, amount_exact,
       CAST(round(amount_exact, 2) AS DECIMAL(18,2)) AS amount, override_requests
FROM lines_after
WHERE billed_requests > 0;
