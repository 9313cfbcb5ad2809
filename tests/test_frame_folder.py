"""Pre-extracted frame folders (``<root>/<video_id>.mp4/*.jpg``)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from cmadapter.errors import DataError
from cmadapter.video.frame_folder import decode_folder_grid, list_frames, natural_key
from cmadapter.video.sampling import Sampling
from cmadapter.video.sources import VideoFolder
from media import frame_index, write_frame_folder


def test_frames_are_naturally_sorted(tmp_path):
    folder = write_frame_folder(tmp_path / "video0.mp4", 12)
    (folder / "notes.txt").write_text("not a frame")
    names = [p.name for p in list_frames(folder)]
    assert names[:3] == ["frame_1.jpg", "frame_2.jpg", "frame_3.jpg"] and names[-1] == "frame_12.jpg"
    assert sorted(["img10.png", "img9.png", "Img1.png"], key=natural_key) == ["Img1.png", "img9.png", "img10.png"]


def test_every_image_is_one_grid_point_by_default(tmp_path):
    write_frame_folder(tmp_path / "video0.mp4", 20)
    source = VideoFolder(tmp_path)
    clip = source.read("video0", (None, None), Sampling(fps=1.0, max_frames=12), 24)
    assert clip.frames.shape == (12, 24, 24, 3)
    assert [frame_index(f) for f in clip.frames] == [0, 1, 3, 5, 6, 8, 10, 12, 13, 15, 17, 19]
    windowed = source.read("video0", (4.0, 7.0), Sampling(fps=1.0), 24)
    assert [frame_index(f) for f in windowed.frames] == [4, 5, 6]


def test_folder_fps_maps_images_to_time(tmp_path):
    folder = write_frame_folder(tmp_path / "clip", 10)  # extracted at 5 fps: 0 … 1.8 s
    grid = decode_folder_grid(folder, Fraction(1), 24, lambda n: list(range(n)), folder_fps=Fraction(5))
    assert grid.count == 2 and [frame_index(f) for f in grid.frames] == [0, 5]


def test_empty_or_unreadable_frame_folders_raise_data_errors(tmp_path):
    (tmp_path / "empty.mp4").mkdir()
    folder = write_frame_folder(tmp_path / "broken.mp4", 3)
    (folder / "frame_2.jpg").write_bytes(b"not a jpeg")
    source = VideoFolder(tmp_path)
    with pytest.raises(DataError, match=r"video 'empty'.*no .* images"):
        source.read("empty", (None, None), Sampling(fps=1.0), 16)
    with pytest.raises(DataError, match=r"video 'broken'.*frame frame_2\.jpg: cannot read the image"):
        source.read("broken", (None, None), Sampling(fps=1.0), 16)
