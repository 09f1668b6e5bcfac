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
    broken_images: int = 0


def visit(page_file: Path, *, screenshot: Path, count: tuple[str, ...] = ()) -> Visit:
    """Opens page_file offline, waits for it to draw, takes a full-page screenshot.

    Args:
        count: CSS selectors whose matches are counted after drawing (e.g. "svg.main-svg").
    """
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.is_file():
        raise AssertionError(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium")
    seen = Visit()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})

            def refuse_outside(route):
                if route.request.url.startswith(("file:", "data:", "blob:")):
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
            page.goto(page_file.resolve().as_uri(), wait_until="load")
            page.wait_for_timeout(1000)  # vega-embed and plotly draw after load
            seen.counts = {selector: page.locator(selector).count() for selector in count}
            seen.broken_images = page.evaluate(
                "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length"
            )
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return seen


def inked_share(png: Path) -> float:
    """The share of a screenshot's pixels that are not (near) white: 0 for a blank page."""
    import matplotlib.image

    pixels = matplotlib.image.imread(str(png))[..., :3]
    return float((pixels.min(axis=-1) < 0.9).mean())
