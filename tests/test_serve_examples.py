"""The server's query by example (a picture upload, "more like this"), its token on every route, ``/metrics`` and
``/healthz``; over real HTTP on 127.0.0.1 where the transport matters (uploads, cross-site refusals)."""

from __future__ import annotations

import io
import re
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Mount

from cmadapter.cli.app import main
from cmadapter.search.api import VideoIndex
from cmadapter.serve.app import ServeOptions, create_app
from cmadapter.serve.auth import COOKIE
from cmadapter.serve.local_server import running_server
from example_media import DUPLICATES, frame_of, jpeg, shared_example_collection

TOKEN = "a-long-enough-test-token-0123456789"
UPLOAD_CAP = 256 * 1024  # a small cap keeps the too-large upload cheap
PUBLIC = {"/", "/index.html", "/app.js", "/style.css", "/api/login", "/api/logout", "/healthz"}


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_weights):
    """One index; a server without a token and one with, both on 127.0.0.1: {"open"|"token": (url, app)}."""
    root = shared_example_collection(tmp_path_factory, tiny_weights)
    index = VideoIndex.open(root / "index")
    with ExitStack() as stack:
        servers = {}
        for name, token in (("open", None), ("token", TOKEN)):
            app = create_app(index, options=ServeOptions(token=token, max_upload_bytes=UPLOAD_CAP))
            servers[name] = (stack.enter_context(running_server(app)), app)
        yield root, servers
    index.close()


def upload(url: str, data: bytes, *, name: str = "photo.jpg", headers=None, params=None, field: str = "image"):
    files = {field: (name, data, "application/octet-stream")}
    origin = {"Origin": url, "Sec-Fetch-Site": "same-origin"}  # what the page itself sends
    return httpx.post(
        f"{url}/api/search/image", files=files, params=params, headers={**origin, **(headers or {})}, timeout=60
    )


def names(page: dict) -> list[str]:
    return [result["name"] for result in page["results"]]


def test_a_picture_upload_finds_the_video_it_was_taken_from(served):
    root, servers = served
    url, _ = servers["open"]
    picture = jpeg(frame_of(root / "videos" / "clip5.mp4", 2.0))
    page = upload(url, picture, name="C:\\Users\\me\\holiday.jpg", params={"k": 3})
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["kind"] == "image" and body["query"] == "holiday.jpg" and names(body)[0] == "clip5.mp4"
    first = body["results"][0]
    assert first["media_url"] == f"/api/media/{first['video_id']}" and len(first["thumb_urls"]) == 2
    second_page = upload(url, picture, params={"k": 3, "offset": 3}).json()  # paging: the picture again
    assert not set(names(second_page)) & set(names(body)) and body["more"] is True


def test_more_like_this_finds_the_moments_video_then_its_near_duplicates(served):
    _, servers = served
    url, _ = servers["open"]
    hit = httpx.get(f"{url}/api/search", params={"q": "colour blocks", "k": 10}).json()["results"]
    segment = next(r for r in hit if r["name"] == "clip0.mp4" and r["start"] <= 1.0 < r["end"])
    page = httpx.get(f"{url}/api/search", params={"like": segment["segment_id"], "t": 1.0, "k": 5}).json()
    assert page["kind"] == "like" and page["query"].endswith("clip0.mp4@1.00")
    assert names(page)[0] == "clip0.mp4" and set(names(page)[1:3]) == set(DUPLICATES)
    default_t = httpx.get(f"{url}/api/search", params={"like": segment["segment_id"], "k": 5}).json()
    assert names(default_t)[0] == "clip0.mp4"  # t defaults to the segment's start
    for params, status, words in [
        ({"like": segment["segment_id"], "q": "words"}, 422, "not both"),
        ({}, 422, "either q"),
        ({"q": "words", "t": 1}, 422, "t (seconds) goes with like"),
        ({"like": 10**9}, 404, "no segment"),
        ({"like": segment["segment_id"], "t": 999}, 422, "no moment at 999"),
        ({"like": -1}, 422, "greater than or equal to 0"),
        ({"like": segment["segment_id"], "t": "nan"}, 422, ""),
    ]:
        answer = httpx.get(f"{url}/api/search", params=params)
        assert answer.status_code == status and words in answer.text, (params, answer.text)


def bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (9000, 6000)).save(buffer, format="PNG")  # 54 M pixels in ~50 kB
    return buffer.getvalue()


def index_state(root: Path) -> dict:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in (root / "index").rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda root: b"hello, not a picture", "not a picture"),
        (lambda root: b"", "empty"),
        (lambda root: bomb(), "megapixel limit"),
        (lambda root: jpeg(frame_of(root / "videos" / "clip1.mp4", 0.0), scale=6)[:400], "not a picture"),
        (lambda root: b"\xff" * (UPLOAD_CAP + 1), "limit for a picture"),
        (lambda root: b"\xff" * (3 * UPLOAD_CAP), "limit for a picture"),
        (lambda root: (root / "videos" / "clip1.mp4").read_bytes(), "not a picture"),
    ],
    ids=["text", "empty", "bomb", "truncated", "just-too-large", "far-too-large", "a-video"],
)
def test_a_bad_upload_is_a_422_with_a_message_and_the_server_stays_up(served, make, words):
    root, servers = served
    url, _ = servers["open"]
    before = index_state(root)
    answer = upload(url, make(root))
    assert answer.status_code == 422 and words in answer.json()["detail"], answer.text
    assert "\n" not in answer.json()["detail"]
    assert httpx.get(f"{url}/api/search", params={"q": "still here"}).status_code == 200
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    assert index_state(root) == before  # the server never writes the index


