"""Two-stage search: FAISS candidates by segment vector, then the model's head over each candidate's frames.

Stage 1 ranks segments by the inner product of the normalised query with each segment's normalised mean
frame. Stage 2 scores the candidates exactly as training and ``eval`` do: the head pools the segment's
frames conditioned on the query (text-pool: a softmax over the frames' match with the query vector), and the
score is the cosine of the query with the pooled vector (the logit before ``logit_scale``). The query vector is
the words' text feature, a picture's image feature or a stored frame's feature (``queries.py``): one scoring,
``head_scores``, for all three. The head's frame weights come back with each hit; the frame it weighted most
gives ``best_frame_time``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .faiss_index import SearchParams
from .files import display_path
from .schema import FileRow, SegmentRow

# (ids kept [C], frame features [C, F, D], mask [C, F]) of at most ``limit`` of the candidate segment ids, in
# their order, dropping those the reader no longer holds.
FetchFrames = Callable[[np.ndarray, int], tuple[np.ndarray, torch.Tensor, torch.Tensor]]


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
            "video": display_path(self.video),
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
    head, query: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cosine [C], frame weights [C, F]) of one query vector [D] (words, a picture or a frame) against the
    candidates' frames [C, F, D]: the head's own ``score_one``, the pooling training and ``eval`` use."""
    return head.score_one(query.float(), frames.float(), mask)


def two_stage(
    vector: torch.Tensor,
    stage1,
    fetch: FetchFrames,
    head,
    *,
    candidates: int,
    params: SearchParams | None = None,
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """Candidate segment ids re-ranked by the head: (ids [n], cosines [n], frame weights [n, F]), best first.

    ``stage1.search`` may return segments the snapshot no longer holds (a saved FAISS index older than the
    data): ``fetch`` drops them, and stage 1 is asked for more until ``candidates`` exist or it has no more."""
    query = torch.nn.functional.normalize(vector.float(), dim=0).numpy()[None]
    asked = candidates
    while True:
        ids, _ = stage1.search(query, asked, params)
        ids = ids[0][ids[0] >= 0]
        kept, frames, mask = fetch(ids, candidates)
        if len(kept) >= candidates or len(ids) < asked:
            break
        asked *= 2
    if len(kept) == 0:
        return kept, torch.zeros(0), torch.zeros(0, 0)
    cosine, weights = head_scores(head, vector, frames, mask)
    # Stable sort, ties broken by segment id: the order never depends on FAISS's candidate order.
    order = np.lexsort((kept, -cosine.numpy()))
    return kept[order], cosine[order], weights[order]


def pad_frames(blocks: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack frame blocks of different lengths into float32 [C, F, D] with a mask [C, F]."""
    lengths = np.fromiter((len(b) for b in blocks), np.int64, len(blocks))
    out = np.zeros((len(blocks), int(lengths.max()), blocks[0].shape[1]), np.float32)
    for row, block in enumerate(blocks):  # numpy converts fp16 rows in place (no tensor per candidate)
        out[row, : len(block)] = block
    mask = np.arange(out.shape[1])[None, :] < lengths[:, None]
    return torch.from_numpy(out), torch.from_numpy(mask)


def group_by_video(store, ids: np.ndarray, cosine, weights, rows: dict[int, SegmentRow]) -> list[VideoResult]:
    """Ranked segments grouped by video, best first: each video's best segment and its other hits. ``rows``: the
    segment rows stage 2 read (every id is among them); ``store`` gives the files' rows."""
    by_video: dict[int, VideoResult] = {}
    files: dict[int, tuple[FileRow, list[float]]] = {}  # each file's row and frame times, read once
    for segment_id, score, frame_weights in zip(ids.tolist(), cosine.tolist(), weights.tolist()):
        row = rows[segment_id]
        if row.file_id not in files:
            file = store.file(row.file_id)
            files[row.file_id] = file, file.times.tolist()
        hit = _hit(row, *files[row.file_id], score, frame_weights)
        if row.file_id in by_video:
            by_video[row.file_id].others.append(hit)
        else:
            by_video[row.file_id] = VideoResult(best=hit)
    return list(by_video.values())


def _hit(
    row: SegmentRow, file: FileRow, file_times: list[float], score: float, frame_weights: list[float]
) -> SearchHit:
    weights = frame_weights[: row.stop - row.first]
    times = file_times[row.first : row.stop]
    return SearchHit(
        segment_id=row.id,
        video_id=row.file_id,
        video=file.path,
        start=row.start,
        end=row.end,
        score=score,
        best_frame_time=times[weights.index(max(weights))],  # the first of equal weights, as argmax
        frame_times=times,
        frame_weights=weights,
        kind=file.kind,
    )
