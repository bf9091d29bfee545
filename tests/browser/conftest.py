"""Playwright (sync API) driving Debian's Chromium against pytest-django's live_server.

Screenshots go to ``test-artifacts/screenshots/`` (git-ignored, kept after the run).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.cache import cache
from playwright.sync_api import sync_playwright

from media_jobs.services.job_errors import job_errors_backfill
from media_jobs.storage import pipeline_storage
from tests.support.listing import processed_listing_in

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent.parent / "test-artifacts" / "screenshots"
# axe-core from npm, pinned in tests/browser/axe/package-lock.json (`make setup` runs npm ci).
AXE_JS = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
# The portal's two languages, as a browser asks for them (Accept-Language, navigator.language).
LOCALES = {"en": "en-US", "pt-br": "pt-BR"}


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """The portal caches calendar links and filter choices a minute: each test starts clean."""

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(scope="session")
def browser() -> Iterator:
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed")

    # Playwright's sync API keeps an event loop in this thread; the ORM calls the tests make
    # between browser steps are plain synchronous calls, which Django would otherwise refuse.
    saved = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield chromium
    finally:
        chromium.close()
        playwright.stop()
        if saved is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = saved


@pytest.fixture
def language() -> str:
    """The portal language a test's browser asks for; tests parametrize it."""
    return "en"


@pytest.fixture
def page(browser, language) -> Iterator:
    context = browser.new_context(
        viewport={"width": 1400, "height": 1000}, locale=LOCALES[language]
    )
    context.set_default_timeout(20_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
# Rendered width of the page beyond the viewport (0: nothing scrolls sideways).
OVERFLOW_JS = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


class Screenshots:
    """``shot("name")`` saves ``<test>-<nn>-<name>.png`` and returns its path;
    ``shot.both("name")`` saves the page at 1366 px and at 390 px (and checks that the wide
    one does not scroll sideways)."""

    def __init__(self, page, test_name: str) -> None:
        self.page = page
        self.prefix = re.sub(r"[^A-Za-z0-9_-]+", "-", test_name).strip("-")
        self.count = 0
        self.paths: list[Path] = []
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def __call__(self, name: str) -> Path:
        self.count += 1
        path = SCREENSHOTS / f"{self.prefix}-{self.count:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.paths.append(path)
        return path

    def both(self, name: str) -> None:
        """The page at 1366 px (no horizontal scroll) and at 390 px, then back to 1366."""
        self.page.set_viewport_size(DESKTOP)
        overflow = self.page.evaluate(OVERFLOW_JS)
        assert overflow <= 0, f"{name}: the page scrolls {overflow} px sideways at 1366 px"
        self(f"{name}-1366")
        self.page.set_viewport_size(PHONE)
        self(f"{name}-390")
        self.page.set_viewport_size(DESKTOP)


# WCAG contrast of each matching element's text against the background it is drawn on (the
# first ancestor with an opaque background colour).
CONTRAST_JS = """
(selector) => {
  const rgba = (value) => (value.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const background = (el) => {
    for (let node = el; node; node = node.parentElement) {
      const [r, g, b, a] = rgba(getComputedStyle(node).backgroundColor);
      if (a === undefined || a > 0.9) { return [r, g, b]; }
    }
    return [255, 255, 255];
  };
  return Array.from(document.querySelectorAll(selector))
    .filter((el) => el.offsetParent !== null && el.textContent.trim())
    .map((el) => {
      const fg = lum(rgba(getComputedStyle(el).color));
      const bg = lum(background(el));
      const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
      return { text: el.textContent.trim().slice(0, 40), ratio: Math.round(ratio * 100) / 100 };
    });
}
"""


def low_contrast(page, selector: str, minimum: float = 4.5) -> list[dict]:
    """The elements matching ``selector`` whose text is below the WCAG AA contrast."""
    return [found for found in page.evaluate(CONTRAST_JS, selector) if found["ratio"] < minimum]


def axe_violations(page, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict]:
    """axe-core's violations of the page as loaded, those of the given impacts: one entry per
    rule with its help text and the first few offending elements."""
    if not AXE_JS.exists():
        pytest.fail(f"{AXE_JS} is missing: run `make setup` (npm ci in tests/browser/axe)")
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE_JS))
    results = page.evaluate(
        "async () => { const r = await axe.run(document, {resultTypes: ['violations']});"
        " return r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' '))})); }"
    )
    return [found for found in results if found["impact"] in impacts]


@pytest.fixture
def shot(page, request) -> Screenshots:
    return Screenshots(page, request.node.name)


def login(page, base_url: str, username: str, password: str) -> None:
    """Through the real login form."""
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}/admin/")


@pytest.fixture
def local_storage_settings(settings, tmp_path):
    settings.MEDIA_STORAGE_BACKEND = "local"
    settings.MEDIA_LOCAL_ROOT = tmp_path / "media"


@pytest.fixture
def processed_media(local_storage_settings, transactional_db) -> tuple[int, int]:
    """(listing, job): a listing of two processed photos and a corrupt one, long derivative
    names included, and its PARTIAL_SUCCESS job with its error codes recorded."""

    built = processed_listing_in(
        pipeline_storage(), 8282, filename="{n}-living-room-with-a-view-of-the-garden.jpg"
    )
    job_errors_backfill(jobs=[built["job"]])
    return built["listing"], built["job"].pk
