"""Clips of a video or image held in memory (a member of a WebDataset shard), decoded without touching disk.

The same rules as files: ``sampling.py`` picks the grid points, a video that ends early is refused
(``TruncatedVideo``) unless allowed, an image is a one-frame clip, and bad bytes raise a ``DataError``
naming the member (``what``), never a black frame.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import numpy as np

from .decode import GridFrames, decode_bytes_grid
from .image import IMAGE_EXTENSIONS, load_image_bytes
from .preprocess import fit_frame
from .sampling import WHOLE_VIDEO, Clip, Sampling, Window, clip_points, grid_times


def decode_member_grid(
    data: bytes,
    extension: str,
    what: str,
    rate: Fraction,
    short_side: int,
    choose: Callable[[int], list[int]],
    *,
    allow_truncated: bool = False,
) -> GridFrames:
    """Grid frames of a member whose name ends in ``extension`` (``mp4``, ``jpg``, …), resized (short side)."""
    if "." + extension.lower() in IMAGE_EXTENSIONS:
        frame = load_image_bytes(data, short_side, what=what)
        points = list(choose(1))
        return GridFrames(frames=[frame for _ in points], points=points, count=1)
    return decode_bytes_grid(data, what, rate, short_side, choose, allow_truncated=allow_truncated)


def read_member_clip(
    data: bytes, extension: str, what: str, sampling: Sampling, image_size: int, window: Window = WHOLE_VIDEO
) -> Clip:
    """The clip of a member: at most ``sampling.max_frames`` frames of ``window``, CLIP-sized uint8."""
    choose = lambda count: clip_points(count, sampling, window, what)
    grid = decode_member_grid(data, extension, what, sampling.rate, image_size, choose)
    frames = np.stack([fit_frame(frame, image_size) for frame in grid.frames])
    return Clip(frames=frames, times=grid_times(grid.points, sampling.rate))
