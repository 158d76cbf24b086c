-- 028: what each rated file and tombstone file covers, so that a query over a time range
-- opens only the files that can hold it (issue 14 item 2: a nightly's reads of the rated rows
-- cost O(day), not one footer per file of history). A run records, with each rated_attempts
-- file it lists, the range of its rows' ts, and with each rated_replaced file the range of the
-- runs whose rows its tombstones hide. Files listed before this migration have no row here
-- and are always read.
CREATE TABLE lake_file_bounds (
    table_name     VARCHAR NOT NULL,
    run_id         BIGINT NOT NULL,
    ts_min         TIMESTAMPTZ,
    ts_max         TIMESTAMPTZ,
    rated_run_min  BIGINT,
    rated_run_max  BIGINT
);
COMMENT ON TABLE lake_file_bounds IS 'What a lake file listed in lake_files covers (same table_name and run_id): for rated_attempts files the range of their rows'' ts, for rated_replaced files the range of the runs whose rows their tombstones hide. Time-bounded reads of rated_attempts skip the files outside the range. Files listed before migration 028 have no row and are always read.';
COMMENT ON COLUMN lake_file_bounds.table_name IS 'rated_attempts or rated_replaced: the folder of the file (lake_files.table_name).';
COMMENT ON COLUMN lake_file_bounds.run_id IS 'The run whose file it is (lake_files.run_id).';
COMMENT ON COLUMN lake_file_bounds.ts_min IS 'Earliest ts of the file''s rows (rated_attempts files).';
COMMENT ON COLUMN lake_file_bounds.ts_max IS 'Latest ts of the file''s rows (rated_attempts files).';
COMMENT ON COLUMN lake_file_bounds.rated_run_min IS 'Lowest rated_run_id its tombstones name (rated_replaced files).';
COMMENT ON COLUMN lake_file_bounds.rated_run_max IS 'Highest rated_run_id its tombstones name (rated_replaced files).';
