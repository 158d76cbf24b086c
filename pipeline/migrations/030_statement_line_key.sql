-- 030: a statement line is one (account, period, model, token class, price version, unit price),
-- as its comment always said and as statements print it: price_basis is no longer part of its
-- key. An account override equal to the list-derived price used to give two lines with the
-- same printed key (one 'list', one 'override'), each rounded on its own (R7: sum exactly,
-- then round once), and the statement of the next period paired every issued line with each
-- of them, printing phantom prior-period adjustments. The lines that differ only in basis are
-- merged here (exact sum, rounded once); override_requests counts the override-priced
-- requests of a line, so its basis stays exact when a later rating removes some of them.
ALTER TABLE statement_lines ADD COLUMN IF NOT EXISTS override_requests BIGINT DEFAULT 0;
CREATE TABLE statement_lines_merged AS
WITH counted AS (  -- a line from before 030 counts its requests by its basis (re-applied: as kept)
    SELECT *, CASE WHEN price_basis = 'override' THEN billed_requests ELSE coalesce(override_requests, 0) END AS by_override
    FROM statement_lines
),
merged AS (
    SELECT account_id, period, model, token_class, price_version, unit_price_per_1m,
           CAST(sum(quantity_tokens) AS BIGINT) AS quantity_tokens,
           CAST(sum(billed_requests) AS BIGINT) AS billed_requests,
           CAST(sum(amount_exact) AS DECIMAL(38,20)) AS amount_exact,
           CAST(round(sum(amount_exact), 2) AS DECIMAL(18,2)) AS amount,
           CAST(sum(by_override) AS BIGINT) AS override_requests
    FROM counted
    GROUP BY account_id, period, model, token_class, price_version, unit_price_per_1m
)
SELECT *, CASE WHEN override_requests = 0 THEN 'list' WHEN override_requests = billed_requests THEN 'override'
               ELSE 'list+override' END AS price_basis
FROM merged;
DELETE FROM statement_lines;
INSERT INTO statement_lines BY NAME SELECT * FROM statement_lines_merged;
DROP TABLE statement_lines_merged;
COMMENT ON TABLE statement_lines IS 'Current (draft) statement lines, one per account, period, model, token class, price version and unit price (what a statement prints): exact sum, then rounded half-up to cents.';
COMMENT ON COLUMN statement_lines.price_basis IS 'list | override | list+override (the line''s requests were priced both ways at the same unit price: an override equal to the list-derived price).';
COMMENT ON COLUMN statement_lines.override_requests IS 'How many of billed_requests were priced by the account''s override (price_basis follows from it).';
