"""A synthetic text-video retrieval dataset in the MSR-VTT layout, written with real H.264 files.

Each video shows a few coloured shapes *one after another*, one per segment of ``seconds_per_object``
seconds. What tells two videos apart is the set of objects (colour x shape) over the clip: the retrieval
model pools frames without order, so we never let two videos differ only by order or motion, and no
single frame shows the whole set, so a caption can only be matched from several frames. Every video has
its own object set, across both splits, so test captions describe combinations never seen in training.

    root/annotations/MSRVTT_data.json          {"info", "videos": [...], "sentences": [...]}
    root/annotations/MSRVTT_train.9k.csv       video_id
    root/annotations/MSRVTT_JSFUSION_test.csv  ,key,vid_key,video_id,sentence
    root/videos/all/video<i>.mp4               H.264, yuv420p

Everything is derived from ``SyntheticConfig.seed``: video ``i`` draws from its own random stream, so
files and frames are identical from run to run and do not depend on generation order.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CmadapterError

log = logging.getLogger(__name__)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "green": (40, 175, 60),
    "blue": (45, 85, 235),
    "yellow": (240, 225, 40),
    "purple": (150, 55, 205),
    "orange": (250, 140, 20),
    "cyan": (40, 215, 225),
    "white": (245, 245, 245),
}
SHAPES = ("square", "circle", "triangle", "cross", "ring", "diamond", "star")
# The default five a tiny ViT with 16-px patches tells apart quickly; diamond and star for harder variants.
DEFAULT_SHAPES = SHAPES[:5]

ANNOTATIONS = "annotations"
DATA_JSON = "MSRVTT_data.json"
TRAIN_CSV = "MSRVTT_train.9k.csv"
TEST_CSV = "MSRVTT_JSFUSION_test.csv"
VIDEO_DIR = Path("videos") / "all"
STAMP = "synthetic.json"  # the config a folder was generated with, so a rerun can reuse it
GENERATOR_VERSION = 1  # bump when the same config would render different files

# Caption templates. Objects are phrases like "a red square"; no template uses commas, so every CSV row
# is five plain comma-separated fields (readers that split on "," and ones that honour quotes agree).
# "Ordered" templates list objects in order of appearance; "unordered" ones list them shuffled, which is
# still a true description: the order is not what identifies a video.
_ORDERED = (
    "{first} appears and then {rest_then}",
    "first {first} then {rest_then_finally}",
    "{first} is followed by {rest_and}",
    "{all_and} appear one after another",
    "{all_and} are shown one at a time",
)
_UNORDERED = (
    "a video of {all_and}",
    "the clip shows {all_and}",
    "one by one {all_and} show up",
    "{all_and} appear in turn",
)
TEMPLATES = _ORDERED + _UNORDERED


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes and content of a synthetic dataset; ``quick()`` is the reduced preset."""

    num_train: int = 300
    num_test: int = 100
    captions_per_train_video: int = 5  # paraphrases; test videos get one caption, as MSR-VTT 1k-A
    objects_per_video: int = 3
    frame_size: int = 64  # square frames, pixels (a multiple of 4: yuv420p halves chroma)
    fps: int = 8
    seconds_per_object: float = 1.0  # one object per segment; a 1-fps sampler sees each object once
    colours: tuple[str, ...] = tuple(COLOURS)
    shapes: tuple[str, ...] = DEFAULT_SHAPES
    # Objects are large and near the middle: a tiny ViT with 16-px patches then tells shapes apart by their
    # coarse outline within a minute of pretraining (small, roaming objects took several times longer).
    object_radius: tuple[float, float] = (0.3, 0.38)  # range, as a fraction of frame_size
    position_jitter: float = 0.06  # how far (fraction of frame_size) an object's centre strays from the middle
    crf: int = 20  # x264 quality: low enough that colours and edges survive at 64 px
    seed: int = 0

    @classmethod
    def quick(cls, **overrides: Any) -> SyntheticConfig:
        """Fewer videos, same task: for ``cmadapter demo --quick`` and tests."""
        return cls(**({"num_train": 120, "num_test": 60} | overrides))

    def __post_init__(self) -> None:
        problems = []
        if self.num_train < 1 or self.num_test < 1:
            problems.append("num_train and num_test must be at least 1")
        if self.captions_per_train_video < 1 or self.captions_per_train_video > len(TEMPLATES):
            problems.append(f"captions_per_train_video must be in 1..{len(TEMPLATES)}")
        if self.objects_per_video < 2:
            problems.append("objects_per_video must be at least 2 (one object is a single-frame task)")
        if self.frame_size < 16 or self.frame_size % 4:
            problems.append("frame_size must be a multiple of 4 and at least 16")
        if self.fps < 1 or self.seconds_per_object * self.fps < 1:
            problems.append("each object must be shown for at least one frame")
        low, high = self.object_radius
        if not 0.05 <= low <= high <= 0.45:
            problems.append("object_radius must be a range within 0.05..0.45 of frame_size")
        if self.position_jitter < 0:
            problems.append("position_jitter must not be negative")
        unknown = [c for c in self.colours if c not in COLOURS] + [s for s in self.shapes if s not in SHAPES]
        if unknown:
            problems.append(f"unknown colours/shapes {unknown}; known: {list(COLOURS)}, {list(SHAPES)}")
        if len(set(self.colours)) != len(self.colours) or len(set(self.shapes)) != len(self.shapes):
            problems.append("colours and shapes must not repeat")
        num_objects = len(self.colours) * len(self.shapes)
        if num_objects < self.objects_per_video:
            problems.append(f"{num_objects} colour-shape objects cannot fill {self.objects_per_video} per video")
        elif self.num_videos > math.comb(num_objects, self.objects_per_video) // 2:
            # Half the possible sets at most, so drawing unique sets by rejection stays fast.
            problems.append(
                f"{self.num_videos} videos need more distinct object sets than "
                f"{len(self.colours)} colours x {len(self.shapes)} shapes give; add colours or shapes"
            )
        if problems:
            raise CmadapterError("invalid SyntheticConfig: " + "; ".join(problems))

    @property
    def num_videos(self) -> int:
        return self.num_train + self.num_test

    @property
    def frames_per_object(self) -> int:
        return round(self.seconds_per_object * self.fps)

    @property
    def frames_per_video(self) -> int:
        return self.frames_per_object * self.objects_per_video

    @property
    def objects(self) -> list[tuple[str, str]]:
        return [(c, s) for c in self.colours for s in self.shapes]

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples -> lists, as the stamp stores them


