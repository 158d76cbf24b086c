-- 004: what an audit needs to replay any run years later: the exact reference data each run
-- used (by content hash), which price versions have priced attempts, and a digest of what
-- each run wrote.

CREATE TABLE reference_files (
    sha256       VARCHAR PRIMARY KEY,
    kind         VARCHAR NOT NULL,     -- accounts (file bytes) | price_version (canonical JSON)
    name         VARCHAR NOT NULL,
    content      BLOB NOT NULL,
    first_run_id BIGINT NOT NULL
);
COMMENT ON TABLE reference_files IS 'Every accounts file and price version any run used, by sha256: replays load exactly these bytes.';

CREATE TABLE price_versions_used (
    version_id   VARCHAR PRIMARY KEY,
    sha256       VARCHAR NOT NULL,
    first_run_id BIGINT NOT NULL
);
COMMENT ON TABLE price_versions_used IS 'Price versions that have priced at least one attempt, with the hash they had: editing one afterwards is refused.';

CREATE TABLE run_outputs (
    run_id  BIGINT NOT NULL,
    name    VARCHAR NOT NULL,          -- e.g. rated_attempts, statement_lines
    rows    BIGINT NOT NULL,
    digest  VARCHAR NOT NULL,          -- order-independent md5 digest of the rows the run wrote
    PRIMARY KEY (run_id, name)
);
COMMENT ON TABLE run_outputs IS 'Digest of the rows each run wrote, so replay --verify can prove a re-execution gives the same data.';

ALTER TABLE finalized_periods ADD COLUMN reference JSON;
COMMENT ON COLUMN finalized_periods.reference IS 'The reference data the period was rated with when finalized: {"prices": {version: sha256}, "accounts": sha256}.';
