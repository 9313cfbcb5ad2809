"""Query by example: a picture, or a moment of an indexed video, through the same two stages as words; and
concurrent text queries sharing forwards of the text tower (``search/batching.py``)."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cmadapter.cli.app import main
from cmadapter.heads import TextConditionedPool
from cmadapter.search.api import VideoIndex
from cmadapter.search.batching import BatchOptions, MicroBatcher
from cmadapter.search.errors import SearchError
from cmadapter.search.pictures import PictureError
from cmadapter.search.queries import encode_texts, parse_moment
from cmadapter.search.query import pad_frames
from example_media import DUPLICATES, frame_of, jpeg, shared_example_collection
from search_fixtures import adapter_file


@pytest.fixture(scope="module")
def examples(tmp_path_factory, tiny_weights):
    root = shared_example_collection(tmp_path_factory, tiny_weights)
    index = VideoIndex.open(root / "index")
    yield root, index
    index.close()


def names(found) -> list[str]:
    return [Path(result.best.video).name for result in found.results]


@pytest.mark.parametrize("adapter", ["demo", "zero-shot"])
def test_a_picture_finds_the_video_it_was_taken_from_first(examples, adapter):
    root, index = examples
    for seed, second in ((3, 1.0), (5, 2.5), (7, 0.0)):
        source = root / "videos" / f"clip{seed}.mp4"
        found = index.search_image(jpeg(frame_of(source, second)), k=3, adapter=adapter, name=f"photo{seed}.jpg")
        assert names(found)[0] == f"clip{seed}.mp4", (seed, names(found))
        assert found.kind == "image" and found.query == f"photo{seed}.jpg" and found.adapter == adapter
        best = found.results[0].best
        assert best.start <= second < best.end  # the segment that shows the moment the picture was taken
    # The same picture as a file and as an array gives the same answer.
    picture = frame_of(root / "videos" / "clip3.mp4", 1.0)
    (root / "photo.png").write_bytes(jpeg(picture, scale=1, quality=95))
    by_file = index.search_image(root / "photo.png", k=3, adapter=adapter)
    by_array = index.search_image(np.asarray(Image.open(root / "photo.png").convert("RGB")), k=3, adapter=adapter)
    assert [r.best.segment_id for r in by_file.results] == [r.best.segment_id for r in by_array.results]
    assert by_file.query.endswith("photo.png")


def test_like_finds_its_own_video_first_then_its_near_duplicates(examples):
    root, index = examples
    source = root / "videos" / "clip0.mp4"
    found = index.search_like(str(source), 1.0, k=5)
    assert names(found)[0] == "clip0.mp4" and set(names(found)[1:3]) == set(DUPLICATES), names(found)
    assert found.kind == "like" and found.query == f"{source}@1.00"
    best = found.results[0].best
    assert best.start <= 1.0 < best.end and best.score == pytest.approx(1.0, abs=1e-3)
    # By id, by the path relative to here, and by a segment of the video (the API's like=SEGMENT_ID&t=).
    by_id = index.search_like(best.video_id, 1.0, k=5)
    by_segment = index.search_like_segment(best.segment_id, 1.0, k=5)
    assert names(by_id) == names(by_segment) == names(found)
    # Every other video finds itself first too (their near-duplicates are the only ones that could compete).
    for seed in range(1, 8):
        assert names(index.search_like(str(root / "videos" / f"clip{seed}.mp4"), 2.0, k=2))[0] == f"clip{seed}.mp4"


def test_example_queries_are_scored_by_the_heads_pooling(examples):
    """Stage 2 of a moment query: the head pools each candidate's frames by their match with the stored frame."""
    root, index = examples
    found = index.search_like(str(root / "videos" / "clip2.mp4"), 3.0, k=10, adapter="demo")
    with index.snapshot() as snapshot, snapshot.reading() as store:
        rows = store.segments()
        video = next(r for r in store.files().values() if r.path.endswith("clip2.mp4"))
        query = store.file_frames(video.id, "demo", index.dim)[3].astype(np.float32)
        frames, mask = pad_frames(store.segment_frames(rows, "demo", index.dim))
    head = index.model("demo").head
    assert isinstance(head, TextConditionedPool)
    cosine, weights = head.score_one(torch.from_numpy(query), frames, mask)
    by_id = {row.id: i for i, row in enumerate(rows)}
    hits = [h for r in found.results for h in (r.best, *r.others)]
    assert len(hits) == len(rows)  # fewer segments than candidates: every one was scored
    for hit in hits:
        assert hit.score == pytest.approx(float(cosine[by_id[hit.segment_id]]), abs=1e-5)
        count = len(hit.frame_weights)
        assert hit.frame_weights == pytest.approx(weights[by_id[hit.segment_id], :count].tolist(), abs=1e-5)


