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

COMMENT ON COLUMN issuer.sha256 IS 'sha256 of the issuer''s canonical JSON, as stored in reference_files and runs.issuer_sha256.';
COMMENT ON COLUMN issuer.legal_name IS 'Legal name printed as the issuer of every statement.';
COMMENT ON COLUMN issuer.address IS 'Postal address lines of the issuer.';
COMMENT ON COLUMN issuer.email IS 'Billing contact email printed under the issuer.';
COMMENT ON COLUMN issuer.tax_id IS 'Tax identifier printed as given (e.g. an EIN or Steuernummer); NULL: not printed.';
COMMENT ON COLUMN issuer.vat_id IS 'Issuer VAT ID, format-checked; required for reverse-charge accounts.';
COMMENT ON COLUMN issuer.registration IS 'Company register and number, printed as given.';
COMMENT ON COLUMN issuer.remittance IS 'How to pay (bank, IBAN, BIC...), printed under "How to pay".';
COMMENT ON COLUMN issuer.logo_png_base64 IS 'The issuer logo (PNG, base64) embedded in the statement; NULL: none.';
COMMENT ON COLUMN issuer.statement_number_prefix IS 'Prefix of statement numbers (IG in IG-2026-11-000042).';
COMMENT ON COLUMN issuer.country IS 'ISO 3166 code of the issuer''s tax jurisdiction.';
COMMENT ON COLUMN issuer.domestic_tax_rate_pct IS 'Tax rate (percent) for accounts with tax_treatment domestic.';
COMMENT ON COLUMN issuer.tax_label IS 'What the tax is called on statements (VAT, GST, Sales tax).';
COMMENT ON COLUMN issuer.default_payment_terms_days IS 'Net days to pay when an account sets none; NULL: no due date printed.';
COMMENT ON COLUMN account_invoicing.account_id IS 'The account (accounts.account_id).';
COMMENT ON COLUMN account_invoicing.tax_treatment IS 'domestic (issuer rate), eu_reverse_charge (no tax, Article 196 note), exempt, out_of_scope; NULL: no tax shown.';
COMMENT ON COLUMN account_invoicing.vat_id IS 'The customer''s VAT ID, format-checked, printed under the bill-to address.';
COMMENT ON COLUMN account_invoicing.tax_note IS 'Why no tax is charged (exempt, out of scope), printed under the totals.';
COMMENT ON COLUMN account_invoicing.payment_terms_days IS 'Net days to pay from the issue date; NULL: the issuer default.';
COMMENT ON COLUMN account_invoicing.po_reference IS 'The customer''s purchase-order reference printed on its statements.';
COMMENT ON COLUMN statement_invoicing.statement_number IS 'The issued statement (statements.statement_number).';
COMMENT ON COLUMN statement_invoicing.issuer_sha256 IS 'The issuer printed on the statement (reference_files.sha256).';
COMMENT ON COLUMN statement_invoicing.tax_treatment IS 'The account''s tax treatment when issued; NULL: no tax shown.';
COMMENT ON COLUMN statement_invoicing.tax_rate_pct IS 'The rate applied (0 unless domestic); NULL: no tax shown.';
COMMENT ON COLUMN statement_invoicing.net_usd IS 'Charges less prepaid credit applied: the amount tax was computed on.';
COMMENT ON COLUMN statement_invoicing.tax_usd IS 'net_usd x rate / 100, rounded half-up to the cent once per statement.';
COMMENT ON COLUMN statement_invoicing.total_due_usd IS 'net_usd + tax_usd: the amount the statement asks to be paid.';
COMMENT ON COLUMN statement_invoicing.due_date IS 'Issue date + payment terms; NULL: no terms configured.';
COMMENT ON COLUMN statement_invoicing.po_reference IS 'The purchase-order reference printed on the statement.';
