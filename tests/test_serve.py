"""The web server's JSON API with FastAPI's TestClient: search, paging, media with Range, thumbnails, clips,
every error, and attempts to read files outside the index."""

from __future__ import annotations

import io
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from cmadapter.search.api import VideoIndex
from cmadapter.serve.app import ServeOptions, create_app
from media import LEVELS, frame_index
from search_fixtures import adapter_file
from serve_fixtures import webm_video


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_weights):
    root = tmp_path_factory.mktemp("serve")
    videos = root / "videos"
    for i in range(5):
        webm_video(videos / f"clip{i}.webm", seconds=4 + 2 * i, shift=3 * i)
    (videos / "secret.txt").write_text("not a video")
    adapter = adapter_file(tiny_weights, root / "demo.safetensors")
    from cmadapter.search.build import BuildOptions

    options = BuildOptions(window=2, stride=1, progress=False)
    VideoIndex.build(
        [videos],
        root / "index",
        pretrained=str(tiny_weights),
        adapters={"demo": adapter},
        zero_shot=True,
        options=options,
    )
    # TestClient sends "Host: testserver": allowed here only, as a reverse proxy's name would be.
    app = create_app(root / "index", options=ServeOptions(allowed_hosts=("testserver",)))
    with TestClient(app) as client:
        yield client, root


def search(client, **params):
    response = client.get("/api/search", params={"q": "a grey square", **params})
    assert response.status_code == 200, response.text
    return response.json()


def test_search_returns_results_with_media_links_and_frame_weights(served):
    client, _ = served
    page = search(client, k=3)
    assert page["adapter"] == "demo" and page["offset"] == 0 and page["more"] is True
    assert len(page["results"]) == 3
    first = page["results"][0]
    assert first["media_url"] == f"/api/media/{first['video_id']}"
    assert len(first["thumb_urls"]) == len(first["frame_times"]) == len(first["frame_weights"])
    assert abs(sum(first["frame_weights"]) - 1) < 1e-4
    assert first["start"] <= first["best_frame_time"] <= first["end"]
    assert [r["score"] for r in page["results"]] == sorted((r["score"] for r in page["results"]), reverse=True)
    # The same results as the library's search.
    index = client.app.state.index
    direct = index.search("a grey square", k=3, adapter="demo").to_dict()["results"]
    assert [(r["video"], r["start"]) for r in direct] == [(r["video"], r["start"]) for r in page["results"]]


def test_paging_continues_where_the_last_page_ended(served):
    client, _ = served
    everything = search(client, k=5)["results"]
    first, second = search(client, k=2), search(client, k=2, offset=2)
    assert [r["video"] for r in first["results"] + second["results"]] == [r["video"] for r in everything[:4]]
    last = search(client, k=2, offset=4)
    assert len(last["results"]) == 1 and last["more"] is False


def test_zero_shot_and_the_adapter_are_both_offered(served):
    client, _ = served
    listing = client.get("/api/adapters").json()
    assert set(listing["adapters"]) == {"demo", "zero-shot"} and listing["default"] == "demo"
    assert search(client, adapter="zero-shot")["adapter"] == "zero-shot"


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"q": "x" * 1001}, "1000"),
        ({"q": ""}, "at least 1"),
        ({"q": "   "}, "empty"),
        ({"q": "a", "k": 101}, "100"),
        ({"q": "a", "k": 0}, "greater than or equal to 1"),
        ({"q": "a", "offset": -1}, "greater than or equal to 0"),
        ({"q": "a", "adapter": "msrvtt"}, "unknown adapter 'msrvtt'"),
    ],
)
def test_bad_queries_are_422_with_a_message(served, params, words):
    client, _ = served
    response = client.get("/api/search", params=params)
    assert response.status_code == 422
    assert words in response.text


