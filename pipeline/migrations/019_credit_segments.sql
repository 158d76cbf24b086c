-- 019: where each applied credit movement of a finalized period sits in time (issue 17 item 4),
-- so that `balances --as-of` is exact at an instant inside an issued period: the usage segment
-- [segment_start, effective_at) it drew for, and the exact billed usage of the period before
-- segment_start (the base of the period's cumulative rounding to cents, R7). Rows written
-- before this migration have NULL here: their balance inside the period counts a segment's
-- credit at its end (docs/credits.md).

ALTER TABLE credit_ledger ADD COLUMN segment_start TIMESTAMPTZ;
ALTER TABLE credit_ledger ADD COLUMN usage_before_exact DECIMAL(38,20);
COMMENT ON COLUMN credit_ledger.segment_start IS 'applied: start of the usage segment drawn [segment_start, effective_at); NULL for other kinds and for periods finalized before migration 019.';
COMMENT ON COLUMN credit_ledger.usage_before_exact IS 'applied: exact billed usage of the account in the period before segment_start (base of the cumulative rounding to cents); NULL as for segment_start.';
