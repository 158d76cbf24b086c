-- 030: a statement line is one (account, period, model, token class, price version, unit price),
-- as its comment always said and as statements print it: price_basis is no longer part of its
-- key. An account override equal to the list-derived price used to give two lines with the
-- same printed key (one 'list', one 'override'), each rounded on its own (R7: sum exactly,
-- then round once), and the statement of the next period paired every issued line with each
-- of them, printing phantom prior-period adjustments. The lines that differ only in basis are
-- merged here (exact sum, rounded once); override_requests counts the override-priced
-- requests of a line, so its basis stays exact when a later rating removes some of them.
ALTER TABLE statement_lines ADD COLUMN override_requests BIGINT DEFAULT 0;
CREATE TABLE statement_lines_merged AS
SELECT account_id, period, model, token_class, price_version,
       CASE WHEN count(DISTINCT price_basis) > 1 THEN 'list+override' ELSE min(price_basis) END AS price_basis,
       unit_price_per_1m,
       CAST(sum(quantity_tokens) AS BIGINT) AS quantity_tokens,
       CAST(sum(billed_requests) AS BIGINT) AS billed_requests,
       CAST(sum(amount_exact) AS DECIMAL(38,20)) AS amount_exact,
       CAST(round(sum(amount_exact), 2) AS DECIMAL(18,2)) AS amount,
       CAST(coalesce(sum(billed_requests) FILTER (WHERE price_basis = 'override'), 0) AS BIGINT) AS override_requests
FROM statement_lines
GROUP BY account_id, period, model, token_class, price_version, unit_price_per_1m;
DELETE FROM statement_lines;
INSERT INTO statement_lines BY NAME SELECT * FROM statement_lines_merged;
DROP TABLE statement_lines_merged;
COMMENT ON TABLE statement_lines IS 'Current (draft) statement lines, one per account, period, model, token class, price version and unit price (what a statement prints): exact sum, then rounded half-up to cents.';
COMMENT ON COLUMN statement_lines.price_basis IS 'list | override | list+override (the line''s requests were priced both ways at the same unit price: an override equal to the list-derived price).';
COMMENT ON COLUMN statement_lines.override_requests IS 'How many of billed_requests were priced by the account''s override (price_basis follows from it).';
