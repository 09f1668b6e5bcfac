"""The documentation site as a reader meets it: `mkdocs build --strict` (what `make docs` runs)
into a temporary directory, served on loopback as a static host serves it, then its pages
opened in headless Chromium with every other request refused: the navigation
names every area, each area's page draws, the results page shows its plot, and the API
reference holds the stage functions, rendered from their docstrings."""

import functools
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.browser import Browser, inked_share
from tests.support.paths import REPO

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.e2e
#: One page per area of the site, as mkdocs.yml's navigation lists them.
AREAS = {
    "getting-started.html": "Getting started",
    "concepts.html": "Concepts",
    "modeling.html": "Modeling",
    "research.html": "Power and statistics",
    "serving-guide.html": "Serving with KServe",
    "trading.html": "The exchange's rules",
    "deploying.html": "Deploying",
    "operations.html": "Operations",
    "results.html": "Results",
    "decisions.html": "Decisions",
    "reference/stages.html": "The stages",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [BIN / "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": f"{BIN}:/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "WARNING" not in done.stderr, done.stderr[-3000:]
    return out


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def host(site):
    """The built site on a loopback port: its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietFiles, directory=site))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(host):
    with Browser(origin=host) as browser:
        yield browser


@pytest.fixture()
def open_page(host, browser):
    def opened(page: str, screenshot: Path, *selectors: str):
        seen = browser.visit(f"{host}/{page}", screenshot=screenshot, count=selectors)
        assert not seen.outside_requests and not seen.errors and seen.broken_images == 0, seen
        return seen

    return opened


def test_the_navigation_names_every_area(site, open_page, tmp_path):
    seen = open_page("index.html", tmp_path / "index.png", ".md-nav__link")
    html = (site / "index.html").read_text()
    for page, title in AREAS.items():
        assert f'href="{page}"' in html and title in html, f"the navigation lacks {title}"
    assert seen.counts[".md-nav__link"] >= len(AREAS)
    assert inked_share(tmp_path / "index.png") > 0.01


@pytest.mark.parametrize("page", sorted(AREAS))
def test_each_area_has_a_page_that_draws(open_page, tmp_path, page):
    seen = open_page(page, tmp_path / "page.png", "article h1")
    assert seen.counts["article h1"] == 1
    assert inked_share(tmp_path / "page.png") > 0.01


def test_the_results_page_shows_its_plot(open_page, tmp_path):
    seen = open_page("results.html", tmp_path / "results.png", "article img")
    assert seen.counts["article img"] >= 1  # and it loaded: open_page counts broken images


def test_the_api_reference_holds_the_stage_functions(site, open_page, tmp_path):
    seen = open_page("reference/stages.html", tmp_path / "stages.png", ".doc-function")
    html = (site / "reference/stages.html").read_text()
    for stage in ("ingest", "candles", "features", "pool", "tune", "evaluate", "train",
                  "publish", "report", "portfolio"):  # fmt: skip
        assert f'id="klinecast.stages.{stage}.{stage}"' in html, stage
    assert seen.counts[".doc-function"] >= 10
