"""What every dataset reader returns, and the evaluator's view of a split.

A ``Record`` is one caption (or paragraph) of one video, with an optional time window. Training turns
records into (caption, clip) pairs; evaluation needs each video once and each caption once, with the
caption -> video map (several captions per video in MSVD and VATEX): ``retrieval_split`` builds that.
With ``moments=True`` (captions tables) each window of a video is an item of its own, named
``video@start-end``: several moments of one long video are several items to retrieve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import DataError


@dataclass(frozen=True)
class Record:
    """One caption (or paragraph) of one video."""

    video_id: str
    caption: str
    split: str
    start: float | None = None  # seconds; None = whole video
    end: float | None = None
    line: int | None = field(default=None, compare=False)  # where in its annotation file, when it has lines

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
    files: dict[str, str] = field(default_factory=dict)  # item id -> the video it is cut from, where they differ

    def __len__(self) -> int:
        return len(self.captions)


def retrieval_split(records: Sequence[Record], name: str, *, moments: bool = False) -> RetrievalSplit:
    """Group records by video (order of first appearance); a video must have one window, unless ``moments``:
    then each (video, window) is an item, named ``video@start-end`` when it has a window."""
    if not records:
        raise DataError(f"{name}: no records to evaluate on")
    index: dict[str, int] = {}
    windows: dict[str, tuple[float | None, float | None]] = {}
    files: dict[str, str] = {}
    items: dict[tuple[str, tuple[float | None, float | None]], str] = {}
    captions, caption_video = [], []
    for record in records:
        item = record.video_id
        if moments and record.window != (None, None):
            key = (record.video_id, record.window)
            item = items.get(key)
            if item is None:
                item = items[key] = moment_name(record.video_id, record.window)
                if item in index:  # another moment (or a video) with the same name: they would be one item
                    raise DataError(f"{name}: two items of {record.video_id!r} are both named {item!r}")
                files[item] = record.video_id
        if item not in index:
            index[item] = len(index)
            windows[item] = record.window
        elif windows[item] != record.window:
            raise DataError(
                f"{name}: video {record.video_id!r} appears with two time windows, "
                f"{windows[item]} and {record.window}; an evaluation split needs one clip per video"
            )
        captions.append(record.caption)
        caption_video.append(index[item])
    return RetrievalSplit(
        name=name, video_ids=list(index), captions=captions, caption_video=caption_video, windows=windows, files=files
    )


def moment_name(video_id: str, window: tuple[float | None, float | None]) -> str:
    """``video@start-end``, seconds to the millisecond (an open end left empty): ``a.mp4@12.5-20``."""

    def seconds(value: float | None) -> str:
        return "" if value is None else f"{value:.3f}".rstrip("0").rstrip(".")

    return f"{video_id}@{seconds(window[0])}-{seconds(window[1])}"
