-- 025: attempts are stored once, in the lake (issue 14 item 3). From the first run after this
-- migration on, a run writes its accepted attempts as one Parquet file under <db stem>.lake/
-- and lists it in lake_files inside its own transaction; the attempts table keeps the rows
-- stored before (read together with the files through each connection's view, see
-- core/attempt_store.py). attempt_keys holds the lookup keys of every stored attempt, so
-- that dedup and the rating scope probe 17 bytes a row instead of opening files.
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
COMMENT ON TABLE attempts IS 'Accepted upstream attempts, one row per event_id (R1), validated and typed. Prompt and output text are never stored; only whether they were present and the recounted token numbers. Rows stored before migration 025 are in this table; later ones only in the lake files listed in lake_files (one per run), which the CLI and the analyst snapshot read together with this table as the view attempts.';
COMMENT ON COLUMN attempts.event_key IS 'Internal lookup key: hash(event_id). NULL in the view for attempts stored in the lake files: attempt_keys holds the keys of every attempt.';
COMMENT ON COLUMN attempts.request_key IS 'Internal lookup key: hash(account_id, request_id). NULL in the view for attempts stored in the lake files: attempt_keys holds the keys of every attempt.';
