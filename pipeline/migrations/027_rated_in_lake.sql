-- 027: rated rows are stored once, in the lake (issue 14 item 3), as the attempts since 025.
-- From the first run after this migration on, a run writes its rated rows as
-- rated_attempts/run-NNNNNN.parquet and the tombstones of the earlier rows it replaced as
-- rated_replaced/run-NNNNNN.parquet under <db stem>.lake/, and lists both in lake_files inside
-- its own transaction; the rows rated before stay in the table, renamed rated_before_lake,
-- and each connection reads both through its view `rated_attempts` (core/attempt_store.py):
-- the rows less the tombstoned ones. The rename makes an older version of the code, which
-- would write rated rows into the table that the lake files shadow, fail on this database.
INSERT INTO rating_state SELECT 'rated_in_lake_from_run', CAST(coalesce(max(run_id), 0) + 1 AS VARCHAR) FROM runs;
ALTER TABLE rated_attempts RENAME TO rated_before_lake;
COMMENT ON TABLE rated_before_lake IS 'The rated rows written before migration 027 that are still current, and the columns of every rated row. Query the view rated_attempts instead (the CLI''s connections and the analyst snapshot have it): these rows and the lake files listed in lake_files, one per run since 027, which hold the only copy of the later rated rows, less the rows later runs replaced (tombstones).';
COMMENT ON TABLE rated_replaced IS 'Tombstones a run recorded: rated rows it replaced (a late retry, a re-rate). Since migration 027 the run writes them to its lake file rated_replaced/run-NNNNNN.parquet before it commits, and the view rated_attempts leaves the rows they name out; rows left here are older ones the next publication writes.';
COMMENT ON TABLE lake_files IS 'Manifest of the Parquet lake beside the database (<db stem>.lake/): one immutable file per run and table. A run writes its attempts (since migration 025), its rated rows and its tombstones (since 027) itself and lists them in its own transaction (the only copy of those rows); older rows are exported after the run committed, by the analyst publication. Readers follow this list only.';
-- The held attempts per reason, which every run's ledger row records (runs.held_by_reason) and
-- `quarantine` shows, were counted over every rated row each night: with the rows in the lake
-- that would open every file. Each rating now adds what it changed per reason (new held rows
-- minus the held rows it replaced), so the count is a sum over this small table.
CREATE TABLE held_changes (
    run_id  BIGINT NOT NULL,
    reason  VARCHAR NOT NULL,
    change  BIGINT NOT NULL
);
INSERT INTO held_changes
SELECT rated_run_id, reason, count(*) FROM rated_before_lake WHERE outcome = 'held' GROUP BY ALL ORDER BY ALL;
COMMENT ON TABLE held_changes IS 'How each rating changed the number of held attempts per reason (held rows it wrote minus held rows it replaced): sum(change) per reason is the number held now. Rows rated before migration 027 are counted under the run that rated them.';
COMMENT ON COLUMN held_changes.run_id IS 'The run whose rating made the change.';
COMMENT ON COLUMN held_changes.reason IS 'unknown_account, unpriced_model or usage_missing.';
COMMENT ON COLUMN held_changes.change IS 'Held attempts added (positive) or released (negative) by that run.';
-- A rating that replaces every row of an earlier run's rated file (a re-rate of a period, a
-- change of reference data) retires the file instead of writing a tombstone per row: the
-- views leave it out (it stays on disk for snapshots published before). rated_hidden counts,
-- per file, the rows later runs replaced; a file whose count reaches its row_count is retired.
-- Tombstones are left only for files partly replaced (a late retry), so the tombstones every
-- read of rated_attempts consults stay a small share of the rows.
CREATE TABLE rated_hidden (
    rated_run_id    BIGINT NOT NULL,
    hidden_rows     BIGINT NOT NULL,
    hidden_by_run   BIGINT NOT NULL
);
COMMENT ON TABLE rated_hidden IS 'Rows of a run''s rated_attempts lake file that a later run replaced, per replacing run. A file whose hidden rows add up to its row_count in lake_files is retired: the view rated_attempts no longer reads it. Rows hidden in a file still read are named by tombstones (rated_replaced).';
COMMENT ON COLUMN rated_hidden.rated_run_id IS 'The run whose rated_attempts file held the rows (lake_files.run_id).';
COMMENT ON COLUMN rated_hidden.hidden_rows IS 'How many of its rows the later run replaced.';
COMMENT ON COLUMN rated_hidden.hidden_by_run IS 'The run that replaced them.';
