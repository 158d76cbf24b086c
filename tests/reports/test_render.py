"""Statement HTML (golden file) and PDF (text, pages, safety, determinism)."""

import collections
import dataclasses
import io
import os
import re
from pathlib import Path

import pytest
from pypdf import PdfReader

from core.money import D
from reports import render as render_module
from reports.credit_model import CreditSummary
from reports.formatting import money
from reports.render import (
    RefusingURLFetcher,
    UnsafeResourceError,
    render_html,
    render_statement,
    write_pdf,
)
from reports.statement_model import LAYOUT_VERSION, Party
from tests.conftest import FULL_DEPTH

from . import fixtures

GOLDEN = Path(__file__).parent / "golden" / "statement.html"


def _pdf_pages(path: Path) -> list[str]:
    return [page.extract_text() for page in PdfReader(path).pages]


@pytest.fixture(scope="module")
def statement_pdf(tmp_path_factory):
    path = tmp_path_factory.mktemp("pdf") / "statement.pdf"
    html = render_statement(fixtures.statement(), path)
    return html, path


@pytest.mark.parametrize(
    ("layout", "golden"),
    [
        (1, GOLDEN),
        (2, GOLDEN.with_name("statement-layout-2.html")),
        (3, GOLDEN.with_name("statement-layout-3.html")),
        (4, GOLDEN.with_name("statement-layout-4.html")),  # printed as 3; adjustments by their tokens
        (5, GOLDEN.with_name("statement-layout-5.html")),  # printed as 4; adjustments net of credit notes
        (6, GOLDEN.with_name("statement-layout-6.html")),  # printed as 5; lines merged across versions
        (7, GOLDEN.with_name("statement-layout-7.html")),  # printed as 6; credit restored by adjustments
        (8, GOLDEN.with_name("statement-layout-8.html")),  # printed as 7; adjustments' requests in the detail CSV
        (9, GOLDEN.with_name("statement-layout-9.html")),  # 8's content, laid out with less work (statement-9.css)
        (10, GOLDEN.with_name("statement-layout-10.html")),  # printed as 9; refunds net of later notes
        # layouts that change money rules only print this statement as 10 does: one file (a
        # layout that prints it otherwise gets its own, so the earlier ones keep theirs)
        (11, GOLDEN.with_name("statement-layout-10.html")),  # months without statements closed
        (12, GOLDEN.with_name("statement-layout-10.html")),  # a note's money moves credit to asks
        (13, GOLDEN.with_name("statement-layout-10.html")),  # refunds net of all a note printed
        (14, GOLDEN.with_name("statement-layout-10.html")),  # notes' money as they attributed it
        (15, GOLDEN.with_name("statement-layout-15.html")),  # 14's content; charges, not billed as text rows
    ],
    ids=[f"layout-{n}" for n in range(1, 16)],
)
def test_html_matches_golden_file(layout: int, golden: Path):
    """Regenerate the current layout's file after an intended change: UPDATE_GOLDEN=1 pytest
    tests/reports. Never the file of an earlier layout: statements issued with it are re-rendered
    by replay and must give their stored bytes (statement.html is layout 1, as first issued). A
    new layout that prints otherwise first gets a file of its own (layouts share one only while
    they print this statement alike): regenerating a shared file fails the earlier layouts."""
    html = render_html(dataclasses.replace(fixtures.statement(), layout_version=layout))
    if os.environ.get("UPDATE_GOLDEN") == "1" and layout == LAYOUT_VERSION:
        golden.write_bytes(html.encode("utf-8"))
    assert html == golden.read_bytes().decode("utf-8")


