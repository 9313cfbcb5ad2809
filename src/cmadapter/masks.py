"""Frame masks: which of a video's ``T`` frame slots hold a frame (True) and which are padding (False).

Every public call that takes a mask accepts the forms other code builds: bool, or 0/1 in an integer
(CLIP4Clip and the official code build ``long`` masks) or floating dtype. Anything else (another value,
another dtype, another shape, a video with no frame) is a one-line error, never a torch error from deep
inside a head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .errors import CmadapterError


def frame_mask(mask: object, shape: Sequence[int], *, name: str = "frame_mask") -> torch.Tensor:
    """``mask`` as a bool tensor of ``shape`` ([videos, frames]); every video needs at least one frame."""
    if not isinstance(mask, torch.Tensor):
        raise CmadapterError(f"{name} must be a torch tensor [B, T] of bool or 0/1 values, got {type(mask).__name__}")
    expected = tuple(shape)
    if tuple(mask.shape) != expected:
        raise CmadapterError(f"{name} must be [B, T] = {list(expected)}, got shape {list(mask.shape)}")
    if mask.dtype != torch.bool:
        if mask.is_complex() or not (mask.is_floating_point() or _is_integer(mask.dtype)):
            raise CmadapterError(f"{name} must be bool or hold 0/1 integers, got dtype {mask.dtype}")
        # One reduction (and one device sync) for the check; a mask is B x T, tiny.
        bad = (mask != 0) & (mask != 1)
        if bool(bad.any()):
            value = mask[bad][0].item()
            raise CmadapterError(f"{name} must hold only 0 and 1 (or be bool), found {value!r} ({mask.dtype})")
        mask = mask != 0
    if mask.ndim == 2:
        empty = (~mask.any(dim=1)).nonzero().flatten().tolist()
        if empty:
            raise CmadapterError(f"{name}: videos at batch rows {empty[:10]} have no valid frame")
    return mask


def _is_integer(dtype: torch.dtype) -> bool:
    return not dtype.is_floating_point and not dtype.is_complex and dtype != torch.bool
