"""Statement HTML to PDF with WeasyPrint, refusing every external resource.

Split from :mod:`reports.render` so that importing the renderer's templates costs nothing
and WeasyPrint (the heaviest import of the CLI) loads only when a PDF is written: the parent
of the render workers imports it once before forking (``pipeline/statements.py``).
"""

from __future__ import annotations

import base64
import gc
import hashlib
import logging
import os
import re
import threading
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

from weasyprint import CSS, HTML
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import FatalURLFetchingError, URLFetcher, URLFetcherResponse

from reports.render import TIGHT_CSS_RULES, UnsafeResourceError


class RefusingURLFetcher(URLFetcher):
    """A WeasyPrint URL fetcher that serves ``data:`` URIs and refuses everything else.

    ``requested`` lists every URL WeasyPrint asked for, in order, for tests and error messages,
    except the ``data:`` URI :func:`_chart_as_image` made of the statement's own chart.
    """

    def __init__(self) -> None:
        super().__init__(fail_on_errors=True)
        self.requested: list[str] = []
        self.own: set[str] = set()  # data: URIs the renderer made of the statement's own chart

    def fetch(self, url: str, headers: object = None) -> URLFetcherResponse:
        if url not in self.own:
            self.requested.append(url)
        if url[:5].lower() != "data:":
            raise ValueError(f"statement rendering refuses to fetch {url[:80]!r}")
        return super().fetch(url, headers)


_FONT_TIMESTAMP_LOCK = threading.Lock()


@contextmanager
def _fixed_font_timestamps() -> Iterator[None]:
    """Pin the 'modified' stamp fontTools writes into embedded fonts (reproducible builds)."""
    with _FONT_TIMESTAMP_LOCK:
        if "SOURCE_DATE_EPOCH" in os.environ:
            yield
            return
        os.environ["SOURCE_DATE_EPOCH"] = "0"
        try:
            yield
        finally:
            os.environ.pop("SOURCE_DATE_EPOCH", None)


