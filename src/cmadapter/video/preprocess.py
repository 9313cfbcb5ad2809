"""CLIP's image preprocessing, split so that frames stay uint8 until the very end.

CLIP (and open_clip's ``image_transform`` for OpenAI models) resizes the short side to the input size
with PIL's bicubic filter, center-crops a square, scales to [0, 1] and normalises with CLIP's mean and
std. We do exactly that, in the same arithmetic, but keep the resize and the crop on uint8 arrays:
the frame cache stores resized uint8 frames, so a frame read from the cache and one decoded from the
video go through identical operations and give bitwise-identical tensors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..errors import CmadapterError

if TYPE_CHECKING:
    import torch

# CLIP's normalisation, applied to every frame the model sees.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) after resizing the short side to ``short_side``, by torchvision's rule (long side truncated)."""
    if width <= height:
        return short_side, int(short_side * height / width)
    return int(short_side * width / height), short_side


def resize_short_side(image: Image.Image | np.ndarray, short_side: int) -> np.ndarray:
    """Bicubic resize (PIL, antialiased as CLIP's) so the short side is ``short_side``; uint8 HxWx3 out."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    size = resized_size(image.width, image.height, short_side)
    if size != image.size:  # PIL returns a copy for an unchanged size; skip the work
        image = image.resize(size, Image.Resampling.BICUBIC)
    return np.asarray(image)


def center_crop(frame: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` square of an HxWxC array (offsets rounded as torchvision does)."""
    height, width = frame.shape[:2]
    if height < size or width < size:
        raise CmadapterError(f"cannot crop {size}x{size} from a {width}x{height} frame")
    top = round((height - size) / 2.0)  # banker's rounding, as torchvision
    left = round((width - size) / 2.0)
    return frame[top : top + size, left : left + size]


def fit_frame(frame: np.ndarray, image_size: int) -> np.ndarray:
    """Short side to ``image_size`` (a no-op when it is already that size), then the center square."""
    height, width = frame.shape[:2]
    if min(height, width) != image_size:
        frame = resize_short_side(frame, image_size)
    return center_crop(frame, image_size)


def to_model_input(frames: np.ndarray, max_frames: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 frames [t, H, W, 3] -> (float32 [T, 3, H, W] CLIP-normalised, bool mask [T]).

    The frames are left-aligned in ``T = max_frames`` slots (default ``t``); padding slots are zero and
    masked out. Scaling and normalisation are torchvision's ToTensor + Normalize, in the same order.
    """
    import torch  # here, not at the top: cache-writing worker processes never need it

    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise CmadapterError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    count, height, width = frames.shape[:3]
    slots = count if max_frames is None else max_frames
    if not 1 <= count <= slots:
        raise CmadapterError(f"expected 1 to {slots} frames, got {count}")
    out = torch.empty((slots, 3, height, width), dtype=torch.float32)
    real = out[:count]
    real.copy_(torch.from_numpy(np.require(frames, requirements="CW")).permute(0, 3, 1, 2))  # exact uint8 -> float
    normalize_(real)
    out[count:].zero_()
    mask = torch.zeros(slots, dtype=torch.bool)
    mask[:count] = True
    return out, mask


def normalize_(pixels: torch.Tensor) -> torch.Tensor:
    """In place: float pixel values 0-255 [..., 3, H, W] scaled to [0, 1], then normalised with CLIP's mean
    and std (torchvision's ToTensor and Normalize, in that order)."""
    import torch

    mean, std = torch.tensor(CLIP_MEAN).view(3, 1, 1), torch.tensor(CLIP_STD).view(3, 1, 1)
    return pixels.div_(255.0).sub_(mean).div_(std)