@dataclass(frozen=True)
class VideoSpec:
    """One video's content: its objects in order of appearance and its captions."""

    index: int
    video_id: str
    split: str  # "train" or "test"
    objects: tuple[tuple[str, str], ...]  # (colour, shape) in order of appearance
    captions: tuple[str, ...]

    @property
    def content(self) -> frozenset[tuple[str, str]]:
        """What identifies the video: the set of objects, not their order."""
        return frozenset(self.objects)


@dataclass(frozen=True)
class SyntheticDataset:
    """Where a generated dataset lies; ``annotations`` is the folder the MSR-VTT reader takes."""

    root: Path
    config: SyntheticConfig
    videos: tuple[VideoSpec, ...]

    @property
    def annotations(self) -> Path:
        return self.root / ANNOTATIONS

    @property
    def video_dir(self) -> Path:
        return self.root / VIDEO_DIR

    def video_path(self, video_id: str) -> Path:
        return self.video_dir / f"{video_id}.mp4"

    def split(self, name: str) -> list[VideoSpec]:
        return [v for v in self.videos if v.split == name]


# ---- content -------------------------------------------------------------------------------------------


def object_phrase(obj: tuple[str, str]) -> str:
    colour, shape = obj
    article = "an" if colour[0] in "aeiou" else "a"
    return f"{article} {colour} {shape}"


def caption(objects: Sequence[tuple[str, str]], template: str) -> str:
    """Fill a template with objects in the given order (callers shuffle for unordered templates)."""
    phrases = [object_phrase(o) for o in objects]
    first, rest = phrases[0], phrases[1:]
    return template.format(
        first=first,
        rest_then=" and then ".join(rest),
        rest_then_finally=" then ".join([*rest[:-1], f"finally {rest[-1]}"]) if len(rest) > 1 else rest[0],
        rest_and=_join_and(rest),
        all_and=_join_and(phrases),
    )


def _join_and(phrases: Sequence[str]) -> str:
    return phrases[0] if len(phrases) == 1 else " ".join(phrases[:-1]) + f" and {phrases[-1]}"


