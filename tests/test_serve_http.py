"""The server over real HTTP on 127.0.0.1, with raw requests: who may call it (the Host check against DNS
rebinding, no cross-site requests but to the page), HEAD, ids beyond SQLite's integers, folders of frames
without Play or Download, and video files that change while they are served."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytest.importorskip("fastapi")

from cmadapter.search.api import VideoIndex
from cmadapter.search.build import BuildOptions
from cmadapter.serve.app import ServeOptions, create_app
from cmadapter.serve.local_server import running_server
from cmadapter.serve.security import HostPolicy, HostPolicyError
from media import write_frame_folder, write_video


@pytest.fixture(scope="module")
def collection(tmp_path_factory, tiny_weights):
    """A 60 s H.264 video (keyframe every 2 s, noisy frames: ~0.5 MB) and a folder of frames, indexed."""
    root = tmp_path_factory.mktemp("http")
    (root / "media").mkdir()
    write_video(root / "media" / "long.mp4", 240, rate=4, size=(128, 96), noise=True, options={"g": "8"})
    write_frame_folder(root / "media" / "frames.mp4", 6)  # frames extracted from a video
    options = BuildOptions(window=2, stride=1, progress=False)
    VideoIndex.build([root / "media"], root / "index", pretrained=str(tiny_weights), options=options)
    return root, VideoIndex.open(root / "index")


@pytest.fixture(scope="module")
def servers(collection):
    """One server per Host policy, all on 127.0.0.1 and one index: {name: (port, app)}."""
    _, index = collection
    policies = {
        "default": ServeOptions(),
        "proxy": ServeOptions(allowed_hosts=("search.example.com", ".corp.example", "10.1.2.3")),
        "wildcard": ServeOptions(bound_host="0.0.0.0"),
        "any": ServeOptions(allowed_hosts=("*",)),
    }
    with ExitStack() as stack:
        found = {}
        for name, options in policies.items():
            app = create_app(index, options=options)
            found[name] = (urlsplit(stack.enter_context(running_server(app))).port, app)
        yield found


def raw(port: int, path: str, headers: dict[str, str] | None = None, *, method: str = "GET", version: str = "HTTP/1.1"):
    """(status, headers, body) of one request written byte by byte: any Host header, or none."""
    lines = [f"{method} {path} {version}", *(f"{k}: {v}" for k, v in (headers or {}).items()), "Connection: close"]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    found = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        found[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), found, body


def local(port: int) -> dict[str, str]:
    return {"Host": f"127.0.0.1:{port}"}


def ids(app) -> dict:
    """The video's id, its first and last segment ids, and the folder's id, from the index."""
    store = app.state.media._store()
    files = store.files()
    video = next(row for path, row in files.items() if path.endswith("long.mp4"))
    folder = next(row for path, row in files.items() if path.endswith("frames.mp4"))
    segments = [s.id for s in store.segments() if s.file_id == video.id]
    return {"video": video.id, "first": segments[0], "last": segments[-1], "folder": folder.id, "size": video.size}


# ---- the Host check (DNS rebinding) ---------------------------------------------------------------------------

REFUSED_HOSTS = [
    "evil.example",
    "evil.example:{port}",
    "EVIL.example",
    "localhost.evil.example",
    "127.0.0.1.nip.io:{port}",
    "10.0.0.5:{port}",  # an IP literal that is neither loopback nor the bound address
    "[::1",
    "::1",
    "localhost:port",
    "localhost:{port}:{port}",
    "",
]
ALLOWED_HOSTS = [
    "127.0.0.1:{port}",
    "127.0.0.1",
    "127.0.0.5:{port}",
    "localhost:{port}",
    "LOCALHOST:{port}",
    "localhost.:{port}",
    "search.localhost:{port}",
    "[::1]:{port}",
    "[::ffff:127.0.0.1]:{port}",
]


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_a_host_that_is_not_local_is_refused_on_every_route(servers, host):
    port, _ = servers["default"]
    for path in ("/", "/app.js", "/api/adapters", "/api/search?q=grey", "/api/media/1", "/docs"):
        status, headers, body = raw(port, path, {"Host": host.format(port=port)})
        assert status == 403, (host, path, status)
        assert headers["content-type"] == "application/json"
        detail = json.loads(body)["detail"]
        assert "--allow-host" in detail and "\n" not in detail


@pytest.mark.parametrize("host", ALLOWED_HOSTS)
def test_localhost_names_and_loopback_addresses_are_served(servers, host):
    port, _ = servers["default"]
    status, headers, body = raw(port, "/api/adapters", {"Host": host.format(port=port)})
    assert status == 200, body
    assert headers["cross-origin-resource-policy"] == "same-origin"


def test_a_request_without_exactly_one_host_is_refused(servers):
    port, _ = servers["default"]
    assert raw(port, "/api/adapters", {}, version="HTTP/1.0")[0] == 403
    assert raw(port, "/api/adapters", {})[0] in (400, 403)  # HTTP/1.1 requires Host: the server may refuse first
    twice = raw(port, "/api/adapters", {"Host": f"127.0.0.1:{port}", "host": "evil.example"})
    assert twice[0] in (400, 403)


@pytest.mark.parametrize(
    ("server", "host", "status"),
    [
        ("proxy", "search.example.com", 200),
        ("proxy", "SEARCH.example.com.:443", 200),
        ("proxy", "corp.example", 200),
        ("proxy", "a.b.corp.example:8080", 200),
        ("proxy", "10.1.2.3:8000", 200),
        ("proxy", "localhost", 200),
        ("proxy", "example.com", 403),
        ("proxy", "search.example.com.evil.example", 403),
        ("proxy", "evilcorp.example", 403),
        ("proxy", "10.1.2.4", 403),
        ("wildcard", "192.168.1.20:8000", 200),
        ("wildcard", "[fe80::1]:8000", 200),
        ("wildcard", "10.0.0.5", 200),
        ("wildcard", "rebind.example", 403),
        ("wildcard", "nas.local:8000", 403),
        ("any", "anything.example", 200),
    ],
)
def test_allow_host_names_a_proxy_and_a_wildcard_bind_allows_ip_literals_only(servers, server, host, status):
    port, _ = servers[server]
    assert raw(port, "/api/adapters", {"Host": host})[0] == status


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("http://search.example.com", "no scheme"),
        ("search.example.com:8000", "no scheme, port"),
        ("*.example.com", "'.example.com'"),
        ("a b", "give a host name"),
    ],
)
def test_a_bad_allow_host_is_a_one_line_error(value, words):
    with pytest.raises(HostPolicyError, match="--allow-host") as error:
        HostPolicy((value,))
    assert words in str(error.value) and "\n" not in str(error.value)


def test_the_command_line_passes_host_and_allow_host_to_the_server(collection, monkeypatch, capsys):
    pytest.importorskip("uvicorn")
    import uvicorn
    from fastapi.testclient import TestClient

    from cmadapter.cli.app import main

    root, _ = collection
    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.update(app=app, **kw))
    assert main(["serve", str(root / "index"), "--allow-host", "proxy.example", "--clip-cache-mb", "1"]) == 0
    assert started["host"] == "127.0.0.1"
    app = started["app"]
    assert app.state.media.exports.limits.cache_bytes == 2**20
    assert TestClient(app, base_url="http://proxy.example").get("/api/adapters").status_code == 200
    assert TestClient(app, base_url="http://other.example").get("/api/adapters").status_code == 403
    assert TestClient(app).get("/api/adapters").status_code == 403  # TestClient's own "testserver" is no exception
    assert main(["serve", str(root / "index"), "--allow-host", "http://proxy.example"]) == 2
    assert "--allow-host 'http://proxy.example'" in capsys.readouterr().err


# ---- cross-site requests ----------------------------------------------------------------------------------------

CROSS_SITE = [
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://localhost:{port}"},  # another origin than the Host the request names
    {"Origin": "https://127.0.0.1:{port}"},
    {"Sec-Fetch-Site": "same-origin", "Origin": "http://evil.example"},
    {"Referer": "http://evil.example/page.html"},
]
SAME_SITE = [
    {},
    {"Sec-Fetch-Site": "none"},
    {"Sec-Fetch-Site": "same-origin"},
    {"Origin": "http://127.0.0.1:{port}"},
    {"Referer": "http://127.0.0.1:{port}/?q=grey"},
]


def _with(port: int, headers: dict[str, str]) -> dict[str, str]:
    return {**local(port), **{k: v.format(port=port) for k, v in headers.items()}}


@pytest.mark.parametrize("headers", CROSS_SITE)
def test_cross_site_requests_to_the_api_are_refused(servers, headers):
    port, app = servers["default"]
    known = ids(app)
    for path in (
        "/api/search?q=grey",
        "/api/adapters",
        f"/api/media/{known['video']}",
        f"/api/thumbs/{known['first']}/0.jpg",
        f"/api/clip/{known['first']}",
        "/openapi.json",
    ):
        status, _, body = raw(port, path, _with(port, headers))
        assert status == 403, (headers, path, status)
        assert "this server's own page" in json.loads(body)["detail"]


@pytest.mark.parametrize("headers", SAME_SITE)
def test_the_page_itself_and_the_address_bar_reach_the_api(servers, headers):
    port, app = servers["default"]
    assert raw(port, "/api/search?q=grey", _with(port, headers))[0] == 200
    assert raw(port, f"/api/thumbs/{ids(app)['first']}/0.jpg", _with(port, headers))[0] == 200


def test_the_page_stays_navigable_from_other_sites(servers):
    port, _ = servers["default"]
    for path in ("/", "/?q=grey", "/index.html", "/app.js", "/style.css"):
        assert (
            raw(port, path, _with(port, {"Sec-Fetch-Site": "cross-site", "Referer": "http://evil.example/"}))[0] == 200
        )


def test_a_cross_site_clip_request_cuts_nothing_even_with_the_host_check_off(servers):
    port, app = servers["any"]
    segment = ids(app)["last"]
    headers = {"Host": "anything.example", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "image"}
    assert raw(port, f"/api/clip/{segment}", headers)[0] == 403
    assert app.state.media.exports.stored_bytes == 0 and not any(app.state.media.exports.folder.iterdir())


# ---- HEAD, ids, folders of frames ------------------------------------------------------------------------------


def test_head_on_a_video_answers_like_get_without_a_body(servers):
    port, app = servers["default"]
    known = ids(app)
    url = f"/api/media/{known['video']}"
    status, headers, body = raw(port, url, local(port), method="HEAD")
    assert status == 200 and body == b""
    assert headers["content-length"] == str(known["size"]) and headers["content-type"] == "video/mp4"
    assert headers["accept-ranges"] == "bytes"
    get = raw(port, url, local(port))
    assert get[0] == 200 and len(get[2]) == known["size"]
    assert {k: v for k, v in get[1].items() if k != "date"} == {k: v for k, v in headers.items() if k != "date"}
    status, headers, body = raw(port, url, {**local(port), "Range": "bytes=100-199"}, method="HEAD")
    assert status == 206 and body == b"" and headers["content-range"] == f"bytes 100-199/{known['size']}"


@pytest.mark.parametrize("number", [2**63, 2**63 + 1, 2**64, 10**30, -1, -(2**63), -(2**63) - 1])
def test_ids_beyond_sqlite_integers_or_negative_are_404_on_every_id_route(servers, number):
    port, app = servers["default"]
    for path in (f"/api/media/{number}", f"/api/thumbs/{number}/0.jpg", f"/api/clip/{number}"):
        status, _, body = raw(port, path, local(port))
        assert status == 404, (path, status, body[:200])
        assert "no " in json.loads(body)["detail"]
    status, _, _ = raw(port, f"/api/thumbs/{ids(app)['first']}/{number}.jpg", local(port))
    assert status == 404


def test_a_folder_of_frames_offers_thumbnails_but_neither_play_nor_download(servers):
    port, app = servers["default"]
    _, _, body = raw(port, "/api/search?q=grey&k=10", local(port))
    results = {r["kind"]: r for r in json.loads(body)["results"]}
    folder, video = results["frames"], results["video"]
    assert folder["media_url"] is None and folder["clip_url"] is None
    assert all(raw(port, url, local(port))[0] == 200 for url in folder["thumb_urls"])
    assert video["media_url"] and video["clip_url"]
    assert raw(port, f"/api/media/{ids(app)['folder']}", local(port))[0] == 404


# ---- files that change under the server -------------------------------------------------------------------------


def test_a_thumbnail_miss_reads_only_near_its_segment(collection):
    """Seeking: the last segment's thumbnails of a 60 s video read a fraction of its bytes (counted by the
    kernel for this thread), where decoding from the start would read all of them."""
    io_file = Path("/proc/thread-self/io")
    if not io_file.exists():
        pytest.skip("needs Linux's per-thread I/O counters")
    from cmadapter.serve.media import MediaLibrary

    root, _ = collection
    library = MediaLibrary(root / "index")
    try:
        store = library._store()
        video = next(row for path, row in store.files().items() if path.endswith("long.mp4"))
        segments = [s for s in store.segments() if s.file_id == video.id]
        library.thumbnail(segments[0].id, 0)  # warm: imports, codecs, the database pages
        library.segment(segments[-1].id)
        before = _bytes_read(io_file)
        library.thumbnail(segments[-1].id, 0)
        read = _bytes_read(io_file) - before
    finally:
        library.close()
    assert 0 < read < video.size / 3, (read, video.size)


def _bytes_read(io_file: Path) -> int:
    return int(next(line for line in io_file.read_text().splitlines() if line.startswith("rchar:")).split()[1])


@pytest.mark.parametrize("change", ["rewritten in place", "truncated and rewritten", "shrunk"])
def test_a_video_that_changes_while_it_is_sent_is_cut_short_never_mixed(collection, change):
    """The response reads one descriptor and checks it with fstat after every chunk: the client gets a prefix
    of the file it asked for and then a closed connection, never bytes of the new content under old headers."""
    import anyio

    _, index = collection
    app = create_app(index)
    video_id = ids(app)["video"]
    path = next(Path(p) for p in app.state.media._store().files() if p.endswith("long.mp4"))
    original, before = path.read_bytes(), path.stat()
    replacement = bytes(255 - b for b in original)

    def alter() -> None:
        if change == "shrunk":
            os.truncate(path, len(original) // 4)
            return
        with open(path, "r+b" if change == "rewritten in place" else "wb") as file:
            file.write(replacement)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": f"/api/media/{video_id}",
        "raw_path": f"/api/media/{video_id}".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"range", b"bytes=0-")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    messages: list[dict] = []

    async def call() -> None:
        requested = False

        async def receive():
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await anyio.sleep_forever()

        async def send(message):
            messages.append(message)
            if message["type"] == "http.response.body" and len(messages) == 2:
                alter()  # after the first chunk went out

        with anyio.fail_after(30):  # a response that never ends fails here
            with contextlib.suppress(Exception):  # the server closes the connection on it; we look at what was sent
                await app(scope, receive, send)

    try:
        # A thread of its own: a session's Chromium (Playwright's sync API) may hold this worker's main thread's loop.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(anyio.run, call).result()
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    start = messages[0]
    assert start["status"] == 206
    promised = int(dict(start["headers"])[b"content-length"])
    body = b"".join(m.get("body", b"") for m in messages[1:])
    assert promised == len(original) and 0 < len(body) < promised
    assert body == original[: len(body)], "bytes of the changed file were sent"


@pytest.mark.parametrize("change", ["rewritten in place", "shrunk"])
@pytest.mark.parametrize("request_kind", ["GET first 100 bytes", "GET whole", "HEAD"])
def test_a_video_that_changes_after_it_is_opened_but_before_its_first_byte_is_a_clean_404(
    collection, change, request_kind
):
    """The window a soak run hit: the route's checks pass, the file is opened, then it changes before anything
    is sent. The answer is a 404 with a reason, as for a file that changed a moment earlier, never a status
    line and headers followed by a connection closed with no body."""
    _, index = collection
    app = create_app(index)
    media = app.state.media
    path = next(Path(p) for p in media._store().files() if p.endswith("long.mp4"))
    original, before = path.read_bytes(), path.stat()
    open_video = media.open_video

    def open_then_change(video_id):
        opened = open_video(video_id)
        if change == "shrunk":
            os.truncate(path, 50)
        else:
            path.write_bytes(bytes(255 - b for b in original))
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
        return opened

    media.open_video = open_then_change
    method = "HEAD" if request_kind == "HEAD" else "GET"
    headers = {"Range": "bytes=0-99"} if request_kind == "GET first 100 bytes" else {}
    try:
        with running_server(app) as url:
            port = urlsplit(url).port
            headers = {**headers, **local(port)}
            status, found, body = raw(port, f"/api/media/{ids(app)['video']}", headers, method=method)
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert status == 404, (status, found, body[:200])
    if method == "GET":
        assert "changed while it was being sent" in json.loads(body)["detail"]
        assert int(found["content-length"]) == len(body)


def test_a_video_whose_size_no_longer_matches_the_index_is_404(collection, servers):
    port, app = servers["default"]
    root, _ = collection
    path = root / "media" / "long.mp4"
    before = path.stat()
    with open(path, "ab") as file:
        file.write(b"\0")
    try:
        status, _, body = raw(port, f"/api/media/{ids(app)['video']}", local(port))
    finally:
        os.truncate(path, before.st_size)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert status == 404 and "changed since it was indexed" in json.loads(body)["detail"]


def test_a_flood_of_clip_exports_leaves_searches_answering(collection, monkeypatch):
    """More clip requests than the server's thread pool (40) while an export hangs: they wait without taking the
    threads searches need, so a search still answers at once; the clips then come, one export at a time."""
    import httpx

    from cmadapter.serve import media
    from cmadapter.serve.app import CLIP_REQUESTS
    from cmadapter.serve.exports import ClipLimits

    _, index = collection
    app = create_app(index, options=ServeOptions(clips=ClipLimits(encoders=1, wait_seconds=60)))
    exports = app.state.media.exports
    segments = [s.id for s in app.state.media._store().segments() if s.file_id == ids(app)["video"]][:44]
    release, cuts = threading.Event(), []

    def held(source, start, end, out, **options):
        cuts.append(start)
        if len(cuts) == 1:
            assert release.wait(60)
        out.write_bytes(b"a clip")  # what is cut does not matter here

    monkeypatch.setattr(media, "export_clip", held)
    with (
        running_server(app) as url,
        httpx.Client(base_url=url, timeout=60) as client,
        ThreadPoolExecutor(len(segments)) as pool,
    ):
        try:
            answers = [pool.submit(client.get, f"/api/clip/{segment}") for segment in segments]
            deadline = time.monotonic() + 30
            while exports._flight.callers() < CLIP_REQUESTS:  # the admitted ones: one cutting, the rest waiting
                assert time.monotonic() < deadline, exports._flight.callers()
                time.sleep(0.01)
            search = client.get("/api/search", params={"q": "grey"}, timeout=10)
            assert search.status_code == 200
            assert exports._flight.callers() == CLIP_REQUESTS and len(cuts) == 1
        finally:
            release.set()
        assert [answer.result().status_code for answer in answers] == [200] * len(segments)
    assert len(cuts) == len(segments)