def test_layout_2_numbers_every_line_as_the_lines_csv_does():
    """Usage lines 1..U in order, the zero-amount ones named in their row, adjustments after
    (U+1, ...): the row numbers of the lines CSV, which credit notes name. Layouts 2-14 print
    them in a cell, layout 15 at the start of each usage line's text row (reports/text_tables.py)."""
    from reports.render import _zero_tokens_summed, printed_lines
    from reports.text_tables import charges_rows

    doc = dataclasses.replace(fixtures.statement(), layout_version=14)
    html = render_html(doc)
    numbers = [int(n) for n in re.findall(r'<td class="num col-no">([0-9]+)</td>', html)]
    lines = printed_lines(doc)
    rows = charges_rows(doc, lines, _zero_tokens_summed(doc, lines.zero))
    text_numbers = [int(row.text.split()[0]) for row in rows if row.kind in ("line", "group")]
    fifteen = render_html(dataclasses.replace(doc, layout_version=15))
    numbers15 = text_numbers + [int(n) for n in re.findall(r'<td class="num col-no">([0-9]+)</td>', fifteen)]
    usage_count = len(doc.lines)
    shown = [n for n, line in enumerate(doc.lines, 1) if line.amount != 0]
    zero = [n for n, line in enumerate(doc.lines, 1) if line.amount == 0]
    adjustments = list(range(usage_count + 1, usage_count + len(doc.adjustments) + 1))
    assert numbers == numbers15 == shown + adjustments and adjustments
    if zero:
        assert f"under half a cent (line{'s' if len(zero) > 1 else ''} {', '.join(map(str, zero))})" in html
    assert "col-no" not in render_html(dataclasses.replace(doc, layout_version=1))


def _words(pdf: bytes) -> collections.Counter[str]:
    """Every word of a PDF's text but the running page footer's "Page X of Y" (a word broken
    after its hyphen at the end of a line is one word)."""
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    return collections.Counter(re.sub(r"-\n", "-", re.sub(r"Page [0-9]+ of [0-9]+", "", text)).split())


@pytest.mark.parametrize(
    "make", [fixtures.statement, fixtures.draft, fixtures.empty_period], ids=["issued", "draft", "empty"]
)
def test_layout_9_prints_every_word_layout_8_printed(make):
    """Issue 14 item 4: layout 9 changes how the statement is laid out, not what it says. Every
    word and number of layout 8's PDF text is in layout 9's, as often; layout 9 adds only the
    sentence on the adjustments' requests (where adjustments are shown), the same pages, and
    "Page X of Y" on each."""
    from reports import pdf

    doc = make()
    eight = pdf.pdf_bytes(render_html(dataclasses.replace(doc, layout_version=8)))
    nine = pdf.pdf_bytes(render_html(dataclasses.replace(doc, layout_version=9)))
    assert not _words(eight) - _words(nine)
    added = " ".join((_words(nine) - _words(eight)).elements())
    sentence = "The detail CSV lists the requests behind each adjustment"
    if doc.adjustments:
        assert set(added.split()) == set(
            (sentence + " (its rows of kind \u201cadjustment\u201d: removed, added, billed_before).").split()
        )
    else:
        assert not added and sentence not in render_html(dataclasses.replace(doc, layout_version=9))
    pages8, pages9 = PdfReader(io.BytesIO(eight)).pages, PdfReader(io.BytesIO(nine)).pages
    assert len(pages9) <= len(pages8)
    assert all(f"Page {n} of {len(pages9)}" in page.extract_text() for n, page in enumerate(pages9, 1))


@pytest.mark.parametrize(
    "make",
    [fixtures.statement, fixtures.draft, fixtures.empty_period, lambda: fixtures.long_statement(60)],
    ids=["issued", "draft", "empty", "long"],
)
def test_layout_15_prints_every_word_layout_14_printed(make):
    """Issue 14 item 4: layout 15 prints the usage charges and the attempts not billed as one
    fixed-width text a row (reports/text_tables.py) instead of a cell per column, and the billing
    notes as one fixed-width text of two columns instead of two lists. Every word and
    number of layout 14's PDF text is in layout 15's, as often (the charges' header on every
    page of a long statement included), and nothing else; no more pages; "Page X of Y" on each."""
    from reports import pdf

    doc = make()
    fourteen = pdf.pdf_bytes(render_html(dataclasses.replace(doc, layout_version=14)))
    fifteen = pdf.pdf_bytes(render_html(dataclasses.replace(doc, layout_version=15)))
    assert _words(fourteen) == _words(fifteen)
    pages14, pages15 = PdfReader(io.BytesIO(fourteen)).pages, PdfReader(io.BytesIO(fifteen)).pages
    assert len(pages15) <= len(pages14)
    assert all(f"Page {n} of {len(pages15)}" in page.extract_text() for n, page in enumerate(pages15, 1))


