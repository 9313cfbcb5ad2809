"""Evaluation: encode each caption and each video once, score them in blocks, compute the metrics.

Encoding is sharded over processes under torchrun (each encodes every W-th video) and gathered, so
evaluation scales with the training job. The similarity is computed block by block through the
model's head, so memory stays bounded by ``block_size``² x frames whatever the test set's size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from ..config import EvalConfig
from ..errors import CmadapterError
from ..masks import frame_mask
from ..precision import autocast
from ..training.distributed import DistributedContext, gather_no_grad
from .metrics import retrieval_metrics, rsum
from .postprocess import POSTPROCESSORS, check_postprocessors

log = logging.getLogger(__name__)


@dataclass
class EvalData:
    """A retrieval split: each video once (``clips[i]`` is ``video_ids[i]``), each caption once."""

    name: str
    video_ids: list[str]
    captions: list[str]
    caption_video: list[int]  # index into video_ids for each caption
    clips: Dataset  # item: (frames [T, 3, H, W] float, mask [T] bool or 0/1, video_id)

    def __post_init__(self) -> None:
        if len(self.captions) != len(self.caption_video):
            raise CmadapterError(f"{self.name}: {len(self.captions)} captions but {len(self.caption_video)} links")
        if len(self.clips) != len(self.video_ids):
            raise CmadapterError(f"{self.name}: {len(self.clips)} clips for {len(self.video_ids)} video ids")


@dataclass
class EncodedSplit:
    text: torch.Tensor  # [captions, D] float32
    video: torch.Tensor  # [videos, T, D] float32
    mask: torch.Tensor  # [videos, T] bool


@torch.no_grad()
def encode_texts(
    model, captions: Sequence[str], *, batch_size: int, precision: str, progress: bool = True
) -> torch.Tensor:
    out = []
    for start in tqdm(range(0, len(captions), batch_size), desc="encode captions", disable=not progress, leave=False):
        tokens = model.tokenize(list(captions[start : start + batch_size]))
        with autocast(model.device, precision):
            out.append(model.encode_text(tokens).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def encode_videos(
    model,
    clips: Dataset,
    *,
    batch_size: int,
    precision: str,
    context: DistributedContext | None = None,
    workers: int = 0,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    context = context or DistributedContext(device=model.device)
    shard = list(range(context.rank, len(clips), context.world_size))
    loader = DataLoader(
        Subset(clips, shard),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=model.device.type == "cuda",
    )
    features, masks = [], []
    for frames, mask, _ids in tqdm(loader, desc="encode videos", disable=not progress, leave=False):
        mask = frame_mask(mask, frames.shape[:2], name=f"frame mask of videos {list(_ids)[:3]}")
        with autocast(model.device, precision):
            features.append(model.encode_video(frames, mask).float())
        masks.append(mask.to(model.device))
    if not features:  # an empty shard (fewer videos than processes) still takes part in the gather
        _frames, sample_mask, _id = clips[0]
        features = [torch.zeros(0, sample_mask.shape[0], model.clip.text_projection.shape[1], device=model.device)]
        masks = [torch.zeros(0, sample_mask.shape[0], dtype=torch.bool, device=model.device)]
    video, mask = torch.cat(features), torch.cat(masks)
    if context.enabled:
        video, mask = _gather_shards(video, mask, len(clips), context)
    return video.cpu(), mask.cpu()


def _gather_shards(video, mask, total, context):
    """Undo the strided sharding: rank r held videos r, r + W, …; shards differ in size by at most one."""
    longest = -(-total // context.world_size)
    pad = longest - video.shape[0]
    video = torch.cat([video, video.new_zeros(pad, *video.shape[1:])])
    mask = torch.cat([mask, mask.new_zeros(pad, *mask.shape[1:])])
    all_video = gather_no_grad(video, context).view(context.world_size, longest, *video.shape[1:])
    all_mask = gather_no_grad(mask, context).view(context.world_size, longest, *mask.shape[1:])
    order = [(i % context.world_size, i // context.world_size) for i in range(total)]
    return torch.stack([all_video[r, j] for r, j in order]), torch.stack([all_mask[r, j] for r, j in order])


@torch.no_grad()
def similarity_matrix(model, encoded: EncodedSplit, *, block_size: int) -> torch.Tensor:
    """[captions, videos] logit-scaled similarities, computed in blocks on the model's device."""
    device = model.device
    rows = []
    for i in range(0, encoded.text.shape[0], block_size):
        text = encoded.text[i : i + block_size].to(device)
        row = [
            model.similarity(
                text, encoded.video[j : j + block_size].to(device), encoded.mask[j : j + block_size].to(device)
            )
            .float()
            .cpu()
            for j in range(0, encoded.video.shape[0], block_size)
        ]
        rows.append(torch.cat(row, dim=1))
    return torch.cat(rows)


def metrics_from_similarity(similarity: torch.Tensor, data: EvalData, config: EvalConfig) -> dict[str, dict]:
    """Plain metrics, plus each requested post-processing under its own name (never mixed in)."""
    results = retrieval_metrics(similarity, data.caption_video, v2t=config.v2t, captions=data.captions)
    check_postprocessors(config.postprocess)
    if config.postprocess:
        results["postprocessed"] = {}
        for name in config.postprocess:
            rescore = POSTPROCESSORS[name]
            t2v = retrieval_metrics(rescore(similarity), data.caption_video, v2t=config.v2t)["t2v"]
            v2t = retrieval_metrics(rescore(similarity.T).T, data.caption_video, v2t=config.v2t)["v2t"]
            block = {"t2v": t2v, "v2t": v2t}
            results["postprocessed"][name] = {**block, "rsum": rsum(block)}
    return results


def evaluate(
    model,
    data: EvalData,
    config: EvalConfig,
    *,
    precision: str = "fp32",
    context: DistributedContext | None = None,
    workers: int = 0,
    progress: bool = True,
) -> dict[str, dict]:
    was_training = model.training
    model.eval()
    try:
        text = encode_texts(
            model, data.captions, batch_size=config.text_batch_size, precision=precision, progress=progress
        )
        video, mask = encode_videos(
            model,
            data.clips,
            batch_size=config.batch_size,
            precision=precision,
            context=context,
            workers=workers,
            progress=progress,
        )
        similarity = similarity_matrix(model, EncodedSplit(text, video, mask), block_size=config.block_size)
    finally:
        model.train(was_training)
    return metrics_from_similarity(similarity, data, config)