def bomb(pixels: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", pixels).save(buffer, format="PNG")  # a few kB that decode to width x height bytes
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"just some text, not a picture", "not a picture"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not a picture"),  # EPS: would run Ghostscript
        (bomb((8000, 6000)), "megapixel limit"),
        ("truncated", "not a picture"),
    ],
)
def test_anything_that_is_not_a_usable_picture_is_a_one_line_error(examples, data, words):
    root, index = examples
    if data == "truncated":
        data = jpeg(frame_of(root / "videos" / "clip1.mp4", 0.0), scale=4)[:300]
    with pytest.raises(PictureError, match=words) as error:
        index.search_image(data, name="upload.jpg")
    assert "\n" not in str(error.value) and "upload.jpg" in str(error.value)


def test_like_errors_name_the_video_and_the_time(examples):
    root, index = examples
    with pytest.raises(SearchError, match="not a video of"):
        index.search_like(str(root / "videos" / "missing.mp4"), 1.0)
    with pytest.raises(SearchError, match="is 4.00 s long; there is no moment at 60 s"):
        index.search_like(str(root / "videos" / "clip1.mp4"), 60)
    with pytest.raises(SearchError, match="no segment"):
        index.search_like_segment(10**9)
    assert parse_moment("a@b/clip.mp4@1:02.5") == ("a@b/clip.mp4", 62.5)
    assert parse_moment("17@1:00:01") == ("17", 3601.0)
    for spec in ("clip.mp4", "clip.mp4@", "clip.mp4@soon", "clip.mp4@-3"):
        with pytest.raises(SearchError, match="VIDEO@TIME|time must be"):
            parse_moment(spec)