def test_an_upload_that_is_not_one_picture_in_a_form_is_a_422(served):
    _, servers = served
    url, _ = servers["open"]
    same = {"Origin": url}
    assert "named 'image'" in upload(url, b"x", field="photo").json()["detail"]
    as_json = httpx.post(f"{url}/api/search/image", json={"image": "x"}, headers=same)
    assert as_json.status_code == 422 and "multipart/form-data" in as_json.json()["detail"]
    two = httpx.post(
        f"{url}/api/search/image", files=[("image", ("a.png", b"1")), ("image", ("b.png", b"2"))], headers=same
    )
    assert two.status_code == 422 and "not a multipart form with one picture" in two.json()["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_a_cross_site_picture_upload_is_refused_before_any_work(served, headers):
    root, servers = served
    url, app = servers["open"]
    forwards = app.state.index.models.texts.batches
    answer = upload(url, jpeg(frame_of(root / "videos" / "clip2.mp4", 0.0)), headers=headers)
    assert answer.status_code == 403 and "page" in answer.json()["detail"]
    assert app.state.index.models.texts.batches == forwards


# ---- the token ---------------------------------------------------------------------------------------------------


def concrete_paths(app) -> list[tuple[str, str]]:
    """(method, path) for every route of the app, ids filled with ones the index holds: a route added later is
    in this list without anyone remembering it."""
    store = app.state.media._store()
    segment = store.segments()[0]
    values = {"video_id": str(segment.file_id), "segment_id": str(segment.id), "frame": "0"}
    found = []
    for route in app.routes:
        if isinstance(route, Mount):  # the page's files
            static = Path(route.app.directory)
            found += [("GET", "/")] + [("GET", f"/{p.name}") for p in static.iterdir() if p.is_file()]
            continue
        path = re.sub(r"{(\w+)}", lambda m: values[m.group(1)], route.path)
        found += [(method, path) for method in sorted(route.methods or {"GET"})]
    return found


def test_the_token_is_required_on_every_route_but_the_pages_files_login_and_health(served):
    _, servers = served
    _, app = servers["token"]
    routes = concrete_paths(app)
    assert {path for _, path in routes} >= {"/api/search", "/api/search/image", "/metrics", "/docs", "/openapi.json"}
    assert any(
        isinstance(r, APIRoute) and r.path == "/api/media/{video_id}" and "HEAD" in r.methods for r in app.routes
    )
    client = TestClient(app, base_url="http://127.0.0.1")
    good = {"Authorization": f"Bearer {TOKEN}"}
    refused, open_paths = [], set()
    for method, path in routes:
        params = {"q": "blocks"} if path == "/api/search" else None
        bare = client.request(method, path, params=params)
        if bare.status_code != 401 or "www-authenticate" not in bare.headers:  # the guard let it through
            open_paths.add(path)
            continue
        refused.append(path)
        assert bare.headers["www-authenticate"].startswith("Bearer")
        assert method == "HEAD" or "needs its token" in bare.json()["detail"]
        for wrong in (f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer"):
            assert client.request(method, path, params=params, headers={"Authorization": wrong}).status_code == 401
        client.cookies.set(COOKIE, TOKEN)  # the token itself is no session
        assert client.request(method, path, params=params).status_code == 401
        client.cookies.clear()
        assert client.request(method, path, params=params, headers=good).status_code not in (401, 403), path
    assert open_paths == PUBLIC  # anything else public is a route someone forgot
    assert len(refused) >= 10


def test_the_login_form_sets_an_httponly_same_site_cookie_that_opens_every_route(served):
    _, servers = served
    url, _ = servers["token"]
    with httpx.Client(base_url=url, headers={"Origin": url}) as client:
        assert client.get("/api/adapters").status_code == 401
        assert client.get("/").status_code == 200  # the page itself, with its login form
        wrong = client.post("/api/login", json={"token": TOKEN + "!"})
        assert wrong.status_code == 401 and COOKIE not in client.cookies
        right = client.post("/api/login", json={"token": TOKEN})
        assert right.status_code == 204
        cookie = right.headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower() and "Path=/" in cookie
        assert TOKEN not in cookie  # the cookie holds an HMAC of the token, never the token
        assert client.get("/api/adapters").status_code == 200
        result = client.get("/api/search", params={"q": "blocks", "k": 1}).json()["results"][0]
        assert client.get(result["thumb_urls"][0]).status_code == 200
        assert client.get(result["media_url"], headers={"Range": "bytes=0-9"}).status_code == 206
        assert client.post("/api/logout").status_code == 204
        assert client.get("/api/adapters").status_code == 401
        form = client.post("/api/login", data={"token": TOKEN})
        assert form.status_code == 204 and client.get("/api/adapters").status_code == 200
    # Another site cannot log a browser in (or out): the cross-site guard stands before the login.
    assert (
        httpx.post(f"{url}/api/login", json={"token": TOKEN}, headers={"Origin": "http://evil.example"}).status_code
        == 403
    )


def test_metrics_count_requests_per_route_and_show_generation_model_load_and_batches(served):
    _, servers = served
    url, app = servers["token"]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for i in range(3):
        assert httpx.get(f"{url}/api/search", params={"q": f"blocks {i}"}, headers=auth).status_code == 200
    httpx.get(f"{url}/api/search", params={"q": "no token"})  # a 401, counted too
    exposition = httpx.get(f"{url}/metrics", headers=auth)
    assert exposition.status_code == 200 and exposition.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(exposition.text)
        for s in family.samples
    }
    search_ok = (("method", "GET"), ("route", "/api/search"), ("status", "200"))
    assert samples[("cmadapter_http_requests_total", search_ok)] >= 3
    assert (
        samples[("cmadapter_http_requests_total", (("method", "GET"), ("route", "/api/search"), ("status", "401")))]
        >= 1
    )
    assert samples[("cmadapter_http_request_duration_seconds_count", (("route", "/api/search"),))] >= 4
    assert samples[("cmadapter_index_generation", ())] == app.state.index.generation
    assert samples[("cmadapter_model_load_seconds", ())] > 0
    assert samples[("cmadapter_text_queries_total", ())] >= samples[("cmadapter_text_forwards_total", ())] >= 3
    assert httpx.get(f"{url}/metrics").status_code == 401
    media_route = [k for k in samples if k[0] == "cmadapter_http_requests_total" and "{" in dict(k[1])["route"]]
    assert all(dict(k[1])["route"].count("{") >= 1 for k in media_route)  # templates, never raw ids


def test_serving_beyond_this_machine_needs_a_token_or_says_so_loudly(served, monkeypatch, capsys, caplog, tmp_path):
    import uvicorn

    root, _ = served
    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.update(app=app, **kw))
    monkeypatch.delenv("CMADAPTER_SERVE_TOKEN", raising=False)
    index = str(root / "index")
    assert main(["serve", index, "--host", "0.0.0.0"]) == 2
    assert "--no-token" in capsys.readouterr().err and not started
    assert main(["serve", index, "--host", "0.0.0.0", "--no-token"]) == 0
    assert "WITHOUT A TOKEN" in caplog.text and started["host"] == "0.0.0.0"
    assert main(["serve", index, "--host", "0.0.0.0", "--token", "short"]) == 2
    assert "at least 16" in capsys.readouterr().err
    monkeypatch.setenv("CMADAPTER_SERVE_TOKEN", TOKEN)
    assert main(["serve", index, "--host", "0.0.0.0"]) == 0
    client = TestClient(started["app"], base_url="http://127.0.0.1")
    assert client.get("/api/adapters").status_code == 401
    assert client.get("/api/adapters", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    (tmp_path / "token").write_text("from-a-file-0123456789abcdef\n")
    assert main(["serve", index, "--token-file", str(tmp_path / "token")]) == 0
    client = TestClient(started["app"], base_url="http://127.0.0.1")
    assert (
        client.get("/api/adapters", headers={"Authorization": "Bearer from-a-file-0123456789abcdef"}).status_code == 200
    )


def test_picture_searches_beyond_the_limit_wait_then_get_503_and_the_rest_still_answer(served, monkeypatch):
    import threading

    import cmadapter.serve.app as app_module

    root, servers = served
    url, app = servers["open"]
    index = app.state.index
    release, entered = threading.Event(), threading.Semaphore(0)
    real = index.search_image

    def held(*args, **kwargs):
        entered.release()
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(index, "search_image", held)
    monkeypatch.setattr(app_module, "PICTURE_WAIT_SECONDS", 0.2)
    picture = jpeg(frame_of(root / "videos" / "clip3.mp4", 0.0))
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(upload(url, picture).status_code)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(4):
        assert entered.acquire(timeout=30)  # all four slots taken
    busy = upload(url, picture)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "5" and "picture searches" in busy.text
    assert httpx.get(f"{url}/api/search", params={"q": "words still work"}).status_code == 200
    release.set()
    for thread in threads:
        thread.join(30)
    assert answers == [200] * 4


def test_public_routes_take_no_more_than_a_login_and_metric_labels_stay_few(served):
    _, servers = served
    url, _ = servers["token"]
    huge = httpx.post(f"{url}/api/login", content=b"x" * 100_000, headers={"Content-Type": "application/json"})
    assert huge.status_code == 422 and "too large" in huge.text
    for method in ("FOO", "BAR", "BAZ"):
        httpx.request(method, f"{url}/api/adapters", headers={"Authorization": f"Bearer {TOKEN}"})
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert 'method="other"' in text and "FOO" not in text
