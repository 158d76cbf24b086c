-- 046: which row digest a run's recorded output digest is (issue 14 item 1). The rated rows'
-- digest hashed each row's struct text (column names and values, ~870 bytes a row), ~10% of a
-- nightly at 1M attempts; runs from this migration on record version 2 for their rated rows
-- (the values only, ts as epoch microseconds: pipeline/rated_summary.py ROW_DIGESTS), and
-- replay --verify digests a re-execution with the version the run recorded. Rows recorded
-- before are version 1, as they were computed.
ALTER TABLE run_outputs ADD COLUMN IF NOT EXISTS digest_version INTEGER DEFAULT 1;
COMMENT ON COLUMN run_outputs.digest_version IS 'How digest was computed (pipeline/rated_summary.py ROW_DIGESTS): 1 = XOR of md5 over each row''s struct text (column names and values); 2 = XOR of md5 over the row''s values as text joined by U+001F, NULL as U+0000, ts in epoch microseconds (rated_attempts of runs since migration 046). replay --verify compares a re-execution by the version the run recorded.';
COMMENT ON COLUMN run_outputs.digest IS 'XOR of md5 over each row without run ids (order-independent), as digest_version says.';
