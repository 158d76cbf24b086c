-- 034: several attempts files a run (issue 15). A Spark nightly's tasks write the stored
-- attempts of their own log file, and the run lists each of those files: lake_files is keyed
-- by (table_name, run_id, part). Part 0 is the file a run's driver writes (every file listed
-- before this migration, named <table>/run-NNNNNN.parquet); parts 1.. are the tasks' files
-- (<table>/run-NNNNNN-part-NNNNNN.parquet). DuckDB cannot change a primary key in place, so
-- the table is rebuilt with its rows.
CREATE TABLE lake_files_by_part (
    run_id      BIGINT NOT NULL,
    table_name  VARCHAR NOT NULL,
    path        VARCHAR NOT NULL,
    row_count   BIGINT NOT NULL,
    bytes       BIGINT NOT NULL,
    written_at  TIMESTAMPTZ NOT NULL,
    part        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (table_name, run_id, part)
);
INSERT INTO lake_files_by_part SELECT run_id, table_name, path, row_count, bytes, written_at, 0 FROM lake_files;
DROP TABLE lake_files;
ALTER TABLE lake_files_by_part RENAME TO lake_files;
COMMENT ON TABLE lake_files IS 'Manifest of the Parquet lake beside the database (<db stem>.lake/): immutable files, one per run and table, or several (parts) for the attempts of a Spark nightly, whose tasks write them. A run writes its attempts (since migration 025), its rated rows and its tombstones (since 027) itself and lists them in its own transaction (the only copy of those rows); older rows are exported after the run committed, by the analyst publication. Readers follow this list only.';
COMMENT ON COLUMN lake_files.run_id IS 'The run whose rows the file holds (attempts.run_id, rated_attempts.rated_run_id, or the run that replaced the rated rows).';
COMMENT ON COLUMN lake_files.table_name IS 'attempts, rated_attempts, or rated_replaced (tombstones: rated rows a later run replaced).';
COMMENT ON COLUMN lake_files.path IS 'Path of the Parquet file relative to the lake directory, e.g. attempts/run-000042.parquet (part 0) or attempts/run-000042-part-000003.parquet.';
COMMENT ON COLUMN lake_files.row_count IS 'Rows in the file.';
COMMENT ON COLUMN lake_files.bytes IS 'Size of the file in bytes.';
COMMENT ON COLUMN lake_files.written_at IS 'When the file was written and listed.';
COMMENT ON COLUMN lake_files.part IS 'Which of the run''s files of the table it is: 0 for the file the driver writes (every file listed before migration 034), 1.. for the attempts files the Spark tasks of a nightly wrote, one per log file with new attempts (since 034).';
