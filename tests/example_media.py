"""Videos that look different from each other, and near-duplicates of them, for the query-by-example tests.

Video ``seed`` shows a grid of colour blocks drawn from its own seed that slides one block sideways every two seconds,
so its frames differ from each other and from every other video's; a near-duplicate is the same picture at
another size, a little brighter, encoded again (what a re-upload or a re-encode makes of a video).
"""

from __future__ import annotations

import io
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from cmadapter.search.api import VideoIndex
from cmadapter.search.build import BuildOptions
from search_fixtures import adapter_file

GRID = (4, 3)  # blocks across, down
DUPLICATES = ("dup0a.mp4", "dup0b.mp4")  # near-duplicates of clip0.mp4: resized, brighter or darker, re-encoded


def pattern(seed: int, second: float, size: tuple[int, int] = (64, 48), brightness: int = 0) -> np.ndarray:
    """The picture video ``seed`` shows at ``second``: uint8 [H, W, 3]."""
    blocks = np.random.default_rng(seed).integers(0, 256, (GRID[1], GRID[0] * 2, 3))
    shifted = np.roll(blocks, -int(second // 2), axis=1)[:, : GRID[0]]
    small = Image.fromarray(np.clip(shifted + brightness, 0, 255).astype(np.uint8))
    return np.asarray(small.resize(size, Image.Resampling.NEAREST))


def pattern_video(
    path: Path, seed: int, seconds: int = 4, *, rate: int = 2, size: tuple[int, int] = (64, 48), brightness: int = 0
) -> Path:
    """An H.264 video of ``pattern(seed, t)``, ``rate`` frames per second."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(seconds * rate):
            picture = pattern(seed, i / rate, size, brightness)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def frame_of(path: Path, second: float) -> np.ndarray:
    """The decoded frame of a video file showing ``second`` (the first frame at or after it): uint8 RGB."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.time is not None and frame.time >= second - 1e-6:
                return frame.to_ndarray(format="rgb24")
    raise ValueError(f"{path} has no frame at {second} s")


def jpeg(picture: np.ndarray, scale: int = 3, quality: int = 80) -> bytes:
    """A photo of a frame: enlarged and JPEG-compressed."""
    image = Image.fromarray(picture)
    buffer = io.BytesIO()
    image.resize((image.width * scale, image.height * scale), Image.Resampling.BILINEAR).save(
        buffer, format="JPEG", quality=quality
    )
    return buffer.getvalue()


def example_collection(root: Path, weights: Path) -> Path:
    """Eight different 4-s videos and two near-duplicates of the first, indexed with an adapter and zero-shot."""
    for seed in range(8):
        pattern_video(root / "videos" / f"clip{seed}.mp4", seed)
    pattern_video(root / "videos" / DUPLICATES[0], 0, size=(96, 72), brightness=10)
    pattern_video(root / "videos" / DUPLICATES[1], 0, size=(48, 36), brightness=-10)
    adapter = adapter_file(weights, root / "demo.safetensors")
    options = BuildOptions(window=2, stride=1, progress=False)
    VideoIndex.build(
        [root / "videos"], root / "index", pretrained=str(weights), adapters={"demo": adapter}, zero_shot=True,
        options=options,
    )  # fmt: skip
    return root / "index"


def shared_example_collection(tmp_path_factory, weights: Path) -> Path:
    """The folder of ``example_collection``, built once per test session: every module that uses it only reads it
    (the server never writes an index), so one build serves them all."""
    root = tmp_path_factory.getbasetemp() / "example-collection"
    if not (root / "built").is_file():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        example_collection(root, weights)
        (root / "built").touch()
    return root