def test_media_streams_the_file_and_honours_range(served):
    client, _root = served
    result = search(client, k=1)["results"][0]
    path = Path(result["video"])
    data = path.read_bytes()
    whole = client.get(result["media_url"])
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "video/webm" and whole.headers["accept-ranges"] == "bytes"
    part = client.get(result["media_url"], headers={"Range": "bytes=100-299"})
    assert part.status_code == 206
    assert part.content == data[100:300]
    assert part.headers["content-range"] == f"bytes 100-299/{len(data)}"
    tail = client.get(result["media_url"], headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == data[-50:]
    assert client.get(result["media_url"], headers={"Range": f"bytes={len(data) + 10}-"}).status_code == 416


def test_thumbnails_are_the_indexed_frames_as_jpeg(served):
    client, _ = served
    result = search(client, k=1)["results"][0]
    for url in result["thumb_urls"]:
        response = client.get(url)
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
        image = Image.open(io.BytesIO(response.content))
        assert min(image.size) == 96
    segment = result["segment_id"]
    assert client.get(f"/api/thumbs/{segment}/{len(result['thumb_urls'])}.jpg").status_code == 404
    assert client.get("/api/thumbs/999999/0.jpg").status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "/api/media/..%2F..%2Fetc%2Fpasswd",
        "/api/media/%2Fetc%2Fpasswd",
        "/api/media/../../etc/passwd",
        "/api/media/-1",
        "/api/media/999999",
        "/api/thumbs/..%2F..%2Fetc/passwd.jpg",
        "/api/clip/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/..%2F..%2F..%2Fetc%2Fpasswd",
        "/static/../../../../etc/passwd",
        "/videos/secret.txt",
        "/index.sqlite",
    ],
)
def test_nothing_outside_the_page_and_the_index_ids_is_served(served, url):
    client, _root = served
    response = client.get(url)
    assert response.status_code in (404, 422), (url, response.status_code)
    assert b"root:" not in response.content and b"not a video" not in response.content
    assert b"SQLite format" not in response.content


def test_no_directory_listing(served):
    client, _ = served
    for url in ("/api/", "/api/media/", "/api/thumbs/", "/static/"):
        response = client.get(url)
        assert response.status_code in (404, 405), url
    page = client.get("/")
    assert page.status_code == 200 and "<title>cmadapter search</title>" in page.text


def test_a_video_deleted_since_indexing_is_404_saying_so(served, tmp_path):
    client, _root = served
    result = search(client, k=5)["results"][-1]
    path = Path(result["video"])
    moved = tmp_path / path.name
    path.rename(moved)
    try:
        response = client.get(result["media_url"])
        assert response.status_code == 404
        assert "deleted or moved since it was indexed" in response.json()["detail"]
        assert client.get(result["clip_url"]).status_code == 404
    finally:
        moved.rename(path)


@pytest.mark.slow  # two load runs in fresh processes
def test_the_comparison_serves_the_baseline_its_own_index(served, tmp_path):
    """`bench serve --against SRC --against-index OLD`: the --against code serves OLD (code that cannot read this
    index's version); here OLD is missing, so only the baseline's run fails, and says where it looked."""
    from cmadapter.bench.serve import THIS_CODE, ServeBenchSettings, compare
    from cmadapter.errors import CmadapterError

    _, root = served
    old = tmp_path / "old-index"
    settings = ServeBenchSettings(index=root / "index", queries=2, clients=(1,), k=2, against_index=old)
    with pytest.raises(CmadapterError, match="the load run of") as failed:
        compare(settings, THIS_CODE, threads=1)
    assert "old-index" in str(failed.value)


def test_the_server_never_writes_to_the_index(served):
    client, root = served
    index = root / "index"
    before = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in index.rglob("*") if p.is_file()}
    result = search(client, k=2)["results"][0]
    client.get(result["thumb_urls"][0])
    client.get(result["clip_url"])
    after = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in index.rglob("*") if p.is_file()}
    assert before == after


def test_the_api_is_documented(served):
    client, _ = served
    schema = client.get("/openapi.json").json()
    assert {
        "/api/search",
        "/api/media/{video_id}",
        "/api/thumbs/{segment_id}/{frame}.jpg",
        "/api/clip/{segment_id}",
    } <= set(schema["paths"])
    assert client.get("/docs").status_code == 200


def test_a_bounded_load_of_concurrent_queries_has_no_errors(served):
    from cmadapter.bench.serve import ServeBenchSettings, benchmark

    _, root = served
    report = benchmark(ServeBenchSettings(index=root / "index", queries=40, clients=8, k=5))
    assert report["errors"] == 0, report["first_errors"]
    assert report["p50_ms"] <= report["p95_ms"] <= report["max_ms"]


