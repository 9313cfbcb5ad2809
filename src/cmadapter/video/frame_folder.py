"""Pre-extracted frames: a folder of images per video (``<root>/<video_id>.mp4/*.jpg`` and the like).

The official Cross-Modal Adapter code trains from such folders (frames extracted at 1 fps). Images
are ordered by a natural sort (``frame_2`` before ``frame_10``) and image ``i`` is taken to show time
``i / folder_fps``; by default ``folder_fps`` is the sampling rate, so every image is one grid point.
The grid, window and ``max_frames`` rules are those of ``sampling.py``, as for video files.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import DataError
from .decode import GridFrames, describe
from .image import IMAGE_EXTENSIONS, load_image
from .sampling import grid_count


def natural_key(name: str) -> list[str | int]:
    """Sort key that orders embedded numbers by value: img_2.jpg < img_10.jpg."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_frames(folder: str | Path) -> list[Path]:
    files = [p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    return sorted(files, key=lambda p: natural_key(p.name))


def decode_folder_grid(
    folder: str | Path,
    rate: Fraction,
    short_side: int,
    choose: Callable[[int], list[int]],
    *,
    folder_fps: Fraction | None = None,
    video_id: str | None = None,
) -> GridFrames:
    """The grid points ``choose(count)`` of a frame folder, resized (short side) like decoded frames."""
    folder = Path(folder)
    what = describe(folder, video_id)
    files = _listed(folder, what)
    count, index_of = _grid(files, rate, folder_fps)
    points = list(choose(count))
    loaded: dict[int, np.ndarray] = {}
    frames = []
    for k in points:
        index = index_of(k)
        if index not in loaded:
            loaded[index] = _load(files[index], short_side, what)
        frames.append(loaded[index])
    return GridFrames(frames=frames, points=points, count=count)


def stream_folder_grid(
    folder: str | Path, rate: Fraction, short_side: int, *, folder_fps: Fraction | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Every grid point of a frame folder in order, as ``(point, resized frame)``, one image in memory."""
    folder = Path(folder)
    what = describe(folder, None)
    files = _listed(folder, what)
    count, index_of = _grid(files, rate, folder_fps)
    index, frame = None, None
    for k in range(count):
        if index_of(k) != index:
            index = index_of(k)
            frame = _load(files[index], short_side, what)
        yield k, frame


def _listed(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{what}: frame folder not found")
    files = list_frames(folder)
    if not files:
        raise DataError(f"{what}: no {'/'.join(IMAGE_EXTENSIONS)} images in the frame folder")
    return files


def _grid(files: list[Path], rate: Fraction, folder_fps: Fraction | None):
    """The grid's point count and the image each point shows (image ``i`` is at ``i / folder_fps``)."""
    image_rate = folder_fps or rate
    count = grid_count(Fraction(len(files) - 1) / image_rate, rate)
    return count, lambda k: min(math.floor(Fraction(k) / rate * image_rate), len(files) - 1)


def _load(path: Path, short_side: int, what: str) -> np.ndarray:
    return load_image(path, short_side, what=f"{what}: frame {path.name}")
