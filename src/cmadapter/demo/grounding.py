"""Heatmaps and frame weights checked against where the demo's objects really are.

Three checks, each set against maps that know nothing (a map that ignores the image, or a correct map turned
the wrong way), so that a figure says how far a model's maps are from those:

- **corners** (orientation): stills drawn for the check (``ground_truth.corner_frames``), each with one
  object inside one quarter of the frame, captioned with the object's name. A map that follows the object
  peaks in that quarter's patches: the share of stills where it does, per quarter (chance 1/4); and the
  **mass contrasts**, the map's mass in the object's quarter minus its mass in the horizontal neighbour, the
  vertical neighbour and the opposite quarter. A flip, a transposition or a rotation by 90° sends the mass to
  one of those (a contrast turns negative); a map that ignores the image has every contrast near 0. The
  demo's videos cannot show orientation: their objects always sit near the middle.
- **box and mask ratios** on the test split (every frame shows one object at a known place): the share of
  the map's mass inside the object's box (or weighted by its mask) over the box's (mask's) share of the
  frame; a uniform map scores 1. Two references: a **fixed centre block** (the middle half of the patch
  grid, the same map for every frame) and the **perfect map** (the object's own mask averaged over each
  patch). The demo's objects are large and near the middle, so the fixed block scores above the perfect
  map on both: neither ratio can tell centre bias from grounding. What can is the **gain on its own
  object**: a map's mask ratio on its own frame's object minus its mask ratio on other videos' objects. A
  map that ignores the image scores the same on any object (gain 0), however much it prefers the centre.
- **frame weights**: for a caption naming one object of a video ("a red square"), the head's weight on the
  frame showing it against the other frames' (chance: 1 / frames).

A map that is zero everywhere prefers no patch: it is counted as a uniform map (ratio 1, no corner peak),
never dropped; ``heatmap_empty_frames`` says how many there were.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import CmadapterError
from ..report.saliency import frame_weights, patch_heatmaps
from .ground_truth import QUARTERS, CornerFrame, corner_frames, frame_objects
from .synthetic import SyntheticConfig, VideoSpec, object_phrase, sample_frames

HeatmapFn = Callable[..., torch.Tensor]  # patch_heatmaps' signature: (model, captions, frames, mask) -> maps


def distribution(heatmap: np.ndarray) -> np.ndarray:
    """A patch map as shares of its mass; an all-zero map (it prefers no patch) as a uniform one."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    total = heatmap.sum()
    return heatmap / total if total > 0 else np.full(heatmap.shape, 1.0 / heatmap.size)


def _pixels(heatmap: np.ndarray, size: int) -> np.ndarray:
    """A patch map's shares spread over the ``size``-px frame it covers, each patch's evenly over its pixels."""
    cells = heatmap.shape[0]
    if size % cells:
        raise CmadapterError(f"a {cells}x{cells} map does not tile a {size}-px frame")
    side = size // cells
    return np.kron(distribution(heatmap), np.ones((side, side)) / side**2)


def box_ratio(heatmap: np.ndarray, box: tuple[int, int, int, int], size: int) -> float:
    """The map's mass inside ``box`` (pixels of a ``size``-px frame) over the box's area share."""
    x0, y0, x1, y1 = box
    inside = _pixels(heatmap, size)[y0:y1, x0:x1].sum()
    return float(inside / ((x1 - x0) * (y1 - y0) / size**2))


