"""Prepaid credit drawdown, step 2 of 2: who pays each cent of usage (issue 17).

Step 1 (``sql/credit_usage.sql``) lists each account's usage segments (a UTC day, cut at
grant instants) with their exact charges. This module applies the rule, in time order:

* **Cents (R7).** A period's segments are rounded to cents cumulatively (segment *i* draws
  round(running total to *i*) - round(running total to *i-1*)), and the difference between
  that and the statement's charges (its rounded lines, plus the prior-period adjustments on
  the first open statement) is drawn with the period's last segment (a negative difference
  is taken back from the last segments). So a period draws exactly what its statement
  charges, never a cent more, and every balance is in cents.
* **Which grant.** A segment ``[start, end)`` may draw from a grant in force over all of it
  (granted at or before ``start``, expiring at or after ``end``, not used up), expiring
  soonest first (never-expiring last), then the oldest, then promotional and goodwill before
  purchased (the customer's own money is kept longest), then by grant id.
* **Beyond the balance** the segment's rest is not covered: it stays due on the statement.
* **Expiry.** At ``expires_at`` what is left of a grant is recorded as expired.
* **Reversal.** At its ``granted_at`` a reversal takes back up to its amount of what is
  left of the grant it reverses (credit already used stays used); it counts as negative
  "granted" on the statement.
* **Restoration** (statement layout 7 on). The part of a negative prior-period adjustment that
  prepaid credit had paid (``sql/statement_lines_due.sql``: money first, then credit) goes back
  at the start of the period of the statement that carries it (the first open one; from
  layout 11 past months without statements) to the grants that paid the adjusted period, latest
  expiring first (never-expiring first, then the newest, purchased before promotional and
  goodwill: the reverse of the drawing order), each at most what it paid for that period less
  what was restored to it for that period before; from layout 10, what is beyond that (credit
  later statements applied to positive adjustments of the period, ``later_payers``) goes to
  the grants that paid those later statements, in the same order, each at most what it paid
  there (every period's own grants first, and no grant more than it applied in all less what
  was restored to it before). A grant whose expiry is already recorded
  gets its part back and loses it again at once (a 'restored' and an 'expired' movement at the
  same instant: had the usage never been billed, that credit would have expired unused).

Events are ordered by (billing period, instant, grants, usage, reversals, restorations,
expiries): a
segment ``[start, end)`` was used before ``end``, so it draws before a reversal or an expiry
at ``end`` takes what is left (and a segment ending exactly when a grant expires still draws
from it). Cutting a segment at any instant therefore never changes who pays it. Finalized periods are never
recomputed: their movements (``credit_ledger``) are the starting state, and a grant added to
the file later with a ``granted_at`` inside an issued period takes effect at the start of the
first open period (from layout 11, unless an issued period drew from it: a ledger of an
earlier layout did not store grants dated in months without statements). Periods must be
finalized in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from core.money import ZERO, Decimal, to_cents
from core.period import Period

KIND_ORDER = {"promotional": 0, "goodwill": 1, "purchased": 2}
FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)


@dataclass(frozen=True)
class Grant:
    grant_id: str
    account_id: str
    amount: Decimal
    granted_at: datetime
    expires_at: datetime | None
    kind: str
    reverses: str | None = None

    def priority(self) -> tuple[object, ...]:
        return (self.expires_at or FAR_FUTURE, self.granted_at, KIND_ORDER.get(self.kind, 9), self.grant_id)


@dataclass(frozen=True)
class Segment:
    """Usage of one account drawn at once: ``[start, end)`` of ``period``, in cents.

    ``before``: the exact usage of the account's period before ``start`` (the base of the
    cumulative rounding, kept so a balance can be cut exactly inside the segment later)."""

    account_id: str
    period: str
    start: datetime
    end: datetime
    amount: Decimal
    before: Decimal = ZERO
    #: draws, beyond ``amount``, what the period's earlier segments could not (a period without
    #: usage: its adjustments are drawn at its start, and what no grant then paid at its end)
    carry: bool = False


@dataclass(frozen=True)
class Movement:
    """One credit movement: granted, reversed, applied or expired (amount positive, cents).

    An applied movement also says which segment it drew for: ``[start, at)``, with the
    period's exact usage ``before`` it (None: stored before migration 019)."""

    account_id: str
    period: str
    grant_id: str
    kind: str
    at: datetime
    amount: Decimal
    start: datetime | None = None
    before: Decimal | None = None
    #: a restored movement: the issued period whose usage it gives back (credit_ledger.restored_for)
    origin: str | None = None

    @property
    def signed(self) -> Decimal:
        return self.amount if self.kind in ("granted", "restored") else -self.amount


