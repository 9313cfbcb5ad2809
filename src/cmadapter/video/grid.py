"""Decode the frames on a time grid from a path: a video file, or a folder of pre-extracted frames."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

from .decode import GridFrames, decode_grid
from .frame_folder import decode_folder_grid


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
    """Grid frames of a video file, or of a frame folder when ``path`` is a directory.

    A video file that ends early raises ``TruncatedVideo`` unless ``allow_truncated`` (``decode_grid``)."""
    if path.is_dir():
        return decode_folder_grid(path, rate, short_side, choose, folder_fps=folder_fps, video_id=video_id)
    return decode_grid(
        path, rate, short_side, choose, video_id=video_id, threads=threads, allow_truncated=allow_truncated
    )
