"""Properties of the credit drawdown (issue 17), for any grants, reversals and usage.

* every period's block adds up: opening + granted - applied - expired = closing, and a
  period's closing is the next period's opening;
* applied never exceeds the usage charged, nor the credit available (no grant ever goes
  below zero, so no balance does);
* the cents of a period's segments add up to its charges exactly (R7);
* (statement layout 7) credit restored for an issued period goes back whole, to the grants
  that paid that period and never more than each paid, the blocks still add up with it, and
  what the account has left from the restoring period's start is that much more, but for what
  goes back to grants that had expired by then.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.drawdown import Grant, balance_at, cents_segments, draw, period_of, straddling_segments, summarize
from core.money import ZERO, D, Decimal

START = datetime(2026, 11, 1, tzinfo=UTC)
HOURS = 24 * 75  # November, December and half of January

cents = st.integers(min_value=1, max_value=5_000).map(lambda n: D(n) * D("0.01"))
hour = st.integers(min_value=0, max_value=HOURS)


@st.composite
def grants(draw_: st.DrawFn) -> list[Grant]:
    result: list[Grant] = []
    for i in range(draw_(st.integers(min_value=0, max_value=5))):
        at = START + timedelta(hours=draw_(hour))
        life = draw_(st.one_of(st.none(), st.integers(min_value=1, max_value=HOURS)))
        kind = draw_(st.sampled_from(["purchased", "promotional", "goodwill"]))
        amount = draw_(cents)
        grant = Grant(f"g{i}", "acct", amount, at, None if life is None else at + timedelta(hours=life), kind)
        result.append(grant)
        if draw_(st.booleans()):
            back = draw_(st.integers(min_value=1, max_value=int(amount * 100))) * D("0.01")
            later = at + timedelta(hours=draw_(st.integers(min_value=0, max_value=HOURS)))
            result.append(Grant(f"r{i}", "acct", back, later, None, kind, reverses=grant.grant_id))
    return result


@st.composite
def usage(draw_: st.DrawFn) -> list[tuple[str, str, datetime, datetime, Decimal]]:
    rows = []
    for h in sorted(set(draw_(st.lists(hour, max_size=12)))):
        start = START + timedelta(hours=h)
        exact = D(draw_(st.integers(min_value=1, max_value=400_000))) * D("0.00001")
        rows.append(("acct", period_of(start), start, start + timedelta(hours=1), exact))
    return rows


def statement_charges(
    rows: list[tuple[str, str, datetime, datetime, Decimal]], rounding: int = 0
) -> dict[tuple[str, str], Decimal]:
    """Each account's period's charges: its segments' exact sum rounded to the cent, off by
    ``rounding`` cents of line rounding (never below zero)."""
    charges: dict[tuple[str, str], Decimal] = {}
    for account, period, _, _, exact in rows:
        charges[(account, period)] = charges.get((account, period), ZERO) + exact
    return {k: max(ZERO, v.quantize(D("0.01")) + rounding * D("0.01")) for k, v in charges.items()}


@settings(max_examples=300, deadline=None)
@given(grants(), usage(), st.integers(min_value=-3, max_value=3))
def test_every_block_adds_up_and_applied_stays_within_usage_and_credit(
    all_grants: list[Grant], rows: list[tuple[str, str, datetime, datetime, Decimal]], rounding: int
) -> None:
    charges = statement_charges(rows, rounding)
    segments = cents_segments(rows, charges)
    for key, total in charges.items():
        assert sum((s.amount for s in segments if (s.account_id, s.period) == key), ZERO) == total
    moves = draw(all_grants, segments, [], None)

    by_id = {g.grant_id: g for g in all_grants}
    left: dict[str, Decimal] = {}
    for m in moves:
        target = by_id[m.grant_id].reverses if m.kind == "reversed" else m.grant_id
        assert target is not None
        left[target] = left.get(target, ZERO) + m.signed
        assert m.amount >= 0 and left[target] >= 0, (m, left)

    periods = sorted({m.period for m in moves} | {p for _, p in charges})
    previous_closing = ZERO
    for period in periods:
        block = summarize(moves, "acct", period)
        assert block.opening == previous_closing
        assert block.opening + block.granted - block.applied - block.expired == block.closing
        assert block.closing >= 0
        assert block.applied <= charges.get(("acct", period), ZERO)
        assert block.applied <= block.opening + sum(
            (m.amount for m in moves if m.period == period and m.kind == "granted"), ZERO
        )
        previous_closing = block.closing


@settings(max_examples=200, deadline=None)
@given(grants(), usage())
def test_finalizing_a_period_and_drawing_on_from_its_ledger_changes_no_later_movement(
    all_grants: list[Grant], rows: list[tuple[str, str, datetime, datetime, Decimal]]
) -> None:
    """What month-end does: November's movements are stored, December on is drawn from them."""
    charges = statement_charges(rows)
    segments = cents_segments(rows, charges)
    at_once = draw(all_grants, segments, [], None)
    issued = [m for m in at_once if m.period == "2026-11"]
    later = draw(all_grants, [s for s in segments if s.period > "2026-11"], issued, "2026-12")
    assert later == [m for m in at_once if m.period > "2026-11"]


