import xml.etree.ElementTree as ET
from datetime import date

import pytest

from core.money import D
from reports.chart import axis_scale, daily_usage_svg
from reports.statement_model import DailyUsage

from . import fixtures

SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_one_bar_per_day_including_days_without_usage():
    doc = fixtures.statement()
    root = _parse(daily_usage_svg(doc.period_start, doc.period_end, doc.daily_usage))
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]
    assert len(bars) == 30
    heights = [float(b.get("height", "nan")) for b in bars]
    assert heights[0] == 0  # 1 November: no usage
    assert heights[24] == max(heights)  # 25 November: the peak, $154.39
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert labels[:5] == ["$0.00", "$50.00", "$100.00", "$150.00", "$200.00"]
    assert [str(day) for day in range(1, 31)] == labels[5:35]


@pytest.mark.parametrize("usage", [(), (DailyUsage(date(2027, 2, 3), D("0"), 4),)])
def test_an_empty_or_all_zero_period_is_valid_svg(usage):
    svg = daily_usage_svg(date(2027, 2, 1), date(2027, 3, 1), usage)
    root = _parse(svg)
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]
    assert len(bars) == 28 and all(b.get("height") == "0.0" for b in bars)
    assert "No billed usage in this period" in svg
    assert "nan" not in svg.lower() and "inf" not in svg.lower()


def test_a_tiny_day_is_still_visible():
    usage = (
        DailyUsage(date(2026, 11, 1), D("100"), 1),
        DailyUsage(date(2026, 11, 2), D("0.001"), 1),
    )
    root = _parse(daily_usage_svg(date(2026, 11, 1), date(2026, 12, 1), usage))
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]
    assert float(bars[1].get("height", "0")) >= 1.0


@pytest.mark.parametrize(
    ("peak", "step", "count"),
    [
        ("0", "0.25", 4),
        ("0.003", "0.01", 1),
        ("154.39", "50", 4),
        ("100", "25", 4),
        ("8419.67", "2500", 4),
        ("0.07", "0.02", 4),
    ],
)
def test_axis_scale_uses_round_steps(peak, step, count):
    assert axis_scale(D(peak)) == (D(step), count)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (date(2026, 11, 1), date(2026, 12, 1)),
        (date(2026, 2, 1), date(2026, 3, 1)),
        (date(2026, 11, 1), date(2026, 11, 2)),
    ],
    ids=["30 days", "28 days", "1 day"],
)
def test_day_labels_as_one_text_centre_each_number_where_its_own_text_did(start, end):
    """Statement layout 9 draws the days' numbers as one <text> with an x per digit (one text for
    WeasyPrint to lay out instead of one per day): the same numbers, each centred on its slot as
    text-anchor="middle" centred it, with DejaVu Sans's digits all DIGIT_ADVANCE wide; the rest
    of the chart is the same."""
    from reports.chart import DIGIT_ADVANCE

    usage = [DailyUsage(start, D("3.50"), 7)]
    apart = _parse(daily_usage_svg(start, end, usage))
    together = _parse(daily_usage_svg(start, end, usage, day_labels_as_one_text=True))
    days = [t for t in apart.iter(f"{SVG}text") if t.get("text-anchor") == "middle" and (t.text or "").isdigit()]
    assert len(days) == (end - start).days
    (one,) = [t for t in together.iter(f"{SVG}text") if t.get("text-anchor") is None]
    assert one.text == "".join(t.text or "" for t in days)
    xs = [float(x) for x in one.get("x", "").split()]
    assert len(xs) == len(one.text or "") and one.get("y") == days[0].get("y")
    at = 0
    for label in days:
        digits = len(label.text or "")
        assert abs(xs[at] + digits * DIGIT_ADVANCE / 2 - float(label.get("x", "nan"))) < 0.1, label.text
        at += digits

    def drawn(root: ET.Element, leave_out: list[ET.Element]) -> list[tuple[str, dict[str, str], str | None]]:
        return [(e.tag, dict(e.attrib), e.text) for e in root.iter() if e is not root and e not in leave_out]

    assert drawn(apart, days) == drawn(together, [one])