def test_layout_15_text_rows_keep_their_columns():
    """Every row of layout 15's charges is a fixed-width text whose columns line up with the
    header's: the amounts end in the same column, and no line is wider than a row holds."""
    from reports.render import _zero_tokens_summed, notes_halves, printed_lines
    from reports.text_tables import NOTES_COLUMN, NOTES_GAP, WIDTH, charges_rows, not_billed_rows, notes_text

    for doc in (fixtures.statement(), fixtures.draft(), fixtures.long_statement(60)):
        lines = printed_lines(doc)
        rows = charges_rows(doc, lines, _zero_tokens_summed(doc, lines.zero))
        assert rows[0].kind == "head" and rows[-1].kind == "subtotal"
        end = len(rows[0].text.split("\n")[1])
        assert all(len(row.text.split("\n")[0]) == end for row in rows[1:])
        assert all(len(line) <= WIDTH for row in rows for line in row.text.split("\n"))
        for row in not_billed_rows(doc.non_billed):
            assert all(len(line) <= WIDTH for line in row.text.split("\n"))
        notes = notes_text(notes_halves(doc.billing_notes)).split("\n")
        assert all(len(line) <= 2 * NOTES_COLUMN + NOTES_GAP for line in notes)
        left = [int(line[:4].strip(". ")) for line in notes if line[:4].strip()]
        second = [line[NOTES_COLUMN + NOTES_GAP : NOTES_COLUMN + NOTES_GAP + 4] for line in notes]
        right = [int(marker.strip(". ")) for marker in second if marker.strip()]
        assert left + right == list(range(1, len(doc.billing_notes) + 1))


def test_layout_9_adds_its_stylesheet_after_the_shared_one():
    """statement.css (credit notes print it too) is as layouts 1-8 had it; layout 9's rules
    come after it, and only in layout 9."""
    doc = fixtures.statement()
    eight = render_html(dataclasses.replace(doc, layout_version=8))
    nine = render_html(dataclasses.replace(doc, layout_version=9))
    shared = (Path(render_module.__file__).parent / "templates" / "statement.css").read_text(encoding="utf-8")
    own = (Path(render_module.__file__).parent / "templates" / "statement-9.css").read_text(encoding="utf-8")
    assert shared in eight and shared in nine
    assert own not in eight and nine.index(own) > nine.index(shared)
    assert "float: left" in own and "columns: auto" in own


def test_an_unknown_layout_is_refused():
    with pytest.raises(ValueError, match=f"layout_version {LAYOUT_VERSION + 1} is not one of"):
        dataclasses.replace(fixtures.statement(), layout_version=LAYOUT_VERSION + 1)


def test_html_is_self_contained():
    html = render_html(fixtures.statement())
    assert "@page" in html and "<svg" in html
    assert not re.search(r"<link|<img|<script|url\(|@import|src=|href=", html)


def test_pdf_text_has_number_account_total_and_every_line(statement_pdf):
    html, path = statement_pdf
    doc = fixtures.statement()
    text = "\n".join(_pdf_pages(path))
    assert doc.statement_number is not None and doc.statement_number in text
    assert "Northwind Analytics GmbH" in text
    assert money(doc.total_due) == "$1,783.19"
    assert f"Total due (USD) {money(doc.total_due)}" in text
    for line in doc.lines:
        assert money(line.amount) in text
    assert "Page 1 of 2" in text and "Page 2 of 2" in text
    assert "d1a5d52b35d8" in text  # short hash of the price table


