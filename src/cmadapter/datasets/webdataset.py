"""WebDataset shards of captioned videos as a dataset: ``data.annotations`` names the shards (``shards.py``).

A sample is one video (or image) with one caption; its id is its key, which must be unique over the shards.
Splits: with the options ``val_shards`` and/or ``test_shards`` (patterns, as ``data.annotations``), those
splits come from those shards and ``train`` from ``data.annotations``; without them, the samples of
``data.annotations`` are split by key as a captions table without a split column is (``splits.py``:
``val_fraction`` 0.1, ``test_fraction`` 0.1, ``split_seed`` 0, or the run's ``split_file``).

Every shard is scanned once (``ShardSet``): the samples and their problems (truncated shard, no video, no
caption, repeated key), named by shard and key. ``missing="fail"`` refuses them; ``"drop"`` leaves those
samples out of every split and says how many. Training streams the train split from the shards
(``shard_stream.py``); evaluation reads each video back by key (``ShardSet`` is its frame source).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..video.sampling import Clip, Sampling, Window
from .annotations import EmptySplit
from .records import Record
from .shards import Shard, ShardProblem, ShardSample, default_scan_workers, read_member, scan_shards, shard_urls
from .splits import SPLITS, TEST_FRACTION, VAL_FRACTION, apply_split_file, read_split_file, seeded_split

log = logging.getLogger(__name__)

__all__ = ["ANNOTATIONS", "SPLITS", "ShardSet", "read"]

ANNOTATIONS = "shards"  # data.annotations names the shards
LISTED_PROBLEMS = 5


def read(
    shards: str,
    split: str,
    *,
    val_shards: str | None = None,
    test_shards: str | None = None,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = TEST_FRACTION,
    split_seed: int = 0,
    split_file: str | None = None,
    shuffle_buffer: int = 100,
) -> list[Record]:
    options = dict(val_shards=val_shards, test_shards=test_shards, val_fraction=val_fraction)
    options.update(test_fraction=test_fraction, split_seed=split_seed, split_file=split_file)
    return ShardSet(str(shards), **options).records(split)


class ShardSet:
    """The scanned shards of a dataset, their samples by split, and the frame source of their keys."""

    def __init__(
        self,
        shards: str,
        *,
        val_shards: str | None = None,
        test_shards: str | None = None,
        val_fraction: float = VAL_FRACTION,
        test_fraction: float = TEST_FRACTION,
        split_seed: int = 0,
        split_file: str | None = None,
        missing: str = "fail",
        scan_workers: int | None = None,
    ):
        groups = {"train" if (val_shards or test_shards) else None: shards, "val": val_shards, "test": test_shards}
        urls = {split: shard_urls(spec) for split, spec in groups.items() if spec}
        every = [url for group in urls.values() for url in group]
        scanned = dict(zip(every, scan_shards(every, workers=scan_workers or default_scan_workers())))
        self.description = f"WebDataset shards {shards}"
        self.shards: dict[str | None, list[Shard]] = {
            split: [scanned[u] for u in group] for split, group in urls.items()
        }
        problems = [p for shard in scanned.values() for p in shard.problems]
        self.samples: dict[str, tuple[str, ShardSample]] = {}  # key -> (shard url, sample)
        for shard in scanned.values():
            for sample in shard.samples:
                if sample.key in self.samples:
                    other = self.samples[sample.key][0]
                    problems.append(ShardProblem(shard.url, sample.key, f"the key is also in shard {other}"))
                else:
                    self.samples[sample.key] = (shard.url, sample)
        self.problems = problems  # what the scan refused (left out under missing="drop")
        _handle(problems, missing, len(self.samples) + len(problems))
        self.split_of = self._splits(val_fraction, test_fraction, split_seed, split_file)
        self._held: dict[str, bytes] = {}  # members of streamed shards, read ahead for evaluation
        self._requested: set[str] = set()

    def _splits(self, val_fraction, test_fraction, split_seed, split_file) -> dict[str, str]:
        kept = lambda shards: [s.key for shard in shards for s in shard.samples if self.samples[s.key][1] is s]
        if None not in self.shards:
            return {key: split for split, shards in self.shards.items() for key in kept(shards)}
        keys = kept(self.shards[None])
        if split_file:
            return apply_split_file(keys, read_split_file(split_file), str(split_file))
        return seeded_split(keys, val_fraction=val_fraction, test_fraction=test_fraction, seed=split_seed)

    def own_split(self) -> dict[str, str] | None:
        """The seeded split by key a training run writes down (None when shards or a split file give it)."""
        return dict(self.split_of) if None in self.shards else None

    def records(self, split: str) -> list[Record]:
        if split not in SPLITS:
            raise DataError(f"webdataset has no split {split!r}; its splits: {', '.join(SPLITS)}")
        records = [Record(sample.key, sample.caption, split) for _url, sample in self.split_samples(split)]
        if not records:
            counts = ", ".join(f"{s} {sum(v == s for v in self.split_of.values())}" for s in SPLITS)
            raise EmptySplit(f"{self.description}: no samples in split {split!r} (samples per split: {counts})")
        return records

    def split_samples(self, split: str) -> list[tuple[str, ShardSample]]:
        """(shard url, sample) of each sample of ``split``, in shard order."""
        return [
            (shard.url, sample)
            for shards in self.shards.values()
            for shard in shards
            for sample in shard.samples
            if self.split_of.get(sample.key) == split and self.samples[sample.key][1] is sample
        ]

    # ---- the frame source of evaluation (video ids are keys) -------------------------------------------------

    def missing(self, video_ids) -> dict[str, str]:
        video_ids = list(video_ids)
        self._requested.update(video_ids)
        return {v: f"no sample with key {v!r} in {self.description}" for v in video_ids if v not in self.samples}

    def read(self, video_id: str, window: Window, sampling: Sampling, image_size: int) -> Clip:
        from ..video.member import read_member_clip

        if video_id not in self.samples:
            raise DataError(f"no sample with key {video_id!r} in {self.description}")
        url, sample = self.samples[video_id]
        data = self._member(url, sample)
        return read_member_clip(data, sample.extension, f"shard {url} key {video_id!r}", sampling, image_size, window)

    def _member(self, url: str, sample: ShardSample) -> bytes:
        if sample.offset is not None or sample.key not in self._requested:
            return self._held.pop(sample.key, None) or read_member(url, sample)
        if sample.key not in self._held:
            # A streamed shard is read once for all the requested keys it holds, not once per key.
            from .shards import iter_shard_members

            shard = next(s for shards in self.shards.values() for s in shards if s.url == url)
            wanted = {s.key: s.member for s in shard.samples if s.key in self._requested}
            self._held.update(iter_shard_members(url, wanted))
        return self._held.pop(sample.key)


def _handle(problems: list[ShardProblem], missing: str, total: int) -> None:
    if not problems:
        return
    listing = "; ".join(str(p) for p in problems[:LISTED_PROBLEMS])
    more = f"; … {len(problems) - LISTED_PROBLEMS} more" if len(problems) > LISTED_PROBLEMS else ""
    if missing == "fail":
        raise DataError(
            f"{len(problems)} problems in the shards: {listing}{more}. Fix the shards, or set data.missing=drop "
            "to leave those samples out"
        )
    log.warning("dropping %d of %d samples with problems: %s%s", len(problems), total, listing, more)


def shard_set(annotations: str | Path, options: dict[str, Any], missing: str) -> ShardSet:
    """The ``ShardSet`` of a config's data (``data.annotations``, ``data.dataset_options``, ``data.missing``)."""
    known = ("val_shards", "test_shards", "val_fraction", "test_fraction", "split_seed", "split_file")
    return ShardSet(str(annotations), missing=missing, **{k: v for k, v in options.items() if k in known})
