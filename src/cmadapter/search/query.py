"""Two-stage search: FAISS candidates by segment vector, then the model's head over each candidate's frames.

Stage 1 ranks segments by the inner product of the normalised query with each segment's normalised mean
frame. Stage 2 scores the candidates exactly as training and ``eval`` do: the head pools the segment's
frames conditioned on the query (text-pool: a softmax over the frames' match with the words), and the
score is the cosine of the query with the pooled vector (the logit before ``logit_scale``). The head's
frame weights come back with each hit; the frame it weighted most gives ``best_frame_time``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .faiss_index import AnnIndex, SearchParams

# Frame features [C, F, D] and a mask [C, F] for candidate segment ids (in their order).
FetchFrames = Callable[[np.ndarray], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class SearchHit:
    segment_id: int
    video_id: int
    video: str
    start: float
    end: float
    score: float  # cosine of the query and the head's pooled segment vector
    best_frame_time: float
    frame_times: list[float]
    frame_weights: list[float]
    kind: str = "video"  # "video", "frames" (a folder of frames) or "image" (a photo: one frame)

    def to_dict(self) -> dict:
        return {
            "video": self.video,
            "kind": self.kind,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "score": round(self.score, 6),
            "best_frame_time": round(self.best_frame_time, 3),
            "video_id": self.video_id,
            "segment_id": self.segment_id,
            "frame_times": [round(t, 3) for t in self.frame_times],
            "frame_weights": [round(w, 6) for w in self.frame_weights],
        }


@dataclass
class VideoResult:
    """A video's best segment, and its other segments among the hits (best first)."""

    best: SearchHit
    others: list[SearchHit] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**self.best.to_dict(), "other_hits": [h.to_dict() for h in self.others]}


def head_scores(
    head, text: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cosine [C], frame weights [C, F]) of one text feature [D] against candidates' frames [C, F, D]."""
    text, frames = text.float(), frames.float()
    if hasattr(head, "frame_weights"):
        # One query: pooling each candidate's frames explicitly ([C, D]) is F times cheaper than the
        # head's Gram-matrix form, which is built for many texts against many videos at once.
        weights = head.frame_weights(text[None], frames, mask)[0]
        pooled = torch.einsum("cf,cfd->cd", weights, frames)
        cosine = (pooled @ text) / (pooled.norm(dim=1).clamp_min(1e-12) * text.norm().clamp_min(1e-12))
        return cosine, weights
    one = torch.ones((), dtype=torch.float32)
    cosine = head(text[None], frames, mask, one)[0]
    return cosine, mask.float() / mask.sum(dim=1, keepdim=True).clamp_min(1)  # meanP: every frame alike


def two_stage(
    text: torch.Tensor,
    ann: AnnIndex,
    fetch: FetchFrames,
    head,
    *,
    candidates: int,
    params: SearchParams | None = None,
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """Candidate segment ids re-ranked by the head: (ids [n], cosines [n], frame weights [n, F]), best first."""
    query = torch.nn.functional.normalize(text.float(), dim=0).numpy()[None]
    ids, _ = ann.search(query, candidates, params)
    ids = ids[0][ids[0] >= 0]
    if len(ids) == 0:
        return ids, torch.zeros(0), torch.zeros(0, 0)
    frames, mask = fetch(ids)
    cosine, weights = head_scores(head, text, frames, mask)
    # Stable sort, ties broken by segment id: the order never depends on FAISS's candidate order.
    order = np.lexsort((ids, -cosine.numpy()))
    return ids[order], cosine[order], weights[order]


def pad_frames(blocks: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack frame blocks of different lengths into float32 [C, F, D] with a mask [C, F]."""
    longest = max(len(b) for b in blocks)
    out = torch.zeros(len(blocks), longest, blocks[0].shape[1])
    mask = torch.zeros(len(blocks), longest, dtype=torch.bool)
    for row, block in enumerate(blocks):
        out[row, : len(block)] = torch.from_numpy(block.astype(np.float32))
        mask[row, : len(block)] = True
    return out, mask