def video_specs(config: SyntheticConfig) -> list[VideoSpec]:
    """The content of every video: train videos first (``video0``…), then test videos."""
    objects = config.objects
    used: set[frozenset[tuple[str, str]]] = set()
    specs = []
    for index in range(config.num_videos):
        rng = _rng(config, "content", index)
        while True:  # rejection: every video gets an object set no other video has
            chosen = tuple(objects[i] for i in rng.choice(len(objects), config.objects_per_video, replace=False))
            if frozenset(chosen) not in used:
                break
        used.add(frozenset(chosen))
        split = "train" if index < config.num_train else "test"
        count = config.captions_per_train_video if split == "train" else 1
        captions = []
        for t in rng.choice(len(TEMPLATES), count, replace=False):
            template = TEMPLATES[t]
            order = chosen if template in _ORDERED else tuple(chosen[i] for i in rng.permutation(len(chosen)))
            captions.append(caption(order, template))
        specs.append(VideoSpec(index, f"video{index}", split, chosen, tuple(captions)))
    return specs


def _rng(config: SyntheticConfig, purpose: str, index: int) -> np.random.Generator:
    # One independent stream per (seed, purpose, item): results do not depend on what else is drawn.
    key = {"content": 0, "render": 1, "frames": 2}[purpose]
    return np.random.default_rng([config.seed, key, index])


# ---- rendering -----------------------------------------------------------------------------------------

_SUPERSAMPLE = 2  # draw at 2x and average down: anti-aliased edges, like a real camera's


