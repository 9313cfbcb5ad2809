"""Retrieval examples: a model's scores on a split, which queries to show, and what each ranks first.

Correct and wrong come from the ranks ``evaluation.metrics`` computes (ties counted against the model),
never from an argmax of our own: a query is correct exactly when its rank is 1, and when it is not, the
item shown as "rank 1" is the best-scoring wrong one (which scores at least as high as the right one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..evaluation.evaluate import EncodedSplit, EvalData, encode_texts, encode_videos, similarity_matrix
from ..evaluation.metrics import retrieval_metrics, text_to_video_ranks, video_to_text_ranks


@dataclass
class Scored:
    """One model's view of a split: features, the similarity matrix and both directions' ranks."""

    label: str
    similarity: torch.Tensor  # [captions, videos]
    caption_video: torch.Tensor  # [captions] video index of each caption
    t2v_ranks: torch.Tensor  # [captions], 1-based, from evaluation.metrics
    v2t_ranks: torch.Tensor  # [videos]
    text: torch.Tensor | None = None  # [captions, D]
    video: torch.Tensor | None = None  # [videos, T, D]
    mask: torch.Tensor | None = None  # [videos, T]
    v2t_convention: str = "best-caption"

    @classmethod
    def from_similarity(cls, label: str, similarity, caption_video, v2t: str = "best-caption", **features) -> Scored:
        similarity = similarity.detach().float().cpu()
        caption_video = torch.as_tensor(caption_video, dtype=torch.long)
        retrieval_metrics(similarity, caption_video, v2t=v2t)  # its checks: shapes, NaN rows
        return cls(
            label,
            similarity,
            caption_video,
            text_to_video_ranks(similarity, caption_video),
            video_to_text_ranks(similarity, caption_video, v2t),
            v2t_convention=v2t,
            **features,
        )

    def metrics(self) -> dict[str, dict[str, float]]:
        return retrieval_metrics(self.similarity, self.caption_video, v2t=self.v2t_convention)

    def top_video(self, caption: int) -> int:
        """The video shown at rank 1 for a caption: its own when its rank is 1, else the best wrong one."""
        right = int(self.caption_video[caption])
        if int(self.t2v_ranks[caption]) == 1:
            return right
        row = self.similarity[caption].clone()
        row[right] = float("-inf")
        return int(row.argmax())

    def top_caption(self, video: int) -> int:
        """The caption shown at rank 1 for a video: its best correct caption when its rank is 1, else the best
        wrong caption."""
        column = self.similarity[:, video]
        correct = self.caption_video == video
        best = column.masked_fill(~correct if int(self.v2t_ranks[video]) == 1 else correct, float("-inf"))
        return int(best.argmax())


@torch.no_grad()
def score_split(model, data: EvalData, label: str, *, batch_size: int = 16, v2t: str = "best-caption") -> Scored:
    text = encode_texts(model, data.captions, batch_size=batch_size, precision="fp32", progress=False)
    video, mask = encode_videos(model, data.clips, batch_size=batch_size, precision="fp32", progress=False)
    similarity = similarity_matrix(model, EncodedSplit(text, video, mask), block_size=256)
    return Scored.from_similarity(label, similarity, data.caption_video, v2t, text=text, video=video, mask=mask)


def choose(run_correct: np.ndarray, base_correct: np.ndarray | None, count: int, seed: int) -> list[int]:
    """``count`` query indices, seeded: half (rounded up) that the run gets right and the baseline wrong, the
    rest that both miss; short categories are filled from the others (both right, then only the baseline
    right). Without a baseline: half right, half wrong."""
    rng = np.random.default_rng(seed)
    run_correct = np.asarray(run_correct, dtype=bool)
    if base_correct is None:
        groups = [run_correct, ~run_correct]
    else:
        base_correct = np.asarray(base_correct, dtype=bool)
        groups = [run_correct & ~base_correct, ~run_correct & ~base_correct, run_correct & base_correct]
        groups.append(~run_correct & base_correct)
    pools = [list(rng.permutation(np.flatnonzero(g))) for g in groups]
    wanted = [(count + 1) // 2, count // 2]
    chosen: list[int] = []
    for pool, n in zip(pools, wanted):
        chosen += [int(i) for i in pool[:n]]
        del pool[:n]
    for pool in pools:  # fill up from what is left, in order of preference
        while len(chosen) < count and pool:
            chosen.append(int(pool.pop(0)))
    return chosen
