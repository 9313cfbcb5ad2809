"""The model side of an index: load the backbone and adapters, decode and encode one file, encode a query.

``encode_file`` streams a file: it decodes frames in order and encodes them a batch at a time with every
adapter asked for, so memory does not grow with the video's length. ``encode_with_adapters`` is the one
per-batch step both the local loop and the Ray actors run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ..evaluation.tables import ZERO_SHOT  # the name of the backbone without an adapter, as in compare
from ..precision import autocast
from ..video.grid import decode_clip, stream_path_grid
from ..video.preprocess import fit_frame, to_model_input
from ..video.sampling import Clip
from ..video.stream import RESTART
from .errors import SearchError


@dataclass
class Encoded:
    """One file's frame times and each encoded adapter's fp16 frame features ``[frames, D]``."""

    times: np.ndarray
    features: dict[str, np.ndarray]
    decode_seconds: float
    encode_seconds: float
    skipped: int = 0  # frames not encoded because they looked like the one before (``skip_similar``)


def encode_file(
    model, path: str | Path, rate: Fraction, adapters: list[str], *, batch_size: int, precision: str
) -> Encoded:
    """Every grid frame of a video file, frame folder or image at ``rate``, encoded with each of ``adapters``
    (names loaded on ``model``; ``zero-shot`` is the plain backbone), one batch of frames in memory at a time.

    Raises ``DataError`` naming the file when it is empty, has no video stream, cannot be decoded or ends early."""
    image_size = model.image_size
    times: list[float] = []
    batch: list[np.ndarray] = []
    parts: dict[str, list[np.ndarray]] = {name: [] for name in adapters}
    seconds = {"decode": 0.0, "encode": 0.0}

    def flush() -> None:
        began = time.perf_counter()
        for name, features in encode_with_adapters(model, np.stack(batch), adapters, batch_size, precision).items():
            parts[name].append(features)
        seconds["encode"] += time.perf_counter() - began
        batch.clear()

    frames = stream_path_grid(Path(path), rate, image_size)
    began = time.perf_counter()
    for item in frames:
        if item is RESTART:  # the decoder starts over another way: what it gave so far does not count
            times.clear()
            batch.clear()
            for part in parts.values():
                part.clear()
            continue
        point, frame = item
        times.append(float(Fraction(point) / rate))
        batch.append(fit_frame(frame, image_size))
        seconds["decode"] += time.perf_counter() - began
        if len(batch) == batch_size:
            flush()
        began = time.perf_counter()
    seconds["decode"] += time.perf_counter() - began
    if batch:
        flush()
    features = {name: np.concatenate(part) for name, part in parts.items()}
    return Encoded(np.asarray(times, np.float64), features, seconds["decode"], seconds["encode"])


def encode_with_adapters(
    model, frames: np.ndarray, adapters: list[str], batch_size: int, precision: str
) -> dict[str, np.ndarray]:
    """uint8 frames [T, S, S, 3] encoded with each adapter: name -> float16 [T, D]."""
    out = {}
    for name in adapters:
        use_adapter(model, name)
        out[name] = encode_frames(model, frames, batch_size=batch_size, precision=precision)
    return out


@torch.no_grad()
def encode_frames(model, frames: np.ndarray, *, batch_size: int, precision: str) -> np.ndarray:
    """Features of uint8 frames [T, S, S, 3] with the model's active adapter: float16 [T, D]."""
    out = []
    for start in range(0, len(frames), batch_size):
        images, _ = to_model_input(frames[start : start + batch_size])
        with autocast(model.device, precision):
            out.append(model.encode_images(images).float().cpu().numpy().astype(np.float16))
    return np.concatenate(out)


def decode_item(path: str | Path, kind: str, rate: Fraction, image_size: int) -> Clip:
    """Every grid frame of a video file or frame folder at ``rate`` frames per second, center-cropped, at
    once (the Ray path ships a file's frames from a decoding task to an encoding actor).

    Raises ``DataError`` naming the file when it is empty, has no video stream or cannot be decoded."""
    return decode_clip(path, rate, image_size, lambda count: list(range(count)), video_id=None)


@torch.no_grad()
def encode_query(model, text: str, precision: str) -> torch.Tensor:
    """The text feature [D] (float32) of one query with the model's active adapter."""
    if not isinstance(text, str) or not text.strip():
        raise SearchError('the query is empty; type what to look for, e.g. "a dog catches a frisbee"')
    with autocast(model.device, precision):
        return model.encode_text(model.tokenize([text.strip()]))[0].float()


def load_model(backbone: str | None, pretrained: str | None, adapters: dict[str, Path | None], device: str = "cpu"):
    """The frozen backbone with every adapter of ``adapters`` loaded under its name (None: zero-shot)."""
    from ..model import build_model

    if backbone is None and pretrained is None:
        raise SearchError("give the backbone: --pretrained WEIGHTS (a CLIP weights file) or --backbone NAME")
    model = build_model(backbone, pretrained, method=None, device=device)
    model.eval()
    for name, path in adapters.items():
        if path is not None:
            model.load_adapter(path, name=name, activate=False)
    return model


def use_adapter(model, name: str) -> None:
    """Make ``name`` the model's active adapter (``zero-shot``: the plain backbone and its own head)."""
    model.set_adapter(None if name == ZERO_SHOT else name)
