"""Where each object of a synthetic video is, frame by frame: the ground truth for heatmaps and frame weights.

Positions come from ``synthetic.scene``, the random stream ``render_video`` draws from, and the masks from
``synthetic.shape_mask``, the function that paints the pixels: the same objects at the same places as in
the rendered video, without rendering it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .synthetic import COLOURS, SyntheticConfig, VideoSpec, background, scene, shape_mask


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


# ---- frames with the object off-centre -----------------------------------------------------------------

QUARTERS = ("top left", "top right", "bottom left", "bottom right")  # quarter q: row q // 2, column q % 2


@dataclass(frozen=True)
class CornerFrame:
    """A still drawn for the orientation check: one object inside one quarter of the frame."""

    image: np.ndarray  # uint8 [frame_size, frame_size, 3] RGB
    object: tuple[str, str]
    quarter: int  # index into QUARTERS
    mask: np.ndarray  # the object's coverage in [0, 1], [frame_size, frame_size]


def corner_frames(config: SyntheticConfig, per_quarter: int = 8, seed: int = 0) -> list[CornerFrame]:
    """``per_quarter`` stills for each quarter, each with one random object wholly inside it.

    The demo's videos keep every object near the middle, where a transposed, flipped or rotated map (or one
    that ignores the image) looks as right as a correct one; an object in a corner tells them apart. Objects
    are drawn as the pretraining's two-object stills draw theirs (0.6 of a video object's size), so the
    backbone has seen objects this small, on the videos' kind of background.
    """
    size = config.frame_size
    rng = np.random.default_rng([config.seed, 3, seed])
    low, high = config.object_radius
    out = []
    for quarter in range(len(QUARTERS)):
        row, column = divmod(quarter, 2)
        for _ in range(per_quarter):
            obj = config.objects[int(rng.integers(len(config.objects)))]
            radius = 0.6 * rng.uniform(low, high) * size
            # The quarter's centre, jittered as far as keeps the object inside the quarter.
            reach = max(size / 4 - radius - 1, 0.0)
            cx = (0.25 + 0.5 * column) * size + rng.uniform(-reach, reach)
            cy = (0.25 + 0.5 * row) * size + rng.uniform(-reach, reach)
            mask = shape_mask(obj[1], size, cx, cy, radius)
            alpha = mask[:, :, None]
            canvas = background(rng, size) * (1 - alpha) + np.asarray(COLOURS[obj[0]], dtype=np.float32) * alpha
            out.append(CornerFrame(np.rint(canvas).astype(np.uint8), obj, quarter, mask))
    return out
