"""The search page in a real headless Chromium, against a live server on an index of WebM fixture videos."""

from __future__ import annotations

import time

import pytest

from media import write_frame_folder
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
    write_frame_folder(root / "videos" / "stills.mp4", 4, size=(64, 48))  # a folder of frames: one more card
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
    target = next(i for i, r in enumerate(expected) if r.best.start > 0 and r.best.kind == "video")
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


@pytest.mark.slow
def test_a_folder_of_frames_shows_its_frames_without_play_or_download(server, browser, tmp_path):
    url, _ = server
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.set_default_timeout(30_000)
    page.goto(f"{url}/?k=10")
    page.fill("#query", QUERY)
    page.press("#query", "Enter")
    page.wait_for_function("() => document.querySelectorAll('.card').length === 8")
    folder = page.locator('.card[data-video="stills.mp4"]')
    folder.scroll_into_view_if_needed()
    page.wait_for_function(
        "() => [...document.querySelector('.card[data-video=\"stills.mp4\"]').querySelectorAll('img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    assert folder.locator(".play").count() == 0 and folder.locator(".download").count() == 0
    assert folder.locator("img").count() >= 1
    video = page.locator('.card[data-video="clip0.webm"]')
    assert video.locator(".play").count() == 1 and video.locator(".download").get_attribute("href").startswith(
        "/api/clip/"
    )
    folder.screenshot(path=str(tmp_path / "frames_card.png"))
    page.screenshot(path=str(tmp_path / "page_with_frames.png"), full_page=True)


ATTACK = """<!doctype html><title>a page elsewhere</title><body>
<img id="clip" src="{api}/api/clip/{segment}"><video id="video" src="{api}/api/media/{video}"></video>
<script>
window.statuses = {{}};
async function probe(name, url) {{
  try {{ const r = await fetch(url, {{mode: "{mode}"}}); window.statuses[name] = r.type === "opaque" ? "opaque" : r.status;
         if (r.ok && r.type !== "opaque") window.statuses[name + "_body"] = (await r.text()).slice(0, 80); }}
  catch (e) {{ window.statuses[name] = "blocked"; }}
}}
Promise.all([probe("search", "{api}/api/search?q=grey"), probe("media", "{api}/api/media/{video}")])
  .then(() => {{ window.done = true; }});
</script></body>"""


@pytest.fixture(scope="module")
def attacker(browser):
    """Chromium resolving rebind.test and elsewhere.test to 127.0.0.1 (as a rebinding DNS server would, and as
    a page of another site on this machine), with the browser's own private-network checks off: the server
    must refuse on its own, whatever the browser."""
    from browser import chromium_path

    chromium = browser.browser_type.launch(
        executable_path=chromium_path(),
        headless=True,
        args=[
            "--no-sandbox",
            "--host-resolver-rules=MAP rebind.test 127.0.0.1, MAP elsewhere.test 127.0.0.1",
            "--disable-features=LocalNetworkAccessChecks,PrivateNetworkAccessRespectPreflightResults,"
            "BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessSendPreflights",
        ],
    )
    try:
        yield chromium
    finally:
        chromium.close()


def _ids(app) -> tuple[int, int]:
    store = app.state.media._store()
    video = next(row for path, row in store.files().items() if path.endswith("clip3.webm"))
    return video.id, next(s.id for s in store.segments() if s.file_id == video.id and s.start > 0)


@pytest.mark.slow
def test_a_rebinding_page_reads_nothing(server, attacker, caplog):
    """The page of rebind.test is loaded (intercepted here; in an attack, from the attacker's server), then
    rebind.test resolves to 127.0.0.1: its requests are same-origin for the browser, and only the Host check
    stands between it and the index."""
    url, app = server
    port = int(url.rsplit(":", 1)[1])
    video, segment = _ids(app)
    page = attacker.new_page()
    page.set_default_timeout(30_000)
    origin = f"http://rebind.test:{port}"
    html = ATTACK.format(api=origin, segment=segment, video=video, mode="same-origin")
    page.route(f"{origin}/attack", lambda route: route.fulfill(body=html, content_type="text/html"))
    with caplog.at_level("WARNING", logger="cmadapter.serve.security"):
        page.goto(f"{origin}/attack")
        page.wait_for_function("() => window.done === true")
        statuses = page.evaluate("() => window.statuses")
    assert statuses == {"search": 403, "media": 403}, statuses
    assert f"rebind.test:{port}" in caplog.text  # the requests reached the server, which refused them
    assert page.goto(f"{origin}/").status == 403  # the page itself under that name: refused too


@pytest.mark.slow
def test_another_sites_page_cannot_make_the_server_cut_a_clip(server, attacker):
    """A page on another site (here elsewhere.test, served from this machine) embeds a clip URL in <img> and the
    video in <video>, and fetches a search: every request reaches the server and is refused, nothing is cut."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    _, app = server
    target = create_app(app.state.index)  # the loaded index; its own, empty export folder
    answered: list[tuple[str, int]] = []
    video, segment = _ids(target)
    with running_server(_recording(target, answered)) as url:
        html = ATTACK.format(api=url, segment=segment, video=video, mode="no-cors")
        elsewhere = Starlette(routes=[Route("/", lambda request: HTMLResponse(html))])
        with running_server(elsewhere) as other:
            page = attacker.new_page()
            page.set_default_timeout(30_000)
            page.goto(other.replace("127.0.0.1", "elsewhere.test"))
            page.wait_for_function("() => window.done === true && document.getElementById('clip').complete")
            wanted = {f"/api/clip/{segment}", f"/api/media/{video}", "/api/search"}
            deadline = time.monotonic() + 30
            while not wanted <= {path for path, _ in answered}:  # the <video> may still be loading
                assert time.monotonic() < deadline, answered
                time.sleep(0.05)
        assert not any(target.state.media.exports.folder.iterdir())
    assert all(status == 403 for _, status in answered), answered


def _recording(app, answered: list):
    """``app``, noting each response's path and status."""

    async def recorded(scope, receive, send):
        async def send_noting(message):
            if message["type"] == "http.response.start":
                answered.append((scope["path"], message["status"]))
            await send(message)

        await app(scope, receive, send_noting)

    return recorded