def test_a_thumbnail_is_the_frame_a_one_point_decode_gives(served, monkeypatch):
    """Thumbnails are decoded a segment at a time (seeking to it) and kept per video and grid point (overlapping
    segments share them); each is still exactly the JPEG of its own grid point, as a one-point decode makes it."""
    from cmadapter.serve import media
    from cmadapter.serve.media import THUMBNAIL_SHORT_SIDE, MediaLibrary, _jpeg
    from cmadapter.video.grid import decode_path_grid

    _, root = served
    library = MediaLibrary(root / "index")  # its own, empty cache
    store = library._store()
    first, second = store.segments([1, 2])  # stride 1, window 2: they share a frame
    assert first.file_id == second.file_id and second.first < first.stop
    path = Path(store.file(first.file_id).path)
    real, decodes = media.decode_points, []
    monkeypatch.setattr(media, "decode_points", lambda *args, **kw: decodes.append(args) or real(*args, **kw))
    for frame in range(first.stop - first.first):
        point = first.first + frame
        expected = decode_path_grid(path, library.rate, THUMBNAIL_SHORT_SIDE, lambda count, p=point: [p]).frames[0]
        assert library.thumbnail(1, frame) == _jpeg(expected)
    assert len(decodes) == 1  # the whole segment in one pass
    library.thumbnail(2, 0)  # the frame the two segments share: already there
    assert len(decodes) == 1
    library.close()


# ---- clips: the right frames, bounded work ----------------------------------------------------------------------

RATE = 4  # serve_fixtures.webm_video's frames per second


def clip_frames(data: bytes) -> tuple[list[int], list[float], tuple[int, int]]:
    """Which source frame each frame of a clip shows (media.frame_index), its time from the clip's start, and the
    clip's size."""
    with av.open(io.BytesIO(data)) as container:
        frames = list(container.decode(container.streams.video[0]))
    times = [float(frame.time - frames[0].time) for frame in frames]
    shown = [frame_index(frame.to_ndarray(format="rgb24")) for frame in frames]
    return shown, times, (frames[0].width, frames[0].height)


def source_frames(name: str, start: float, end: float) -> list[int]:
    """The levels the source's frames in [start, end) show: clip{i}.webm starts at level 3 i (the fixture)."""
    shift = 3 * int(Path(name).stem.removeprefix("clip"))
    return [(i + shift) % LEVELS for i in range(round(start * RATE), round(end * RATE))]


def test_a_clip_is_exactly_the_segments_frames(served):
    client, _ = served
    results = search(client, k=5)["results"]
    hits = [hit for result in results for hit in (result, *result["other_hits"])][:8]
    assert any(hit["start"] > 0 for hit in hits)
    for hit in hits:
        response = client.get(hit["clip_url"])
        assert response.status_code == 200
        assert "attachment" in response.headers["content-disposition"]
        shown, times, _ = clip_frames(response.content)
        assert shown == source_frames(hit["video"], hit["start"], hit["end"]), hit
        assert times == pytest.approx([i / RATE for i in range(len(shown))])


def test_a_clip_that_starts_between_keyframes_is_re_encoded_scaled_down(served, tmp_path):
    from cmadapter.serve.clips import export_clip

    _, root = served
    source = root / "videos" / "clip2.webm"  # 8 s, a keyframe every second, 64 x 48
    assert export_clip(source, 1.5, 3.25, tmp_path / "cut.webm", short_side=32) == "encode"
    shown, times, size = clip_frames((tmp_path / "cut.webm").read_bytes())
    assert shown == source_frames(source.name, 1.5, 3.25)
    assert times == pytest.approx([i / RATE for i in range(len(shown))])
    assert size == (42, 32)  # 64 x 48 scaled to a short side of 32, sizes even
    assert export_clip(source, 2, 3, tmp_path / "copy.webm", short_side=32) == "copy"  # a copy keeps its size
    assert clip_frames((tmp_path / "copy.webm").read_bytes())[2] == (64, 48)


def test_a_segment_longer_than_the_clip_limit_is_cut_from_its_start(served):
    from cmadapter.serve.exports import ClipLimits
    from cmadapter.serve.media import MediaLibrary

    _, root = served
    library = MediaLibrary(root / "index", clips=ClipLimits(max_seconds=1.0))
    try:
        segment = library._store().segments([3])[0]  # 2 s long
        opened = library.clip(3)
        with open(opened.fd, "rb", closefd=False) as file:
            shown, _, _ = clip_frames(file.read())
        opened.close()
        video = library.video(segment.file_id).path
        assert shown == source_frames(video, segment.start, segment.start + 1.0)
    finally:
        library.close()


