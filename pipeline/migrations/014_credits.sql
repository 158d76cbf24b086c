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

COMMENT ON COLUMN credit_grants.grant_id IS 'Unique id of the entry in the grants file (a grant or a reversal).';
COMMENT ON COLUMN credit_grants.account_id IS 'The account the credit belongs to.';
COMMENT ON COLUMN credit_grants.amount IS 'USD credit granted; for a reversal, the amount it takes back (positive).';
COMMENT ON COLUMN credit_grants.currency IS 'Currency of the credit (USD, the billing currency).';
COMMENT ON COLUMN credit_grants.granted_at IS 'When the credit becomes usable; for a reversal, when it takes effect.';
COMMENT ON COLUMN credit_grants.expires_at IS 'When what is left of the grant expires; NULL: never.';
COMMENT ON COLUMN credit_grants.kind IS 'purchased, promotional or goodwill (a reversal repeats its grant''s kind).';
COMMENT ON COLUMN credit_grants.external_ref IS 'Reference in the system the credit came from (invoice, ticket, campaign).';
COMMENT ON COLUMN credit_grants.reverses IS 'For a reversal, the grant_id it takes back; NULL for a grant.';
COMMENT ON COLUMN credit_grants.source_line IS 'Line of the entry in the grants file.';
COMMENT ON COLUMN credit_ledger.account_id IS 'The account.';
COMMENT ON COLUMN credit_ledger.period IS 'The finalized billing period the movement belongs to.';
COMMENT ON COLUMN credit_ledger.entry_no IS 'Order of the movement within the account and period.';
COMMENT ON COLUMN credit_ledger.grant_id IS 'The grant moved (for reversed: the reversal entry).';
COMMENT ON COLUMN credit_ledger.entry_kind IS 'granted, reversed, applied (drawn by billed usage) or expired.';
COMMENT ON COLUMN credit_ledger.effective_at IS 'When the movement took effect (applied: the end of the usage segment drawn).';
COMMENT ON COLUMN credit_ledger.amount IS 'USD moved, positive; the sign is in entry_kind.';
COMMENT ON COLUMN statement_credits.statement_number IS 'The issued statement.';
COMMENT ON COLUMN statement_credits.opening_usd IS 'Credit balance at the start of the period.';
COMMENT ON COLUMN statement_credits.granted_usd IS 'Credit granted in the period, less reversals.';
COMMENT ON COLUMN statement_credits.applied_usd IS 'Credit drawn by the statement''s charges (credits_applied).';
COMMENT ON COLUMN statement_credits.expired_usd IS 'Credit that expired in the period.';
COMMENT ON COLUMN statement_credits.closing_usd IS 'opening + granted - applied - expired.';
