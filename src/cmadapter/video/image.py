"""Still images: an image file is a one-frame clip.

``load_image`` gives the same uint8 [H, W, 3] frame a decoded video frame is (RGB, upright, short side
resized with the same bicubic filter), so photos go through the clip pipeline (``grid.decode_path_grid``,
the frame cache, ``VideoClips``) unchanged. A missing, empty, truncated or unreadable image raises a
``DataError`` naming it, as a bad video does; it never becomes a black frame.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError
from .decode import GridFrames
from .preprocess import resize_short_side

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def load_image(path: str | Path, short_side: int | None = None, *, what: str | None = None) -> np.ndarray:
    """An image file as uint8 [H, W, 3] RGB, turned upright by its EXIF orientation and, given ``short_side``,
    resized as decoded video frames are. ``what`` names the image in errors (default: the path)."""
    path = Path(path)
    what = what or str(path)
    if not path.is_file():
        raise DataError(f"{what}: image file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{what}: the image file is empty")
    return _decoded(path, short_side, what)


def load_image_bytes(data: bytes, short_side: int | None, *, what: str) -> np.ndarray:
    """``load_image`` of an image held in memory (a member of a WebDataset shard)."""
    if not data:
        raise DataError(f"{what}: the image is empty")
    return _decoded(io.BytesIO(data), short_side, what)


def _decoded(source: Path | io.BytesIO, short_side: int | None, what: str) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # Pillow only warns about an image of 89M+ pixels; a bomb this size is bad input, not a warning.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                image.load()  # decodes everything now: a truncated file fails here, not as a grey half later
                upright = ImageOps.exif_transpose(image).convert("RGB")
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombWarning,
        Image.DecompressionBombError,
    ) as exc:
        raise DataError(f"{what}: cannot read the image: {exc}") from exc
    return resize_short_side(upright, short_side) if short_side is not None else np.asarray(upright)


def decode_image_grid(
    path: str | Path,
    rate: Fraction,
    short_side: int,
    choose: Callable[[int], list[int]],
    *,
    video_id: str | None = None,
) -> GridFrames:
    """An image as a clip of one grid point (time 0): what ``decode_grid`` returns for a one-frame video."""
    path = Path(path)
    frame = load_image(path, short_side, what=f"image {video_id!r} ({path})" if video_id is not None else None)
    points = list(choose(1))
    return GridFrames(frames=[frame for _ in points], points=points, count=1)
