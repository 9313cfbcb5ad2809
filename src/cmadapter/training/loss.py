"""Symmetric InfoNCE over a text x video logit matrix whose diagonal holds the matching pairs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import CmadapterError


def symmetric_infonce(logits: torch.Tensor) -> torch.Tensor:
    """(CE over rows + CE over columns) / 2 with targets on the diagonal."""
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
        raise CmadapterError(f"InfoNCE needs a square logit matrix, got shape {tuple(logits.shape)}")
    targets = torch.arange(logits.shape[0], device=logits.device)
    logits = logits.float()
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