def shape_mask(shape: str, size: int, cx: float, cy: float, radius: float) -> np.ndarray:
    """Coverage in [0, 1] of a shape centred at (cx, cy) px with the given radius, on a size x size grid."""
    s = _SUPERSAMPLE
    coords = (np.arange(size * s, dtype=np.float32) + 0.5) / s
    x = coords[None, :] - cx
    y = coords[:, None] - cy
    r = radius
    if shape == "square":
        inside = np.maximum(np.abs(x), np.abs(y)) <= 0.8 * r
    elif shape == "circle":
        inside = x * x + y * y <= r * r
    elif shape == "triangle":  # pointing up: apex at -r, base at +0.75r
        inside = (y <= 0.75 * r) & (np.abs(x) <= (y + r) * 0.66)
    elif shape == "diamond":
        inside = np.abs(x) + np.abs(y) <= r
    elif shape == "cross":
        arm = 0.33 * r
        inside = ((np.abs(x) <= arm) & (np.abs(y) <= r)) | ((np.abs(y) <= arm) & (np.abs(x) <= r))
    elif shape == "ring":
        d2 = x * x + y * y
        inside = (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    elif shape == "star":  # five points; radius swings between 0.45r and r with the angle
        theta = np.arctan2(y, x) + np.pi / 2
        edge = r * (0.45 + 0.55 * np.abs(np.cos(2.5 * theta)) ** 3)
        inside = x * x + y * y <= edge * edge
    else:
        raise CmadapterError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    return inside.astype(np.float32).reshape(size, s, size, s).mean(axis=(1, 3))


@dataclass(frozen=True)
class _Appearance:
    """How one object looks and moves during its segment (the nuisance the model must see past)."""

    radius: float
    start: tuple[float, float]
    end: tuple[float, float]

    def centre(self, t: float) -> tuple[float, float]:  # at time t in [0, 1] of the segment: a straight drift
        return tuple(a + (b - a) * t for a, b in zip(self.start, self.end))


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    # A dark, slightly tinted, static gradient: varied across videos, never confusable with an object.
    base = rng.uniform(15, 70) + rng.uniform(-12, 12, size=3)
    tilt = rng.uniform(-20, 20, size=2)
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    field = tilt[0] * ramp[None, :] + tilt[1] * ramp[:, None]
    return np.clip(base[None, None, :] + field[:, :, None], 0, 255).astype(np.float32)


def _appearance(rng: np.random.Generator, config: SyntheticConfig) -> _Appearance:
    size = config.frame_size
    radius = rng.uniform(*config.object_radius) * size
    # Centres stray from the middle by up to `position_jitter` of the frame, never off the frame.
    reach = min(config.position_jitter * size, size / 2 - radius - 1)

    def point() -> tuple[float, float]:
        return (float(size / 2 + rng.uniform(-reach, reach)), float(size / 2 + rng.uniform(-reach, reach)))

    return _Appearance(radius=float(radius), start=point(), end=point())


def _draw(canvas: np.ndarray, obj: tuple[str, str], look: _Appearance, t: float) -> np.ndarray:
    cx, cy = look.centre(t)
    alpha = shape_mask(obj[1], canvas.shape[0], cx, cy, look.radius)[:, :, None]
    colour = np.asarray(COLOURS[obj[0]], dtype=np.float32)
    return canvas * (1 - alpha) + colour * alpha


def scene(spec: VideoSpec, config: SyntheticConfig) -> tuple[np.ndarray, list[_Appearance]]:
    """A video's background and each object's appearance, from the stream ``render_video`` draws from."""
    rng = _rng(config, "render", spec.index)
    backdrop = background(rng, config.frame_size)
    return backdrop, [_appearance(rng, config) for _ in spec.objects]


def render_video(spec: VideoSpec, config: SyntheticConfig) -> np.ndarray:
    """The frames of a video, uint8 [frames_per_video, H, W, 3] RGB: each object in turn, drifting."""
    size, per_object = config.frame_size, config.frames_per_object
    background, looks = scene(spec, config)
    frames = np.empty((config.frames_per_video, size, size, 3), dtype=np.uint8)
    for k, (obj, look) in enumerate(zip(spec.objects, looks)):
        for j in range(per_object):
            t = j / max(per_object - 1, 1)
            frames[k * per_object + j] = np.rint(_draw(background, obj, look, t)).astype(np.uint8)
    return frames


def sample_frames(config: SyntheticConfig, num_frames: int | None = None) -> list[int]:
    """Frame indices a 1-fps sampler takes (one per second, from t = 0), thinned evenly to ``num_frames``.

    With one object per second this is one frame per object: the frames the retrieval model is meant to see.
    """
    per_second = np.arange(0, config.frames_per_video, config.fps)
    if num_frames is not None and len(per_second) > num_frames:
        per_second = per_second[np.linspace(0, len(per_second) - 1, num_frames).round().astype(int)]
    return [int(i) for i in per_second]


# Captions of still frames, for pretraining: what is visible, in sentences of several lengths so the text
# tower meets words in many positions (the video captions are longer than "a red square").
STILL_TEMPLATES = (
    "{objects}",
    "a photo of {objects}",
    "a picture showing {objects}",
    "there is {objects} on a dark background",
    "an image with {objects} in it",
    "{objects} on a plain dark background",
)


def appearance_caption(objects: Sequence[tuple[str, str]], template: str = "{objects}") -> str:
    """What a still frame shows: "a red square", "a photo of a red square and a blue circle"."""
    return template.format(objects=" and ".join(object_phrase(o) for o in objects))


def object_frames(
    config: SyntheticConfig, count: int, *, offset: int = 0, max_objects: int = 1
) -> Iterator[tuple[np.ndarray, tuple[tuple[str, str], ...]]]:
    """Still frames and the objects they show, for pretraining an image-text model on appearance.

    Frame ``i`` (``offset`` shifts the stream) shows 1 to ``max_objects`` (at most 2) random objects: one
    is drawn exactly as in a video; two stand side by side at 0.6 of the size. Objects are listed in
    random order (a caption of them is equally true in any order).
    """
    if not 1 <= max_objects <= 2:
        raise CmadapterError(f"max_objects must be 1 or 2 (more do not fit a frame), got {max_objects}")
    objects, size = config.objects, config.frame_size
    for i in range(offset, offset + count):
        rng = _rng(config, "frames", i)
        shown = tuple(objects[j] for j in rng.choice(len(objects), int(rng.integers(1, max_objects + 1)), False))
        canvas = background(rng, size)
        if len(shown) == 1:
            canvas = _draw(canvas, shown[0], _appearance(rng, config), float(rng.uniform()))
        else:
            for obj, side in zip(shown, rng.permutation(2)):
                look = _appearance(rng, config)
                radius = 0.6 * look.radius
                # Each in its half of the frame, keeping the jitter it drew, never over the edge.
                x = size * (0.27 + 0.46 * side) + look.start[0] - size / 2
                x = min(max(x, radius + 1), size - radius - 1)
                centre = (x, look.start[1])
                canvas = _draw(canvas, obj, _Appearance(radius, centre, centre), 0.0)
        yield np.rint(canvas).astype(np.uint8), shown
