"""Segments: windows over a video's frame grid, as frame ranges (frames are stored once, shared by windows).

A video sampled at ``fps`` has frames at ``k / fps``. A window of ``window`` seconds holds
``W = round(window * fps)`` frames and windows start every ``S = round(stride * fps)`` frames; the last
window ends at the last frame (so the tail is covered by a full window, not a stub). A video with at
most ``W`` frames is one segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import SearchError


@dataclass(frozen=True)
class Segment:
    first: int  # first frame row
    stop: int  # one past the last frame row

    def __post_init__(self) -> None:
        if not 0 <= self.first < self.stop:
            raise ValueError(f"a segment needs 0 <= first < stop, got {self.first}, {self.stop}")


def frames_in(seconds: float, fps: float, what: str) -> int:
    count = round(seconds * fps)
    if count < 1:
        raise SearchError(f"{what} of {seconds} s holds no frame at {fps} fps; make it at least {1 / fps:g} s")
    return count


def segment_ranges(frame_count: int, window: int, stride: int) -> list[Segment]:
    """Windows of ``window`` frames every ``stride`` frames over ``frame_count`` frames (see module doc)."""
    if frame_count < 1 or window < 1 or stride < 1:
        raise ValueError(f"need frame_count, window, stride >= 1, got {frame_count}, {window}, {stride}")
    if frame_count <= window:
        return [Segment(0, frame_count)]
    starts = list(range(0, frame_count - window + 1, stride))
    if starts[-1] + window < frame_count:
        starts.append(frame_count - window)
    return [Segment(s, s + window) for s in starts]


def segment_vectors(features: np.ndarray, ranges: list[tuple[int, int]]) -> np.ndarray:
    """Stage-1 vector of each segment: the mean of its frames' features, L2-normalised (float32 [S, D])."""
    frames = features.astype(np.float32)
    means = np.stack([frames[first:stop].mean(axis=0) for first, stop in ranges])
    return means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
