"""The video index and two-stage search, through the Python API, on tiny real videos and a tiny CLIP."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from cmadapter.errors import CmadapterError
from cmadapter.heads import create_head
from cmadapter.search.api import VideoIndex
from cmadapter.search.build import BuildOptions
from cmadapter.search.errors import SearchError
from cmadapter.search.query import head_scores, pad_frames
from cmadapter.search.segments import Segment, segment_ranges
from media import truncated_copy, write_cuttable_video
from search_fixtures import adapter_file, audio_only, count_encoded, index_contents, other_backbone_adapter, video

QUIET = BuildOptions(fps=1, window=4, stride=2, progress=False, precision="fp32")  # scores checked by hand in fp32


def test_segment_ranges_cover_every_frame_with_full_windows():
    assert segment_ranges(3, 12, 6) == [Segment(0, 3)]
    assert segment_ranges(12, 12, 6) == [Segment(0, 12)]
    assert segment_ranges(20, 12, 6) == [Segment(0, 12), Segment(6, 18), Segment(8, 20)]
    assert segment_ranges(10, 4, 2) == [Segment(0, 4), Segment(2, 6), Segment(4, 8), Segment(6, 10)]
    for count in range(1, 40):
        ranges = segment_ranges(count, 5, 3)
        covered = set().union(*(range(s.first, s.stop) for s in ranges))
        assert covered == set(range(count))
        assert all(s.stop - s.first == min(5, count) for s in ranges)


@pytest.mark.parametrize("name", ["text-pool", "meanP"])
def test_stage_two_scores_are_the_heads(name):
    generator = torch.Generator().manual_seed(0)
    text = 8 * torch.randn(16, generator=generator)
    frames = 10 * torch.randn(5, 4, 16, generator=generator)
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    head = create_head(name)
    cosine, weights = head_scores(head, text, frames, mask)
    assert cosine.tolist() == pytest.approx(head(text[None], frames, mask, torch.ones(()))[0].tolist(), abs=1e-5)
    assert weights.sum(dim=1).tolist() == pytest.approx([1.0] * 5) and bool((weights[~mask] == 0).all())


@pytest.fixture
def folder(tmp_path):
    videos = tmp_path / "videos"
    video(videos / "a.mp4", 9)
    video(videos / "nested" / "b.mkv", 3, shift=5)
    video(videos / "c.mp4", 6, shift=9)
    (videos / "notes.txt").write_text("not a video")
    return videos


def count_encodes(monkeypatch) -> list[int]:
    return count_encoded(monkeypatch)


def test_index_and_search_return_segments_with_the_heads_frame_weights(folder, tmp_path, tiny_weights):
    report = VideoIndex.build([folder], tmp_path / "index", pretrained=str(tiny_weights), options=QUIET)
    assert (report.files, report.frames, report.skipped_other) == (3, 9 + 3 + 6, 1)
    # a: 9 frames -> windows of 4 every 2 (0, 2, 4, 5); b: 3 frames -> one; c: 6 -> (0, 2)
    assert report.segments == 4 + 1 + 2
    with VideoIndex.open(tmp_path / "index") as index:
        found = index.search("a grey picture", k=10)
        assert found.adapter == "zero-shot"
        assert sorted(os.path.basename(r.best.video) for r in found.results) == ["a.mp4", "b.mkv", "c.mp4"]
        hits = [r.best for r in found.results] + [h for r in found.results for h in r.others]
        assert len(hits) == 7
        scores = [r.best.score for r in found.results]
        assert scores == sorted(scores, reverse=True)
        for result in found.results:
            assert all(other.score <= result.best.score for other in result.others)
        # Stage 2 is the exact head over every segment (here all 7 are candidates): check it by hand.
        model = index.model("zero-shot")
        text = model.encode_text(model.tokenize(["a grey picture"]))[0]
        with index.snapshot() as snapshot, snapshot.reading() as store:
            rows = store.segments()
            frames, mask = pad_frames(store.segment_frames(rows, "zero-shot", index.dim))
        logits = model.similarity(text[None], frames, mask)[0] / model.logit_scale  # the head as eval runs it
        values, top = torch.topk(logits, 7)
        by_id = {h.segment_id: h for h in hits}
        for row, value in zip(top.tolist(), values.tolist()):
            assert by_id[rows[row].id].score == pytest.approx(value, abs=1e-6)
        hit = found.results[0].best
        row = [r.id for r in rows].index(hit.segment_id)
        seg_frames, seg_mask = pad_frames([frames[row, : len(hit.frame_times)].numpy()])
        weights = model.head.frame_weights(text[None], seg_frames, seg_mask)[0, 0]
        assert hit.frame_weights == pytest.approx(weights.tolist(), abs=1e-6)
        assert hit.best_frame_time == hit.frame_times[int(weights.argmax())]
        assert hit.start == hit.frame_times[0] and hit.end == hit.frame_times[-1] + 1
        assert len(index.search("a grey picture", k=2).results) == 2


def test_incremental_update_reencodes_only_new_and_changed_files(folder, tmp_path, tiny_weights, monkeypatch):
    out = tmp_path / "index"
    calls = count_encodes(monkeypatch)
    VideoIndex.build([folder], out, pretrained=str(tiny_weights), options=QUIET)
    assert sorted(calls) == [3, 6, 9]
    calls.clear()
    report = VideoIndex.build([folder], out, options=QUIET)
    assert calls == [] and report.unchanged == 3

    video(folder / "d.mp4", 2, shift=3)  # new
    video(folder / "nested" / "b.mkv", 5, shift=7)  # changed: other bytes, 5 s
    (folder / "c.mp4").unlink()  # deleted
    stat = (folder / "a.mp4").stat()
    os.utime(folder / "a.mp4", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, same bytes
    report = VideoIndex.build([folder], out, options=QUIET)
    assert sorted(calls) == [2, 5]
    assert [os.path.basename(p) for p in report.new] == ["d.mp4"]
    assert [os.path.basename(p) for p in report.changed] == ["b.mkv"]
    assert [os.path.basename(p) for p in report.deleted] == ["c.mp4"]
    assert [os.path.basename(p) for p in report.restamped] == ["a.mp4"]
    assert (report.files, report.frames) == (3, 9 + 5 + 2)

    # A second adapter: every file once more, for that adapter only.
    calls.clear()
    adapter = adapter_file(tiny_weights, tmp_path / "tuned.safetensors")
    report = VideoIndex.build([folder], out, adapters={"tuned": adapter}, options=QUIET)
    assert sorted(calls) == [2, 5, 9] and report.encoded["tuned"]["files"] == 3
    assert report.encoded["zero-shot"]["files"] == 0

    # The result equals building from scratch on the final folder.
    fresh = tmp_path / "fresh"
    VideoIndex.build(
        [folder], fresh, pretrained=str(tiny_weights), adapters={"tuned": adapter}, zero_shot=True, options=QUIET
    )
    ours, theirs = index_contents(out), index_contents(fresh)
    assert ours["segments"] == theirs["segments"] and ours["features"] == theirs["features"]
    assert {p: r[2:] for p, r in ours["files"].items()} == {p: r[2:] for p, r in theirs["files"].items()}
    with VideoIndex.open(out) as index:
        names = {os.path.basename(r.best.video) for r in index.search("grey", k=10, adapter="tuned").results}
        assert names == {"a.mp4", "b.mkv", "d.mp4"}


def test_unreadable_files_are_reported_and_the_others_indexed(folder, tmp_path, tiny_weights, monkeypatch):
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "corrupt.mp4").write_bytes(os.urandom(5000))
    audio_only(folder / "speech.mkv")
    truncated_copy(write_cuttable_video(tmp_path / "whole.mkv"), folder / "cut.mkv", 0.5)  # a cut-off download
    report = VideoIndex.build([folder], tmp_path / "index", pretrained=str(tiny_weights), options=QUIET)
    problems = {os.path.basename(p): reason for p, reason in report.problems.items()}
    assert problems["empty.mp4"] == "the file is empty"
    assert "no video stream" in problems["speech.mkv"]
    assert "cannot decode" in problems["corrupt.mp4"]
    assert problems["cut.mkv"].startswith("truncated: decoded")
    assert set(problems) == {"empty.mp4", "speech.mkv", "corrupt.mp4", "cut.mkv"} and report.files == 3
    with VideoIndex.open(tmp_path / "index") as index:
        assert index.report() == report.problems
    calls = count_encodes(monkeypatch)  # unchanged bad files are not retried
    again = VideoIndex.build([folder], tmp_path / "index", options=QUIET)
    assert calls == [] and again.problems == report.problems
    (folder / "empty.mp4").unlink()
    video(folder / "corrupt.mp4", 2)  # fixed
    again = VideoIndex.build([folder], tmp_path / "index", options=QUIET)
    assert calls == [2]
    assert {os.path.basename(p) for p in again.problems} == set(problems) - {"empty.mp4", "corrupt.mp4"}


def test_one_line_errors(folder, tmp_path, tiny_weights):
    out = tmp_path / "index"
    other = other_backbone_adapter(tmp_path)
    with pytest.raises(CmadapterError, match="different backbone") as caught:
        VideoIndex.build([folder], out, pretrained=str(tiny_weights), adapters={"x": other}, options=QUIET)
    assert "\n" not in str(caught.value)
    VideoIndex.build(
        [folder],
        out,
        pretrained=str(tiny_weights),
        adapters={"x": adapter_file(tiny_weights, tmp_path / "a.st")},
        options=QUIET,
    )
    with VideoIndex.open(out) as index:
        with pytest.raises(SearchError, match="query is empty"):
            index.search("   ")
        with pytest.raises(SearchError, match="no adapter 'nope'; it has: x"):
            index.search("grey", adapter="nope")
    [copied] = (out / "adapters").glob("x-*.safetensors")
    shutil.copy(other, copied)  # the index's adapter swapped for a foreign one: never loaded
    with VideoIndex.open(out) as index, pytest.raises(SearchError, match="checkpoint of adapter 'x' .* changed"):
        index.search("grey")
    with pytest.raises(SearchError, match="is not a video index"):
        VideoIndex.open(folder)
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "index.sqlite").write_bytes(b"hello, not a database" * 100)
    with pytest.raises(SearchError, match="not a video index database"):
        VideoIndex.open(tmp_path / "fake")
    with pytest.raises(SearchError, match="built with fps"):
        VideoIndex.build([folder], out, options=BuildOptions(fps=2, progress=False))


def test_a_stale_faiss_file_is_rebuilt_not_trusted(folder, tmp_path, tiny_weights):
    out = tmp_path / "index"
    VideoIndex.build([folder], out, pretrained=str(tiny_weights), options=QUIET)
    with VideoIndex.open(out) as index:
        before = [r.best.video for r in index.search("grey", k=10).results]
    (out / "ann" / "zero-shot.json").write_text('{"factory": "Flat", "generation": -1, "count": 7}')
    with VideoIndex.open(out) as index:
        assert [r.best.video for r in index.search("grey", k=10).results] == before


@pytest.mark.parametrize("factory", ["SQfp16", "SQ8", "HNSW16", "IVF4,Flat"])
def test_factory_strings(folder, tmp_path, tiny_weights, factory):
    options = BuildOptions(fps=4, window=1, stride=0.25, factory=factory, progress=False)  # 63 segments
    VideoIndex.build([folder], tmp_path / "index", pretrained=str(tiny_weights), options=options)
    with VideoIndex.open(tmp_path / "index") as index:
        stage1 = index.stage1("zero-shot")
        assert stage1.base.factory == factory and stage1.base_data is not None  # the saved one, not rebuilt
        assert len(index.search("grey", k=3).results) == 3


def test_an_ivf_index_on_too_few_segments_says_so(folder, tmp_path, tiny_weights):
    options = BuildOptions(factory="IVF1024,PQ8", progress=False)
    with pytest.raises(SearchError, match="needs at least 1024 segments"):
        VideoIndex.build([folder], tmp_path / "index", pretrained=str(tiny_weights), options=options)


def test_candidates_of_different_lengths_are_padded_and_masked_exactly():
    """A video's last segment can hold fewer frames: its padded rows are zeros and masked out, the rest kept."""
    short = np.arange(2 * 4, dtype=np.float16).reshape(2, 4)
    full = -np.arange(3 * 4, dtype=np.float16).reshape(3, 4)
    frames, mask = pad_frames([short, full])
    assert frames.dtype == torch.float32 and frames.shape == (2, 3, 4)
    assert mask.tolist() == [[True, True, False], [True, True, True]]
    assert torch.equal(frames[0, :2], torch.from_numpy(short.astype(np.float32)))
    assert torch.equal(frames[0, 2], torch.zeros(4)) and torch.equal(
        frames[1], torch.from_numpy(full.astype(np.float32))
    )
