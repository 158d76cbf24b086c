-- 023: a run that committed its data but exited 1 (too many lines quarantined, refused inputs,
-- a day whose files held no record) records that exit code and its reasons in its ledger row,
-- so the ledger says what cron saw. Only the column comments change.
COMMENT ON COLUMN runs.exit_code IS 'The exit code the command ended with: 0 success; 1 a failed run, or a run that committed its data but reported problems (see message).';
COMMENT ON COLUMN runs.message IS 'Why a run failed or crashed, or the problems a committed run reported with exit code 1 (quarantine rate over the threshold, refused inputs, a day of empty files), joined with "; ".';
