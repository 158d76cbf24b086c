"""Statement HTML to PDF with WeasyPrint, refusing every external resource.

Split from :mod:`reports.render` so that importing the renderer's templates costs nothing
and WeasyPrint (the heaviest import of the CLI) loads only when a PDF is written: the parent
of the render workers imports it once before forking (``pipeline/statements.py``).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from weasyprint import HTML
from weasyprint.urls import FatalURLFetchingError, URLFetcher, URLFetcherResponse

from reports.render import UnsafeResourceError


class RefusingURLFetcher(URLFetcher):
    """A WeasyPrint URL fetcher that serves ``data:`` URIs and refuses everything else.

    ``requested`` lists every URL WeasyPrint asked for, in order, for tests and error messages.
    """

    def __init__(self) -> None:
        super().__init__(fail_on_errors=True)
        self.requested: list[str] = []

    def fetch(self, url: str, headers: object = None) -> URLFetcherResponse:
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


def pdf_bytes(html: str, *, fetcher: RefusingURLFetcher | None = None) -> bytes:
    """Render statement HTML to PDF bytes; refuses to load any file or URL it references."""
    fetcher = fetcher if fetcher is not None else RefusingURLFetcher()
    identifier = hashlib.sha256(html.encode("utf-8")).hexdigest()[:32].encode("ascii")
    try:
        with _fixed_font_timestamps():
            pdf = HTML(string=html, url_fetcher=fetcher).write_pdf(pdf_identifier=identifier)
    except FatalURLFetchingError as error:
        raise UnsafeResourceError(
            f"statement HTML references an external resource; refused: {fetcher.requested}"
        ) from error
    return bytes(pdf)