def period_of(at: datetime) -> str:
    return str(Period.of(at))


def period_start(period: str) -> datetime:
    return Period.parse(period).start


def cents_segments(
    rows: Iterable[tuple[str, str, datetime, datetime, Decimal]],
    charges: dict[tuple[str, str], Decimal],
    *,
    idle_at_end: bool = True,
) -> list[Segment]:
    """Round each (account, period)'s exact segments to cents adding up to its charges.

    A period with charges but no usage (only prior-period adjustments) draws them in an empty
    segment at its start, from the grants in force then; with ``idle_at_end`` (statement
    layout 5 on) what those did not pay is drawn at the period's end (a ``carry`` segment), so
    a grant made during the month pays it as it would pay the month's usage, and a grant
    expiring during the month still pays first. Before, a late record's adjustment stayed
    unpaid beside a grant of the 15th."""
    by_key: dict[tuple[str, str], list[tuple[datetime, datetime, Decimal]]] = {}
    for account, period, start, end, exact in rows:
        by_key.setdefault((account, period), []).append((start, end, exact))
    for key in charges:
        by_key.setdefault(key, [])
    result: list[Segment] = []
    for (account, period), segs in sorted(by_key.items()):
        segs.sort()
        amounts, befores, running, drawn = [], [], ZERO, ZERO
        for _, _, exact in segs:
            befores.append(running)
            running += exact
            amounts.append(to_cents(running) - drawn)
            drawn = to_cents(running)
        idle = not segs
        if idle:
            begin = period_start(period)
            segs, amounts, befores = [(begin, begin, ZERO)], [ZERO], [ZERO]
        difference = charges.get((account, period), drawn) - drawn
        if difference >= 0:
            amounts[-1] += difference
        else:
            for i in reversed(range(len(amounts))):
                taken = min(amounts[i], -difference)
                amounts[i] -= taken
                difference += taken
        result.extend(
            Segment(account, period, start, end, amount, before)
            for (start, end, _), amount, before in zip(segs, amounts, befores, strict=True)
            if amount > 0
        )
        if idle and idle_at_end and amounts[0] > 0:
            end = Period.parse(period).end
            result.append(Segment(account, period, end, end, ZERO, ZERO, carry=True))
    return result


