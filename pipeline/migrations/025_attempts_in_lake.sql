-- 025: attempts are stored once, in the lake (issue 14 item 3). From the first run after this
-- migration on, a run writes its accepted attempts as one Parquet file under <db stem>.lake/
-- and lists it in lake_files inside its own transaction; the rows stored before stay in the
-- table, renamed attempts_before_lake, and each connection reads both through its view
-- `attempts` (core/attempt_store.py). The rename makes an older version of the code, which
-- would insert into `attempts` and export those rows to the lake again, fail on this
-- database instead of double-counting. attempt_keys holds the lookup keys of every stored
-- attempt, so that dedup and the rating scope probe 17 bytes a row instead of opening files.
CREATE TABLE attempt_keys (
    event_key   UBIGINT NOT NULL,
    request_key UBIGINT NOT NULL,
    run_id      BIGINT NOT NULL
);
INSERT INTO attempt_keys SELECT event_key, request_key, run_id FROM attempts ORDER BY run_id;
INSERT INTO rating_state SELECT 'attempts_in_lake_from_run', CAST(coalesce(max(run_id), 0) + 1 AS VARCHAR) FROM runs;
COMMENT ON TABLE attempt_keys IS 'Lookup keys of every stored attempt (attempts in the table and in the lake files): what dedup and the rating scope probe before reading any attempt. Internal; recomputed when DuckDB''s hash() changes.';
COMMENT ON COLUMN attempt_keys.event_key IS 'hash(event_id) of the attempt.';
COMMENT ON COLUMN attempt_keys.request_key IS 'hash(account_id, request_id) of the attempt.';
COMMENT ON COLUMN attempt_keys.run_id IS 'The run that stored it: its lake file is attempts/run-NNNNNN.parquet (or, before migration 025, its rows are in the attempts table).';
ALTER TABLE attempts RENAME TO attempts_before_lake;
COMMENT ON TABLE attempts_before_lake IS 'The accepted attempts stored before migration 025, and the columns of every attempt. Query the view attempts instead (the CLI''s connections and the analyst snapshot have it): these rows and the lake files listed in lake_files, one per run since 025, which hold the only copy of the later attempts.';
COMMENT ON COLUMN attempts_before_lake.event_key IS 'Internal lookup key: hash(event_id). NULL in the view for attempts stored in the lake files: attempt_keys holds the keys of every attempt.';
COMMENT ON COLUMN attempts_before_lake.request_key IS 'Internal lookup key: hash(account_id, request_id). NULL in the view for attempts stored in the lake files: attempt_keys holds the keys of every attempt.';
COMMENT ON TABLE lake_files IS 'Manifest of the Parquet lake beside the database (<db stem>.lake/): one immutable file per run and table. Since migration 025 a run writes its attempts file itself and lists it in its own transaction (the only copy of those attempts); the files of the rated rows and tombstones are written after the run committed, by the analyst publication. Readers follow this list only.';
