-- 036: credit note rule 2 (pipeline/credit_notes.py, docs/invoicing.md "Credit notes"). A
-- credit note against period P's statement, issued after a later statement refunded part of
-- P's money through a negative prior-period adjustment, credited that money again (rule 1:
-- capped by the statement's net less earlier credit notes only). Rule 2 also subtracts the
-- money later statements refunded for P (their negative adjustment lines of P less what they
-- restored to prepaid credit for P) and adds the money they asked for positive adjustment
-- lines of P not credited by a note, for the statement and per credited line (keyed as
-- statement_lines_due.sql keys lines); the lines' own refunds are printed as "Already
-- refunded on statement ..., not credited" (refunded_usd, refunded_on). Notes issued
-- before keep rule 1 (NULL here: their stored figures replay as issued). Re-runnable (IF NOT
-- EXISTS), as the tests that rebuild a database from before an earlier migration re-apply
-- every later one.
ALTER TABLE credit_notes ADD COLUMN IF NOT EXISTS money_rule SMALLINT;
ALTER TABLE credit_notes ADD COLUMN IF NOT EXISTS refunded_usd DECIMAL(18,2);
ALTER TABLE credit_notes ADD COLUMN IF NOT EXISTS refunded_on VARCHAR;
COMMENT ON COLUMN credit_notes.money_rule IS 'How much money the note may credit: NULL or 1, the statement''s net less earlier credit notes (notes issued before migration 036); 2, also less the money later statements refunded for the period (negative prior-period adjustments, less what they restored to prepaid credit), plus the money they asked for positive adjustments of it not credited by a note; and per line at most its amount less the refunds of its key.';
COMMENT ON COLUMN credit_notes.refunded_usd IS 'Rule 2: part of the credited lines not credited because later statements already refunded it in money (sum of credit_note_lines.refunded_usd) (printed as "Already refunded on statement ..., not credited"); 0.00 when none; NULL for rule 1.';
COMMENT ON COLUMN credit_notes.refunded_on IS 'Rule 2, when refunded_usd > 0: the statements that refunded it, joined with ", " as printed; NULL otherwise.';
COMMENT ON COLUMN credit_notes.net_usd IS 'lines_usd less prepaid_retained_usd less refunded_usd (rule 2): the net credited, on which tax is computed.';
-- Per credited line, the part a rule-2 note did not credit because a later statement had
-- already refunded it (keyed like the line: model, token class, unit price[, price version]).
-- When tokens of the line come back later (a third attempt), statement_lines_due.sql takes
-- this part back first, like a hold-back, so a line credited in full is never billed again.
ALTER TABLE credit_note_lines ADD COLUMN IF NOT EXISTS refunded_usd DECIMAL(18,2);
COMMENT ON COLUMN credit_note_lines.refunded_usd IS 'Rule 2: part of this line not credited because later statements already refunded it in money (the refunds of its key); 0.00 when none; NULL for rule 1. A later positive adjustment of the line takes it back first, like a hold-back.';
