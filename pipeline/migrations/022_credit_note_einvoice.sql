-- 022: credit notes as EN 16931 e-invoices (issue 16 items 4-5). A credit note against a
-- statement of an account marked e_invoice = "factur-x" is itself a Factur-X credit note
-- (type code 381). Whether it is one, and the buyer's country code EN 16931 needs (BT-55), are
-- stored with the note when it is issued, so it is rebuilt byte for byte from its rows alone
-- whatever the account's mark later becomes; notes issued before this migration are NULL
-- (plain PDFs, which is what they were).

ALTER TABLE credit_notes ADD COLUMN e_invoice VARCHAR;
ALTER TABLE credit_notes ADD COLUMN account_country VARCHAR;

COMMENT ON COLUMN credit_notes.e_invoice IS 'factur-x: the PDF is PDF/A-3 with the note as an embedded EN 16931 credit note (type code 381); NULL: a plain PDF.';
COMMENT ON COLUMN credit_notes.account_country IS 'ISO 3166-1 alpha-2 code of the bill-to address (EN 16931 BT-55), set for e-invoice credit notes.';