_NOV1 = datetime(2026, 11, 1, tzinfo=UTC)


@settings(max_examples=300, deadline=None)
@given(grants(), usage(), st.integers(min_value=0, max_value=100))
# found by this property: g2 is used up by 03:00 and reversed then (taking nothing, so no
# movement is stored); the reversal, applied again at December's start, took back the 0.01
# restored to g2
@example(
    [Grant(f"g{i}", "acct", D("0.01"), _NOV1, None, "purchased") for i in range(3)]
    + [Grant("r2", "acct", D("0.01"), _NOV1 + timedelta(hours=3), None, "purchased", reverses="g2")]
    + [Grant("g3", "acct", D("0.01"), _NOV1, None, "purchased")],
    [
        ("acct", "2026-11", _NOV1 + timedelta(hours=h), _NOV1 + timedelta(hours=h + 1), D(amount))
        for h, amount in ((0, "0.00001"), (1, "0.00001"), (2, "0.02498"), (3, "0.00001"))
    ],
    34,
)
def test_credit_restored_for_an_issued_period_goes_back_to_the_grants_that_paid_it(
    all_grants: list[Grant], rows: list[tuple[str, str, datetime, datetime, Decimal]], percent: int
) -> None:
    charges = statement_charges(rows)
    segments = cents_segments(rows, charges)
    issued = [m for m in draw(all_grants, segments, [], None) if m.period == "2026-11"]
    paid: dict[str, Decimal] = {}
    for m in issued:
        if m.kind == "applied":
            paid[m.grant_id] = paid.get(m.grant_id, ZERO) + m.amount
    restore = (sum(paid.values(), ZERO) * percent / 100).quantize(D("0.01"), rounding="ROUND_DOWN")
    open_segments = [s for s in segments if s.period > "2026-11"]
    without = draw(all_grants, open_segments, issued, "2026-12")
    later = draw(all_grants, open_segments, issued, "2026-12", {("acct", "2026-11"): restore})
    december = datetime(2026, 12, 1, tzinfo=UTC)

    restored = [m for m in later if m.kind == "restored"]
    assert sum((m.amount for m in restored), ZERO) == restore
    assert all((m.period, m.at, m.origin) == ("2026-12", december, "2026-11") for m in restored)
    for m in restored:
        assert 0 < m.amount <= paid[m.grant_id]
    by_id = {g.grant_id: g for g in all_grants}
    left: dict[str, Decimal] = {}
    moves = issued + later
    for m in moves:
        target = by_id[m.grant_id].reverses if m.kind == "reversed" else m.grant_id
        assert target is not None
        left[target] = left.get(target, ZERO) + m.signed
        assert m.amount >= 0 and left[target] >= 0, (m, left)
    previous_closing = ZERO
    for period in sorted({m.period for m in moves} | {"2026-11", "2026-12"}):
        block = summarize(moves, "acct", period)
        assert block.opening == previous_closing
        assert block.opening + block.granted + block.restored - block.applied - block.expired == block.closing
        assert block.closing >= 0
        previous_closing = block.closing
    # from December's start the account has the restored credit more, but for what went back to
    # grants that had expired by then (restored and expired again at once)
    lost = sum((m.amount for m in restored if (e := by_id[m.grant_id].expires_at) is not None and e <= december), ZERO)
    assert balance_at(moves, "acct", december) == balance_at(issued + without, "acct", december) + restore - lost