def test_pdf_bytes_are_stable_and_undated(statement_pdf, tmp_path):
    html, path = statement_pdf
    again = tmp_path / "again.pdf"
    write_pdf(html, again)
    assert again.read_bytes() == path.read_bytes()
    info = PdfReader(path).metadata
    assert info is not None and "/CreationDate" not in info and "/ModDate" not in info
    assert info["/Title"] == "InferGate statement IG-2026-11-000042 - Northwind Analytics GmbH - 2026-11"


def test_shared_font_configuration_gives_the_same_bytes(statement_pdf, monkeypatch):
    """Issue 14: a process reuses one font configuration for every statement it renders. After
    rendering another statement (other text, other glyphs), the bytes equal those of a fresh
    configuration, as every statement was rendered before."""
    from reports import pdf

    html, path = statement_pdf
    pdf.pdf_bytes(render_html(fixtures.draft()))  # warm the shared configuration with other text
    warm = pdf.pdf_bytes(html)
    monkeypatch.setattr(pdf._LOCAL, "pid", None)  # the next render starts a fresh configuration
    fresh = pdf.pdf_bytes(html)
    assert warm == fresh == path.read_bytes()


def test_the_collector_paused_for_a_render_gives_the_same_bytes_and_is_restored(statement_pdf, monkeypatch):
    """Issue 14 (2026-12-07): the cyclic garbage collector is off while a statement renders and
    one young collection follows. Same bytes as with the collector running throughout (Python's
    default thresholds here: a collection every few hundred allocations), for a statement, a
    draft and PDF/A; the collector is on again afterwards, also after a refused render, and a
    collector the caller turned off stays off."""
    import contextlib
    import gc

    from reports import pdf

    html, path = statement_pdf
    draft = render_html(fixtures.draft())
    was_enabled = gc.isenabled()
    gc.enable()
    try:
        paused = [pdf.pdf_bytes(html), pdf.pdf_bytes(draft), pdf.pdf_bytes(html, pdf_variant="pdf/a-3b")]
        assert gc.isenabled()
        with pytest.raises(UnsafeResourceError):
            pdf.pdf_bytes(draft.replace("</body>", '<img src="file:///etc/hostname"></body>', 1))
        assert gc.isenabled()
        gc.disable()
        assert pdf.pdf_bytes(draft) == paused[1]
        assert not gc.isenabled()
        gc.enable()
        monkeypatch.setattr(pdf, "_collected_after", contextlib.nullcontext)
        running = [pdf.pdf_bytes(html), pdf.pdf_bytes(draft), pdf.pdf_bytes(html, pdf_variant="pdf/a-3b")]
    finally:
        (gc.enable if was_enabled else gc.disable)()
    assert paused == running
    assert paused[0] == path.read_bytes()


# The byte-identity check below renders each variant four times (~1 CPU-s each): `make test`
# takes the first two layouts (their near-empty last page) and the current one, `make fuzz`
# (INFERGATE_TEST_DEPTH=full) every layout
LAYOUTS = range(1, LAYOUT_VERSION + 1) if FULL_DEPTH else sorted({1, 2, LAYOUT_VERSION})


def _statement_variants() -> list:
    doc = fixtures.statement()
    credit = CreditSummary(D("50.00"), D("100.00"), D("120.00"), D("0.00"), D("30.00"))
    return [
        *(dataclasses.replace(doc, layout_version=layout) for layout in LAYOUTS),
        fixtures.draft(),
        fixtures.empty_period(),
        fixtures.with_account_name("<style>p{color:red}</style> Ltd"),
        # prepaid credit: a second <style>, in the body
        dataclasses.replace(
            doc, credits=credit, credits_applied=credit.applied, total_due=doc.total_due - credit.applied
        ),
    ]


