-- 016: statements as invoices (issue 16): the issuer and each account's tax treatment and
-- payment terms are reference data (loaded by every rating run, like accounts), recorded per
-- run by hash; what an issued statement printed for tax and terms is stored with it.

CREATE TABLE issuer (
    sha256                     VARCHAR NOT NULL,      -- of the issuer's canonical JSON (reference_files)
    legal_name                 VARCHAR NOT NULL,
    address                    VARCHAR[] NOT NULL,
    email                      VARCHAR,
    tax_id                     VARCHAR,
    vat_id                     VARCHAR,
    registration               VARCHAR,
    remittance                 VARCHAR[] NOT NULL,
    logo_png_base64            VARCHAR,
    statement_number_prefix    VARCHAR NOT NULL,
    country                    VARCHAR,
    domestic_tax_rate_pct      DECIMAL(5,2),
    tax_label                  VARCHAR NOT NULL,
    default_payment_terms_days INTEGER
);
COMMENT ON TABLE issuer IS 'The issuer reference data (data/issuer.toml) as loaded by the last rating run: one row.';

CREATE TABLE account_invoicing (
    account_id          VARCHAR PRIMARY KEY,
    tax_treatment       VARCHAR,                  -- domestic | eu_reverse_charge | exempt | out_of_scope | NULL (no tax shown)
    vat_id              VARCHAR,                  -- checked for format when loaded
    tax_note            VARCHAR,
    payment_terms_days  INTEGER,                  -- NULL: the issuer's default_payment_terms_days
    po_reference        VARCHAR
);
COMMENT ON TABLE account_invoicing IS 'Per-account tax treatment, VAT ID, payment terms and purchase-order reference from the accounts file, as loaded by the last rating run.';

CREATE TABLE statement_invoicing (
    statement_number    VARCHAR PRIMARY KEY,
    issuer_sha256       VARCHAR NOT NULL,         -- the issuer printed on the statement
    tax_treatment       VARCHAR,
    tax_rate_pct        DECIMAL(5,2),
    net_usd             DECIMAL(18,2) NOT NULL,   -- charges less prepaid credit applied: what tax is computed on
    tax_usd             DECIMAL(18,2) NOT NULL,   -- net x rate / 100, half-up to the cent, per statement
    total_due_usd       DECIMAL(18,2) NOT NULL,   -- net + tax: the amount to pay
    due_date            DATE,
    po_reference        VARCHAR
);
COMMENT ON TABLE statement_invoicing IS 'Tax, amount due, due date and issuer of each issued statement, as printed on it.';

ALTER TABLE runs ADD COLUMN issuer_sha256 VARCHAR;
COMMENT ON COLUMN runs.issuer_sha256 IS 'sha256 of the issuer reference data the run loaded (reference_files), NULL before migration 016 or for runs that load none.';