def draw(
    grants: Sequence[Grant],
    segments: Sequence[Segment],
    issued: Sequence[Movement],
    first_open: str | None,
    restorations: Mapping[tuple[str, str], Decimal] | None = None,
    later_payers: Mapping[tuple[str, str], Sequence[str]] | None = None,
    restore_in: str | None = None,
    granted_when_drawn: bool = False,
) -> list[Movement]:
    """The movements of the open periods, starting from the ``issued`` ones (see module doc).

    ``restorations``: (account, adjusted period) -> the prepaid credit the first open
    statement restores for it (layout 7 on; see "Restoration" above), at the start of
    ``restore_in`` (that statement's period; default ``first_open``). ``later_payers``:
    (account, adjusted period) -> the issued periods whose statements asked positive
    adjustments of it (layout 10 on: their grants take what is restored beyond the period's own).
    ``granted_when_drawn`` (layout 11 on): a grant that issued periods drew from, expired,
    restored to or reversed, but whose granting no issued period stored (a ledger written
    before layout 11 kept only the finalized period's own movements, not those of earlier months
    without statements), is granted at its own ``granted_at``, not at the start of the first
    open period: it was there when they did."""
    remaining: dict[str, Decimal] = {}
    done: set[tuple[str, str]] = set()
    by_id = {g.grant_id: g for g in grants}
    # per grant, what it may still get back in all: what it applied in the issued periods less
    # what was restored to it (for any period), so no grant gets back more than it paid
    returnable: dict[str, Decimal] = {}
    for m in issued:
        target = by_id[m.grant_id].reverses if m.grant_id in by_id and m.kind == "reversed" else m.grant_id
        remaining[target or m.grant_id] = remaining.get(target or m.grant_id, ZERO) + m.signed
        done.add((m.grant_id, m.kind))
        if m.kind in ("applied", "restored"):
            returnable[m.grant_id] = returnable.get(m.grant_id, ZERO) + (m.amount if m.kind == "applied" else -m.amount)
    floor = period_start(first_open) if first_open else None
    # grants an issued period drew, expired, restored to or reversed (layout 11: see above)
    drawn_from: set[str] = set()
    for m in issued if granted_when_drawn else ():
        if m.kind != "granted":
            reversal = by_id.get(m.grant_id)
            drawn_from.add(reversal.reverses if reversal is not None and reversal.reverses else m.grant_id)

    def effective(at: datetime) -> datetime:
        return max(at, floor) if floor else at

    events: list[tuple[str, datetime, int, tuple[object, ...], object]] = []
    for g in grants:
        kind = "reversed" if g.reverses else "granted"
        at = g.granted_at if kind == "granted" and g.grant_id in drawn_from else effective(g.granted_at)
        if (g.grant_id, kind) not in done:
            events.append((period_of(at), at, 3 if g.reverses else 0, g.priority(), g))
        if g.expires_at is not None and not g.reverses and (g.grant_id, "expired") not in done:
            expiry = max(effective(g.expires_at), at)
            events.append((period_of(expiry), expiry, 5, g.priority(), ("expire", g)))
    for s in segments:
        events.append((s.period, s.end, 2, (s.start,), s))
    restore_in = restore_in or first_open
    if restorations and restore_in is not None:
        # after the grants and reversals of that instant, before any expiry (no usage of an open
        # period ends at its start). Reversals first: a reversal that took nothing when its
        # issued period was finalized left no movement, so it is applied again at the floor,
        # where it must find the grant as it was, not take back what is restored to it
        per_account: dict[str, list[tuple[str, Decimal]]] = {}
        for (account, origin), amount in sorted(restorations.items()):
            if amount > 0:
                per_account.setdefault(account, []).append((origin, amount))
        for account, due in per_account.items():
            events.append((restore_in, period_start(restore_in), 4, (account,), ("restore", account, due)))
    events.sort(key=lambda e: (e[0], e[1], e[2], e[3]))
    by_account: dict[str, list[Grant]] = {}
    for g in sorted(grants, key=Grant.priority):
        if g.reverses is None:
            by_account.setdefault(g.account_id, []).append(g)
    moves: list[Movement] = []
    undrawn: dict[tuple[str, str], Decimal] = {}  # what an account's period's segments left unpaid
    for period, at, _, _, item in events:
        if isinstance(item, Grant) and item.reverses is None:
            remaining[item.grant_id] = remaining.get(item.grant_id, ZERO) + item.amount
            moves.append(Movement(item.account_id, period, item.grant_id, "granted", at, item.amount))
        elif isinstance(item, Grant):
            taken = min(item.amount, remaining.get(item.reverses or "", ZERO))
            remaining[item.reverses or ""] = remaining.get(item.reverses or "", ZERO) - taken
            moves.append(Movement(item.account_id, period, item.grant_id, "reversed", at, taken))
        elif isinstance(item, Segment):
            key = (item.account_id, item.period)
            need = item.amount + (undrawn.pop(key, ZERO) if item.carry else ZERO)
            drawn = _draw_segment(item, need, by_account.get(item.account_id, []), remaining, floor)
            moves.extend(drawn)
            undrawn[key] = undrawn.get(key, ZERO) + need - sum((m.amount for m in drawn), ZERO)
        elif isinstance(item, tuple) and item[0] == "restore":
            _, account, due = item
            later = {origin: (later_payers or {}).get((account, origin), ()) for origin, _ in due}
            moves.extend(_restore(account, due, at, issued, by_id, done, remaining, returnable, later))
        else:
            g = item[1]  # type: ignore[index]
            left = remaining.get(g.grant_id, ZERO)
            remaining[g.grant_id] = ZERO
            moves.append(Movement(g.account_id, period, g.grant_id, "expired", at, left))
            # a restoration after it (layout 11: on a statement past a month without one, in
            # which the grant expired) gives back credit that expires at once, as for an issued expiry
            done.add((g.grant_id, "expired"))
    return [m for m in moves if m.amount != 0 or m.kind == "granted"]


