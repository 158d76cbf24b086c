-- 018: EN 16931 e-invoices (issue 16 item 5): accounts marked in the accounts file get a
-- PDF/A-3 statement with an embedded Factur-X XML; the mark and the buyer's country code
-- (which EN 16931 requires) are loaded with the account's other invoicing fields.

ALTER TABLE account_invoicing ADD COLUMN e_invoice VARCHAR;
ALTER TABLE account_invoicing ADD COLUMN country VARCHAR;

COMMENT ON COLUMN account_invoicing.e_invoice IS 'factur-x: issued statements are PDF/A-3 with an embedded EN 16931 (Factur-X) XML; NULL: a plain PDF.';
COMMENT ON COLUMN account_invoicing.country IS 'ISO 3166-1 alpha-2 code of the customer''s postal address (EN 16931 BT-55); required for e-invoice accounts.';
