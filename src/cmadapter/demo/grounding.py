"""Heatmaps and frame weights checked against where the demo's objects really are.

Every synthetic test frame shows one object at a known place (``ground_truth``). Two figures:

- **heatmap box ratio**: for a caption naming the object a frame shows, the share of the frame's heatmap
  mass inside that object's box, divided by the box's share of the frame. A uniform or random map scores
  1.0 on average; a map inside the box only scores 1 / box share. Each patch's value is spread evenly over
  its pixels (no smoothing credit). The demo's objects sit near the middle and cover ~40% of the frame, so
  a map that merely prefers the centre also scores above 1: the ``centre_prior`` figure (the average map of
  all test frames, scored the same way) says how much of the ratio a fixed centre preference explains.
- **frame weights**: for a caption naming one object of a video ("a red square"), the head's weight on
  the frame showing it against the other frames' (chance: 1 / frames).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import CmadapterError
from ..report.saliency import frame_weights, patch_heatmaps
from .ground_truth import FrameObject, frame_objects
from .synthetic import SyntheticConfig, VideoSpec, object_phrase, sample_frames


def _pixels(heatmap: np.ndarray, size: int) -> np.ndarray:
    """A patch map spread over the ``size``-px frame it covers: every pixel takes its patch's heat."""
    cells = heatmap.shape[0]
    if size % cells:
        raise CmadapterError(f"a {cells}x{cells} map does not tile a {size}-px frame")
    return np.kron(heatmap, np.ones((size // cells, size // cells)))


def box_ratio(heatmap: np.ndarray, box: tuple[int, int, int, int], size: int) -> float | None:
    """Heat mass inside ``box`` (pixels of a ``size``-px frame) over the box's area share; None for an
    all-zero map."""
    pixels = _pixels(heatmap, size)
    total = pixels.sum()
    if total <= 0:
        return None
    x0, y0, x1, y1 = box
    inside = pixels[y0:y1, x0:x1].sum() / total
    return float(inside / ((x1 - x0) * (y1 - y0) / size**2))


def mask_ratio(heatmap: np.ndarray, mask: np.ndarray) -> float | None:
    """Heat mass weighted by the object's pixel coverage over the coverage's mean: 1.0 for a uniform map,
    higher the more the map sits on the shape itself rather than its box (a ring's hole, a cross's corners)."""
    pixels = _pixels(heatmap, mask.shape[0])
    total = pixels.sum()
    return None if total <= 0 else float((pixels * mask).sum() / total / mask.mean())


def _scaled_box(item: FrameObject, frame_size: int, image_size: int) -> tuple[int, int, int, int]:
    # The demo's frames are square and resized whole to the model's input (no crop), so boxes just scale.
    scale = image_size / frame_size
    x0, y0, x1, y1 = item.box
    return (int(np.floor(x0 * scale)), int(np.floor(y0 * scale)), int(np.ceil(x1 * scale)), int(np.ceil(y1 * scale)))


def grounding_scores(
    model, data, specs: Sequence[VideoSpec], config: SyntheticConfig, *, batch_size: int = 16, **heatmap: Any
) -> dict[str, Any]:
    """Both figures over the videos of ``data`` (an ``EvalData`` of the synthetic test split)."""
    by_id = {s.video_id: s for s in specs}
    sampled = sample_frames(config, len(data.clips[0][1]))
    size = model.image_size
    heat_ratios, centre_maps, boxes, named_w, other_w, top = [], [], [], [], [], []
    masks, mask_ratios = [], []
    items = list(range(len(data.video_ids)))
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        clips = [data.clips[i] for i in chunk]
        frames = torch.stack([c[0] for c in clips])
        mask = torch.stack([c[1] for c in clips])
        if not bool(mask.all()) or mask.shape[1] != len(sampled):
            raise CmadapterError(f"expected {len(sampled)} valid frames per demo clip, got {mask.sum(1).tolist()}")
        specs_chunk = [by_id[data.video_ids[i]] for i in chunk]
        truth = [[frame_objects(s, config)[f] for f in sampled] for s in specs_chunk]
        # The video's own caption names every object it shows: each frame's map against its object's box.
        captions = [data.captions[data.caption_video.index(i)] for i in chunk]
        maps = patch_heatmaps(model, captions, frames, mask, **heatmap).numpy()
        for video_maps, video_truth in zip(maps, truth):
            for heat, item in zip(video_maps, video_truth):
                box = _scaled_box(item, config.frame_size, size)
                ratio = box_ratio(heat, box, size)
                if ratio is not None:
                    heat_ratios.append(ratio)
                    masks.append(item.mask)
                    mask_ratios.append(mask_ratio(heat, item.mask))
                    centre_maps.append(heat / heat.sum())
                    boxes.append(box)
        # One object named at a time, against the video's frames.
        phrases = [object_phrase(item.object) for video_truth in truth for item in video_truth]
        with torch.no_grad():
            text = model.encode_text(model.tokenize(phrases))
            video = model.encode_video(frames, mask)
        weights = frame_weights(model, text, video, mask)  # [captions, videos, frames]
        for row, (v, k) in enumerate((v, k) for v in range(len(chunk)) for k in range(len(sampled))):
            w = weights[row, v].numpy()
            named_w.append(float(w[k]))
            other_w.append(float(np.delete(w, k).mean()))
            top.append(bool(w.argmax() == k))
    prior = np.mean(centre_maps, axis=0) if centre_maps else None
    prior_ratios = [box_ratio(prior, b, size) for b in boxes] if prior is not None else []
    return {
        "heatmap_box_ratio": float(np.mean(heat_ratios)) if heat_ratios else None,
        "heatmap_box_ratio_centre_prior": float(np.mean(prior_ratios)) if prior_ratios else None,
        "heatmap_mask_ratio": float(np.mean(mask_ratios)) if mask_ratios else None,
        "heatmap_mask_ratio_centre_prior": float(np.mean([mask_ratio(prior, m) for m in masks])) if masks else None,
        "heatmap_frames": len(heat_ratios),
        "heatmap_empty_frames": len(data.video_ids) * len(sampled) - len(heat_ratios),
        "mean_box_share": float(np.mean([(b[2] - b[0]) * (b[3] - b[1]) / size**2 for b in boxes])) if boxes else None,
        "frame_weight_named": float(np.mean(named_w)),
        "frame_weight_others": float(np.mean(other_w)),
        "frame_weight_named_is_top": float(np.mean(top)),
        "frame_weight_chance": 1.0 / len(sampled),
        "pairs": len(named_w),
    }