@contextmanager
def _collected_after() -> Iterator[None]:
    """Python's cyclic garbage collector off for one statement's render, then one collection of
    the youngest generation (issue 14, 2026-12-07). A statement allocates a few million objects;
    with the collector on, each collection walks the ~50,000 youngest ones, most of them the
    statement's own boxes and styles still in use, and promotes them to be walked again: ~10 ms
    of a 150 ms statement in the render workers (thresholds 50,000/20/100). Off for the render,
    reference counting frees all but ~13,000 objects in reference cycles (styles, boxes, parsed
    elements), and the one collection after it frees those in ~4.5 ms. Memory: a statement's
    cyclic garbage lives until its end (a few MB for two pages). Nothing the PDF holds depends
    on when garbage is collected: the bytes are the same (tested).

    Left alone when the collector is already off (another thread rendering, or a caller's
    choice): the thread that turned it off turns it on again."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect(0)


#: A statement whose last page is filled less than this (of the page height) is laid out again
#: with tighter spacing, kept if that saves the page: "a third page can hold four lines".
NEAR_EMPTY_FILL = 0.2

#: Tighter spacing for that second layout (the HTML stored with the statement is unchanged: the
#: choice is a pure function of the HTML, so the same HTML still gives the same PDF). A statement
#: of layout 3 on has these rules in its own stylesheet and is laid out once.
_TIGHT_CSS = "<style>" + TIGHT_CSS_RULES + "</style>"


def _tightened(html: str) -> str:
    return html.replace("</head>", _TIGHT_CSS + "</head>", 1)


def near_empty_last_page(document: object) -> bool:
    """Whether a laid-out WeasyPrint document ends on a page that is filled < NEAR_EMPTY_FILL.

    Reads the layout boxes of the last page (WeasyPrint internals: if they change, it answers
    False and the first layout stands)."""
    try:
        pages = document.pages  # type: ignore[attr-defined]
        if len(pages) < 2:
            return False
        page = pages[-1]
        bottom = 0.0
        stack = [c for c in page._page_box.children if type(c).__name__ != "MarginBox"]
        while stack:
            box = stack.pop()
            if getattr(box, "position_y", None) is not None and getattr(box, "height", None) is not None:
                bottom = max(bottom, box.position_y + box.margin_height())
            stack.extend(getattr(box, "children", ()))
        return bool(bottom / page.height < NEAR_EMPTY_FILL)
    except (AttributeError, TypeError):
        return False


_LOCAL = threading.local()


def _font_config() -> FontConfiguration:
    """One WeasyPrint font configuration per thread and process, reused by every statement it
    renders (issue 14): a new one per document started Pango's font map and caches cold each
    time, ~13% of a statement's CPU. The statement declares no @font-face, so the configuration
    holds only the system fonts it looked up: the PDF bytes are the same (tested). Keyed by pid
    too: a render worker forked from a process that rendered must not share its Pango state."""
    pid = os.getpid()
    if getattr(_LOCAL, "pid", None) != pid:
        _LOCAL.pid, _LOCAL.font_config = pid, FontConfiguration()
        _LOCAL.stylesheets = {}  # parsed with that configuration (_stylesheets)
    config: FontConfiguration = _LOCAL.font_config
    return config


#: The ``type`` a statement's ``<style>`` elements get in WeasyPrint's parsed tree once their
#: text is handed over pre-parsed (:func:`_parsed`): WeasyPrint reads only ``text/css`` ones.
_PREPARSED_TYPE = "text/x-infergate-preparsed"
_STYLESHEET_CACHE_SIZE = 16  # distinct stylesheet texts kept per process (a layout gives one or two)


def _stylesheets(document: HTML, fetcher: RefusingURLFetcher) -> list[CSS]:
    """The ``<style>`` sheets of a parsed statement as CSS objects parsed once per process and
    text (issue 14: WeasyPrint parsed the same ~6 KB stylesheet for every statement, ~7% of its
    CPU). Each ``<style>`` element stays in the tree (selectors see the same siblings), its
    ``type`` changed so that WeasyPrint does not parse it again; the sheets are returned in
    source order, to be passed as ``stylesheets=``.

    WeasyPrint gives those the user origin instead of the author one. For these documents that
    is the same cascade: nothing else of the author origin competes with them (the templates
    write no ``style`` attributes and no ``!important``, tested), and user rules still win over
    the user-agent sheet. The PDF bytes are the same (tested against the inline path)."""
    font_config = _font_config()
    cache: dict[str, CSS] = _LOCAL.stylesheets
    sheets = []
    for element in document.etree_element.iter("style"):
        if element.get("type", "text/css").split(";", 1)[0].strip() != "text/css" or element.get("media"):
            continue  # not a plain stylesheet: WeasyPrint handles it as it always did
        text = (element.text or "") + "".join(child.tail or "" for child in element)
        sheet = cache.get(text)
        if sheet is None:
            if len(cache) >= _STYLESHEET_CACHE_SIZE:
                cache.clear()
            asked = len(fetcher.requested)
            sheet = CSS(string=text, url_fetcher=fetcher, font_config=font_config, base_url=document.base_url)
            if len(fetcher.requested) == asked:  # a sheet that fetched something is parsed every time
                cache[text] = sheet
        element.set("type", _PREPARSED_TYPE)
        sheets.append(sheet)
    return sheets


#: The daily-usage chart as reports/chart.py writes it (dates and amounts only, no user text)
_CHART = re.compile(r'<svg xmlns="http://www\.w3\.org/2000/svg" class="chart" [^<>]*>.*?</svg>', re.DOTALL)
#: The chart's rule for the <img> it becomes (statement.css: ``figure svg.chart``)
_CHART_IMAGE_CSS = "<style>figure img.chart{display:block;width:100%;height:auto}</style>"


def _chart_as_image(html: str, fetcher: RefusingURLFetcher) -> str:
    """What WeasyPrint is given for ``html``: the same, with the inline SVG chart handed over as
    an ``<img>`` of a ``data:`` URI of the same SVG (issue 14). The HTML stored and replayed is
    ``html`` itself; this only feeds WeasyPrint.

    Inline, the chart's ~100 SVG elements went through WeasyPrint's HTML parser, style cascade
    and box building as elements of the page (none of it used: WeasyPrint draws inline SVG from
    the element tree with its own SVG code), ~6% of a statement's Python calls. As an image,
    XML parses it and the same SVG code draws the same tree in the same box: the PDF bytes are
    the same (tested for every layout). Left inline when it is not exactly one chart of
    reports/chart.py's or its text is not well-formed XML (an image that fails to load would be
    dropped silently, where the inline chart is drawn)."""
    charts = _CHART.findall(html)
    if len(charts) != 1 or html.count("<svg") != 1 or "</head>" not in html:
        return html
    svg = charts[0]
    try:
        ElementTree.fromstring(svg)
    except ElementTree.ParseError:
        return html
    uri = "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")
    fetcher.own.add(uri)
    html = html.replace(svg, f'<img class="chart" alt="" src="{uri}">', 1)
    return html.replace("</head>", _CHART_IMAGE_CSS + "</head>", 1)


def _parsed(html: str, fetcher: RefusingURLFetcher) -> tuple[HTML, list[CSS]]:
    document = HTML(string=_chart_as_image(html, fetcher), url_fetcher=fetcher)
    return document, _stylesheets(document, fetcher)


def pdf_bytes(html: str, *, fetcher: RefusingURLFetcher | None = None, pdf_variant: str | None = None) -> bytes:
    """Render statement HTML to PDF bytes; refuses to load any file or URL it references.

    ``pdf_variant``: WeasyPrint's, e.g. ``"pdf/a-3b"`` for e-invoices (:func:`factur_x`)."""
    fetcher = fetcher if fetcher is not None else RefusingURLFetcher()
    font_config = _font_config()
    identifier = hashlib.sha256(html.encode("utf-8")).hexdigest()[:32].encode("ascii")
    try:
        with _collected_after(), _fixed_font_timestamps():
            parsed, sheets = _parsed(html, fetcher)
            document = parsed.render(font_config=font_config, stylesheets=sheets)
            if TIGHT_CSS_RULES not in html and near_empty_last_page(document):
                parsed, sheets = _parsed(_tightened(html), fetcher)
                tighter = parsed.render(font_config=font_config, stylesheets=sheets)
                if len(tighter.pages) < len(document.pages):
                    document = tighter
            pdf = document.write_pdf(pdf_identifier=identifier, **({"pdf_variant": pdf_variant} if pdf_variant else {}))
    except FatalURLFetchingError as error:
        raise UnsafeResourceError(
            f"statement HTML references an external resource; refused: {fetcher.requested}"
        ) from error
    return bytes(pdf)