def day_segments(
    attempts: list[tuple[datetime, Decimal]], cuts: set[datetime]
) -> list[tuple[str, str, datetime, datetime, Decimal]]:
    """Step 1 (credit_usage.sql) done simply: each attempt's UTC day, cut at ``cuts``."""
    sums: dict[tuple[str, datetime, datetime], Decimal] = {}
    for ts, exact in attempts:
        day = ts.replace(hour=0, minute=0)
        start = max([day, *(c for c in cuts if c <= ts)])
        end = min([day + timedelta(days=1), *(c for c in cuts if c > ts)])
        key = (period_of(ts), start, end)
        sums[key] = sums.get(key, ZERO) + exact
    return [("acct", p, s, e, x) for (p, s, e), x in sorted(sums.items())]


@st.composite
def november_attempts(draw_: st.DrawFn) -> list[tuple[datetime, Decimal]]:
    """A few busy days of November: several attempts a day, at any minute."""
    days = draw_(st.lists(st.integers(min_value=0, max_value=29), min_size=1, max_size=4))
    in_day = st.integers(min_value=0, max_value=24 * 60 - 1)
    minutes = sorted({d * 24 * 60 + m for d in days for m in draw_(st.lists(in_day, min_size=1, max_size=6))})
    return [(START + timedelta(minutes=m), D(draw_(st.integers(0, 300_000))) * D("0.00001")) for m in minutes]


# found by CI on 2026-12-04: a reversal at the very end of the segment that contains T took the
# credit before that segment (used before the reversal) could draw it; usage now draws first
@example(
    [
        Grant("g0", "acct", D("0.01"), datetime(2026, 11, 15, 5, tzinfo=UTC), None, "purchased"),
        Grant("r0", "acct", D("0.01"), datetime(2026, 11, 26, 1, tzinfo=UTC), None, "purchased", reverses="g0"),
    ],
    [(datetime(2026, 11, 26, tzinfo=UTC), D("0.00000"))],
    0,
    1,
    1,
)
@settings(max_examples=300, deadline=None)
@given(grants(), november_attempts(), st.integers(min_value=0), st.integers(-12 * 60, 12 * 60), st.integers(-3, 3))
def test_a_balance_cut_inside_an_issued_segment_is_what_the_open_month_cut_there_draws(
    all_grants: list[Grant], attempts: list[tuple[datetime, Decimal]], which: int, offset: int, rounding: int
) -> None:
    """``balances --as-of T`` for T inside a finalized November (its stored movements, the
    segment that contains T cut by :func:`drawn_by`) equals the balance the still-open month
    gives with its segments cut at T; and it is never negative."""
    at = attempts[which % len(attempts)][0] + timedelta(minutes=offset)  # near usage: often inside a segment
    cuts = {g.granted_at for g in all_grants} | {g.expires_at for g in all_grants if g.expires_at is not None}
    total = sum((x for _, x in attempts), ZERO)
    charges = {("acct", "2026-11"): max(ZERO, total.quantize(D("0.01")) + rounding * D("0.01"))} if attempts else {}
    issued = draw(all_grants, cents_segments(day_segments(attempts, cuts), charges), [], None)
    open_cut = draw(all_grants, cents_segments(day_segments(attempts, cuts | {at}), charges), [], None)
    inside: dict[tuple[str, str, datetime], tuple[Decimal | None, Decimal | None]] = {}
    for account, period, start, end in straddling_segments(issued, at):
        before = [x for ts, x in attempts if start <= ts < at]
        after = [x for ts, x in attempts if at <= ts < end]
        inside[(account, period, start)] = (sum(before, ZERO) if before else None, sum(after, ZERO) if after else None)
    exact = balance_at(issued, "acct", at, inside)
    assert exact == balance_at(open_cut, "acct", at)
    assert exact >= 0
