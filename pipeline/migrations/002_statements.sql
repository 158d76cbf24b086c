-- 002: issued statements (R10). Once a period is finalized its statements, their lines and
-- the exact bytes of their files are stored here and never change; late records for that
-- period become prior-period adjustment lines on the account's next statement.

CREATE TABLE finalized_periods (
    period        VARCHAR PRIMARY KEY,
    run_id        BIGINT NOT NULL,
    issue_date    DATE NOT NULL,
    statements    INTEGER NOT NULL,
    finalized_at  TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE finalized_periods IS 'Periods whose statements were issued (finalized); their statements never change again.';

CREATE TABLE statements (
    statement_number  VARCHAR PRIMARY KEY,   -- IG-YYYY-MM-NNNNNN, NNNNNN a global gap-free sequence
    sequence_no       BIGINT NOT NULL,
    account_id        VARCHAR NOT NULL,
    period            VARCHAR NOT NULL,
    issue_date        DATE NOT NULL,
    billed_requests   BIGINT NOT NULL,
    input_uncached_tokens BIGINT NOT NULL,
    input_cached_tokens   BIGINT NOT NULL,
    output_tokens     BIGINT NOT NULL,
    usage_usd         DECIMAL(18,2) NOT NULL,
    adjustments_usd   DECIMAL(18,2) NOT NULL,
    total_usd         DECIMAL(18,2) NOT NULL,
    price_versions    VARCHAR NOT NULL,
    run_id            BIGINT NOT NULL,
    issued_at         TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE statements IS 'Issued statements, one per account and finalized period, with the totals printed on them.';

CREATE TABLE statement_issued_lines (
    statement_number  VARCHAR NOT NULL,
    line_no           INTEGER NOT NULL,
    kind              VARCHAR NOT NULL,      -- usage | adjustment
    original_period   VARCHAR NOT NULL,      -- the statement's period for usage lines
    model             VARCHAR NOT NULL,
    token_class       VARCHAR NOT NULL,
    price_version     VARCHAR NOT NULL,
    unit_price_per_1m DECIMAL(24,14) NOT NULL,
    quantity_tokens   BIGINT NOT NULL,
    amount            DECIMAL(18,2) NOT NULL
);
COMMENT ON TABLE statement_issued_lines IS 'The lines printed on each issued statement: usage lines of its period and prior-period adjustment lines (original_period).';

CREATE TABLE statement_files (
    statement_number  VARCHAR NOT NULL,
    kind              VARCHAR NOT NULL,      -- pdf | lines_csv | detail_csv | html
    file_name         VARCHAR NOT NULL,
    sha256            VARCHAR NOT NULL,
    content           BLOB NOT NULL,
    PRIMARY KEY (statement_number, kind)
);
COMMENT ON TABLE statement_files IS 'The exact bytes and sha256 of every issued statement file, so an issued file can be re-materialized and verified.';
