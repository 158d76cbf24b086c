-- 045: the lookup keys of stored attempts move to the lake (issue 15: dedup against the history
-- on Spark's executors). Each run writes the keys of the attempts it stored as its own file,
-- <db stem>.lake/attempt_keys/run-NNNNNN[-part-NNNNNN].parquet, listed in lake_files in its
-- transaction, as it writes its attempts (core/attempt_store.py ATTEMPT_KEYS): a Spark nightly's
-- tasks write theirs, so no key of a new attempt passes through the driver, and Spark probes
-- the history by reading the files. The view attempt_keys (each connection's TEMP view) reads
-- the table's rows, the current run's and the listed files. The rows already in the table stay
-- there until the first run that stores attempts moves them into its own file (one time).
-- The rename makes older code, which would insert into attempt_keys, fail on this database
-- instead of leaving a run's keys out of the files.
ALTER TABLE attempt_keys RENAME TO attempt_keys_before_lake;
INSERT INTO rating_state SELECT 'attempt_keys_in_lake_from_run', CAST(coalesce(max(run_id), 0) + 1 AS VARCHAR) FROM runs;
COMMENT ON TABLE attempt_keys_before_lake IS 'Lookup keys of stored attempts not yet in the lake: those stored before migration 045 (until the next run that stores attempts moves them into its attempt_keys file), those of a database without a file, and those recomputed after a DuckDB upgrade changed hash(). Internal; query the view attempt_keys, which reads this table and the lake files attempt_keys/ listed in lake_files.';
