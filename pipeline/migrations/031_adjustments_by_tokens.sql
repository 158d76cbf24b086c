-- 031: statement layout 4 (reports.statement_model): printed as layout 3, and a prior-period
-- adjustment line's amount is its own tokens x unit price, rounded half-up (R7), so the line
-- adds up as printed. Layouts 1-3 printed the period's rounded line now minus the cents
-- already issued for it: +100,000 tokens at $6.5625/1M showed $0.65 where the tokens come to
-- $0.65625, $0.66. Only the column's description changes; statements issued before keep their
-- rule (replay re-issues each with its own layout's).
COMMENT ON COLUMN statements.layout_version IS 'The statement layout it was printed with (reports.statement_model.LAYOUT_VERSION): 1 for statements issued before layouts were versioned (and every one the first layout printed), 2 prints each line''s number (the row of the lines CSV a credit note names), 3 has the tighter spacing from the start (layouts 1 and 2 got it in a second layout when their last page was nearly empty), 4 prices each prior-period adjustment line as its own tokens x unit price, rounded (layouts 1-3: the period''s rounded line now minus the cents issued).';