def _restore(
    account: str,
    due: Sequence[tuple[str, Decimal]],
    at: datetime,
    issued: Sequence[Movement],
    by_id: Mapping[str, Grant],
    done: set[tuple[str, str]],
    remaining: dict[str, Decimal],
    returnable: dict[str, Decimal],
    later: Mapping[str, Sequence[str]],
) -> list[Movement]:
    """Give each ``(origin, amount)`` of ``due`` back in prepaid credit: first, for every origin,
    to the grants that paid it, then what is left to those that paid its ``later`` periods
    (whose statements asked positive adjustments of it) (module doc). No grant gets back more
    than it may still get back in all (``returnable``, updated): a later statement's credit may
    have paid the asks of several periods, and its own usage."""
    own: dict[str, dict[str, Decimal]] = {origin: {} for origin, _ in due}
    beyond: dict[str, dict[str, Decimal]] = {origin: {} for origin, _ in due}
    back: dict[str, dict[str, Decimal]] = {origin: {} for origin, _ in due}
    for m in issued:
        if m.account_id != account:
            continue
        for origin, _ in due:
            if m.kind == "applied" and m.period == origin:
                own[origin][m.grant_id] = own[origin].get(m.grant_id, ZERO) + m.amount
            elif m.kind == "applied" and m.period in later[origin]:
                beyond[origin][m.grant_id] = beyond[origin].get(m.grant_id, ZERO) + m.amount
            elif m.kind == "restored" and m.origin == origin:
                back[origin][m.grant_id] = back[origin].get(m.grant_id, ZERO) + m.amount
    left = dict(due)
    taken: dict[tuple[str, str], Decimal] = {}  # per (origin, grant), in the order restored
    open_parts: dict[tuple[str, str], dict[str, Decimal]] = {}
    for origin, _ in due:  # what was restored before for the period came out of its own part first
        was = back[origin]
        open_parts[(origin, "own")] = {g: max(ZERO, paid - was.get(g, ZERO)) for g, paid in own[origin].items()}
        open_parts[(origin, "beyond")] = {
            g: paid - max(ZERO, was.get(g, ZERO) - own[origin].get(g, ZERO)) for g, paid in beyond[origin].items()
        }
    # every period's own grants before any later payer, each grant within what it may still get
    # back in all; then, only if a period is still short (the greedy order can leave one so when
    # several periods share a later payer), its own and later payers without that bound
    for part_of, bounded in (("own", True), ("beyond", True), ("own", False), ("beyond", False)):
        for origin, _ in due:
            open_part = open_parts[(origin, part_of)]
            for g in sorted((by_id[g] for g in open_part if g in by_id), key=Grant.priority, reverse=True):
                cap = returnable.get(g.grant_id, ZERO) if bounded else left[origin]
                part = min(left[origin], open_part[g.grant_id], cap)
                if part > 0:
                    left[origin] -= part
                    open_part[g.grant_id] -= part
                    taken[(origin, g.grant_id)] = taken.get((origin, g.grant_id), ZERO) + part
                    returnable[g.grant_id] = returnable.get(g.grant_id, ZERO) - part
    moves = []
    for (origin, grant_id), part in taken.items():
        moves.append(Movement(account, period_of(at), grant_id, "restored", at, part, origin=origin))
        if (grant_id, "expired") in done:
            moves.append(Movement(account, period_of(at), grant_id, "expired", at, part))
        else:
            remaining[grant_id] = remaining.get(grant_id, ZERO) + part
    short = [(origin, amount) for origin, amount in left.items() if amount > 0]
    if short:
        origin, amount = short[0]
        raise ValueError(f"{account}: {amount} to restore for {origin} is more than its grants paid for it")
    return moves


def _draw_segment(
    segment: Segment, need: Decimal, ordered: Sequence[Grant], remaining: dict[str, Decimal], floor: datetime | None
) -> list[Movement]:
    """Draw ``need`` for one segment from the account's grants (``ordered`` by priority) in force over it."""
    moves = []
    eligible = [
        g
        for g in ordered
        if (max(g.granted_at, floor) if floor else g.granted_at) <= segment.start
        and (g.expires_at is None or g.expires_at >= segment.end)
        and remaining.get(g.grant_id, ZERO) > 0
    ]
    for g in eligible:
        if need <= 0:
            break
        taken = min(need, remaining[g.grant_id])
        remaining[g.grant_id] -= taken
        need -= taken
        at, start, before = segment.end, segment.start, segment.before
        moves.append(Movement(segment.account_id, segment.period, g.grant_id, "applied", at, taken, start, before))
    return moves