def test_what_weasyprint_is_given_gives_the_bytes_of_the_statement_html(monkeypatch):
    """Issue 14: WeasyPrint gets the <style> sheets parsed once per process (user origin)
    instead of parsing them in every document (author origin), and the SVG chart as an <img> of
    a data: URI of the same SVG instead of inline. Same PDF bytes as WeasyPrint given the
    statement HTML as it is, for every layout (1-2 laid out twice on a near-empty last page), a
    draft, an empty period, the prepaid-credit block, after other statements warmed the cache,
    and PDF/A (e-invoices)."""
    from reports import pdf

    docs = _statement_variants()
    htmls = [render_html(doc) for doc in docs]
    fetcher = RefusingURLFetcher()
    assert all(pdf._chart_as_image(html, fetcher) != html for html in htmls)  # every one has the chart
    # the first document parses its sheets, the later ones (and the PDF/A) reuse them
    given = [pdf.pdf_bytes(html) for html in htmls] + [pdf.pdf_bytes(htmls[0], pdf_variant="pdf/a-3b")]
    monkeypatch.setattr(pdf, "_stylesheets", lambda document, fetcher: [])  # WeasyPrint parses them
    monkeypatch.setattr(pdf, "_chart_as_image", lambda html, fetcher: html)  # the chart inline
    as_is = [pdf.pdf_bytes(html) for html in htmls] + [pdf.pdf_bytes(htmls[0], pdf_variant="pdf/a-3b")]
    assert given == as_is


def test_a_chart_that_is_not_reports_charts_stays_inline():
    from reports import pdf

    html = render_html(fixtures.statement())
    fetcher = RefusingURLFetcher()
    broken = html.replace("</svg>", "<g></svg>", 1)  # not well-formed XML
    assert pdf._chart_as_image(broken, fetcher) == broken
    twice = html.replace("</figure>", '<svg xmlns="http://www.w3.org/2000/svg"></svg></figure>', 1)
    assert pdf._chart_as_image(twice, fetcher) == twice
    assert pdf._chart_as_image("<p>no chart</p>", fetcher) == "<p>no chart</p>"
    assert not fetcher.own


def test_templates_leave_the_cascade_to_their_stylesheets():
    """What makes the pre-parsed sheets' user origin the same cascade as the author one: the
    templates write no style attribute and no !important (account text is escaped, so it
    cannot add either)."""
    for doc in _statement_variants():
        html = render_html(doc)
        assert not re.search(r"<[^>]*\sstyle\s*=", html, re.IGNORECASE)
        assert "!important" not in html.replace(" ", "").lower()
    for template in (Path(__file__).parents[2] / "reports" / "templates").iterdir():
        text = template.read_text(encoding="utf-8")
        assert not re.search(r"\sstyle\s*=", text, re.IGNORECASE), template.name
        assert "important" not in text.lower(), template.name


def test_draft_is_marked_on_every_page(tmp_path):
    path = tmp_path / "draft.pdf"
    render_statement(fixtures.draft(), path)
    pages = _pdf_pages(path)
    assert "Draft statement" in pages[0]
    assert all("InferGate statement DRAFT" in page for page in pages)


@pytest.mark.slow  # a 400-line PDF
def test_four_hundred_lines_paginate_with_headers_on_every_page(tmp_path):
    path = tmp_path / "long.pdf"
    doc = fixtures.long_statement(400)
    render_statement(doc, path)
    pages = _pdf_pages(path)
    count = len(pages)
    assert count > 5
    assert f"Page 1 of {count}" in pages[0] and f"Page {count} of {count}" in pages[-1]
    line_pages = [page for page in pages if "Routed model" in page]
    assert all("QUANTITY" in page for page in line_pages)  # the header row repeats
    text = "\n".join(pages)
    assert all(money(line.amount) in text for line in doc.lines[::37])
    assert money(doc.total_due) in text