def mask_ratio(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """The map's mass weighted by the object's pixel coverage over the coverage's mean: 1.0 for a uniform map,
    higher the more the map sits on the shape itself rather than its box (a ring's hole, a cross's corners)."""
    return float((_pixels(heatmap, mask.shape[0]) * mask).sum() / mask.mean())


def centre_block(grid: int) -> np.ndarray:
    """The fixed centre map: ones on the middle half of a ``grid`` x ``grid`` patch grid, zeros around it."""
    lo, hi = grid // 4, grid - grid // 4
    block = np.zeros((grid, grid))
    block[lo:hi, lo:hi] = 1.0
    return block


def patch_coverage(mask: np.ndarray, grid: int) -> np.ndarray:
    """The perfect patch map of an object: its mask's mean over each patch."""
    size = mask.shape[0]
    if size % grid:
        raise CmadapterError(f"a {grid}x{grid} map does not tile a {size}-px frame")
    side = size // grid
    return mask.reshape(grid, side, grid, side).mean(axis=(1, 3))


def _scaled_box(box: tuple[int, int, int, int], frame_size: int, image_size: int) -> tuple[int, int, int, int]:
    # The demo's frames are square and resized whole to the model's input (no crop), so boxes just scale.
    scale = image_size / frame_size
    x0, y0, x1, y1 = box
    return (int(np.floor(x0 * scale)), int(np.floor(y0 * scale)), int(np.ceil(x1 * scale)), int(np.ceil(y1 * scale)))


def _scaled_mask(mask: np.ndarray, image_size: int) -> np.ndarray:
    if mask.shape[0] == image_size:
        return mask
    scaled = torch.nn.functional.interpolate(torch.from_numpy(mask)[None, None], size=(image_size, image_size))
    return scaled[0, 0].numpy()


# ---- the test split's frames ---------------------------------------------------------------------------


@dataclass
class FrameMaps:
    """One heatmap per test frame with where that frame's object is, in the model's input pixels."""

    maps: np.ndarray  # [frames, g, g]
    boxes: list[tuple[int, int, int, int]]
    masks: list[np.ndarray]  # [image_size, image_size] coverage
    videos: list[int]  # the video each frame belongs to
    size: int  # the model's input size


def split_frame_maps(
    model,
    data,
    specs: Sequence[VideoSpec],
    config: SyntheticConfig,
    *,
    batch_size: int = 16,
    heatmaps: HeatmapFn = patch_heatmaps,
) -> FrameMaps:
    """Each test video's own caption against it: a map per frame, with its object's box and mask."""
    by_id = {s.video_id: s for s in specs}
    sampled = sample_frames(config, len(data.clips[0][1]))
    size = model.image_size
    maps, boxes, masks, videos = [], [], [], []
    for chunk in _chunks(range(len(data.video_ids)), batch_size):
        frames, mask = _clip_batch(data, chunk, len(sampled))
        # The video's caption names every object it shows: each frame's map against its object.
        captions = [data.captions[data.caption_video.index(i)] for i in chunk]
        video_maps = heatmaps(model, captions, frames, mask).numpy()
        for i, per_video in zip(chunk, video_maps):
            truth = frame_objects(by_id[data.video_ids[i]], config)
            for heat, f in zip(per_video, sampled):
                maps.append(heat)
                videos.append(i)
                boxes.append(_scaled_box(truth[f].box, config.frame_size, size))
                masks.append(_scaled_mask(truth[f].mask, size))
    return FrameMaps(np.stack(maps), boxes, masks, videos, size)


def map_scores(frames: FrameMaps, maps: np.ndarray | None = None) -> dict[str, Any]:
    """Box and mask ratios of ``maps`` (default: the model's own) over every frame, and how much higher each
    map's mask ratio is on its own frame's object than on other videos' objects."""
    maps = frames.maps if maps is None else maps
    # ratios[i, j]: map i against frame j's object mask (mask_ratio's weighting, every pair at once).
    pixels = np.stack([_pixels(h, frames.size) for h in maps]).reshape(len(maps), -1)
    masks = np.stack(frames.masks).reshape(len(maps), -1)
    ratios = pixels @ masks.T / masks.mean(axis=1)
    others = np.asarray(frames.videos)[:, None] != np.asarray(frames.videos)[None, :]
    return {
        "heatmap_box_ratio": float(np.mean([box_ratio(h, b, frames.size) for h, b in zip(maps, frames.boxes)])),
        "heatmap_mask_ratio": float(np.mean(np.diag(ratios))),
        # A map that ignores the image scores the same on any frame's object: its gain is 0, however much it
        # prefers the centre.
        "heatmap_mask_ratio_own_vs_others": float(np.mean(np.diag(ratios)) - ratios[others].mean()),
        "heatmap_frames": len(maps),
        "heatmap_empty_frames": int(sum(float(np.asarray(h).sum()) <= 0 for h in maps)),
        "mean_box_share": float(np.mean([(b[2] - b[0]) * (b[3] - b[1]) / frames.size**2 for b in frames.boxes])),
    }


def perfect_maps(masks: Sequence[np.ndarray], grid: int) -> np.ndarray:
    """The best a patch map can do: each object's mask averaged over each patch."""
    return np.stack([patch_coverage(m, grid) for m in masks])


def reference_scores(frames: FrameMaps, corners: CornerMaps) -> dict[str, dict[str, Any]]:
    """The figures of maps that know where nothing is (the fixed centre block, the same for every frame) and
    of maps that know exactly (the perfect map), scored by the same code as a model's."""
    grid = frames.maps.shape[-1]
    block = centre_block(grid)
    return {
        "fixed centre block": {
            **map_scores(frames, np.broadcast_to(block, frames.maps.shape)),
            **corner_scores(corners, np.broadcast_to(block, corners.maps.shape)),
        },
        "perfect map": {
            **map_scores(frames, perfect_maps(frames.masks, grid)),
            **corner_scores(corners, perfect_maps(corners.masks, grid)),
        },
    }


# ---- corners --------------------------------------------------------------------------------------------


@dataclass
class CornerMaps:
    maps: np.ndarray  # [frames, g, g]
    quarters: np.ndarray  # [frames]: where each frame's object is (index into QUARTERS)
    masks: list[np.ndarray]  # each still's object coverage, [frame_size, frame_size]


def corner_maps(
    model, config: SyntheticConfig, *, per_quarter: int = 32, seed: int = 0, heatmaps: HeatmapFn = patch_heatmaps
) -> CornerMaps:
    """The model's map of each corner still (``ground_truth.corner_frames``) for its object's name."""
    from .pretrain import frames_to_tensor

    stills: list[CornerFrame] = corner_frames(config, per_quarter, seed)
    if model.image_size != config.frame_size:
        raise CmadapterError(f"the model takes {model.image_size}px frames, the demo draws {config.frame_size}px")
    frames = frames_to_tensor(np.stack([s.image for s in stills]))[:, None]  # one-frame videos
    mask = torch.ones(len(stills), 1, dtype=torch.bool)
    maps = heatmaps(model, [object_phrase(s.object) for s in stills], frames, mask)[:, 0].numpy()
    return CornerMaps(maps, np.asarray([s.quarter for s in stills]), [s.mask for s in stills])


def peak_quarter(heatmap: np.ndarray) -> int | None:
    """The quarter holding the map's largest patch; None when no patch is larger than all the others'
    quarters' (an all-zero or flat map has no peak)."""
    grid = heatmap.shape[-1]
    if heatmap.max() <= 0:
        return None
    top = np.argwhere(heatmap >= heatmap.max())
    quarters = {int(r >= grid / 2) * 2 + int(c >= grid / 2) for r, c in top}
    return quarters.pop() if len(quarters) == 1 else None


def quarter_share(heatmap: np.ndarray, quarter: int) -> float:
    grid = heatmap.shape[-1]
    row, column = divmod(quarter, 2)
    half = grid // 2
    return float(distribution(heatmap)[row * half : (row + 1) * half, column * half : (column + 1) * half].sum())


def corner_scores(corners: CornerMaps, maps: np.ndarray | None = None) -> dict[str, Any]:
    """Per quarter: the share of frames whose map peaks in the object's quarter, and the map's mean mass there;
    and the mass contrasts: the mass in the object's quarter minus that in its horizontal neighbour, its
    vertical neighbour and the opposite quarter, over all frames (a flip, a transposition or a rotation sends
    the mass to one of these, so one contrast turns negative; a map that ignores the image has all near 0)."""
    maps = corners.maps if maps is None else maps
    quarters = corners.quarters
    hits = np.asarray([peak_quarter(h) == q for h, q in zip(maps, quarters)])
    shares = np.asarray([[quarter_share(h, k) for k in range(len(QUARTERS))] for h in maps])  # [frames, 4]
    rows = np.arange(len(maps))
    own = shares[rows, quarters]
    by_quarter = [quarters == q for q in range(len(QUARTERS))]
    # Quarter q is (row q // 2, column q % 2): flipping bit 0 is the horizontal neighbour, bit 1 the vertical.
    return {
        "corner_peak_hits": [float(hits[k].mean()) for k in by_quarter],  # per quarter, QUARTERS' order
        "corner_peak_hit_rate": float(hits.mean()),
        "corner_mass": [float(own[k].mean()) for k in by_quarter],
        "corner_mass_mean": float(own.mean()),
        "corner_mass_contrast": {
            name: float((own - shares[rows, quarters ^ bits]).mean())
            for name, bits in (("horizontal", 1), ("vertical", 2), ("opposite", 3))
        },
        "corner_frames": len(maps),
        "corner_chance": 1.0 / len(QUARTERS),
    }


# ---- frame weights ---------------------------------------------------------------------------------------


def frame_weight_scores(model, data, specs: Sequence[VideoSpec], config: SyntheticConfig, *, batch_size: int = 16):
    """For each object of each test video, named alone: the head's weight on its frame against the others'."""
    by_id = {s.video_id: s for s in specs}
    sampled = sample_frames(config, len(data.clips[0][1]))
    named, others, top = [], [], []
    for chunk in _chunks(range(len(data.video_ids)), batch_size):
        frames, mask = _clip_batch(data, chunk, len(sampled))
        truth = [[frame_objects(by_id[data.video_ids[i]], config)[f] for f in sampled] for i in chunk]
        phrases = [object_phrase(item.object) for video_truth in truth for item in video_truth]
        with torch.no_grad():
            text = model.encode_text(model.tokenize(phrases))
            video = model.encode_video(frames, mask)
        weights = frame_weights(model, text, video, mask)  # [captions, videos, frames]
        for row, (v, k) in enumerate((v, k) for v in range(len(chunk)) for k in range(len(sampled))):
            w = weights[row, v].numpy()
            named.append(float(w[k]))
            others.append(float(np.delete(w, k).mean()))
            top.append(bool(w.argmax() == k))
    return {
        "frame_weight_named": float(np.mean(named)),
        "frame_weight_others": float(np.mean(others)),
        "frame_weight_named_is_top": float(np.mean(top)),
        "frame_weight_chance": 1.0 / len(sampled),
        "pairs": len(named),
    }


def grounding_scores(
    model,
    data,
    specs: Sequence[VideoSpec],
    config: SyntheticConfig,
    *,
    batch_size: int = 16,
    heatmaps: HeatmapFn = patch_heatmaps,
) -> dict[str, Any]:
    """Every figure above for ``model`` on ``data`` (an ``EvalData`` of the synthetic test split), with the
    reference maps' figures under ``references``."""
    frames = split_frame_maps(model, data, specs, config, batch_size=batch_size, heatmaps=heatmaps)
    corners = corner_maps(model, config, heatmaps=heatmaps)
    return {
        **map_scores(frames),
        **corner_scores(corners),
        **frame_weight_scores(model, data, specs, config, batch_size=batch_size),
        "references": reference_scores(frames, corners),
    }


def _chunks(items: Sequence[int], size: int) -> list[list[int]]:
    items = list(items)
    return [items[i : i + size] for i in range(0, len(items), size)]


def _clip_batch(data, chunk: Sequence[int], frames_per_clip: int) -> tuple[torch.Tensor, torch.Tensor]:
    clips = [data.clips[i] for i in chunk]
    frames = torch.stack([c[0] for c in clips])
    mask = torch.stack([torch.as_tensor(c[1]) for c in clips]).bool()
    if not bool(mask.all()) or mask.shape[1] != frames_per_clip:
        raise CmadapterError(f"expected {frames_per_clip} valid frames per demo clip, got {mask.sum(1).tolist()}")
    return frames, mask
