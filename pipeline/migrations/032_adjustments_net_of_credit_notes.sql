-- 032: statement layout 5 (reports.statement_model, core.statement_rules): printed as layout 4;
-- a negative prior-period adjustment never gives back more than the customer paid for the line
-- (issued less credited by credit notes: a line credited in full and then found smaller was
-- refunded twice, by the credit note and by the adjustment), and a period without usage of its
-- own draws prepaid credit for its adjustments at its end (a grant made during the month left a
-- late record's adjustment unpaid). Only the column's description changes; statements issued
-- before keep their rules (replay re-issues each with its own layout's).
COMMENT ON COLUMN statements.layout_version IS 'The statement layout it was printed with (reports.statement_model.LAYOUT_VERSION): 1 for statements issued before layouts were versioned (and every one the first layout printed), 2 prints each line''s number (the row of the lines CSV a credit note names), 3 has the tighter spacing from the start (layouts 1 and 2 got it in a second layout when their last page was nearly empty), 4 prices each prior-period adjustment line as its own tokens x unit price, rounded (layouts 1-3: the period''s rounded line now minus the cents issued), 5 stops a negative adjustment at what was paid for the line (issued less credited by credit notes) and draws prepaid credit for the adjustments of a period without usage at its end.';
