"""The data a run uses, built from its config: training pairs and the validation/test splits.

Missing training videos are found here, before the first step (``data.missing``: fail or drop); so are the
problems of WebDataset shards (scanned once). Data without a split of its own (a captions table without a
split column, shards without val/test shards) is split by video with a seed: ``TrainingData.own_split`` holds
that split, which the trainer writes into the run folder (``datasets/splits.py``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from ..config import RunConfig
from ..datasets import Record, get_dataset, load_split, retrieval_split
from ..datasets.clips import CaptionVideoPairs, VideoClips, collate, loader_settings
from ..datasets.splits import SPLIT_FILE, write_split_file
from ..evaluation.evaluate import EvalData
from ..video.sources import FrameSource, open_frame_source
from .sampler import EpochBatchSampler


@dataclass
class TrainingData:
    """What a run trains and evaluates on. ``train`` items: (tokens [L], frames [T,3,H,W], mask [T], video_id);
    an optional ``train.set_epoch(epoch)`` is called before each epoch (e.g. to pick one caption per video).
    ``train`` may be an ``IterableDataset`` that plans its own batches (``ShardStream``)."""

    train: Dataset
    validation: EvalData | None = None
    test: EvalData | None = None
    collate: Callable | None = None
    own_split: dict[str, str] | None = None  # video -> split, when the run drew the split itself


def open_own_data(config: RunConfig):
    """Your own data, read once: a ``CaptionTable`` (``captions``) or the scanned ``ShardSet`` (``webdataset``),
    each giving the records of a split and the split it drew; None for the benchmarks' datasets."""
    data = config.data
    kind = get_dataset(data.dataset).annotations
    if kind == "shards":
        from ..datasets.webdataset import shard_set

        return shard_set(data.annotations, data.dataset_options, data.missing)
    if kind == "file":
        from ..datasets.captions import CaptionTable

        return CaptionTable(data.annotations, **data.dataset_options)
    return None


def frame_source(config: RunConfig, own=None) -> FrameSource:
    """The frame cache when the config names one, else the shards (``webdataset``), else the videos folder."""
    data = config.data
    if data.cache is None and get_dataset(data.dataset).annotations == "shards":
        return own if own is not None else open_own_data(config)
    return open_frame_source(videos=data.videos, cache=data.cache, dataset=data.dataset)


def split_records(config: RunConfig, split: str, own=None) -> list[Record]:
    data = config.data
    if own is not None:
        return own.records(split)
    return load_split(data.dataset, data.annotations, split, **data.dataset_options)


def build_eval_data(config: RunConfig, model, split: str, source: FrameSource | None = None, own=None) -> EvalData:
    data = config.data
    spec = get_dataset(data.dataset)
    if own is None and spec.annotations != "folder":
        own = open_own_data(config)
    records = split_records(config, split, own)
    retrieval = retrieval_split(records, f"{data.dataset}/{split}", moments=spec.moments)
    clips = VideoClips.from_split(
        retrieval,
        source or frame_source(config, own),
        model.image_size,
        max_frames=data.max_frames,
        fps=data.fps,
    )
    return EvalData(
        name=retrieval.name,
        video_ids=retrieval.video_ids,
        captions=retrieval.captions,
        caption_video=retrieval.caption_video,
        clips=clips,
    )


def build_training_data(config: RunConfig, model) -> TrainingData:
    data = config.data
    own = open_own_data(config)
    source = frame_source(config, own)
    if get_dataset(data.dataset).annotations == "shards" and data.cache is None:
        from ..datasets.shard_stream import ShardStream

        train = ShardStream(
            own,
            model.tokenize,
            model.image_size,
            max_frames=data.max_frames,
            fps=data.fps,
            seed=config.train.seed,
            shuffle_buffer=data.dataset_options.get("shuffle_buffer", 100),
            missing=data.missing,
            split=data.train_split,
        )
    else:
        train = CaptionVideoPairs(
            split_records(config, data.train_split, own),
            source,
            model.tokenize,
            model.image_size,
            max_frames=data.max_frames,
            fps=data.fps,
            sampling=data.sampling,
            seed=config.train.seed,
            missing=data.missing,
            annotations=data.annotations,
        )
    evaluation = {
        name: build_eval_data(config, model, split, source, own) if split else None
        for name, split in (("validation", data.val_split), ("test", data.test_split))
    }
    drawn = own.own_split() if own is not None else None
    return TrainingData(train=train, collate=collate, own_split=drawn, **evaluation)


def recorded_split(config: RunConfig) -> RunConfig:
    """The config with the run folder's split file, when the run drew its split before (a resumed run), so
    that it reads the same split and its config matches the saved one."""
    path = config.run_dir / SPLIT_FILE
    options = config.data.dataset_options
    if get_dataset(config.data.dataset).annotations == "folder" or "split_file" in options or not path.is_file():
        return config
    return with_split_file(config, path)


def keep_split(config: RunConfig, split: dict[str, str], *, write: bool) -> RunConfig:
    """Write the drawn ``split`` into the run folder (``write``: the main process) and name it in the config."""
    path = config.run_dir / SPLIT_FILE
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_split_file(split, path)
    return with_split_file(config, path)


def with_split_file(config: RunConfig, path: Path) -> RunConfig:
    config = copy.deepcopy(config)
    config.data.dataset_options = {**config.data.dataset_options, "split_file": str(path)}
    return config


def training_loader(
    train: Dataset,
    collate_fn: Callable | None,
    global_batch: int,
    *,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | str = "cpu",
    workers: int = 0,
):
    """(the DataLoader of an epoch's training batches, the object whose ``set_epoch(epoch, start_batch)``
    picks the epoch and where in it to start): an ``EpochBatchSampler`` over a map-style dataset, or a
    stream that plans its own batches."""
    settings = loader_settings(device, workers, seed=seed)
    if isinstance(train, IterableDataset):
        train.configure(global_batch, rank=rank, world_size=world_size)
        loader = DataLoader(train, batch_size=train.local_batch, collate_fn=collate_fn, **settings)
        return loader, train
    sampler = EpochBatchSampler(len(train), global_batch, seed=seed, rank=rank, world_size=world_size)
    return DataLoader(train, batch_sampler=sampler, collate_fn=collate_fn, **settings), sampler