def test_the_command_line_searches_by_picture_and_by_moment(examples, capsys):
    root, _ = examples
    (root / "query.jpg").write_bytes(jpeg(frame_of(root / "videos" / "clip6.mp4", 2.0)))
    assert main(["search", str(root / "index"), "--image", str(root / "query.jpg"), "-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "query.jpg" in lines[0] and "clip6.mp4" in lines[1]
    assert main(["search", str(root / "index"), "--like", f"{root / 'videos' / 'clip0.mp4'}@0:01", "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "clip0.mp4" in lines[1] and {Path(line.split()[2]).name for line in lines[2:4]} == set(DUPLICATES)
    assert main(["search", str(root / "index"), "words", "--image", str(root / "query.jpg")]) == 2
    assert "one of" in capsys.readouterr().err
    assert main(["search", str(root / "index"), "--image", str(root / "videos" / "clip1.mp4")]) == 2
    assert "not a picture" in capsys.readouterr().err


# ---- batching ------------------------------------------------------------------------------------------------------


def test_concurrent_text_queries_share_forwards_and_answer_as_alone(examples):
    root, _ = examples
    queries = [f"a picture of colour blocks number {i}" for i in range(8)]
    with VideoIndex.open(root / "index") as alone:
        expected = {q: alone.search(q, k=4) for q in queries}
    # A long window: every query of the burst joins the first forward unless the batcher is broken.
    with VideoIndex.open(root / "index", batching=BatchOptions(max_batch=8, window_seconds=1.0)) as index:
        index.model("demo")  # loaded before the burst
        barrier, answers = threading.Barrier(len(queries)), {}

        def ask(query: str) -> None:
            barrier.wait()
            answers[query] = index.search(query, k=4)

        threads = [threading.Thread(target=ask, args=(q,)) for q in queries]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert index.models.texts.batches < len(queries) and index.models.texts.items == len(queries)
    for query in queries:
        got, want = answers[query], expected[query]
        assert [r.best.segment_id for r in got.results] == [r.best.segment_id for r in want.results], query
        assert [r.best.score for r in got.results] == pytest.approx([r.best.score for r in want.results], abs=1e-5)


def wait_until(condition, seconds: float = 10.0) -> None:
    event = threading.Event()
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        event.wait(0.01)
    raise AssertionError("timed out")


def test_the_batcher_keeps_groups_apart_caps_batches_and_reports_errors_to_every_caller():
    calls: list[tuple[str, list[int]]] = []
    gate = threading.Event()

    def run(group, items):
        gate.wait(10)
        calls.append((group, list(items)))
        if -1 in items:
            raise ValueError("bad item")
        return [(group, item * 10) for item in items]

    batcher = MicroBatcher(run, BatchOptions(max_batch=3, window_seconds=0.0))
    results, errors, threads = {}, {}, []

    def submit(group, item):
        try:
            results[group, item] = batcher.submit(group, item)
        except ValueError as exc:
            errors[group, item] = str(exc)

    for number, item in enumerate([("a", 0), ("a", 1), ("b", 1), ("a", 2), ("a", 3), ("a", 4), ("b", -1)]):
        threads.append(threading.Thread(target=submit, args=item))
        threads[-1].start()
        # One at a time, in this order: the first runs (holding the gate), the others queue behind it.
        wait_until(lambda n=number: batcher._running and len(batcher._queue) == n)
    gate.set()
    for thread in threads:
        thread.join(10)
    # Within a group in arrival order, at most 3 a forward; b's two together, and its error reaches both.
    assert calls == [("a", [0]), ("a", [1, 2, 3]), ("b", [1, -1]), ("a", [4])]
    assert results == {("a", i): ("a", 10 * i) for i in range(5)}
    assert errors == {("b", 1): "bad item", ("b", -1): "bad item"}
    assert (batcher.batches, batcher.items) == (4, 7)


@pytest.mark.parametrize(("in_flight", "waits"), [(1, 0), (2, 1)])
def test_a_lone_query_never_waits_for_the_window(in_flight, waits):
    """Only while another search is under way (and may join) does the first query wait for company."""
    batcher = MicroBatcher(lambda group, items: items, BatchOptions(window_seconds=0.05), in_flight=lambda: in_flight)
    timeouts = []
    real_wait = batcher._cond.wait
    batcher._cond.wait = lambda timeout=None: (timeouts.append(timeout), real_wait(timeout))[1]
    assert batcher.submit("g", 1) == 1
    assert len(timeouts) == waits and all(0 < t <= 0.05 for t in timeouts)


def test_trimmed_text_encoding_equals_the_full_context(tiny_weights, tmp_path):
    from cmadapter.model import build_model

    adapter = adapter_file(tiny_weights, tmp_path / "a.safetensors")
    for model in (
        build_model(pretrained=str(tiny_weights)),
        build_model(pretrained=str(tiny_weights), adapter=adapter),
    ):
        model.eval()
        texts = ["a dog", "a much longer caption about colour blocks sliding to the left slowly"]
        with torch.no_grad():
            full = model.encode_text(model.tokenize(texts))
        assert torch.allclose(encode_texts(model, texts, "fp32"), full, atol=1e-5)
