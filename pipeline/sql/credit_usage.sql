-- Prepaid credit drawdown, step 1 of 2: the usage each account draws, in time order (issue 17).
--
-- What is drawn is the billed amount: the exact charges of the billed attempts (rated_attempts,
-- outcome 'billed'), of periods not yet finalized, of accounts that have credit grants.
-- Usage is drawn per UTC day, and a day is cut at every instant a grant of the account starts,
-- is reversed or expires: so a grant that expires at 12:00 covers the morning's usage and not
-- the afternoon's, and a day whose usage exhausts one grant and continues on the next is one
-- segment split across two grants (step 2). Issued periods are never read: what they drew is
-- stored in credit_ledger and later periods start from there (late records for them are
-- billed, and drawn, as adjustments on the next statement).
--
-- Step 2 (core/drawdown.py, rule documented there and in docs/credits.md) rounds each
-- period's segments to cents so that they add up to the statement's charges (R7), and draws
-- each segment from the eligible grants, expiring soonest first, then oldest.
--
-- $as_of (NULL for statements): the `balances` command also cuts at its instant, so a balance
-- counts exactly the usage billed before it.
--
-- Cost: one pass over the open periods' billed attempts of accounts with grants (a nightly
-- statement or balances run reads at most one month and a day of them); accounts without
-- grants are not read at all.
WITH cuts AS (                     -- instants at which an account's available credit changes
    SELECT account_id, granted_at AS cut_at FROM credit_grants
    UNION
    SELECT account_id, expires_at FROM credit_grants WHERE expires_at IS NOT NULL
    UNION
    SELECT account_id, CAST($as_of AS TIMESTAMPTZ) FROM credit_grants WHERE $as_of IS NOT NULL
),
billed AS (
    SELECT r.account_id, r.period, r.ts, r.charge_total,
           CAST(date_trunc('day', r.ts) AS TIMESTAMPTZ) AS day_start
    FROM rated_attempts r
    WHERE r.outcome = 'billed'
      AND r.account_id IN (SELECT account_id FROM credit_grants)
      AND r.period NOT IN (SELECT period FROM finalized_periods)
),
segmented AS (                     -- each attempt's segment: its day, cut at the nearest cuts
    SELECT b.account_id, b.period, b.charge_total,
           greatest(b.day_start, coalesce(before.cut_at, b.day_start))                            AS segment_start,
           least(b.day_start + INTERVAL 1 DAY, coalesce(after.cut_at, b.day_start + INTERVAL 1 DAY)) AS segment_end
    FROM billed b
    ASOF LEFT JOIN cuts before ON before.account_id = b.account_id AND b.ts >= before.cut_at
    ASOF LEFT JOIN cuts after  ON after.account_id  = b.account_id AND after.cut_at > b.ts
)
SELECT account_id, period, segment_start, segment_end,
       CAST(sum(charge_total) AS DECIMAL(38,20)) AS amount_exact
FROM segmented
GROUP BY account_id, period, segment_start, segment_end
ORDER BY account_id, period, segment_start
