-- The lines due on one account's statement for period $period, before numbering:
--   usage lines      the current statement lines of $period (R7: exact sum, rounded);
--   adjustment lines for every earlier FINALIZED period: the tokens that period's lines hold
--                    now (late records rated since, R10) minus every token already issued for
--                    it (its own statement plus adjustments on later statements).
-- Keyed by (model, token class, unit price), and before layout 6 also by price version, so an
-- adjustment says exactly which usage arrived late (its price_version: the versions that
-- price the period's line now). Its amount ($by_tokens, statement layouts 4 on) is its own tokens
-- x unit price, exact, rounded half-up to the cent like any line (R7): a line's exact amount
-- is its tokens x its unit price (every attempt on it has that price), so this is the late
-- records' own charge, and the printed line adds up (+100,000 tokens at $6.5625/1M is $0.66).
-- Statements issued before layout 4 subtracted rounded amounts instead (now's rounded line
-- minus the cents issued: $0.65 there); replay re-issues each with the rule it was issued by.
-- From layout 5 ($net_of_credit_notes) a negative adjustment never gives back more than the
-- customer paid for the line: what was issued for it less what credit notes credited of it.
-- A line credited in full and then found smaller (a late retry superseding it) was already
-- given back once; `credited_offset` is the part not given back again (the line says so). What
-- such lines held back is taken back first when tokens return (a third attempt), so a line
-- credited in full is never billed again for the tokens it held when it was credited (nor for
-- those a later statement had refunded before a rule-2 note credited the rest: the note's
-- credit_note_lines.refunded_usd counts as held back; no note of rule 1 has it). A line
-- counts as credited in full (its whole amount), also when prepaid credit paid part of it and
-- the note kept that part (docs/invoicing.md): prepaid credit used stays used.
-- From layout 7 ($restore_credit) a negative adjustment gives back in money only what the
-- customer paid in money for the adjusted period, and restores to prepaid credit what prepaid
-- credit paid (`restored`, not netted from the money due nor taxed; core.drawdown puts it back
-- on the grants): money first, then credit, per adjusted period, over its negative lines in
-- the statement's order (docs/credits.md "Restoring credit"). Before, all of it was money.
-- Only the first open period's statement restores; a draft of a later month (while an earlier
-- one is open) restores nothing and reports in `deferred` what that statement would restore.
-- From layout 10 ($period_money) the money left to refund for a period counts what credit notes
-- gave back of later statements' asks of it (a note's net over the lines it credited, then its
-- statement's other lines), so a note on a later ask is not refunded again, and its own
-- statement's money is at most what that statement asked for its usage lines (its net also
-- carries its adjustments of earlier periods); what it restores to prepaid credit may include
-- the credit later statements drew for asks of it (before, that part was refunded in money)
-- (docs/credits.md "Restoring credit", points 2 and 6).
-- From layout 12 ($moved_credit) a note that gave back more money than the lines it credited
-- had asked (credit paid them in part) moves prepaid credit with the money it attributes to a
-- positive adjustment of an earlier period Q that no note credited: that ask is now paid with
-- the statement's credit, so Q's refunds restore it (before, it stayed the noted period's credit,
-- whose credited line is never refunded again, and Q's refund gave it back in money). And
-- ($netted_refunds) a period whose statement is of layout 10 on counts as its own money what it
-- asked for its usage, even when its net is lower: a refund of an earlier period netted there
-- was genuine (layout 10 on never refunds more than a period's money), so that money was paid
-- (before: the lower of the two, and a later refund of the period fell short by the netted refund).
-- And ($refunded_not_credited) a negative adjustment of a line a rule-2 credit note credited is
-- capped at issued less credited not counting as credited the part a later statement had already
-- refunded (issued counts that refund), so tokens billed again after the note are refunded in full.
-- From layout 13 ($printed_refunded) that part is the one the note printed as already refunded
-- (credit_note_lines.printed_refunded_usd), not the part it still holds back (refunded_usd): from
-- rule 3 a note stores as held back only refunded tokens that did not come back since (an ask a
-- note credited brought them back), and layout 12 then counted the rest of the printed part as
-- credited too, keeping it with us once the tokens came back and went (docs/credits.md). And
-- ($line_money_net) `line_money` counts that part out of the credited line's money, so the
-- rest of the note's net goes to the statement's other lines (and layout 12's moved credit
-- with it) also when a refund of the line came before the note. A note of credit note rule 6
-- also stores the part it printed as already given back by refunds and notes (rules 3-5 stored
-- nothing of it: credit_note_lines.printed_given_back_usd), which the cap subtracts too, so a
-- credited line counts as credited what notes gave back of it; `line_money` does not.
-- From layout 14 ($note_money_as_issued) `line_money` takes what a note of credit note rule 7 on
-- gave back of each line from the attribution the note stored when it was issued
-- (credit_note_money: its lines first, then the statement's other lines, each at most what was
-- left of its period's money), and attributes the notes of rules 1-6 among themselves as before.
-- Layout 13 gave a note's money beyond its lines to the other lines in printed order, whatever
-- was left of their periods' money: to an ask whose period was already given back, where the
-- prepaid credit that moved with it was never restored (docs/credits.md, credit note rule 7).
WITH per_version AS (
    -- Layout 6 on ($by_unit_price): a line is one (model, token class, unit price), summed over
    -- the price versions that priced its tokens and rounded once (R7); price_version lists them
    -- (';'). Before: one line per price version, each rounded on its own. A period whose lines
    -- were issued per version (on a statement of layout 1-5: its own, or one adjusting it) keeps
    -- that key for its adjustments, so each credit note and hold-back stays with its version.
    SELECT s.account_id, l.original_period, bool_or(coalesce(s.layout_version, 1) < 6) AS split
    FROM statement_issued_lines l
    JOIN statements s USING (statement_number)
    GROUP BY ALL
),
current_lines AS (
    SELECT account_id, original_period, model, token_class,
           array_to_string(list_sort(list_distinct(list(price_version))), ';') AS price_version,
           version_key, unit_price_per_1m,
           CAST(sum(quantity_tokens) AS BIGINT) AS quantity_tokens,
           CAST(CASE WHEN version_key = '' THEN round(sum(amount_exact), 2) ELSE sum(amount) END AS DECIMAL(18,2)) AS amount
    FROM (
        SELECT l.*, l.period AS original_period,
               CASE WHEN $by_unit_price AND NOT coalesce(v.split, FALSE) THEN '' ELSE l.price_version END AS version_key
        FROM statement_lines l
        LEFT JOIN per_version v ON v.account_id = l.account_id AND v.original_period = l.period
    )
    GROUP BY account_id, original_period, model, token_class, unit_price_per_1m, version_key
),
issued AS (
    SELECT account_id, original_period, model, token_class,
           array_to_string(list_sort(list_distinct(flatten(list(string_split(price_version, ';'))))), ';') AS price_version,
           version_key, unit_price_per_1m,
           sum(quantity_tokens) AS quantity_tokens, sum(amount) AS amount,
           -- held back so far (layout 5 on): what adjustment lines printed beyond their tokens'
           -- charge; a negative line stopped at what was paid holds back, a later positive one
           -- that takes it back again releases (layout 4 lines print exactly their tokens' charge)
           sum(CASE WHEN kind = 'adjustment' AND layout >= 5
                    THEN amount - CAST(round(CAST(CAST(CAST(quantity_tokens AS DECIMAL(18,0))
                         * unit_price_per_1m AS DECIMAL(38,14)) * CAST(0.000001 AS DECIMAL(7,6))
                         AS DECIMAL(38,20)), 2) AS DECIMAL(18,2))
                    ELSE 0 END) AS held_back
    FROM (
        SELECT l.*, s.account_id, coalesce(s.layout_version, 1) AS layout,
               CASE WHEN $by_unit_price AND NOT v.split THEN '' ELSE l.price_version END AS version_key
        FROM statement_issued_lines l
        JOIN statements s USING (statement_number)
        JOIN per_version v ON v.account_id = s.account_id AND v.original_period = l.original_period
    )
    GROUP BY account_id, original_period, model, token_class, unit_price_per_1m, version_key
),
credited AS (
    SELECT n.account_id, l.original_period, l.model, l.token_class,
           CASE WHEN $by_unit_price AND NOT v.split THEN '' ELSE l.price_version END AS version_key,
           l.unit_price_per_1m, sum(c.amount_usd) AS amount,
           -- credit note rule 2 (migration 036): the part of the line a note did not credit as
           -- already refunded by a later statement, taken back like a hold-back below
           sum(coalesce(c.refunded_usd, 0)) AS refunded,
           -- the part a note printed as already refunded (layout 13, $printed_refunded), held
           -- back or not; notes of rules 3-5 issued before migration 048 did not store it
           sum(coalesce(c.printed_refunded_usd, c.refunded_usd, 0)) AS printed_refunded,
           -- credit note rule 6 (migration 049): the part a note printed as already given back
           -- by refunds and notes (rules 3-5 printed it and stored nothing)
           sum(coalesce(c.printed_given_back_usd, 0)) AS printed_given_back
    FROM credit_note_lines c
    JOIN credit_notes n USING (credit_note_number)
    JOIN statement_issued_lines l ON l.statement_number = n.statement_number AND l.line_no = c.line_no
    JOIN per_version v ON v.account_id = n.account_id AND v.original_period = l.original_period
    GROUP BY ALL
),
raw_adjustments AS (
    SELECT coalesce(c.account_id, i.account_id)               AS account_id,
           coalesce(c.original_period, i.original_period)     AS original_period,
           coalesce(c.model, i.model)                         AS model,
           coalesce(c.token_class, i.token_class)             AS token_class,
           coalesce(c.price_version, i.price_version)         AS price_version,
           coalesce(c.version_key, i.version_key)             AS version_key,
           coalesce(c.unit_price_per_1m, i.unit_price_per_1m) AS unit_price_per_1m,
           CAST(coalesce(c.quantity_tokens, 0) - coalesce(i.quantity_tokens, 0) AS BIGINT) AS quantity_tokens,
           CASE WHEN $by_tokens THEN CAST(round(CAST(CAST(
                    CAST(coalesce(c.quantity_tokens, 0) - coalesce(i.quantity_tokens, 0) AS DECIMAL(18,0))
                    * coalesce(c.unit_price_per_1m, i.unit_price_per_1m) AS DECIMAL(38,14))
                    * CAST(0.000001 AS DECIMAL(7,6)) AS DECIMAL(38,20)), 2) AS DECIMAL(18,2))
                ELSE CAST(coalesce(c.amount, 0) - coalesce(i.amount, 0) AS DECIMAL(18,2)) END AS raw_amount,
           CAST(coalesce(i.amount, 0) AS DECIMAL(18,2)) AS issued_amount,
           CAST(coalesce(i.held_back, 0) AS DECIMAL(18,2)) AS held_back
    FROM current_lines c
    FULL OUTER JOIN issued i
      ON i.account_id = c.account_id AND i.original_period = c.original_period AND i.model = c.model
     AND i.token_class = c.token_class AND i.version_key = c.version_key
     AND i.unit_price_per_1m = c.unit_price_per_1m
    WHERE coalesce(c.original_period, i.original_period) IN (SELECT period FROM finalized_periods)
      AND coalesce(c.original_period, i.original_period) < $period
      -- layout 11 ($skipped_months): a statement of a month before the last issued one (late
      -- usage of a month without statements) carries no adjustments of an account with prepaid
      -- credit: credit is drawn in period order, so they go on its next statement
      AND (NOT $skipped_months OR $period > (SELECT coalesce(max(period), '') FROM finalized_periods)
           OR coalesce(c.account_id, i.account_id) NOT IN (SELECT account_id FROM credit_grants))
),
adjustments AS (
    SELECT a.account_id, a.original_period, a.model, a.token_class, a.price_version, a.version_key,
           a.unit_price_per_1m, a.quantity_tokens,
           CASE WHEN NOT $net_of_credit_notes OR k.amount IS NULL THEN a.raw_amount
                -- never give back more than was paid for the line: issued less credited
                -- (layout 12 on, $refunded_not_credited: less the part of the credited amount a
                -- later statement had refunded before a rule-2 note, which issued already counts;
                -- layout 13 on, $printed_refunded: all the note printed as refunded, held back or
                -- not, and from credit note rule 6 as already given back: what notes credited of it)
                WHEN a.raw_amount < 0
                THEN greatest(a.raw_amount, least(CAST(0 AS DECIMAL(18,2)), CAST(k.amount
                     - CASE WHEN $printed_refunded THEN k.printed_refunded + k.printed_given_back
                            WHEN $refunded_not_credited THEN k.refunded ELSE 0 END
                     - a.issued_amount AS DECIMAL(18,2))))
                -- tokens coming back first take back what an earlier line held back, and what a
                -- rule-2 note left uncredited as already refunded (0 for every note before)
                ELSE a.raw_amount - least(a.raw_amount, greatest(CAST(0 AS DECIMAL(18,2)), a.held_back + k.refunded))
           END AS amount,
           a.raw_amount
    FROM raw_adjustments a
    LEFT JOIN credited k
      ON k.account_id = a.account_id AND k.original_period = a.original_period AND k.model = a.model
     AND k.token_class = a.token_class AND k.version_key = a.version_key
     AND k.unit_price_per_1m = a.unit_price_per_1m
),
statement_usage AS (
    -- per issued statement: the sum of its usage lines (0.00 when it has none)
    SELECT statement_number, coalesce(sum(amount) FILTER (WHERE kind = 'usage'), 0) AS usage
    FROM statement_issued_lines
    GROUP BY statement_number
),
adjustment_shares AS (
    -- layout 7 on: the money a later statement asked for each positive adjustment line of an
    -- earlier period: a line's amount less the prepaid credit its statement applied to it. The
    -- drawdown draws a statement's adjustments after its usage (with its last segment, or for a
    -- period without usage at its start or end), so a statement's credit goes to its usage
    -- lines first and what it applied beyond them to its positive adjustment lines, in printed
    -- order (line_no)
    SELECT l.statement_number, l.line_no, account_id, original_period, amount,
           amount - least(amount, greatest(0, beyond_usage - before)) AS money
    FROM (
        SELECT l.statement_number, l.line_no, s.account_id, l.original_period, l.amount,
               greatest(0, coalesce(c.applied_usd, 0) - u.usage) AS beyond_usage,
               coalesce(sum(l.amount) OVER (PARTITION BY l.statement_number ORDER BY l.line_no
                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
        FROM statement_issued_lines l
        JOIN statements s USING (statement_number)
        LEFT JOIN statement_credits c USING (statement_number)
        JOIN statement_usage u USING (statement_number)
        WHERE l.kind = 'adjustment' AND l.amount > 0 AND $restore_credit
    ) l
),
adjustment_money AS (
    -- per period: the money later statements asked for positive adjustments of it, and (layout
    -- 10 on) the prepaid credit they applied to those no credit note credited (a note keeps
    -- the prepaid part of a line it credits: that credit stays used)
    SELECT account_id, original_period, CAST(sum(money) AS DECIMAL(18,2)) AS money,
           CAST(coalesce(sum(amount - money) FILTER (WHERE $period_money AND NOT EXISTS (
                SELECT 1 FROM credit_note_lines cl JOIN credit_notes n USING (credit_note_number)
                WHERE n.statement_number = a.statement_number AND cl.line_no = a.line_no)), 0) AS DECIMAL(18,2)) AS credit
    FROM adjustment_shares a
    GROUP BY account_id, original_period
),
line_money AS (
    -- layout 10 on ($period_money): the money each line of an issued statement asked, the part
    -- of it credit notes gave back, and the period it belongs to. A line's money: a usage line
    -- its amount less the prepaid credit its statement applied to it (credit pays usage first,
    -- in printed order), a positive adjustment line as adjustment_shares, other lines none. A
    -- note's net (the money it gave back) goes first to the lines it credited, in printed
    -- order, each up to its money; what is left of the statement's notes' nets (a note credits
    -- the statement's money first, whichever lines paid it) goes to the statement's lines'
    -- money not yet given back, in printed order. Layout 14 on ($note_money_as_issued): so
    -- for the notes of rules 1-6 only; a note of rule 7 on adds the money it stored per line.
    SELECT statement_number, line_no, account_id, original_period, statement_period, kind,
           NOT credited_line AS uncredited,
           own + least(money - own, greatest(0, excess - left_before)) + coalesce(
               (SELECT sum(m.money_usd) FROM credit_note_money m JOIN credit_notes mn USING (credit_note_number)
                WHERE $note_money_as_issued AND mn.money_rule >= 7
                  AND mn.statement_number = lm.statement_number AND m.line_no = lm.line_no), 0) AS given_back
    FROM (
        SELECT *, sum(money - own) OVER (PARTITION BY statement_number ORDER BY line_no
                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS left_before,
               sum(net) OVER (PARTITION BY statement_number) - sum(own) OVER (PARTITION BY statement_number) AS excess
        FROM (
            SELECT *, CASE WHEN credit_note_number IS NULL THEN 0
                           ELSE least(money, greatest(0, note_net - coalesce(sum(money) OVER (
                                PARTITION BY credit_note_number ORDER BY line_no
                                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0))) END AS own,
                   -- each note's net once, on its first line
                   CASE WHEN credit_note_number IS NOT NULL
                             AND line_no = min(line_no) OVER (PARTITION BY credit_note_number)
                        THEN note_net ELSE 0 END AS net
            FROM (
                SELECT l.statement_number, l.line_no, s.account_id, l.original_period, s.period AS statement_period,
                       l.kind, cl.credit_note_number, n.net_usd AS note_net,
                       EXISTS (SELECT 1 FROM credit_note_lines cl2 JOIN credit_notes n2 USING (credit_note_number)
                               WHERE n2.statement_number = l.statement_number AND cl2.line_no = l.line_no) AS credited_line,
                       -- layout 13 on ($line_money_net): less what later statements had refunded of
                       -- a credited line before its note (the part the note printed as refunded),
                       -- which the note did not give back: the note's money beyond the rest is the
                       -- statement's other lines' (before, it stayed on the line, and the credit
                       -- that paid an ask of the statement never moved with it); never below 0
                       greatest(0, CASE WHEN l.kind = 'usage'
                            THEN l.amount - least(l.amount, greatest(0, coalesce(c.applied_usd, 0) - coalesce(sum(l.amount)
                                 FILTER (WHERE l.kind = 'usage') OVER (PARTITION BY l.statement_number ORDER BY l.line_no
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)))
                            ELSE coalesce(a.money, 0) END
                       - CASE WHEN $line_money_net AND cl.credit_note_number IS NOT NULL
                              THEN coalesce(cl.printed_refunded_usd, cl.refunded_usd, 0) ELSE 0 END) AS money
                FROM statement_issued_lines l
                JOIN statements s USING (statement_number)
                LEFT JOIN statement_credits c USING (statement_number)
                LEFT JOIN adjustment_shares a ON a.statement_number = l.statement_number AND a.line_no = l.line_no
                LEFT JOIN (credit_note_lines cl JOIN credit_notes n USING (credit_note_number))
                       ON n.statement_number = l.statement_number AND cl.line_no = l.line_no
                      AND NOT ($note_money_as_issued AND coalesce(n.money_rule, 1) >= 7)
                WHERE $period_money
                  AND l.statement_number IN (SELECT statement_number FROM credit_notes)
            )
        )
    ) lm
),
note_money AS (
    -- per period: what notes gave back of its statement's usage lines, and of later asks of it
    SELECT account_id, original_period,
           CAST(coalesce(sum(given_back) FILTER (WHERE kind = 'usage'), 0) AS DECIMAL(18,2)) AS usage,
           CAST(coalesce(sum(given_back) FILTER (WHERE kind = 'adjustment'), 0) AS DECIMAL(18,2)) AS asks
    FROM line_money
    GROUP BY account_id, original_period
),
moved_credit AS (
    -- layout 12 on ($moved_credit): the money notes gave back of an ask of Q that no note
    -- credited (beyond the lines they credited: the statement's money first) is now paid with
    -- the statement's prepaid credit: into Q's credit left, out of the statement's period's
    SELECT account_id, period, CAST(sum(amount) AS DECIMAL(18,2)) AS amount
    FROM (
        SELECT account_id, original_period AS period, given_back AS amount
        FROM line_money WHERE $moved_credit AND kind = 'adjustment' AND uncredited AND given_back > 0
        UNION ALL
        SELECT account_id, statement_period, -given_back
        FROM line_money WHERE $moved_credit AND kind = 'adjustment' AND uncredited AND given_back > 0
    )
    GROUP BY account_id, period
),
ask_restored_printed AS (
    -- credit note rule 9 (migration 052): what its notes printed as given back of asks of a
    -- period, credit a refund of it had restored (credit_note_lines.printed_ask_restored_usd):
    -- that restoration was the credited ask's, so it leaves the period's pool with the ask (as
    -- its credit left in `paid`) and is added back there; a later rule-9 note counts it as
    -- printed already (pipeline/credit_notes.py _asks_restored, through
    -- statements.period_credit_pool). Notes of rules 1-8 store NULL:
    -- statements issued before re-execute as issued, whatever their layout. Gated by the note's
    -- rule, not the statement's layout, which is safe for replay because a replay never sees a
    -- note issued after what it re-executes: `replay --period` copies only the notes up to the
    -- run that finalized the period (the cutoff of pipeline/replay.py _copy_history), and
    -- `replay --verify` re-executes runs in order
    SELECT n.account_id, l.original_period, sum(cl.printed_ask_restored_usd) AS restored
    FROM credit_note_lines cl JOIN credit_notes n USING (credit_note_number)
    JOIN statement_issued_lines l ON l.statement_number = n.statement_number AND l.line_no = cl.line_no
    WHERE coalesce(n.money_rule, 1) >= 9
    GROUP BY n.account_id, l.original_period
),
paid AS (
    -- layout 7 on: of what was asked for an issued period, what is left to give back in money
    -- and in prepaid credit. Money, layouts 7-9: its own statement's net (replay copies no
    -- statement_invoicing, so the fallback is the same net: charges + restored - applied),
    -- plus the money later statements asked for positive adjustments of it (adjustment_money),
    -- less credit notes' net against its statement, less the money part of negative
    -- adjustments of it issued since. Layout 10 on ($period_money), its own statement's part
    -- is the lower of that net less its notes' nets and what it asked for its usage lines
    -- (usage less the credit it applied, which pays usage first) less what notes gave back of
    -- them: the net also carries its adjustments of earlier periods (theirs to give back), and
    -- a refund of an earlier period netted there may have given back more than that period's
    -- money (layouts 1-6 refunded prepaid usage in money, 7-9 a credited ask again), which
    -- came out of this statement's money. Then the asks of later statements less what notes
    -- gave back of them (note_money: a note on a later ask is not refunded again), less the
    -- money refunded since. Credit: what its statement drew less what credit notes kept as
    -- prepaid, plus (layout 10 on) what later statements drew for its asks no note credited
    -- (layouts 7-9 refunded that in money), plus (layout 12 on) the credit a note's money moved
    -- to it (moved_credit), less what was restored for it since (credit_ledger.restored_for),
    -- plus what notes of credit note rule 9 printed of that as given back of its asks (ar)
    SELECT s.account_id, s.period AS original_period,
           CAST(greatest(0, CASE WHEN $period_money AND $netted_refunds AND coalesce(s.layout_version, 1) >= 10
                                 -- layout 12 on: a statement of layout 10 on never refunded more
                                 -- than a period's money, so a net below its usage money is a
                                 -- genuine refund netted there: its usage money stands
                                 THEN greatest(0, coalesce(u.usage, 0) - coalesce(c.applied_usd, 0)) - coalesce(nm.usage, 0)
                                      - coalesce(nm.asks, 0)
                                 WHEN $period_money
                                 THEN least(greatest(0, coalesce(u.usage, 0) - coalesce(c.applied_usd, 0)) - coalesce(nm.usage, 0),
                                            coalesce(inv.net_usd, s.total_usd + coalesce(c.restored_usd, 0) - coalesce(c.applied_usd, 0))
                                            - coalesce(n.net, 0))
                                      - coalesce(nm.asks, 0)
                                 ELSE coalesce(inv.net_usd, s.total_usd + coalesce(c.restored_usd, 0) - coalesce(c.applied_usd, 0))
                                      - coalesce(n.net, 0) END
                + coalesce(am.money, 0) - coalesce(g.refunded, 0) + coalesce(r.restored, 0)) AS DECIMAL(18,2)) AS money_left,
           CAST(greatest(0, coalesce(c.applied_usd, 0) - coalesce(n.retained, 0) + coalesce(am.credit, 0)
                            + coalesce(mc.amount, 0) - coalesce(r.restored, 0) + coalesce(ar.restored, 0)) AS DECIMAL(18,2)) AS credit_left
    FROM statements s
    LEFT JOIN statement_invoicing inv USING (statement_number)
    LEFT JOIN statement_credits c USING (statement_number)
    LEFT JOIN (SELECT statement_number, sum(net_usd) AS net, sum(prepaid_retained_usd) AS retained
               FROM credit_notes GROUP BY statement_number) n USING (statement_number)
    LEFT JOIN statement_usage u USING (statement_number)
    LEFT JOIN (SELECT s2.account_id, l.original_period, sum(-l.amount) AS refunded
               FROM statement_issued_lines l JOIN statements s2 USING (statement_number)
               WHERE l.kind = 'adjustment' AND l.amount < 0 GROUP BY s2.account_id, l.original_period) g
      ON g.account_id = s.account_id AND g.original_period = s.period
    LEFT JOIN (SELECT account_id, restored_for, sum(amount) AS restored FROM credit_ledger
               WHERE entry_kind = 'restored' GROUP BY account_id, restored_for) r
      ON r.account_id = s.account_id AND r.restored_for = s.period
    LEFT JOIN adjustment_money am ON am.account_id = s.account_id AND am.original_period = s.period
    LEFT JOIN note_money nm ON nm.account_id = s.account_id AND nm.original_period = s.period
    LEFT JOIN moved_credit mc ON mc.account_id = s.account_id AND mc.period = s.period
    LEFT JOIN ask_restored_printed ar
      ON ar.account_id = s.account_id AND ar.original_period = s.period
    WHERE $restore_credit
),
given_back AS (
    SELECT a.*, coalesce(p.money_left, 0) AS money_left, coalesce(p.credit_left, 0) AS credit_left,
           CAST(CASE WHEN $restore_credit AND a.amount < 0 THEN -a.amount ELSE 0 END AS DECIMAL(18,2)) AS refund,
           CAST(sum(CASE WHEN $restore_credit AND a.amount < 0 THEN -a.amount ELSE 0 END) OVER (
                PARTITION BY a.account_id, a.original_period
                ORDER BY a.model, CASE a.token_class WHEN 'input_uncached' THEN 1 WHEN 'input_cached' THEN 2 ELSE 3 END,
                         a.price_version, a.unit_price_per_1m, a.version_key
                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS DECIMAL(18,2)) AS refunded_to_here
    FROM adjustments a
    LEFT JOIN paid p ON p.account_id = a.account_id AND p.original_period = a.original_period
),
restoring AS (
    -- money first, then prepaid credit: the credit part of the refunds up to this line, less
    -- that of the refunds before it
    SELECT *, CAST(least(greatest(refunded_to_here - money_left, 0), credit_left)
                   - least(greatest(refunded_to_here - refund - money_left, 0), credit_left) AS DECIMAL(18,2)) AS credit_part
    FROM given_back
),
first_open AS (
    -- only the first open period's statement restores (core.credit_ledger draws the adjustments
    -- there and nowhere else): a draft of a later month, while an earlier one is open, shows the
    -- adjustments that statement carries first, draws no credit for them and restores none;
    -- `deferred` is what the first open statement restores of the line. From layout 11
    -- ($skipped_months) the first open month in which an account with prepaid credit was billed
    -- (a month without such usage gets no statement that could restore; NULL: none yet, this
    -- statement restores)
    SELECT CASE WHEN $skipped_months THEN (
               SELECT min(period) FROM statement_lines
               WHERE period > (SELECT coalesce(max(period), '') FROM finalized_periods)
                 AND account_id IN (SELECT account_id FROM credit_grants))
           ELSE (SELECT strftime(CAST(max(period) || '-01' AS DATE) + INTERVAL 1 MONTH, '%Y-%m')
                 FROM finalized_periods) END AS period
)

SELECT account_id, 'usage' AS kind, original_period, model, token_class, price_version,
       unit_price_per_1m, quantity_tokens, amount, CAST(0 AS DECIMAL(18,2)) AS credited_offset,
       CAST(0 AS DECIMAL(18,2)) AS restored, CAST(0 AS DECIMAL(18,2)) AS deferred
FROM current_lines
WHERE original_period = $period
UNION ALL
SELECT account_id, 'adjustment', original_period, model, token_class, price_version,
       unit_price_per_1m, quantity_tokens, amount, CAST(amount - raw_amount AS DECIMAL(18,2)),
       CAST(CASE WHEN $period <= coalesce(f.period, $period) THEN credit_part ELSE 0 END AS DECIMAL(18,2)),
       CAST(CASE WHEN $period <= coalesce(f.period, $period) THEN 0 ELSE credit_part END AS DECIMAL(18,2))
FROM restoring, first_open f
WHERE amount <> 0 OR quantity_tokens <> 0
ORDER BY account_id, kind DESC, original_period, model,
         CASE token_class WHEN 'input_uncached' THEN 1 WHEN 'input_cached' THEN 2 ELSE 3 END,
         price_version, unit_price_per_1m
