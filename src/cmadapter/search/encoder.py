"""The model side of an index: load the backbone and the index's adapters, decode one file, encode frames.

``decode_item`` and ``encode_frames`` are plain functions of their inputs, so the local loop and a
distributed runner (one task per file, batches per actor) call the same code.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ..evaluation.tables import ZERO_SHOT  # the name of the backbone without an adapter, as in compare
from ..precision import autocast
from ..video.grid import decode_clip
from ..video.preprocess import to_model_input
from ..video.sampling import Clip
from .errors import SearchError


def decode_item(path: str | Path, kind: str, rate: Fraction, image_size: int) -> Clip:
    """Every grid frame of a video file or frame folder at ``rate`` frames per second, center-cropped.

    Raises ``DataError`` naming the file when it is empty, has no video stream or cannot be decoded."""
    return decode_clip(path, rate, image_size, lambda count: list(range(count)), video_id=None)


@torch.no_grad()
def encode_frames(model, frames: np.ndarray, *, batch_size: int, precision: str) -> np.ndarray:
    """Features of uint8 frames [T, S, S, 3] with the model's active adapter: float16 [T, D]."""
    out = []
    for start in range(0, len(frames), batch_size):
        images, _ = to_model_input(frames[start : start + batch_size])
        with autocast(model.device, precision):
            out.append(model.encode_images(images).float().cpu().numpy().astype(np.float16))
    return np.concatenate(out)


def segment_vectors(features: np.ndarray, ranges: list[tuple[int, int]]) -> np.ndarray:
    """Stage-1 vector of each segment: the mean of its frames' features, L2-normalised (float32 [S, D])."""
    frames = features.astype(np.float32)
    means = np.stack([frames[first:stop].mean(axis=0) for first, stop in ranges])
    return means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)


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
    """Make ``name`` the model's active adapter (``zero-shot``: the plain backbone, text-pool head)."""
    if name == ZERO_SHOT:
        model.set_adapter(None)
        model.set_head("text-pool")
    else:
        model.set_adapter(name)
