"""Pages opened as a person would: Debian's headless Chromium, driven by Playwright.

Every request that leaves the file is refused and recorded, so a page that needs the internet
(a CDN script, a remote font) shows up as a request and as a page that does not draw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
#: The flags a closed network needs (Chromium's background calls are refused otherwise).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Visit:
    """What a page did when it was opened."""

    outside_requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    #: the text a person reads in the first match of each selector asked (`read`)
    texts: dict[str, str] = field(default_factory=dict)
    broken_images: int = 0


def visit(
    page_file: Path | str, *, screenshot: Path, count: tuple[str, ...] = (), origin: str = "",
    read: tuple[str, ...] = (),
) -> Visit:  # fmt: skip
    """Opens page_file offline, waits for it to draw, takes a full-page screenshot.

    Args:
        page_file: a file, or a URL under `origin`.
        count: CSS selectors whose matches are counted after drawing (e.g. "svg.main-svg").
        read: CSS selectors whose first match's rendered text is kept.
        origin: a loopback server the page may also reach (a site served as a host serves it).
    """
    with Browser(origin=origin) as browser:
        return browser.visit(page_file, screenshot=screenshot, count=count, read=read)


class Browser:
    """One headless Chromium for several visits (a launch costs seconds)."""

    def __init__(self, *, origin: str = ""):
        self.allowed = ("file:", "data:", "blob:", origin or "file:")

    def __enter__(self) -> Browser:
        from playwright.sync_api import sync_playwright

        if not CHROMIUM.is_file():
            raise AssertionError(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium")
        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=FLAGS
        )
        return self

    def __exit__(self, *exc) -> None:
        self._browser.close()
        self._playwright.stop()

    def visit(
        self, page_file: Path | str, *, screenshot: Path, count: tuple[str, ...] = (),
        read: tuple[str, ...] = (),
    ) -> Visit:  # fmt: skip
        """One page in a fresh tab: what visit() says."""
        seen = Visit()
        page = self._browser.new_page(viewport={"width": 1200, "height": 900})
        try:

            def refuse_outside(route):
                if route.request.url.startswith(self.allowed):
                    route.continue_()
                else:
                    seen.outside_requests.append(route.request.url)
                    route.abort()

            page.route("**/*", refuse_outside)
            page.on("pageerror", lambda error: seen.errors.append(str(error)))
            page.on(
                "console",
                lambda message: message.type == "error" and seen.errors.append(message.text),
            )
            url = page_file if isinstance(page_file, str) else page_file.resolve().as_uri()
            page.goto(url, wait_until="load")
            page.wait_for_timeout(1000)  # vega-embed and plotly draw after load
            seen.counts = {selector: page.locator(selector).count() for selector in count}
            seen.texts = {selector: page.locator(selector).first.inner_text() for selector in read}
            seen.broken_images = page.evaluate(
                "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length"
            )
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            page.close()
        return seen


def inked_share(png: Path) -> float:
    """The share of a screenshot's pixels that are not (near) white: 0 for a blank page."""
    import matplotlib.image

    pixels = matplotlib.image.imread(str(png))[..., :3]
    return float((pixels.min(axis=-1) < 0.9).mean())
