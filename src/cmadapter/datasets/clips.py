"""torch Datasets over records and a frame source, the collate functions and DataLoader settings.

- ``VideoClips``: each video once, ``(frames [T, 3, S, S] float, mask [T] bool, video_id)``: evaluation.
- ``CaptionVideoPairs``: ``(tokens [L], frames, mask, video_id)``: training. ``sampling="all"`` makes every
  record an item (the MSR-VTT recipe); ``"one-per-video"`` makes every video an item, with one of its
  captions drawn per epoch from ``(seed, epoch)``. The order of items is the trainer's sampler's job.

Frames are CLIP-normalised, left-aligned and padded to ``max_frames`` (mask False on padding). Videos
that cannot be found are dealt with when a dataset is built, before any training step: ``missing="fail"``
raises a ``DataError`` listing them, ``missing="drop"`` drops them and logs how many. A video that
cannot be decoded raises a ``DataError`` naming it when it is read; it never becomes a zero tensor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import CmadapterError, DataError
from ..video.preprocess import to_model_input
from ..video.sampling import Sampling, Window
from ..video.sources import FrameSource, as_frame_source
from .records import Record, RetrievalSplit

log = logging.getLogger(__name__)

Missing = Literal["fail", "drop"]


def check_videos(
    source: FrameSource,
    video_ids: Sequence[str],
    missing: Missing = "fail",
    what: str = "dataset",
    remedy: str = "set missing='drop' to train without them",
    where: Mapping[str, str] | None = None,
) -> set[str]:
    """The ids of ``video_ids`` that ``source`` cannot read; raises (ending with ``remedy``) unless
    ``missing="drop"``. ``where`` names the annotation line of an id, when its records know it."""
    if missing not in ("fail", "drop"):
        raise CmadapterError(f"missing must be 'fail' or 'drop', got {missing!r}")
    absent = source.missing(dict.fromkeys(video_ids))
    if not absent:
        return set()
    first = list(absent.items())[:5]
    where = where or {}
    listing = "; ".join(f"{where[i]}: {reason}" if i in where else reason for i, reason in first)
    listing += f"; … {len(absent) - 5} more" if len(absent) > 5 else ""
    total = len(set(video_ids))
    if missing == "fail":
        raise DataError(
            f"{what}: {len(absent)} of {total} videos cannot be read from {source.description}: {listing}. "
            f"Fix the paths, or {remedy}"
        )
    log.warning("%s: dropping %d of %d videos not in %s: %s", what, len(absent), total, source.description, listing)
    return set(absent)


class _ClipReader:
    """What both datasets share: a frame source and the clip geometry."""

    def __init__(self, source, image_size: int, max_frames: int, fps: float):
        self.source = as_frame_source(source)
        self.image_size = image_size
        self.sampling = Sampling(fps=fps, max_frames=max_frames)

    def clip(self, video_id: str, window: Window) -> tuple[torch.Tensor, torch.Tensor]:
        clip = self.source.read(video_id, window, self.sampling, self.image_size)
        return to_model_input(clip.frames, self.sampling.max_frames)


class VideoClips(Dataset):
    """Each video once: ``(frames [max_frames, 3, S, S], mask [max_frames], video_id)``."""

    def __init__(
        self,
        video_ids: Sequence[str],
        windows: Mapping[str, Window] | None,
        source: FrameSource | str | Path,
        image_size: int,
        max_frames: int = 12,
        fps: float = 1.0,
        *,
        missing: Missing = "fail",
        files: Mapping[str, str] | None = None,
    ):
        self.reader = _ClipReader(source, image_size, max_frames, fps)
        self.files = dict(files or {})  # item id -> the video it is cut from (moments), where they differ
        # Evaluation configs have no `missing` setting: metrics over fewer videos would not be comparable.
        remedy = "prepare the cache for them: evaluation reads every video of the split"
        items = list(dict.fromkeys(video_ids))
        videos = [self.files.get(v, v) for v in items]
        dropped = check_videos(self.reader.source, videos, missing, "evaluation videos", remedy)
        self.video_ids = [v for v, video in zip(items, videos) if video not in dropped]
        self.windows = dict(windows or {})

    @classmethod
    def from_split(cls, split: RetrievalSplit, source, image_size: int, max_frames: int = 12, fps: float = 1.0):
        return cls(split.video_ids, split.windows, source, image_size, max_frames, fps, files=split.files)

    def __len__(self) -> int:
        return len(self.video_ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        video_id = self.video_ids[index]
        video = self.files.get(video_id, video_id)
        frames, mask = self.reader.clip(video, self.windows.get(video_id, (None, None)))
        return frames, mask, video_id


class CaptionVideoPairs(Dataset):
    """Training pairs ``(tokens [L], frames [max_frames, 3, S, S], mask [max_frames], video_id)``."""

    def __init__(
        self,
        records: Sequence[Record],
        source: FrameSource | str | Path,
        tokenizer: Callable[[list[str]], torch.Tensor],
        image_size: int,
        max_frames: int = 12,
        fps: float = 1.0,
        sampling: Literal["all", "one-per-video"] = "all",
        seed: int = 0,
        *,
        missing: Missing = "fail",
        annotations: str | None = None,
    ):
        """``annotations`` names the annotation file of records that carry lines, for missing videos' errors."""
        if sampling not in ("all", "one-per-video"):
            raise CmadapterError(f"sampling must be 'all' or 'one-per-video', got {sampling!r}")
        self.reader = _ClipReader(source, image_size, max_frames, fps)
        self.tokenizer = tokenizer
        self.sampling = sampling
        self.seed = seed
        where = {}
        if annotations is not None:
            for record in reversed(records):  # the first line of each video
                if record.line is not None:
                    where[record.video_id] = f"{annotations} line {record.line}"
        video_ids = [r.video_id for r in records]
        dropped = check_videos(self.reader.source, video_ids, missing, "training videos", where=where)
        self.records = [r for r in records if r.video_id not in dropped]
        if not self.records:
            raise DataError("no training records left")
        groups: dict[tuple, list[int]] = {}  # by video and window: each moment of a video is its own item
        for i, record in enumerate(self.records):
            groups.setdefault((record.video_id, record.window), []).append(i)
        self.video_ids = [video for video, _window in groups]
        self._groups = [np.asarray(g) for g in groups.values()]
        self._group_sizes = np.array([len(g) for g in self._groups])
        # Shared memory, so that data-loader workers (persistent ones included) see set_epoch.
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._choice_epoch: int | None = None
        self._choice: np.ndarray | None = None

    def set_epoch(self, epoch: int) -> None:
        """Picks, for "one-per-video", the caption of every video for ``epoch`` (from seed and epoch only)."""
        self._epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.records) if self.sampling == "all" else len(self.video_ids)

    def record(self, index: int) -> Record:
        """The record item ``index`` stands for in the current epoch."""
        if self.sampling == "all":
            return self.records[index]
        epoch = int(self._epoch.item())
        if self._choice_epoch != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._choice = rng.integers(0, self._group_sizes)
            self._choice_epoch = epoch
        return self.records[int(self._groups[index][self._choice[index]])]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
        record = self.record(index)
        tokens = self.tokenizer([record.caption])[0]
        frames, mask = self.reader.clip(record.video_id, record.window)
        return tokens, frames, mask, record.video_id


def collate(batch: Sequence[tuple]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Pairs -> ``(tokens [B, L], frames [B, T, 3, S, S], mask [B, T], ids)``."""
    tokens, frames, masks, ids = zip(*batch)
    return torch.stack(tokens), torch.stack(frames), torch.stack(masks), list(ids)


def loader_settings(device: torch.device | str, workers: int, seed: int | None = None) -> dict:
    """DataLoader keyword arguments that keep the model fed (pass ``collate_fn`` yourself).

    With ``seed``, worker seeds come from a generator of the loader's own, not the global RNG: starting an
    epoch's iterator then leaves the global RNG (dropout) where a run resumed mid-epoch finds it.
    """
    device = torch.device(device)
    settings = {"num_workers": workers, "pin_memory": device.type == "cuda"}
    if seed is not None:
        settings["generator"] = torch.Generator().manual_seed(seed)
    if workers > 0:
        # Workers keep their decoders and file lookups between epochs; a few batches wait ready each.
        settings.update(persistent_workers=True, prefetch_factor=4)
    return settings
