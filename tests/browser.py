"""Headless Chromium for page tests: Debian's ``chromium`` driven by Playwright's Python API.

Playwright's own browser download is unreachable here, so it drives the system browser
(``executable_path``). Missing either, the tests that use the ``browser`` fixture (conftest) skip and
say how to install it: ``apt-get install -y chromium`` (as root; ``make test`` does it) and
``pip install playwright`` (in the dev extra).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator

import pytest

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str | None:
    for path in CHROMIUM_PATHS:
        if shutil.which(path):
            return path
    return shutil.which("chromium")


@contextlib.contextmanager
def launch_chromium() -> Iterator[object]:
    """A Playwright ``Browser`` on the system Chromium; skips the test when either is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install playwright (part of the dev extra)")
    path = chromium_path()
    if path is None:
        pytest.skip("chromium is not installed: apt-get install -y chromium (as root; make test does it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=["--no-sandbox"], headless=True)
        try:
            yield browser
        finally:
            browser.close()


def images_loaded(page) -> list[dict]:
    """Every <img> of the page with whether it loaded (complete, with a natural size)."""
    return page.eval_on_selector_all(
        "img",
        "els => els.map(e => ({alt: e.alt, complete: e.complete, width: e.naturalWidth, height: e.naturalHeight}))",
    )
