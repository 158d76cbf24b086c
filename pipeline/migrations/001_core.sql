-- 001: the core billing schema. Money is DECIMAL everywhere; instants are TIMESTAMPTZ (UTC).
-- Large fact tables carry no PRIMARY KEY index on purpose (they grow by millions of rows a
-- day); uniqueness of event_id is guaranteed by the ingest dedup and checked by tests.

CREATE TABLE runs (
    run_id          BIGINT PRIMARY KEY,
    command         VARCHAR NOT NULL,
    args            JSON,
    started_at      TIMESTAMPTZ NOT NULL,
    finished_at     TIMESTAMPTZ,
    status          VARCHAR NOT NULL,      -- running | succeeded | failed | crashed | refused
    exit_code       INTEGER,
    code_version    VARCHAR,
    pid             INTEGER,
    price_versions  JSON,                  -- {version_id: sha256}
    accounts_sha256 VARCHAR,
    files_read      INTEGER DEFAULT 0,
    files_skipped   INTEGER DEFAULT 0,
    lines_read      BIGINT DEFAULT 0,
    accepted        BIGINT DEFAULT 0,
    duplicates      BIGINT DEFAULT 0,
    quarantined     BIGINT DEFAULT 0,
    rated           BIGINT DEFAULT 0,
    message         VARCHAR
);
COMMENT ON TABLE runs IS 'The run ledger: one row per job run, with its inputs'' hashes, counts and outcome.';

CREATE TABLE run_files (
    run_id      BIGINT NOT NULL,
    kind        VARCHAR NOT NULL,          -- input | output
    path        VARCHAR NOT NULL,
    sha256      VARCHAR NOT NULL,
    size_bytes  BIGINT,
    lines_read  BIGINT,
    accepted    BIGINT,
    duplicates  BIGINT,
    quarantined BIGINT,
    skipped     BOOLEAN DEFAULT FALSE       -- input already ingested (same sha256): nothing done
);
COMMENT ON TABLE run_files IS 'Every input and output file of every run, with its sha256 and per-file line accounting (lines_read = accepted + duplicates + quarantined).';

