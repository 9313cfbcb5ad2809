"""The page's picture search (chosen or dropped), "More like this" and the token's login form, in a real headless
Chromium against a live server on 127.0.0.1."""

from __future__ import annotations

import base64
from contextlib import ExitStack

import pytest

from example_media import DUPLICATES, frame_of, jpeg, shared_example_collection

pytest.importorskip("fastapi")

from cmadapter.search.api import VideoIndex
from cmadapter.serve.app import ServeOptions, create_app
from cmadapter.serve.local_server import running_server

TOKEN = "browser-test-token-0123456789"


@pytest.fixture(scope="module")
def pages(tmp_path_factory, tiny_weights):
    root = shared_example_collection(tmp_path_factory, tiny_weights)
    index = VideoIndex.open(root / "index")
    with ExitStack() as stack:
        urls = {
            name: stack.enter_context(running_server(create_app(index, options=ServeOptions(token=token))))
            for name, token in (("open", None), ("token", TOKEN))
        }
        yield root, urls
    index.close()


def card_names(page) -> list[str]:
    return page.eval_on_selector_all(".card", "cards => cards.map(c => c.dataset.video)")


def wait_for_status(page, words: str) -> None:
    page.wait_for_function(f"() => document.querySelector('#status').textContent.includes({words!r})")


@pytest.mark.slow
def test_a_chosen_picture_finds_its_video_and_more_like_this_follows_a_card(pages, browser, tmp_path):
    root, urls = pages
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.set_default_timeout(30_000)
    page.goto(f"{urls['open']}/?k=4")
    page.wait_for_selector("#adapter option", state="attached")
    picture = jpeg(frame_of(root / "videos" / "clip4.mp4", 2.0))
    page.set_input_files("#picture", files=[{"name": "snapshot.jpg", "mimeType": "image/jpeg", "buffer": picture}])
    wait_for_status(page, "like the picture snapshot.jpg")
    assert card_names(page)[0] == "clip4.mp4"
    assert page.is_visible("#query-picture img") and "snapshot.jpg" in page.inner_text("#query-picture")
    assert page.locator(".card .like").count() == 4  # on every card
    page.screenshot(path=str(tmp_path / "picture.png"), full_page=True)

    # More like this, on the card of clip0 (found by its picture): clip0 first, then its two near-duplicates.
    picture = jpeg(frame_of(root / "videos" / "clip0.mp4", 1.0))
    page.set_input_files("#picture", files=[{"name": "clip0.jpg", "mimeType": "image/jpeg", "buffer": picture}])
    wait_for_status(page, "like the picture clip0.jpg")
    assert card_names(page)[0] == "clip0.mp4"
    page.locator(".card .like").first.click()
    wait_for_status(page, "like clip0.mp4 at")
    assert card_names(page)[0] == "clip0.mp4" and set(card_names(page)[1:3]) == set(DUPLICATES)
    assert "like=" in page.url and page.is_hidden("#query-picture")
    # A shared address of a "more like this" search gives the same cards.
    again = browser.new_page()
    again.goto(page.url)
    wait_for_status(again, "like segment")
    assert card_names(again) == card_names(page)


@pytest.mark.slow
def test_a_picture_dropped_on_the_page_searches_and_a_file_that_is_not_one_says_so(pages, browser):
    root, urls = pages
    page = browser.new_page(viewport={"width": 900, "height": 800})
    page.set_default_timeout(30_000)
    page.goto(f"{urls['open']}/?k=3")
    page.wait_for_selector("#adapter option", state="attached")

    def drop(name: str, data: bytes, kind: str) -> None:
        page.evaluate(
            """([name, data, kind]) => {
                const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
                const transfer = new DataTransfer();
                transfer.items.add(new File([bytes], name, {type: kind}));
                const header = document.querySelector('header');
                for (const type of ['dragenter', 'dragover', 'drop'])
                    header.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
            }""",
            [name, base64.b64encode(data).decode(), kind],
        )

    drop("dropped.jpg", jpeg(frame_of(root / "videos" / "clip6.mp4", 0.0)), "image/jpeg")
    wait_for_status(page, "like the picture dropped.jpg")
    assert card_names(page)[0] == "clip6.mp4"
    drop("notes.jpg", b"this is not a picture at all", "image/jpeg")
    wait_for_status(page, "error:")
    assert "not a picture" in page.inner_text("#status")


@pytest.mark.slow
def test_a_server_with_a_token_shows_a_login_form_whose_cookie_no_script_can_read(pages, browser):
    _, urls = pages
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{urls['token']}/?q=colour+blocks&k=2")
    page.wait_for_selector("#login-form:not([hidden])")
    assert page.is_hidden("#search-form")
    page.fill("#token", "not the token, but long enough")
    page.press("#token", "Enter")
    wait_for_status(page, "wrong token")
    page.fill("#token", TOKEN)
    page.press("#token", "Enter")
    page.wait_for_selector(".card")  # the search of the address ran once logged in
    page.wait_for_function(
        "() => [...document.querySelectorAll('.card img')].every(img => img.complete && img.naturalWidth > 0)"
    )  # thumbnails, sent with the cookie
    assert page.evaluate("() => document.cookie") == ""  # HttpOnly
    cookie = next(c for c in context.cookies() if c["name"] == "cmadapter_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and TOKEN not in cookie["value"]
    context.close()