def _blocking(monkeypatch, module, name: str):
    """Replace ``module.name`` by a wrapper that counts calls and holds the first until ``release`` is set."""
    real, calls, release = getattr(module, name), [], threading.Event()

    def held(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            assert release.wait(30), "the test never released the first call"
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, held)
    return calls, release


def _poll(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_concurrent_thumbnail_misses_for_one_segment_decode_it_once(served, monkeypatch):
    from cmadapter.serve import media

    _, root = served
    library = media.MediaLibrary(root / "index")
    decodes, release = _blocking(monkeypatch, media, "decode_points")
    try:
        with ThreadPoolExecutor(4) as pool:
            answers = [pool.submit(library.thumbnail, 4, frame) for frame in (0, 1, 0, 1)]
            _poll(lambda: library._flight.callers() == 4)  # all four waiting on the one decode
            release.set()
            jpegs = [answer.result(timeout=30) for answer in answers]
        assert len(decodes) == 1
        assert jpegs[0] == jpegs[2] and jpegs[1] == jpegs[3] and jpegs[0] != jpegs[1]
    finally:
        release.set()
        library.close()


def test_concurrent_exports_of_one_segment_cut_it_once(served, monkeypatch):
    from cmadapter.serve import media

    _, root = served
    library = media.MediaLibrary(root / "index")
    cuts, release = _blocking(monkeypatch, media, "export_clip")
    try:
        with ThreadPoolExecutor(3) as pool:
            answers = [pool.submit(library.clip, 5) for _ in range(3)]
            _poll(lambda: library.exports._flight.callers() == 3)
            release.set()
            opened = [answer.result(timeout=30) for answer in answers]
        assert len(cuts) == 1
        assert len({os.fstat(o.fd).st_ino for o in opened}) == 1  # the same file, three times
        for o in opened:
            o.close()
    finally:
        release.set()
        library.close()


def test_exports_beyond_the_running_limit_wait_then_get_503(served, monkeypatch):
    from cmadapter.serve import media
    from cmadapter.serve.exports import ClipLimits

    client, _ = served
    options = ServeOptions(allowed_hosts=("testserver",), clips=ClipLimits(encoders=1, wait_seconds=0.2))
    app = create_app(client.app.state.index, options=options)  # the loaded index, its own exports
    cuts, release = _blocking(monkeypatch, media, "export_clip")
    try:
        with ThreadPoolExecutor(1) as pool, TestClient(app) as limited:
            first = pool.submit(limited.get, "/api/clip/6")
            _poll(lambda: len(cuts) == 1)  # the one slot is taken
            began = time.monotonic()
            busy = limited.get("/api/clip/7")
            waited = time.monotonic() - began
            release.set()
            assert first.result(timeout=30).status_code == 200
        assert busy.status_code == 503 and busy.headers["retry-after"]
        assert "1 clip exports are already running" in busy.json()["detail"]
        assert waited >= 0.2
        assert len(cuts) == 1  # the refused one never started
    finally:
        release.set()


def test_the_clip_cache_keeps_its_byte_bound_evicting_the_least_recently_used(served):
    from cmadapter.serve.exports import ClipLimits
    from cmadapter.serve.media import MediaLibrary

    _, root = served
    sizes = {}
    library = MediaLibrary(root / "index")
    for segment in (8, 9, 10):
        opened = library.clip(segment)
        sizes[segment] = opened.size
        opened.close()
    library.close()
    bound = max(sizes[8] + sizes[9], sizes[8] + sizes[10])  # two fit, three do not
    library = MediaLibrary(root / "index", clips=ClipLimits(cache_bytes=bound))
    try:
        kept = lambda: {p.name for p in library.exports.folder.iterdir()}
        first = library.clip(8)
        (name8,) = kept()
        library.clip(9).close()
        (name9,) = kept() - {name8}
        library.clip(8).close()  # used again: now the most recent
        library.clip(10).close()
        (name10,) = kept() - {name8, name9}
        assert kept() == {name8, name10}  # 9, the least recently used, went
        assert library.exports.stored_bytes == sizes[8] + sizes[10] <= bound
        # A download already open keeps reading its file; an evicted clip is made again on demand.
        with open(first.fd, "rb", closefd=False) as file:
            assert len(file.read()) == sizes[8]
        first.close()
        again = library.clip(9)
        assert again.size == sizes[9]
        again.close()
    finally:
        library.close()
