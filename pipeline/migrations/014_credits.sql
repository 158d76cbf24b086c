-- 014: prepaid credits (issue 17). The grants file is reference data (credit_grants, replaced
-- by every rating run like accounts); what a finalized period drew from each grant is kept in
-- credit_ledger and what its statements printed in statement_credits, so an issued balance is
-- never recomputed: later periods start from these rows. Money is DECIMAL(18,2), cents.

CREATE TABLE credit_grants (
    grant_id      VARCHAR PRIMARY KEY,
    account_id    VARCHAR NOT NULL,
    amount        DECIMAL(18,2) NOT NULL,   -- positive; for a reversal, what it takes back
    currency      VARCHAR NOT NULL,
    granted_at    TIMESTAMPTZ NOT NULL,     -- a reversal takes effect at this instant
    expires_at    TIMESTAMPTZ,              -- NULL: never expires
    kind          VARCHAR NOT NULL,         -- purchased | promotional | goodwill
    external_ref  VARCHAR NOT NULL,
    reverses      VARCHAR,                  -- the grant a reversal takes back, else NULL
    source_line   INTEGER NOT NULL
);
COMMENT ON TABLE credit_grants IS 'Prepaid credit grants and reversals from the append-only grants file (--credits), as loaded by the last rating run.';

CREATE TABLE credit_ledger (
    account_id    VARCHAR NOT NULL,
    period        VARCHAR NOT NULL,         -- the finalized period the entry belongs to
    entry_no      INTEGER NOT NULL,         -- order of the entries within the account and period
    grant_id      VARCHAR NOT NULL,
    entry_kind    VARCHAR NOT NULL,         -- granted | reversed | applied | expired
    effective_at  TIMESTAMPTZ NOT NULL,     -- when it took effect (applied: end of the usage drawn)
    amount        DECIMAL(18,2) NOT NULL,   -- positive; the sign is in entry_kind
    PRIMARY KEY (account_id, period, entry_no)
);
COMMENT ON TABLE credit_ledger IS 'Credit movements of finalized periods, per grant: granted, reversed, applied (drawn by billed usage), expired. Never changed once written.';

CREATE TABLE statement_credits (
    statement_number  VARCHAR PRIMARY KEY,
    opening_usd       DECIMAL(18,2) NOT NULL,
    granted_usd       DECIMAL(18,2) NOT NULL,   -- grants less reversals in the period
    applied_usd       DECIMAL(18,2) NOT NULL,
    expired_usd       DECIMAL(18,2) NOT NULL,
    closing_usd       DECIMAL(18,2) NOT NULL    -- opening + granted - applied - expired
);
COMMENT ON TABLE statement_credits IS 'The prepaid credit block printed on each issued statement of an account that has credit grants.';

ALTER TABLE runs ADD COLUMN credits_sha256 VARCHAR;
COMMENT ON COLUMN runs.credits_sha256 IS 'sha256 of the credit grants file the run used (content in reference_files); NULL: none.';
