-- 020: the Parquet lake of the per-attempt tables (issue 14 item 2), so that publishing the
-- analyst snapshot costs what a day wrote, not what history holds. Each run's new attempts
-- and rated rows are written once, after its commit, as immutable Parquet files under
-- <db stem>.lake/; the analyst snapshot reads them through views. lake_files is the manifest
-- (readers follow it only; a file it does not list is a leftover of a killed publication and
-- is removed by the next one). rated_replaced is the durable list of rated rows a run
-- replaced, kept until the publication after the run has written it as a tombstone file.

CREATE TABLE lake_files (
    run_id      BIGINT NOT NULL,
    table_name  VARCHAR NOT NULL,           -- attempts | rated_attempts | rated_replaced
    path        VARCHAR NOT NULL,           -- relative to the lake directory
    row_count   BIGINT NOT NULL,
    bytes       BIGINT NOT NULL,
    written_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (table_name, run_id)
);
COMMENT ON TABLE lake_files IS 'Manifest of the Parquet lake beside the database (<db stem>.lake/): one immutable file per run and table, written after the run committed. The analyst snapshot reads attempts and rated_attempts from the files listed here.';
COMMENT ON COLUMN lake_files.run_id IS 'The run whose rows the file holds (attempts.run_id, rated_attempts.rated_run_id, or the run that replaced the rated rows).';
COMMENT ON COLUMN lake_files.table_name IS 'attempts, rated_attempts, or rated_replaced (tombstones: rated rows a later run replaced).';
COMMENT ON COLUMN lake_files.path IS 'Path of the Parquet file relative to the lake directory, e.g. attempts/run-000042.parquet.';
COMMENT ON COLUMN lake_files.row_count IS 'Rows in the file: the rows the run stored in the table.';
COMMENT ON COLUMN lake_files.bytes IS 'Size of the file in bytes.';
COMMENT ON COLUMN lake_files.written_at IS 'When the file was written and listed.';

CREATE TABLE lake_exports (
    through_run_id BIGINT NOT NULL,
    files          INTEGER NOT NULL,
    exported_at    TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE lake_exports IS 'One row per publication that brought the lake up to date: every run up to through_run_id is in it (a run that stored nothing has no file).';
COMMENT ON COLUMN lake_exports.through_run_id IS 'The last run whose rows the lake holds after this publication.';
COMMENT ON COLUMN lake_exports.files IS 'Files this publication wrote.';
COMMENT ON COLUMN lake_exports.exported_at IS 'When the publication committed its manifest rows.';

CREATE TABLE rated_replaced (
    event_id        VARCHAR NOT NULL,
    rated_run_id    BIGINT NOT NULL,
    replaced_by_run BIGINT NOT NULL
);
COMMENT ON TABLE rated_replaced IS 'Rated rows a run replaced (a late retry, a re-rate), not yet written to the lake as tombstones: the next publication writes them and empties this table.';
COMMENT ON COLUMN rated_replaced.event_id IS 'The attempt whose rated row was replaced.';
COMMENT ON COLUMN rated_replaced.rated_run_id IS 'The run that had written the replaced row (its rated_run_id).';
COMMENT ON COLUMN rated_replaced.replaced_by_run IS 'The run that replaced it.';
