-- 029: statement layout 3 (reports.statement_model): the tighter spacing from the start, so a
-- statement is laid out once and a draft has the pages its issued statement will have. Only
-- the column's description changes; statements issued before keep their layout (replay
-- re-renders each with its own).
COMMENT ON COLUMN statements.layout_version IS 'The statement layout it was printed with (reports.statement_model.LAYOUT_VERSION): 1 for statements issued before layouts were versioned (and every one the first layout printed), 2 prints each line''s number (the row of the lines CSV a credit note names), 3 has the tighter spacing from the start (layouts 1 and 2 got it in a second layout when their last page was nearly empty).';
