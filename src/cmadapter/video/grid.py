"""Decode the frames on a time grid from a path: a video file, a folder of pre-extracted frames, or an image
(a one-frame clip); and the clip of a window read from there."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from .decode import GridFrames, decode_grid, describe
from .frame_folder import decode_folder_grid, stream_folder_grid
from .image import decode_image_grid, is_image_file, load_image
from .preprocess import fit_frame
from .sampling import WHOLE_VIDEO, Clip, Sampling, Window, clip_points, grid_times
from .stream import stream_grid


def decode_path_grid(
    path: Path,
    rate: Fraction,
    short_side: int,
    choose: Callable[[int], list[int]],
    *,
    video_id: str | None = None,
    folder_fps: Fraction | None = None,
    threads: int = 1,
    allow_truncated: bool = False,
) -> GridFrames:
    """Grid frames of a video file, of a frame folder when ``path`` is a directory, of an image file (by its
    extension) as one frame at time 0.

    A video file that ends early raises ``TruncatedVideo`` unless ``allow_truncated`` (``decode_grid``)."""
    if path.is_dir():
        return decode_folder_grid(path, rate, short_side, choose, folder_fps=folder_fps, video_id=video_id)
    if is_image_file(path):
        return decode_image_grid(path, rate, short_side, choose, video_id=video_id)
    return decode_grid(
        path, rate, short_side, choose, video_id=video_id, threads=threads, allow_truncated=allow_truncated
    )


def stream_path_grid(path: Path, rate: Fraction, short_side: int) -> Iterator[tuple[int, np.ndarray] | str]:
    """Every grid point of a video file, frame folder or image, in order, one frame in memory at a time:
    ``(point, resized frame)`` items, and ``decode.RESTART`` when a video's decoding starts over."""
    path = Path(path)
    if path.is_dir():
        return stream_folder_grid(path, rate, short_side)
    if is_image_file(path):
        return iter([(0, load_image(path, short_side))])
    return stream_grid(path, rate, short_side)


def read_video_clip(
    path: str | Path,
    sampling: Sampling,
    image_size: int,
    window: Window = WHOLE_VIDEO,
    *,
    video_id: str | None = None,
    folder_fps: Fraction | None = None,
    threads: int = 1,
) -> Clip:
    """The clip of a video file, frame folder or image: at most ``sampling.max_frames`` frames of ``window``,
    CLIP-sized uint8."""
    name = describe(Path(path), video_id)
    choose = lambda count: clip_points(count, sampling, window, name)
    return decode_clip(
        path, sampling.rate, image_size, choose, video_id=video_id, folder_fps=folder_fps, threads=threads
    )


def decode_clip(path: str | Path, rate: Fraction, image_size: int, choose, **options) -> Clip:
    """The grid points ``choose(count)`` picks, decoded, CLIP-sized and timed (``decode_path_grid``'s options)."""
    grid = decode_path_grid(Path(path), rate, image_size, choose, **options)
    frames = np.stack([fit_frame(frame, image_size) for frame in grid.frames])
    return Clip(frames=frames, times=grid_times(grid.points, rate))
