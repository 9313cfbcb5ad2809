"""Where each object of a synthetic video is, frame by frame: the ground truth for heatmaps and frame weights.

Positions come from ``synthetic.scene``, the random stream ``render_video`` draws from, and the masks from
``synthetic.shape_mask``, the function that paints the pixels: the same objects at the same places as in
the rendered video, without rendering it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .synthetic import SyntheticConfig, VideoSpec, scene, shape_mask


@dataclass(frozen=True)
class FrameObject:
    """The object a rendered frame shows: its coverage mask and the box around it."""

    frame: int  # index into the rendered video
    object: tuple[str, str]  # (colour, shape)
    mask: np.ndarray  # coverage in [0, 1], [frame_size, frame_size]
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, end-exclusive: every pixel the shape touches


def frame_objects(spec: VideoSpec, config: SyntheticConfig) -> list[FrameObject]:
    """One entry per rendered frame of ``spec`` (each frame shows exactly one object)."""
    _background, looks = scene(spec, config)
    per_object, size = config.frames_per_object, config.frame_size
    out = []
    for k, (obj, look) in enumerate(zip(spec.objects, looks)):
        for j in range(per_object):
            t = j / max(per_object - 1, 1)  # as render_video moves it
            cx, cy = look.centre(t)
            mask = shape_mask(obj[1], size, cx, cy, look.radius)
            out.append(FrameObject(k * per_object + j, obj, mask, mask_box(mask)))
    return out


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
