"""Similarity heads: text features and per-frame video features in, logit-scaled similarities out.

Both heads are parameter-free and run in fp32 whatever the autocast context: they are cheap, and a
cosine of bf16 sums is visibly coarser than the ranking needs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .errors import CmadapterError
from .masks import frame_mask

_EPS = 1e-12


class TextConditionedPool(nn.Module):
    """The paper's parameter-free head: frames pooled by a softmax over their match with the text.

    ``s[n,m,f] = <t_n, v_mf> / temperature`` on raw features, padded frames masked out,
    ``u_nm = sum_f softmax_f(s)[n,m,f] v_mf`` and ``logit[n,m] = scale * cos(t_n, u_nm)``.
    ``u`` is never materialised (it would be N x M x D): ``<t, u> = sum_f w_f <t, v_f>`` and
    ``|u|^2 = w^T G w`` with the per-video frame Gram matrix ``G``.
    """

    name = "text-pool"

    def __init__(self, temperature: float = 5.0):
        super().__init__()
        if temperature <= 0:
            raise CmadapterError(f"text-pool temperature must be positive, got {temperature}")
        self.temperature = temperature

    def frame_weights(self, text: torch.Tensor, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Softmax weights of each video's frames for each text: [N, M, F], zero on padded frames."""
        check_features(text, video)
        mask = frame_mask(mask, video.shape[:2])
        dots = torch.einsum("nd,mfd->nmf", text.float(), video.float())
        return _masked_softmax(dots / self.temperature, mask)

    def score_one(
        self, text: torch.Tensor, video: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One text [D] against many videos [M, F, D]: (cosine of the text and each pooled video [M], the
        frame weights [M, F]). Pooling each video explicitly ([M, D]) is F times cheaper than ``forward``'s
        Gram-matrix form, which is built for many texts against many videos at once."""
        weights = self.frame_weights(text[None], video, mask)[0]
        with torch.autocast(text.device.type, enabled=False):
            pooled = torch.einsum("mf,mfd->md", weights, video.float())
            text = text.float()
            cosine = (pooled @ text) / (pooled.norm(dim=1).clamp_min(_EPS) * text.norm().clamp_min(_EPS))
        return cosine, weights

    def forward(
        self, text: torch.Tensor, video: torch.Tensor, mask: torch.Tensor, logit_scale: torch.Tensor
    ) -> torch.Tensor:
        check_features(text, video)
        mask = frame_mask(mask, video.shape[:2])
        with torch.autocast(text.device.type, enabled=False):
            text, video = text.float(), video.float()
            dots = torch.einsum("nd,mfd->nmf", text, video)
            weights = _masked_softmax(dots / self.temperature, mask)
            text_dot_pooled = (weights * dots).sum(-1)
            gram = torch.einsum("mfd,mgd->mfg", video, video)
            pooled_sq = torch.einsum("nmf,mfg,nmg->nm", weights, gram, weights)
            pooled_norm = pooled_sq.clamp_min(_EPS**2).sqrt()
            text_norm = text.norm(dim=-1, keepdim=True).clamp_min(_EPS)
            return logit_scale.float() * text_dot_pooled / (text_norm * pooled_norm)


class MeanPool(nn.Module):
    """CLIP4Clip's ``meanP``: L2-normalised frames, masked mean, re-normalised, cosine."""

    name = "meanP"

    def score_one(
        self, text: torch.Tensor, video: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One text [D] against many videos [M, F, D]: (cosine [M], frame weights [M, F]: every frame alike)."""
        mask = frame_mask(mask, video.shape[:2])
        cosine = self(text[None], video, mask, torch.ones((), dtype=torch.float32))[0]
        return cosine, mask.float() / mask.sum(dim=1, keepdim=True).clamp_min(1)

    def forward(
        self, text: torch.Tensor, video: torch.Tensor, mask: torch.Tensor, logit_scale: torch.Tensor
    ) -> torch.Tensor:
        check_features(text, video)
        mask = frame_mask(mask, video.shape[:2])
        with torch.autocast(text.device.type, enabled=False):
            frames = F.normalize(video.float(), dim=-1, eps=_EPS) * mask[..., None]
            pooled = frames.sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
            pooled = F.normalize(pooled, dim=-1, eps=_EPS)
            return logit_scale.float() * F.normalize(text.float(), dim=-1, eps=_EPS) @ pooled.T


HEADS = {"text-pool": TextConditionedPool, "meanP": MeanPool}


def create_head(name: str, **options) -> nn.Module:
    try:
        cls = HEADS[name]
    except KeyError:
        raise CmadapterError(f"unknown head {name!r}; choose one of {', '.join(HEADS)}") from None
    return cls(**options)


def check_features(text: torch.Tensor, video: torch.Tensor) -> None:
    """Text [N, D] and per-frame video features [M, F, D] of the same width, or a one-line error."""
    if not isinstance(text, torch.Tensor) or not isinstance(video, torch.Tensor):
        raise CmadapterError("text and video features must be torch tensors")
    if text.ndim != 2 or video.ndim != 3 or text.shape[-1] != video.shape[-1]:
        raise CmadapterError(
            f"features must be text [N, D] and video [M, F, D], got {list(text.shape)} and {list(video.shape)}"
        )


def _masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # mask [M, F] (bool) broadcasts over the text axis; every video has a valid frame (``frame_mask`` checks).
    return scores.masked_fill(~mask[None], float("-inf")).softmax(dim=-1)