#: Guards factur-x's clock while it is pinned (render workers are processes; threads share it).
_FACTURX_CLOCK_LOCK = threading.Lock()


def factur_x(pdf: bytes, xml: bytes, issued: date, *, title: str) -> bytes:
    """A PDF/A-3 statement (rendered with ``pdf_variant="pdf/a-3b"``) with ``xml`` embedded as
    its Factur-X invoice, profile EN 16931, checked against the Factur-X XSD on the way.

    factur-x stamps the PDF's /CreationDate and /ModDate, the XMP CreateDate/ModifyDate and the
    attachment's /ModDate with the current time; issued statements are replayed byte for byte,
    so its two clock functions are pinned to ``issued`` at 00:00 UTC for the call. pypdf keeps
    the file identifier WeasyPrint derived from the HTML. So the same statement gives the same
    bytes (tested by rendering twice)."""
    import facturx.facturx as fx  # lxml + pypdf: loaded only when an e-invoice is written

    stamp = datetime(issued.year, issued.month, issued.day, tzinfo=UTC)

    def pdf_timestamp(date: object = None) -> str:
        return stamp.strftime("D:%Y%m%d%H%M%S+00'00'")

    def xmp_timestamp() -> str:
        return stamp.strftime("%Y-%m-%dT%H:%M:%S+00:00")

    pinned = {"_get_pdf_timestamp": pdf_timestamp, "_get_metadata_timestamp": xmp_timestamp}
    metadata = {"author": "", "keywords": "Factur-X, Invoice", "title": title, "subject": title}
    quiet = logging.getLogger("pypdf")  # "Object count ... exceeds defined trailer size": harmless, noisy
    with _FACTURX_CLOCK_LOCK:
        saved = {name: getattr(fx, name) for name in pinned}  # AttributeError: factur-x changed, see above
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            for name, function in pinned.items():
                setattr(fx, name, function)
            result = fx.generate_from_binary(
                pdf, xml, flavor="factur-x", level="en16931", check_xsd=True, pdf_metadata=metadata, lang="en-US"
            )
        finally:
            quiet.setLevel(level)
            for name, function in saved.items():
                setattr(fx, name, function)
    return bytes(result)