@dataclass(frozen=True)
class PeriodCredit:
    """The credit block of one account and period (all amounts in cents)."""

    opening: Decimal
    granted: Decimal
    applied: Decimal
    expired: Decimal
    restored: Decimal = ZERO  # statement layout 7 on: negative adjustments given back as credit
    #: statement layout 11 on: the first day the block covers when it also covers months before
    #: its period that had no statement (their movements are its own); None: the period's start
    since: date | None = None

    @property
    def closing(self) -> Decimal:
        return self.opening + self.granted + self.restored - self.applied - self.expired


def summarize(movements: Iterable[Movement], account_id: str, period: str) -> PeriodCredit:
    opening = granted = applied = expired = restored = ZERO
    start = period_start(period)
    since = start
    for m in movements:
        if m.account_id != account_id or m.period > period:
            continue
        if m.period < period:
            opening += m.signed
            continue
        if m.at < since:  # a movement of a month without a statement, this block's (layout 11)
            since = m.at.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        if m.kind in ("granted", "reversed"):
            granted += m.signed
        elif m.kind == "applied":
            applied += m.amount
        elif m.kind == "restored":
            restored += m.amount
        else:
            expired += m.amount
    return PeriodCredit(opening, granted, applied, expired, restored, since.date() if since < start else None)


def drawn_by(applied: Decimal, before: Decimal, until: Decimal | None, rest: Decimal | None) -> Decimal:
    """Of the credit ``applied`` to one segment, the cents drawn by an instant inside it.

    ``before``: the period's exact usage before the segment; ``until`` / ``rest``: the
    segment's exact usage before the instant / from it on (None: nothing billed then). The
    part before the instant is rounded like any segment cut there (R7, cumulatively:
    round(before + until) - round(before)) and draws first, in the order the whole segment
    drew: so it is what the open-period computation, which cuts segments at the instant,
    draws. With nothing billed from the instant on, the whole segment is drawn (as a cut
    segment that is the period's last takes the period's rounding difference); with nothing
    billed before it, none.
    """
    if until is None:
        return ZERO
    if rest is None:
        return applied
    return min(applied, max(ZERO, to_cents(before + until) - to_cents(before)))


InstantUsage = Mapping[tuple[str, str, datetime], tuple[Decimal | None, Decimal | None]]


def balance_at(
    movements: Iterable[Movement], account_id: str, at: datetime, inside: InstantUsage | None = None
) -> Decimal:
    """What the account has left at instant ``at``: movements that took effect by then, less
    the part drawn by ``at`` of a segment that contains it (``[start, end)`` with start < at <
    end: only issued periods have one, open ones are cut at ``at``). ``inside`` gives such a
    segment's exact usage before ``at`` and from it on (see :func:`drawn_by`), keyed
    (account, period, start);
    without it (or for movements stored before migration 019) the segment counts at its end.
    """
    left = ZERO
    straddling: dict[tuple[str, str, datetime], tuple[Decimal, Decimal]] = {}
    for m in movements:
        if m.account_id != account_id:
            continue
        if m.at <= at:
            left += m.signed
        elif m.kind == "applied" and m.start is not None and m.before is not None and m.start < at:
            key = (m.account_id, m.period, m.start)
            applied, _ = straddling.get(key, (ZERO, m.before))
            straddling[key] = (applied + m.amount, m.before)
    for key, (applied, before) in straddling.items():
        if inside is not None and key in inside:
            left -= drawn_by(applied, before, *inside[key])
    return left


def straddling_segments(movements: Iterable[Movement], at: datetime) -> set[tuple[str, str, datetime, datetime]]:
    """(account, period, start, end) of the segments with a stored start that contain ``at``."""
    return {
        (m.account_id, m.period, m.start, m.at)
        for m in movements
        if m.kind == "applied" and m.start is not None and m.before is not None and m.start < at < m.at
    }
