"""The money rules of a statement that its layout version decides, as the core applies them.

An issued statement never changes, and replay re-issues it with the rules it was issued by
(``statements.layout_version``): so a correction to how adjustments are priced, or when
prepaid credit pays them, starts at a new layout (``reports.statement_model``) and older
statements keep theirs. ``core`` does not import ``reports``: the layout maps to these flags
there (``reports.statement_model.due_rules``), and the SQL and the credit drawdown read them here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DueRules"]


@dataclass(frozen=True)
class DueRules:
    """How a statement prices its prior-period adjustments and draws prepaid credit for them.

    ``adjustments_by_tokens`` (layout 4 on): an adjustment line is its own tokens x unit price,
    rounded half-up, instead of the period's rounded line now less the cents issued.
    ``adjustments_net_of_credit_notes`` (layout 5 on): a negative adjustment never gives back
    more than the customer paid for the line, i.e. what was issued for it less what credit
    notes already credited (a credited line is not refunded a second time).
    ``idle_period_draws_at_end`` (layout 5 on): a period without usage of its own draws prepaid
    credit for its adjustments at its end (a grant made during the period pays them), not at
    its start.
    ``lines_by_unit_price`` (layout 6 on): a statement line is one (model, token class, unit
    price), summed over the price versions that priced its tokens at that price and rounded
    once (SPEC R7: lines are summed at full precision, then rounded), instead of one line per
    price version, each rounded on its own (up to a cent apart per pair from the merged line
    when a price version starts inside the period).
    ``restores_prepaid_credit`` (layout 7 on): of a negative adjustment, the part the customer
    paid in money for the adjusted period is refunded in money (money first), and the part
    prepaid credit paid is restored to the grants that paid it (a 'restored' credit movement),
    not netted from the money due nor taxed (before: all of it reduced the money due).
    ``period_money_given_back`` (layout 10 on): the money a negative adjustment of period P
    refunds is at most P's statement's part (the lower of its net less its credit notes' nets
    and what it asked for its usage lines less what notes gave back of them) plus what later
    statements asked for positive adjustments of P less what credit notes gave back of those
    (a note's net goes to the lines it credited, each up to the money it asked, then to its
    statement's other lines), less the money refunded since. Before, only notes against P's
    statement were subtracted, so a note on a later statement's ask of P was refunded again.
    And the prepaid credit it restores is at most what P's statement drew plus what later
    statements drew for asks of P that no credit note credited (before: P's draw only, and
    the rest of the refund was money the customer had never paid).
    ``skipped_months_closed`` (layout 11 on): a month after the last issued period in which no
    account with prepaid credit was billed gets no statement of its own, so the next statement
    closes it: its credit block covers the credit movements dated in it (grants, reversals,
    expiries, at their own instants), which are stored with it; prior-period adjustments are
    drawn and restored by the statement of the first open month with such usage, or the
    statement's own when there is none before it, and never by a month issued after a later
    one; and a grant issued periods touched whose granting was not stored (ledgers before
    layout 11) counts from its own time. Before, those movements were never stored (the next
    statement's opening balance lacked the grant, and went negative), and a statement after
    such a month refunded in money what prepaid credit had paid.
    ``note_money_moves_credit`` (layout 12 on): a credit note gives back its statement's money
    first, so when the lines it credits were paid in part with prepaid credit it gives back more
    money than they asked, and ``line_money`` attributes the rest to the statement's other lines
    in printed order: usage lines of its own period, then positive adjustments of earlier periods
    (asks). An ask whose money was given back that way, but which no note credited, is now paid
    with the statement's prepaid credit: that credit counts as the ask's period's (credit left to
    restore when the period is refunded, to the grants the statement drew), no longer as the
    noted statement's. Before, it stayed the noted period's, whose credited line is never refunded
    again, and a refund of the ask's period gave that part back in money.
    ``netted_refunds_paid`` (layout 12 on): the money a period P's statement asked for its usage
    lines counts in full as P's money (less what notes gave back of it) when that statement is
    of layout 10 on, even if its net is lower: a negative adjustment of an earlier period netted
    on it was a genuine refund (from layout 10 no refund exceeds the refunded period's money).
    Before, P's money was the lower of the two, so a later refund of P gave back in money that
    much less than P's usage had asked (the rest restored as credit P never drew, or lost).
    ``refunded_not_credited`` (layout 12 on): a negative adjustment gives back at most what was
    issued for the line less what credit notes credited of it, where a rule-2 note's part that a
    later statement had already refunded (``credit_note_lines.refunded_usd``, counted in the
    issued amount as that refund) is not counted again as credited. Before, once tokens came
    back and were billed again, their refund came out short by that part (a history paid 0.75
    for no tokens).
    ``printed_refunded_not_credited`` (layout 13 on): that part is all the note printed as
    already refunded (``credit_note_lines.printed_refunded_usd``), not only what it still holds
    back (``refunded_usd``: from credit note rule 3, refunded tokens that did not come back since,
    e.g. through an ask a note credited). Before, once such tokens came back and went again,
    the refund fell short by the rest of the printed part (1.50 + 0.29 VAT kept with us in
    docs/credits.md "A credited ask, then a note, then tokens back and gone").
    ``line_money_net_of_refunds`` (layout 13 on): of a line a note credited, the money the note
    can have given back is its money less the part it printed as already refunded by later
    statements (``line_money``), so the rest of the note's net goes to the statement's other
    lines, an ask of an earlier period among them, and the prepaid credit moves with it. Before,
    the note's net stayed on its line, so when a refund of the line's period had come first the
    credit never moved to the ask, and a refund of the ask's period gave it back in money.
    ``note_money_as_issued`` (layout 14 on): what a credit note of rule 7 on gave back of each
    line is the attribution it stored when issued (``credit_note_money``: its lines, then the
    statement's other lines in printed order, each at most what was left of its period's money);
    notes of rules 1-6 are attributed among themselves as before. Before, ``line_money`` gave a
    note's money beyond its lines to the other lines in printed order whatever was left of their
    periods' money, so an ask whose period was already given back took it with the prepaid credit
    (layout 12), which a refund of the period that had paid it then gave back in money.
    """

    adjustments_by_tokens: bool = True
    adjustments_net_of_credit_notes: bool = True
    idle_period_draws_at_end: bool = True
    lines_by_unit_price: bool = True
    restores_prepaid_credit: bool = True
    period_money_given_back: bool = True
    skipped_months_closed: bool = True
    note_money_moves_credit: bool = True
    netted_refunds_paid: bool = True
    refunded_not_credited: bool = True
    printed_refunded_not_credited: bool = True
    line_money_net_of_refunds: bool = True
    note_money_as_issued: bool = True

    def sql_parameters(self, period: str) -> dict[str, object]:
        """The parameters of pipeline/sql/statement_lines_due.sql for a statement of ``period``."""
        return {
            "period": period,
            "by_tokens": self.adjustments_by_tokens,
            "net_of_credit_notes": self.adjustments_net_of_credit_notes,
            "by_unit_price": self.lines_by_unit_price,
            "restore_credit": self.restores_prepaid_credit,
            "period_money": self.period_money_given_back,
            "skipped_months": self.skipped_months_closed,
            "moved_credit": self.note_money_moves_credit,
            "netted_refunds": self.netted_refunds_paid,
            "refunded_not_credited": self.refunded_not_credited,
            "printed_refunded": self.printed_refunded_not_credited,
            "line_money_net": self.line_money_net_of_refunds,
            "note_money_as_issued": self.note_money_as_issued,
        }