HOSTILE_NAMES = [
    '<img src="file:///etc/passwd">',
    '<link rel="stylesheet" href="http://127.0.0.1:9/steal.css">',
    "<style>@import url(https://example.com/x.css);</style>",
    '<svg><image href="file:///etc/passwd"/></svg>',
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_account_name_is_escaped(name):
    html = render_html(fixtures.with_account_name(name))
    assert name not in html
    assert name.replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;") in html


def test_hostile_data_in_every_text_field_fetches_nothing(tmp_path):
    base = fixtures.statement()
    doc = dataclasses.replace(
        base,
        account=Party(HOSTILE_NAMES[0], tuple(HOSTILE_NAMES[1:]), '<a href="file:///etc/">x</a>'),
        lines=tuple(dataclasses.replace(line, model_name=HOSTILE_NAMES[0]) for line in base.lines),
        adjustments=(dataclasses.replace(base.adjustments[0], description=HOSTILE_NAMES[1]),),
    )
    fetcher = RefusingURLFetcher()
    path = tmp_path / "hostile.pdf"
    write_pdf(render_html(doc), path, fetcher=fetcher)
    assert fetcher.requested == []
    text = "".join(_pdf_pages(path)).replace("\n", "")
    assert all(name in text for name in HOSTILE_NAMES)  # shown as plain text


@pytest.mark.parametrize(
    "markup",
    [
        '<img src="file:///etc/passwd">',
        '<link rel="stylesheet" href="http://127.0.0.1:9/steal.css">',
        '<p style="background: url(https://example.com/beacon.png)">x</p>',
    ],
)
def test_the_fetcher_refuses_files_and_network(markup, tmp_path):
    fetcher = RefusingURLFetcher()
    with pytest.raises(UnsafeResourceError, match="refused"):
        write_pdf(f"<html><body>{markup}</body></html>", tmp_path / "x.pdf", fetcher=fetcher)
    assert len(fetcher.requested) <= 1
    assert not (tmp_path / "x.pdf").exists()


def test_relative_urls_have_no_base_to_resolve_against(tmp_path):
    fetcher = RefusingURLFetcher()
    write_pdf('<img src="../../etc/passwd">', tmp_path / "x.pdf", fetcher=fetcher)
    assert fetcher.requested == []


def test_the_fetcher_serves_data_uris(tmp_path):
    pixel = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='1' height='1'/%3E"
    fetcher = RefusingURLFetcher()
    write_pdf(f'<html><body><img src="{pixel}"></body></html>', tmp_path / "x.pdf", fetcher=fetcher)
    assert fetcher.requested == [pixel]


def test_empty_period_renders(tmp_path):
    path = tmp_path / "empty.pdf"
    render_statement(fixtures.empty_period(), path)
    text = "\n".join(_pdf_pages(path))
    assert "No billed usage in this period" in text and "Total due (USD) $0.00" in text
    assert PdfReader(io.BytesIO(path.read_bytes())).pages


def test_singular_estimate_wording():
    html = render_html(dataclasses.replace(fixtures.statement(), estimated_attempts=1))
    assert "For 1 billed attempt the provider reported no usage." in html


def test_the_row_of_lines_under_half_a_cent_sums_tokens_only_within_one_model_and_class():
    """Layout 5 on (found by an audit): 100 input tokens of one model and 100 output tokens of
    another are not "200 tokens" of anything; layout 4 printed that sum and keeps it."""
    from tests.reports.fixtures import _line

    base = fixtures.statement()
    tiny = (
        _line("deepseek/deepseek-v4-flash", "DeepSeek V4 Flash", "input_uncached", 100, "0.14745", "0.00"),
        _line("openai/gpt-5.5", "OpenAI GPT-5.5", "output", 100, "45", "0.00"),  # 0.0045 rounds to 0.00
    )

    def zero_row(doc) -> str:
        html = render_html(doc)
        if doc.layout_version >= 15:  # one text row (reports/text_tables.py): its first line's words
            return html[html.index('<tr class="zero"><td>') :].split("\n", 1)[0]
        return html[html.index('class="group-start zero-lines"') :].split("</tr>", 1)[0]

    mixed = dataclasses.replace(base, lines=base.lines + tiny, layout_version=14)
    assert '<td class="num"></td>' in zero_row(mixed)
    assert '<td class="num">200</td>' in zero_row(dataclasses.replace(mixed, layout_version=4))
    one_class = dataclasses.replace(base, lines=base.lines + (tiny[0], dataclasses.replace(tiny[0], quantity=50)))
    assert '<td class="num">150</td>' in zero_row(dataclasses.replace(one_class, layout_version=14))
    assert " 200 " not in zero_row(dataclasses.replace(mixed, layout_version=15))
    assert " 150 " in zero_row(one_class)
