"""The search page in a real headless Chromium, against a live server on an index of WebM fixture videos."""

from __future__ import annotations

import pytest

from search_fixtures import adapter_file
from serve_fixtures import webm_video

pytest.importorskip("fastapi")

from cmadapter.search.api import VideoIndex
from cmadapter.search.build import BuildOptions
from cmadapter.serve.app import create_app
from cmadapter.serve.local_server import running_server

QUERY = "a grey square with a white corner"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_weights):
    root = tmp_path_factory.mktemp("page")
    for i in range(7):
        webm_video(root / "videos" / f"clip{i}.webm", seconds=3 + i, shift=2 * i)
    adapter = adapter_file(tiny_weights, root / "demo.safetensors")
    options = BuildOptions(window=2, stride=1, progress=False)
    VideoIndex.build(
        [root / "videos"], root / "index", pretrained=str(tiny_weights), adapters={"demo": adapter}, options=options
    )
    app = create_app(root / "index")
    with running_server(app) as url:
        yield url, app


@pytest.mark.slow
def test_the_page_searches_shows_frames_and_weights_plays_and_pages(server, browser, tmp_path):
    url, app = server
    expected = app.state.index.search(QUERY, k=3, adapter="demo").results
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.set_default_timeout(30_000)
    page.goto(f"{url}/?k=3")
    page.fill("#query", QUERY)
    page.press("#query", "Enter")
    page.wait_for_selector(".card")
    cards = page.locator(".card")
    assert cards.count() == 3
    names = [cards.nth(i).get_attribute("data-video") for i in range(3)]
    assert names == [result.best.video.rsplit("/", 1)[-1] for result in expected]
    assert "search" in page.inner_text("#status")

    # Thumbnails loaded and the head's weights drawn under them.
    first = cards.nth(0)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.card')[0].querySelectorAll('img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    heights = first.locator(".weight span").evaluate_all("spans => spans.map(s => s.getBoundingClientRect().height)")
    assert len(heights) == len(expected[0].best.frame_weights) and min(heights) > 0
    weights = expected[0].best.frame_weights
    assert heights.index(max(heights)) == weights.index(max(weights))

    # Play a segment that starts after 0 s: the video seeks to it.
    target = next(i for i, result in enumerate(expected) if result.best.start > 0)
    start = expected[target].best.start
    cards.nth(target).locator(".play").click()
    page.wait_for_function(
        f"() => {{ const v = document.querySelectorAll('.card')[{target}].querySelector('video');"
        f" return v && v.readyState >= 1 && v.currentTime >= {start} - 0.01; }}"
    )
    current = cards.nth(target).locator("video").evaluate("v => v.currentTime")
    assert start - 0.01 <= current <= expected[target].best.end + 0.5

    # "More results" appends the next page.
    page.click("#more")
    page.wait_for_function("() => document.querySelectorAll('.card').length > 3")
    assert cards.count() == 6
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)

    # Keyboard only: focus the box, type, Enter; a narrow window still shows the cards.
    page.set_viewport_size({"width": 380, "height": 800})
    page.fill("#query", "")
    page.focus("#query")
    page.keyboard.type("another grey picture")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('another grey picture')")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 380, "the page scrolls sideways on a narrow window"
