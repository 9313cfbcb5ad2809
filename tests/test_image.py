"""An image file is a one-frame clip: loaded like a decoded frame, read, cached and reported like a video."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from cmadapter.datasets.clips import VideoClips
from cmadapter.errors import DataError
from cmadapter.video.cache import FrameCache, PrepareOptions, prepare_cache, read_report
from cmadapter.video.image import load_image
from cmadapter.video.preprocess import resize_short_side
from cmadapter.video.sampling import Sampling
from cmadapter.video.sources import VideoFolder


def photo(seed: int, size: tuple[int, int] = (48, 36)) -> np.ndarray:
    """A smooth random picture (width x height), different for each seed."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize(size, Image.Resampling.BILINEAR))


def write_photos(folder, count: int, ext: str = ".png") -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    pictures = {}
    for i in range(count):
        pictures[f"img{i}{ext}"] = photo(i)
        Image.fromarray(pictures[f"img{i}{ext}"]).save(folder / f"img{i}{ext}")
    return pictures


def test_an_image_loads_as_the_frame_a_decoder_would_give(tmp_path):
    picture = photo(0)
    Image.fromarray(picture).save(tmp_path / "a.png")  # lossless: the pixels must come back exactly
    assert np.array_equal(load_image(tmp_path / "a.png"), picture)
    resized = load_image(tmp_path / "a.png", 24)
    assert resized.dtype == np.uint8 and resized.shape == (24, 32, 3)
    assert np.array_equal(resized, resize_short_side(picture, 24))


def test_exif_orientation_is_applied(tmp_path):
    picture = photo(1)  # 48 wide, 36 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(picture).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    assert load_image(tmp_path / "rotated.jpg").shape == (48, 36, 3)


def test_bad_images_are_data_errors_naming_them(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    Image.fromarray(photo(2, (64, 64))).save(tmp_path / "whole.jpg", quality=90)
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    for name, reason in [("empty.jpg", "empty"), ("text.jpg", "cannot read"), ("truncated.jpg", "cannot read")]:
        with pytest.raises(DataError, match=rf"{name}.*{reason}"):
            load_image(tmp_path / name)
    with pytest.raises(DataError, match="missing.jpg: image file not found"):
        load_image(tmp_path / "missing.jpg")


def test_images_are_one_frame_clips_padded_to_max_frames(tmp_path):
    pictures = write_photos(tmp_path / "photos", 2)
    clips = VideoClips(list(pictures), None, tmp_path / "photos", image_size=24, max_frames=3)
    frames, mask, image_id = clips[1]
    assert image_id == "img1.png" and frames.shape == (3, 3, 24, 24)
    assert mask.tolist() == [True, False, False] and torch.all(frames[1:] == 0)
    source = VideoFolder(tmp_path / "photos")
    clip = source.read("img1.png", (None, None), Sampling(fps=1.0, max_frames=3), 24)
    assert clip.frames.shape == (1, 24, 24, 3) and clip.times.tolist() == [0.0]


def test_prepare_caches_images_like_videos_and_reports_bad_ones(tmp_path):
    pictures = write_photos(tmp_path / "photos", 2, ext=".jpg")
    (tmp_path / "photos" / "broken.jpg").write_text("not an image")
    ids = [*pictures, "broken.jpg", "absent.jpg"]
    report = prepare_cache(ids, VideoFolder(tmp_path / "photos"), tmp_path / "cache", PrepareOptions(short_side=24))
    assert report.written == 2
    assert {(p.video_id, p.status) for p in report.problems} == {
        ("broken.jpg", "undecodable"),
        ("absent.jpg", "missing"),
    }
    assert "broken.jpg" in {p.video_id for p in read_report(tmp_path / "cache")}
    sampling = Sampling(fps=1.0, max_frames=1)
    cached = FrameCache(tmp_path / "cache").read("img0.jpg", (None, None), sampling, 24)
    direct = VideoFolder(tmp_path / "photos").read("img0.jpg", (None, None), sampling, 24)
    assert np.array_equal(cached.frames, direct.frames)
    with pytest.raises(DataError, match="broken.jpg"):
        VideoFolder(tmp_path / "photos").read("broken.jpg", (None, None), sampling, 24)


def test_an_image_gives_one_grid_point_at_any_rate(tmp_path):
    from cmadapter.video.grid import decode_path_grid

    write_photos(tmp_path, 1)
    grid = decode_path_grid(tmp_path / "img0.png", Fraction(2), 24, lambda count: list(range(count)))
    assert grid.count == 1 and grid.points == [0] and grid.frames[0].shape == (24, 32, 3)
