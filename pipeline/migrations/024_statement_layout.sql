-- 024: the layout each issued statement was printed with. Replay re-renders an issued
-- statement's HTML and compares it byte for byte with the stored one, so a change of the
-- statement's layout (here: line numbers on every row, the numbers credit notes name) applies
-- to statements issued from now on, and each issued statement is re-rendered with its own.
-- Statements issued before this migration were printed in the first layout.
ALTER TABLE statements ADD COLUMN layout_version INTEGER;
UPDATE statements SET layout_version = 1;
COMMENT ON COLUMN statements.layout_version IS 'The statement layout it was printed with (reports.statement_model.LAYOUT_VERSION): 1 for statements issued before layouts were versioned (and every one the first layout printed), 2 prints each line''s number (the row of the lines CSV a credit note names).';
