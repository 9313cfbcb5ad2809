"""What every dataset reader returns, and the evaluator's view of a split.

A ``Record`` is one caption (or paragraph) of one video, with an optional time window. Training turns
records into (caption, clip) pairs; evaluation needs each video once and each caption once, with the
caption -> video map (several captions per video in MSVD and VATEX): ``retrieval_split`` builds that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import DataError


@dataclass(frozen=True)
class Record:
    """One caption (or paragraph) of one video."""

    video_id: str
    caption: str
    split: str
    start: float | None = None  # seconds; None = whole video
    end: float | None = None

    @property
    def window(self) -> tuple[float | None, float | None]:
        return (self.start, self.end)


@dataclass
class RetrievalSplit:
    """What the evaluator needs: each video once, each caption once."""

    name: str  # e.g. "msrvtt/test"
    video_ids: list[str]  # unique, in a fixed order (first appearance in the annotations)
    captions: list[str]
    caption_video: list[int]  # index into video_ids for each caption (multi-caption aware)
    windows: dict[str, tuple[float | None, float | None]]  # per video id

    def __len__(self) -> int:
        return len(self.captions)


def retrieval_split(records: Sequence[Record], name: str) -> RetrievalSplit:
    """Group records by video (order of first appearance); a video must have one window."""
    if not records:
        raise DataError(f"{name}: no records to evaluate on")
    index: dict[str, int] = {}
    windows: dict[str, tuple[float | None, float | None]] = {}
    captions, caption_video = [], []
    for record in records:
        if record.video_id not in index:
            index[record.video_id] = len(index)
            windows[record.video_id] = record.window
        elif windows[record.video_id] != record.window:
            raise DataError(
                f"{name}: video {record.video_id!r} appears with two time windows, "
                f"{windows[record.video_id]} and {record.window}; an evaluation split needs one clip per video"
            )
        captions.append(record.caption)
        caption_video.append(index[record.video_id])
    return RetrievalSplit(
        name=name, video_ids=list(index), captions=captions, caption_video=caption_video, windows=windows
    )
