"""A picture someone gives as a query: read it without trusting it.

Only JPEG, PNG, WebP, BMP and GIF are tried (Pillow's other plugins include EPS, which runs Ghostscript: no file
a user gives us ever runs code). Its size is checked from the header before any pixel is decoded, so a small
file that declares a huge image (a decompression bomb) costs nothing; ``MAX_PICTURE_PIXELS`` is below Pillow's own
bomb limit (89 M pixels), which stays in force as a second check. An animated file gives its first frame. The
picture is turned upright by its EXIF orientation and made RGB, exactly as an indexed photo
(``video.image.load_image``), and then fitted to the model's input as every indexed frame is.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..video.preprocess import fit_frame
from .errors import SearchError

PICTURE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
MAX_PICTURE_PIXELS = 40_000_000  # a 7,300 x 5,500 photo; a larger one is refused before decoding
MAX_PICTURE_BYTES = 32 * 2**20  # a picture file read from disk (the server caps its uploads itself)


class PictureError(SearchError):
    """A query picture that cannot be used: not a picture of a known format, too large, or broken."""


def read_picture(source: bytes | str | Path, *, name: str | None = None, max_pixels: int = MAX_PICTURE_PIXELS):
    """The picture in ``source`` (its bytes, or a file) as uint8 RGB [H, W, 3], upright.

    Raises ``PictureError`` naming it (``name``, default the path) for anything that is not a readable picture."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        name = name or str(path)
        try:
            with open(path, "rb") as f:
                source = f.read(MAX_PICTURE_BYTES + 1)
        except OSError as exc:
            raise PictureError(f"{name}: cannot read the picture ({exc.strerror or exc})") from exc
        if len(source) > MAX_PICTURE_BYTES:
            raise PictureError(f"{name}: the picture file is over {MAX_PICTURE_BYTES // 2**20} MiB")
    name = name or "the picture"
    if not source:
        raise PictureError(f"{name}: the file is empty, not a picture")
    try:
        with Image.open(io.BytesIO(source), formats=PICTURE_FORMATS) as image:
            width, height = image.size
            if width < 1 or height < 1 or width * height > max_pixels:
                raise PictureError(
                    f"{name}: a {width} x {height} picture is over the {max_pixels / 1e6:.0f}-megapixel limit;"
                    " send a smaller one"
                )
            image.load()  # the first frame of an animation; a truncated file fails here
            upright = ImageOps.exif_transpose(image).convert("RGB")
    except PictureError:
        raise
    except Image.DecompressionBombError as exc:
        raise PictureError(f"{name}: the picture is too large to decode ({exc})") from exc
    except Exception as exc:  # a hostile file can make any decoder raise anything: all of it means "not a picture"
        raise PictureError(
            f"{name}: not a picture cmadapter can read (JPEG, PNG, WebP, BMP or GIF): {type(exc).__name__}: {exc}"
        ) from exc
    return np.asarray(upright)


def fit_picture(picture: np.ndarray, image_size: int) -> np.ndarray:
    """The model's input square of a picture: short side resized to ``image_size`` (bicubic), center crop, as
    every indexed frame and photo is."""
    return np.ascontiguousarray(fit_frame(picture, image_size))