CREATE TABLE ingested_files (
    sha256       VARCHAR PRIMARY KEY,
    file_name    VARCHAR NOT NULL,
    path         VARCHAR NOT NULL,
    run_id       BIGINT NOT NULL,
    lines_read   BIGINT NOT NULL,
    accepted     BIGINT NOT NULL,
    duplicates   BIGINT NOT NULL,
    quarantined  BIGINT NOT NULL,
    ingested_at  TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE ingested_files IS 'Files already ingested, by content hash: ingesting the same bytes again changes nothing.';

CREATE TABLE attempts (
    event_id           VARCHAR NOT NULL,
    request_id         VARCHAR NOT NULL,
    attempt            BIGINT NOT NULL,
    ts                 TIMESTAMPTZ NOT NULL,
    ts_text            VARCHAR NOT NULL,
    duration_ms        BIGINT,
    account_id         VARCHAR NOT NULL,
    api_key_id         VARCHAR NOT NULL,
    group_name         VARCHAR NOT NULL,
    endpoint           VARCHAR NOT NULL,
    model              VARCHAR NOT NULL,
    provider           VARCHAR,
    status             INTEGER NOT NULL,
    error_code         VARCHAR,
    stream             BOOLEAN NOT NULL,
    finish_reason      VARCHAR,
    has_usage          BOOLEAN NOT NULL,
    usage_json         JSON,
    prompt_tokens      BIGINT,
    completion_tokens  BIGINT,
    cached_tokens      BIGINT,
    reasoning_tokens   BIGINT,
    image_tokens       BIGINT,
    has_messages       BOOLEAN NOT NULL,
    output_text_chars  BIGINT,
    est_input_tokens   BIGINT,
    est_output_tokens  BIGINT,
    est_tokenizer      VARCHAR,
    upstream_cost_usd  DECIMAL(38,20),
    content_sha256     VARCHAR NOT NULL,
    source_file        VARCHAR NOT NULL,
    source_sha256      VARCHAR NOT NULL,
    source_line        BIGINT NOT NULL,
    run_id             BIGINT NOT NULL
);
COMMENT ON TABLE attempts IS 'Accepted upstream attempts, one row per event_id (R1), validated and typed. Prompt and output text are never stored; only whether they were present and the recounted token numbers.';
COMMENT ON COLUMN attempts.ts IS 'When the attempt started, converted from its RFC 3339 offset to UTC.';
COMMENT ON COLUMN attempts.cached_tokens IS 'Cached prompt tokens: OpenAI prompt_tokens_details.cached_tokens or DeepSeek prompt_cache_hit_tokens.';
COMMENT ON COLUMN attempts.output_text_chars IS 'Length of output_text when the log carried it (the text itself is dropped).';

CREATE TABLE quarantine (
    quarantine_id   BIGINT NOT NULL,
    run_id          BIGINT NOT NULL,
    source_file     VARCHAR NOT NULL,
    source_sha256   VARCHAR NOT NULL,
    source_line     BIGINT NOT NULL,
    event_id        VARCHAR,
    reason          VARCHAR NOT NULL,
    field           VARCHAR,
    message         VARCHAR NOT NULL,
    record          VARCHAR,               -- redacted: keys masked, messages/output_text dropped
    quarantined_at  TIMESTAMPTZ NOT NULL,
    resolved_run_id BIGINT                 -- set when a fixed record with this event_id was accepted
);
COMMENT ON TABLE quarantine IS 'Records that could not be parsed or validated (R9), with file, line, reason and a redacted copy. Nothing is ever dropped.';

CREATE TABLE price_versions (
    version_id      VARCHAR PRIMARY KEY,
    effective_from  TIMESTAMPTZ NOT NULL,
    effective_until TIMESTAMPTZ,
    currency        VARCHAR NOT NULL,
    markup          DECIMAL(9,4) NOT NULL,
    sha256          VARCHAR NOT NULL,
    source_file     VARCHAR NOT NULL
);
COMMENT ON TABLE price_versions IS 'Price-table versions as loaded by the last run; a request is priced by the version with effective_from <= ts < effective_until.';

CREATE TABLE model_prices (
    version_id                   VARCHAR NOT NULL,
    model                        VARCHAR NOT NULL,
    display_name                 VARCHAR NOT NULL,
    upstream_input_per_1m        DECIMAL(18,6) NOT NULL,
    upstream_cached_input_per_1m DECIMAL(18,6) NOT NULL,
    upstream_output_per_1m       DECIMAL(18,6) NOT NULL,
    list_input_per_1m            DECIMAL(18,6) NOT NULL,
    list_cached_input_per_1m     DECIMAL(18,6) NOT NULL,
    list_output_per_1m           DECIMAL(18,6) NOT NULL,
    PRIMARY KEY (version_id, model)
);
COMMENT ON TABLE model_prices IS 'Per-model prices per 1M tokens in each version (cached input defaults to the input price).';

CREATE TABLE account_groups (
    group_name VARCHAR PRIMARY KEY,
    multiplier DECIMAL(9,4) NOT NULL
);
COMMENT ON TABLE account_groups IS 'Access groups and their list-price multiplier.';

CREATE TABLE accounts (
    account_id      VARCHAR PRIMARY KEY,
    legal_name      VARCHAR NOT NULL,
    address         VARCHAR[] NOT NULL,
    email           VARCHAR,
    group_name      VARCHAR NOT NULL,
    discount_pct    DECIMAL(5,2) NOT NULL,
    spend_limit_usd DECIMAL(18,2)
);
COMMENT ON TABLE accounts IS 'Accounts reference data as loaded by the last run.';

CREATE TABLE price_overrides (
    account_id          VARCHAR NOT NULL,
    model               VARCHAR NOT NULL,
    effective_from      TIMESTAMPTZ NOT NULL,
    effective_until     TIMESTAMPTZ,
    input_per_1m        DECIMAL(18,6) NOT NULL,
    cached_input_per_1m DECIMAL(18,6) NOT NULL,
    output_per_1m       DECIMAL(18,6) NOT NULL
);
COMMENT ON TABLE price_overrides IS 'Negotiated final per-model prices for one account (no multiplier, no discount).';

CREATE TABLE rated_attempts (
    event_id                  VARCHAR NOT NULL,
    request_id                VARCHAR NOT NULL,
    account_id                VARCHAR NOT NULL,
    attempt                   BIGINT NOT NULL,
    ts                        TIMESTAMPTZ NOT NULL,
    period                    VARCHAR NOT NULL,   -- UTC month 'YYYY-MM' (R8)
    usage_date                DATE NOT NULL,      -- UTC day
    model                     VARCHAR NOT NULL,
    status                    INTEGER NOT NULL,
    outcome                   VARCHAR NOT NULL,   -- billed | not_billed | held
    billable                  BOOLEAN NOT NULL,
    reason                    VARCHAR,            -- NULL when billed
    usage_source              VARCHAR,            -- provider | estimated
    input_uncached_tokens     BIGINT NOT NULL,
    input_cached_tokens       BIGINT NOT NULL,
    output_tokens             BIGINT NOT NULL,
    reasoning_tokens          BIGINT NOT NULL,
    image_tokens              BIGINT NOT NULL,
    price_version             VARCHAR,
    price_basis               VARCHAR,            -- list | override
    unit_price_input_uncached DECIMAL(24,14),
    unit_price_input_cached   DECIMAL(24,14),
    unit_price_output         DECIMAL(24,14),
    charge_input_uncached     DECIMAL(38,20) NOT NULL,
    charge_input_cached       DECIMAL(38,20) NOT NULL,
    charge_output             DECIMAL(38,20) NOT NULL,
    charge_total              DECIMAL(38,20) NOT NULL,
    upstream_ref_cost         DECIMAL(38,20),
    upstream_cost_usd         DECIMAL(38,20),
    rated_run_id              BIGINT NOT NULL
);
COMMENT ON TABLE rated_attempts IS 'Every attempt after the rating rules: billed (one per request), not_billed with its reason, or held (unknown_account, unpriced_model, usage_missing). Charges are exact, never rounded.';
COMMENT ON COLUMN rated_attempts.charge_total IS 'Exact charge in USD (tokens x unit price / 1M per class), not rounded (R6/R7).';
COMMENT ON COLUMN rated_attempts.upstream_ref_cost IS 'Tokens x upstream reference price of the same version: what the attempt cost InferGate (margin report).';

CREATE TABLE statement_lines (
    account_id         VARCHAR NOT NULL,
    period             VARCHAR NOT NULL,
    model              VARCHAR NOT NULL,
    token_class        VARCHAR NOT NULL,          -- input_uncached | input_cached | output
    price_version      VARCHAR NOT NULL,
    price_basis        VARCHAR NOT NULL,
    unit_price_per_1m  DECIMAL(24,14) NOT NULL,
    quantity_tokens    BIGINT NOT NULL,
    billed_requests    BIGINT NOT NULL,
    amount_exact       DECIMAL(38,20) NOT NULL,
    amount             DECIMAL(18,2) NOT NULL     -- amount_exact rounded half-up to the cent (R7)
);
COMMENT ON TABLE statement_lines IS 'Current (draft) statement lines per account, period, model, token class, unit price and price version: exact sum, then rounded half-up to cents.';

CREATE VIEW account_period_totals AS
SELECT account_id, period,
       sum(amount)          AS usage_usd,
       sum(amount_exact)    AS usage_exact,
       sum(CASE WHEN token_class = 'input_uncached' THEN quantity_tokens ELSE 0 END) AS input_uncached_tokens,
       sum(CASE WHEN token_class = 'input_cached' THEN quantity_tokens ELSE 0 END)   AS input_cached_tokens,
       sum(CASE WHEN token_class = 'output' THEN quantity_tokens ELSE 0 END)         AS output_tokens
FROM statement_lines
GROUP BY account_id, period;
COMMENT ON VIEW account_period_totals IS 'Per account and period: the sum of the rounded statement lines (the statement total) and tokens per class.';

CREATE VIEW daily_usage AS
SELECT account_id, usage_date, period, model,
       count(*)                    AS billed_requests,
       sum(input_uncached_tokens)  AS input_uncached_tokens,
       sum(input_cached_tokens)    AS input_cached_tokens,
       sum(output_tokens)          AS output_tokens,
       sum(charge_total)           AS spend_exact_usd
FROM rated_attempts
WHERE outcome = 'billed'
GROUP BY account_id, usage_date, period, model;
COMMENT ON VIEW daily_usage IS 'Billed usage per account, UTC day and model. "What did account X spend on model Y per day": SELECT usage_date, spend_exact_usd FROM daily_usage WHERE account_id = X AND model = Y ORDER BY usage_date.';

CREATE VIEW monthly_usage AS
SELECT account_id, period, model,
       sum(billed_requests)        AS billed_requests,
       sum(input_uncached_tokens)  AS input_uncached_tokens,
       sum(input_cached_tokens)    AS input_cached_tokens,
       sum(output_tokens)          AS output_tokens,
       sum(spend_exact_usd)        AS spend_exact_usd
FROM daily_usage
GROUP BY account_id, period, model;
COMMENT ON VIEW monthly_usage IS 'Billed usage per account, UTC month and model (exact, before statement rounding).';

CREATE TABLE rating_state (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);
COMMENT ON TABLE rating_state IS 'Fingerprint of the reference data (price versions, accounts) the current rated data was computed with.';
