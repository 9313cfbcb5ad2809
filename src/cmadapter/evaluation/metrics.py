"""Retrieval metrics from a caption x video similarity matrix: R@1/5/10, median and mean rank.

Conventions (stated because papers differ):
- **Ties are counted pessimistically**: a wrong item scoring exactly as high as the right one is ranked
  above it. A model that gives every item the same score therefore gets the worst rank, never R@1 = 100.
- **text→video**: every caption is a query; its rank is the position of its own video among all videos.
- **video→text** (``"best-caption"``, the default): every video is a query; its rank is the position of its
  best-scoring correct caption among all captions, other correct captions not counted against it.
  ``"clip4clip"`` is CLIP4Clip's lenient variant, labelled as such: the candidates are caption *groups*
  (one per video), each scored by the best of its captions.
- A NaN or infinite similarity is an error naming the rows, never a silently dropped query.
- ``rsum``: R@1 + R@5 + R@10 of both directions, the image-text field's single number.

Images are one-frame videos here: for Flickr30K and MSCOCO "t2v" is text→image (image retrieval, each of an
image's five captions a query) and "v2t" image→text (text retrieval, the best of the image's captions), the
conventions those papers report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import CmadapterError


def check_finite(similarity: torch.Tensor, row_names: Sequence[str] | None = None) -> None:
    bad = (~torch.isfinite(similarity)).any(dim=1).nonzero().flatten().tolist()
    if bad:
        shown = [f"{i} ({row_names[i]!r})" if row_names is not None else str(i) for i in bad[:5]]
        raise CmadapterError(
            f"similarity matrix has NaN or infinite values in {len(bad)} caption rows: {', '.join(shown)}"
            + (" …" if len(bad) > 5 else "")
        )


def text_to_video_ranks(similarity: torch.Tensor, caption_video: torch.Tensor) -> torch.Tensor:
    """1-based rank of each caption's video among all videos (ties pessimistic)."""
    rows = torch.arange(similarity.shape[0])
    correct = similarity[rows, caption_video][:, None]
    at_least = (similarity >= correct).sum(dim=1)  # includes the correct video itself
    return at_least


def video_to_text_ranks(
    similarity: torch.Tensor, caption_video: torch.Tensor, convention: str = "best-caption"
) -> torch.Tensor:
    """1-based rank of each video's best correct caption (or caption group) among the candidates."""
    num_videos = similarity.shape[1]
    counts = torch.bincount(caption_video, minlength=num_videos)
    if bool((counts == 0).any()):
        missing = (counts == 0).nonzero().flatten().tolist()
        raise CmadapterError(f"videos {missing[:5]} have no caption: video→text rank is undefined")
    if convention == "best-caption":
        by_video = similarity.T  # [videos, captions]
        is_correct = caption_video[None, :] == torch.arange(num_videos)[:, None]
        best = by_video.masked_fill(~is_correct, float("-inf")).max(dim=1, keepdim=True).values
        return 1 + ((by_video >= best) & ~is_correct).sum(dim=1)
    if convention == "clip4clip":
        # group_scores[k, j]: best score of video k's captions against video j.
        group_scores = torch.full((num_videos, num_videos), float("-inf"), dtype=similarity.dtype)
        group_scores = group_scores.scatter_reduce(
            0, caption_video[:, None].expand_as(similarity), similarity, reduce="amax"
        )
        by_video = group_scores.T  # [videos, groups]
        correct = by_video.diagonal()[:, None]
        return (by_video >= correct).sum(dim=1)
    raise CmadapterError(f"unknown video→text convention {convention!r}; use 'best-caption' or 'clip4clip'")


def rank_metrics(ranks: torch.Tensor) -> dict[str, float]:
    ranks_np = ranks.double().numpy()
    return {
        "R1": float(100.0 * (ranks_np <= 1).mean()),
        "R5": float(100.0 * (ranks_np <= 5).mean()),
        "R10": float(100.0 * (ranks_np <= 10).mean()),
        "MdR": float(np.median(ranks_np)),
        "MnR": float(ranks_np.mean()),
        "queries": len(ranks_np),
    }


def rsum(results: dict) -> float:
    """R@1 + R@5 + R@10 of both directions."""
    return float(sum(results[d][k] for d in ("t2v", "v2t") for k in ("R1", "R5", "R10")))


def retrieval_metrics(
    similarity: torch.Tensor,
    caption_video: Sequence[int] | torch.Tensor,
    *,
    v2t: str = "best-caption",
    captions: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Both directions from a [captions, videos] similarity matrix, and their ``rsum``."""
    similarity = similarity.detach().float().cpu()
    caption_video = torch.as_tensor(caption_video, dtype=torch.long)
    if similarity.ndim != 2 or similarity.shape[0] != len(caption_video):
        raise CmadapterError(
            f"similarity matrix {tuple(similarity.shape)} does not match {len(caption_video)} captions"
        )
    if len(caption_video) and (caption_video.min() < 0 or caption_video.max() >= similarity.shape[1]):
        raise CmadapterError("caption_video holds a video index outside the similarity matrix")
    check_finite(similarity, captions)
    results = {
        "t2v": rank_metrics(text_to_video_ranks(similarity, caption_video)),
        "v2t": {**rank_metrics(video_to_text_ranks(similarity, caption_video, v2t)), "convention": v2t},
    }
    return {**results, "rsum": rsum(results)}
