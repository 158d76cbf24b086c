-- 017: credit notes (issue 16 item 4). A credit note credits some or all lines of an ISSUED
-- statement, with a reason; it has its own gap-free number sequence (CN-2026-000001). Like
-- issued statements, credit notes are written once and never updated: the row, the lines it
-- credits and the exact bytes of its files. What it printed (bill-to, tax, issuer) is stored
-- with it, so it is rebuilt byte for byte from these rows alone.

CREATE TABLE credit_notes (
    credit_note_number   VARCHAR PRIMARY KEY,       -- CN-2026-000001: prefix, issue year, sequence
    sequence_no          INTEGER NOT NULL UNIQUE,   -- one global gap-free sequence, from 1
    statement_number     VARCHAR NOT NULL,          -- the issued statement credited (statements.statement_number)
    account_id           VARCHAR NOT NULL,
    period               VARCHAR NOT NULL,          -- the statement's period
    issue_date           DATE NOT NULL,
    reason               VARCHAR NOT NULL,
    lines_usd            DECIMAL(18,2) NOT NULL,    -- sum of the credited lines' amounts
    prepaid_retained_usd DECIMAL(18,2) NOT NULL,    -- part of those lines paid with prepaid credit: not credited
    net_usd              DECIMAL(18,2) NOT NULL,    -- lines_usd - prepaid_retained_usd: what tax is computed on
    tax_treatment        VARCHAR,                   -- the statement's treatment; NULL: no tax shown
    tax_rate_pct         DECIMAL(5,2),
    tax_label            VARCHAR,
    tax_rule             VARCHAR NOT NULL,          -- on_net | remainder
    tax_usd              DECIMAL(18,2) NOT NULL,
    total_credited_usd   DECIMAL(18,2) NOT NULL,    -- net_usd + tax_usd
    account_name         VARCHAR NOT NULL,          -- the bill-to printed
    account_address      VARCHAR[] NOT NULL,
    account_email        VARCHAR,
    customer_vat_id      VARCHAR,
    tax_note             VARCHAR,
    issuer_sha256        VARCHAR NOT NULL,          -- the issuer printed (reference_files.sha256)
    run_id               BIGINT NOT NULL,
    issued_at            TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE credit_notes IS 'Issued credit notes against issued statements: numbered in their own gap-free sequence, never updated.';

CREATE TABLE credit_note_lines (
    credit_note_number   VARCHAR NOT NULL,
    line_no              INTEGER NOT NULL,          -- statement_issued_lines.line_no of the statement credited
    kind                 VARCHAR NOT NULL,          -- usage | adjustment
    description          VARCHAR NOT NULL,          -- the model name, or the adjustment text, as printed
    amount_usd           DECIMAL(18,2) NOT NULL,    -- amount credited (the whole line)
    PRIMARY KEY (credit_note_number, line_no)
);
COMMENT ON TABLE credit_note_lines IS 'The statement lines each credit note credits; per statement line the amounts credited never exceed the line.';

CREATE TABLE credit_note_files (
    credit_note_number   VARCHAR NOT NULL,
    kind                 VARCHAR NOT NULL,          -- pdf | lines_csv | html
    file_name            VARCHAR NOT NULL,
    sha256               VARCHAR NOT NULL,
    content              BLOB NOT NULL,
    PRIMARY KEY (credit_note_number, kind)
);
COMMENT ON TABLE credit_note_files IS 'The exact bytes and sha256 of every file of an issued credit note.';

COMMENT ON COLUMN credit_notes.credit_note_number IS 'Credit note number: the issuer''s credit_note_number_prefix (default CN), issue year, global sequence.';
COMMENT ON COLUMN credit_notes.sequence_no IS 'Position in the one gap-free credit-note sequence.';
COMMENT ON COLUMN credit_notes.statement_number IS 'The issued statement this note credits.';
COMMENT ON COLUMN credit_notes.account_id IS 'The statement''s account.';
COMMENT ON COLUMN credit_notes.period IS 'The statement''s billing period, YYYY-MM.';
COMMENT ON COLUMN credit_notes.issue_date IS 'Date printed as the credit note''s issue date.';
COMMENT ON COLUMN credit_notes.reason IS 'Why the lines are credited, printed on the note.';
COMMENT ON COLUMN credit_notes.lines_usd IS 'Sum of the amounts of the statement lines credited.';
COMMENT ON COLUMN credit_notes.prepaid_retained_usd IS 'Part of the credited lines the statement covered with prepaid credit: not credited in money (docs/invoicing.md).';
COMMENT ON COLUMN credit_notes.net_usd IS 'lines_usd less prepaid_retained_usd: the net credited, on which tax is computed.';
COMMENT ON COLUMN credit_notes.tax_treatment IS 'The credited statement''s tax treatment; NULL: the statement showed no tax.';
COMMENT ON COLUMN credit_notes.tax_rate_pct IS 'The credited statement''s tax rate.';
COMMENT ON COLUMN credit_notes.tax_label IS 'What the tax is called (the issuer''s tax_label).';
COMMENT ON COLUMN credit_notes.tax_rule IS 'on_net: tax_on(net_usd, rate); remainder: the statement''s tax less tax already credited (the note completing the statement, or a cap).';
COMMENT ON COLUMN credit_notes.tax_usd IS 'Tax credited.';
COMMENT ON COLUMN credit_notes.total_credited_usd IS 'net_usd + tax_usd: the amount credited to the customer.';
COMMENT ON COLUMN credit_notes.account_name IS 'Bill-to legal name printed on the note.';
COMMENT ON COLUMN credit_notes.account_address IS 'Bill-to address lines printed on the note.';
COMMENT ON COLUMN credit_notes.account_email IS 'Bill-to email printed on the note.';
COMMENT ON COLUMN credit_notes.customer_vat_id IS 'Customer VAT ID printed on the note.';
COMMENT ON COLUMN credit_notes.tax_note IS 'Why no tax (exempt, out of scope, reverse charge note) printed on the note.';
COMMENT ON COLUMN credit_notes.issuer_sha256 IS 'The issuer printed on the note (reference_files.sha256, or the built-in issuer''s).';
COMMENT ON COLUMN credit_notes.run_id IS 'The credit-note run that issued it.';
COMMENT ON COLUMN credit_notes.issued_at IS 'When it was recorded.';
COMMENT ON COLUMN credit_note_lines.credit_note_number IS 'The credit note.';
COMMENT ON COLUMN credit_note_lines.line_no IS 'The statement line credited: row N of the statement''s lines CSV (statement_issued_lines.line_no).';
COMMENT ON COLUMN credit_note_lines.kind IS 'usage or adjustment, as on the statement.';
COMMENT ON COLUMN credit_note_lines.description IS 'The model name or adjustment text printed.';
COMMENT ON COLUMN credit_note_lines.amount_usd IS 'Amount of the statement line credited.';
COMMENT ON COLUMN credit_note_files.credit_note_number IS 'The credit note.';
COMMENT ON COLUMN credit_note_files.kind IS 'pdf, lines_csv or html.';
COMMENT ON COLUMN credit_note_files.file_name IS 'File name under OUT/credit_notes/PERIOD/.';
COMMENT ON COLUMN credit_note_files.sha256 IS 'sha256 of content.';
COMMENT ON COLUMN credit_note_files.content IS 'The file''s exact bytes.';
