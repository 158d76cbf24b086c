"""The daily-usage bar chart of a statement, drawn as inline SVG straight from the data.

One bar per UTC day of the period (days without usage keep their slot and label), a y axis of
round dollar gridlines, dark grey bars on white: readable when printed in black and white.
The SVG carries no user-supplied text, only dates and amounts formatted here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from html import escape

from core.money import CENT, ZERO, Decimal

from .formatting import long_date, money
from .statement_model import DailyUsage

__all__ = ["axis_scale", "daily_usage_svg"]

WIDTH, HEIGHT = 680, 180
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 12, 28
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
BAR_SHARE = 0.62  # allow-float: drawing only, not money
FONT_SIZE = 9
#: DejaVu Sans's digit advance (1303/2048 em; its digits are all this wide), at FONT_SIZE
DIGIT_ADVANCE = 1303 / 2048 * FONT_SIZE  # allow-float: drawing only, not money
_STEP_MULTIPLES = (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10))


def axis_scale(peak: Decimal) -> tuple[Decimal, int]:
    """A round gridline step and how many steps reach the peak: $0-$100 is (25, 4).

    Aims at about four gridlines; the step is never below one cent. An empty chart gets
    $0.00 to $1.00 so the axis still reads as money.
    """
    if peak <= 0:
        return Decimal("0.25"), 4
    wanted = peak * Decimal("0.25")
    magnitude = Decimal(1).scaleb(wanted.adjusted())
    step = next(magnitude * m for m in _STEP_MULTIPLES if magnitude * m >= wanted)
    step = max(step, CENT)
    count = 1
    while step * count < peak:
        count += 1
    return step, count


def _days(start: date, end_exclusive: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end_exclusive - start).days)]


def _y(amount: Decimal, top: Decimal) -> float:  # allow-float: drawing only, not money
    return TOP + PLOT_H - float(amount / top) * PLOT_H  # allow-float: drawing only, not money


def _day_labels(centres: list[tuple[float, int]], y: int) -> str:  # allow-float: drawing only
    """The days' numbers as one ``<text>`` whose every digit has its own x (SVG's x list),
    each number centred on its slot as ``text-anchor="middle"`` centres it: WeasyPrint lays out
    one text instead of one per day (statement layout 9, issue 14: the 31 texts were ~5% of a
    statement's work). The digits are DejaVu Sans's, all DIGIT_ADVANCE wide."""
    xs: list[str] = []
    digits = ""
    for centre, day in centres:
        number = str(day)
        left = centre - len(number) * DIGIT_ADVANCE / 2
        xs.extend(f"{left + i * DIGIT_ADVANCE:.1f}" for i in range(len(number)))
        digits += number
    return f'<text x="{" ".join(xs)}" y="{y}" fill="#333">{digits}</text>'


def daily_usage_svg(
    start: date, end_exclusive: date, usage: Iterable[DailyUsage], *, day_labels_as_one_text: bool = False
) -> str:
    """The chart for the half-open period [start, end_exclusive) as a standalone SVG element.

    ``day_labels_as_one_text`` (statement layout 9 on): the days' numbers as one text
    (:func:`_day_labels`), drawn at the same places; before, one text per day."""
    by_day = {u.day: u for u in usage}
    days = _days(start, end_exclusive)
    peak = max((u.amount for u in by_day.values()), default=ZERO)
    step, count = axis_scale(peak)
    top = step * count
    slot = PLOT_W / max(len(days), 1)  # allow-float: drawing only, not money
    bar_w = slot * BAR_SHARE  # allow-float: drawing only, not money
    baseline = TOP + PLOT_H

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'font-family="DejaVu Sans, sans-serif" font-size="{FONT_SIZE}">',
        f"<title>Billed usage per day, {escape(long_date(start))} to "
        f"{escape(long_date(days[-1] if days else start))}</title>",
    ]
    for i in range(count + 1):
        y = _y(step * i, top)
        stroke = "#000" if i == 0 else "#c8c8c8"
        out.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
            f'stroke="{stroke}" stroke-width="{1 if i == 0 else 0.6}"/>'
        )
        out.append(
            f'<text x="{LEFT - 6}" y="{y + 3:.1f}" text-anchor="end" fill="#333">{escape(money(step * i))}</text>'
        )
    for i, day in enumerate(days):
        day_usage = by_day.get(day, DailyUsage(day, ZERO, 0))
        amount = day_usage.amount
        x = LEFT + slot * i + (slot - bar_w) / 2
        height = baseline - _y(amount, top)
        if amount > 0:
            height = max(height, 1.0)  # a tiny but non-zero day stays visible
        out.append(
            f'<rect class="bar" x="{x:.1f}" y="{baseline - height:.1f}" width="{bar_w:.1f}" '
            f'height="{height:.1f}" fill="#404040">'
            f"<title>{escape(long_date(day))}: {escape(money(amount))}, "
            f"{day_usage.requests:,} requests</title></rect>"
        )
        if not day_labels_as_one_text:
            out.append(
                f'<text x="{LEFT + slot * i + slot / 2:.1f}" y="{baseline + 13}" '
                f'text-anchor="middle" fill="#333">{day.day}</text>'
            )
    if day_labels_as_one_text and days:
        out.append(_day_labels([(LEFT + slot * i + slot / 2, day.day) for i, day in enumerate(days)], baseline + 13))
    if peak <= 0:
        out.append(
            f'<text x="{LEFT + PLOT_W / 2:.1f}" y="{TOP + PLOT_H * 0.4:.1f}" '
            f'text-anchor="middle" font-size="11" fill="#333">No billed usage in this period</text>'
        )
    out.append("</svg>")
    return "\n".join(out)
