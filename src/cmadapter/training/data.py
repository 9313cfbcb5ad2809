"""The data a run uses, built from its config: training pairs and the validation/test splits.

Missing training videos are found here, before the first step (``data.missing``: fail or drop).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch.utils.data import Dataset

from ..config import RunConfig
from ..datasets import load_split, retrieval_split
from ..datasets.clips import CaptionVideoPairs, VideoClips, collate
from ..evaluation.evaluate import EvalData
from ..video.sources import FrameSource, open_frame_source


@dataclass
class TrainingData:
    """What a run trains and evaluates on. ``train`` items: (tokens [L], frames [T,3,H,W], mask [T], video_id);
    an optional ``train.set_epoch(epoch)`` is called before each epoch (e.g. to pick one caption per video)."""

    train: Dataset
    validation: EvalData | None = None
    test: EvalData | None = None
    collate: Callable | None = None


def frame_source(config: RunConfig) -> FrameSource:
    return open_frame_source(videos=config.data.videos, cache=config.data.cache, dataset=config.data.dataset)


def build_eval_data(config: RunConfig, model, split: str, source: FrameSource | None = None) -> EvalData:
    data = config.data
    records = load_split(data.dataset, data.annotations, split, **data.dataset_options)
    retrieval = retrieval_split(records, f"{data.dataset}/{split}")
    clips = VideoClips.from_split(
        retrieval, source or frame_source(config), model.image_size, max_frames=data.max_frames, fps=data.fps
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
    source = frame_source(config)
    records = load_split(data.dataset, data.annotations, data.train_split, **data.dataset_options)
    pairs = CaptionVideoPairs(
        records,
        source,
        model.tokenize,
        model.image_size,
        max_frames=data.max_frames,
        fps=data.fps,
        sampling=data.sampling,
        seed=config.train.seed,
        missing=data.missing,
    )
    return TrainingData(
        train=pairs,
        validation=build_eval_data(config, model, data.val_split, source) if data.val_split else None,
        test=build_eval_data(config, model, data.test_split, source) if data.test_split else None,
        collate=collate,
    )
