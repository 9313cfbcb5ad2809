"""``cmadapter demo --images``: the image-text variant of the demo (the journal version's Flickr30K/MSCOCO task).

A synthetic image-text dataset in **Karpathy's Flickr30K layout** (``annotations/dataset_flickr30k.json``,
``flickr30k-images/<i>.png``): each still shows three coloured shapes at once, in three of the four quarters
of the frame, and has five captions naming all three in shuffled order with varied wording, train and test
alike (so image→text ranks the best of five captions, as the field reports). Every image has its own set of
objects. The tiny CLIP is the video demo's, pretrained on stills of one or two objects with short captions:
it knows what the objects look like, not scenes of three nor these sentences. Then the Flickr30K reader, the
frame cache (an image is a one-frame clip), the trainer and the evaluator, with the same data, budget and seed
for each method, as the video demo.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..bench.machine import cpu_facts
from ..config import RunConfig, load_config
from ..errors import CmadapterError
from ..evaluation.compare import compare
from ..evaluation.tables import ZERO_SHOT, gain_line, markdown_table
from .pretrain import PretrainConfig, pretrain
from .settings import DemoSettings, demo_runs
from .synthetic import COLOURS, GENERATOR_VERSION, SyntheticConfig, object_phrase, shape_mask

log = logging.getLogger(__name__)

METHODS = (ZERO_SHOT, "cross-modal", "uni-modal", "adapter-attn", "maple")
ANNOTATION_FILE = "dataset_flickr30k.json"
IMAGE_DIR = "flickr30k-images"
STAMP = "images.json"
TEMPLATES = (
    "{objects}",
    "a picture of {objects}",
    "{objects} together in one image",
    "an image showing {objects} side by side",
    "{objects} on a dark background",
    "a still with {objects}",
    "three shapes: {objects}",
)
QUARTERS = ((0.28, 0.28), (0.72, 0.28), (0.28, 0.72), (0.72, 0.72))  # object centres, fractions of the frame


@dataclass(frozen=True)
class ImageTaskConfig:
    """Sizes of the image task; how objects look comes from the ``SyntheticConfig`` the backbone shares."""

    # The adapter needs data here: at 120 training images (quick's first size) it overfit and gained 0-5 points
    # of text->image R@1 over zero-shot (seeds 0, 42, 43); at 480, 15-19 points (see README).
    num_train: int = 1000
    num_test: int = 100
    captions_per_image: int = 5
    objects_per_image: int = 3
    object_radius: tuple[float, float] = (0.15, 0.19)  # fraction of the frame: four fit without touching
    seed: int = 0

    @classmethod
    def quick(cls, **overrides: Any) -> ImageTaskConfig:
        return cls(**({"num_train": 480, "num_test": 60} | overrides))

    def __post_init__(self) -> None:
        if self.num_train < 1 or self.num_test < 1:
            raise CmadapterError("num_train and num_test must be at least 1")
        if not 1 <= self.captions_per_image <= len(TEMPLATES):
            raise CmadapterError(f"captions_per_image must be in 1..{len(TEMPLATES)}")
        if not 2 <= self.objects_per_image <= len(QUARTERS):
            raise CmadapterError(f"objects_per_image must be in 2..{len(QUARTERS)}")


@dataclass(frozen=True)
class ImageDemoSettings(DemoSettings):
    images: ImageTaskConfig = field(default_factory=ImageTaskConfig)
    # Chosen on the quick variant (cross-modal text->image R@1 over zero-shot at 480 training images, seeds 0,
    # 42, 43: +15.0, +19.3, +16.3 at 6e-3 for 8 epochs; +9.6, +4.0, +8.6 at the video demo's 2e-3; +13.0, +9.3,
    # +12.6 at 6e-3 for 4 epochs): one frame per item trains faster than three.
    lr: float = 6e-3

    @classmethod
    def quick(cls) -> ImageDemoSettings:
        return cls(
            synthetic=SyntheticConfig.quick(),
            pretrain=PretrainConfig.quick(),
            images=ImageTaskConfig.quick(),
            epochs=8,
        )


@dataclass(frozen=True)
class ImageSpec:
    filename: str
    split: str
    objects: tuple[tuple[str, str], ...]
    captions: tuple[str, ...]


def image_specs(task: ImageTaskConfig, look: SyntheticConfig) -> list[ImageSpec]:
    """Train images first, then test images; every image its own object set, every caption a shuffled list."""
    objects = look.objects
    total = task.num_train + task.num_test
    if total > math.comb(len(objects), task.objects_per_image) // 2:  # rejection sampling stays fast
        raise CmadapterError(f"{total} images need more distinct object sets; add colours or shapes")
    used: set[frozenset[tuple[str, str]]] = set()
    specs = []
    for index in range(total):
        rng = np.random.default_rng([task.seed, 10, index])
        while True:
            chosen = tuple(objects[i] for i in rng.choice(len(objects), task.objects_per_image, replace=False))
            if frozenset(chosen) not in used:
                break
        used.add(frozenset(chosen))
        captions = []
        for t in rng.choice(len(TEMPLATES), task.captions_per_image, replace=False):
            phrases = [object_phrase(chosen[i]) for i in rng.permutation(len(chosen))]
            listing = ", ".join(phrases[:-1]) + f" and {phrases[-1]}"
            captions.append(TEMPLATES[t].format(objects=listing))
        split = "train" if index < task.num_train else "test"
        specs.append(ImageSpec(f"{index}.png", split, chosen, tuple(captions)))
    return specs


def render_image(spec: ImageSpec, index: int, task: ImageTaskConfig, look: SyntheticConfig) -> np.ndarray:
    """uint8 [S, S, 3]: a dark gradient and each object in its own quarter, jittered and sized at random."""
    rng = np.random.default_rng([task.seed, 11, index])
    size = look.frame_size
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    tilt = rng.uniform(-20, 20, size=2)
    base = rng.uniform(15, 70) + rng.uniform(-12, 12, size=3)
    canvas = np.clip(base + (tilt[0] * ramp[None, :] + tilt[1] * ramp[:, None])[:, :, None], 0, 255)
    for obj, quarter in zip(spec.objects, rng.permutation(len(QUARTERS))):
        radius = rng.uniform(*task.object_radius) * size
        fx, fy = QUARTERS[quarter]
        cx, cy = (fx + rng.uniform(-0.03, 0.03)) * size, (fy + rng.uniform(-0.03, 0.03)) * size
        alpha = shape_mask(obj[1], size, cx, cy, radius)[:, :, None]
        canvas = canvas * (1 - alpha) + np.asarray(COLOURS[obj[0]], dtype=np.float32) * alpha
    return np.rint(canvas).astype(np.uint8)


def generate_images(root: Path, task: ImageTaskConfig, look: SyntheticConfig) -> tuple[Path, Path, list[str]]:
    """Write (or reuse) the dataset under ``root``: (annotations folder, images folder, image ids)."""
    annotations, images = root / "annotations", root / IMAGE_DIR
    specs = image_specs(task, look)
    # The renderer's version too: it draws with the video demo's shapes and colours.
    stamp = {"task": dataclasses.asdict(task), "look": look.to_dict(), "generator_version": GENERATOR_VERSION}
    stamp = json.loads(json.dumps(stamp))
    stamp_file = root / STAMP
    if stamp_file.is_file() and json.loads(stamp_file.read_text()) != stamp:
        # The frame cache and finished runs beside this folder were made from the other images: reusing them
        # would report figures of another dataset, so the folder is not regenerated in place.
        raise CmadapterError(
            f"{root} holds demo images made with other settings (see {stamp_file}); "
            f"remove {root.parent} or choose another --out"
        )
    if not (stamp_file.is_file() and all((images / s.filename).is_file() for s in specs)):
        stamp_file.unlink(missing_ok=True)  # an interrupted generation must not look complete
        images.mkdir(parents=True, exist_ok=True)
        annotations.mkdir(parents=True, exist_ok=True)
        for index, spec in enumerate(specs):
            Image.fromarray(render_image(spec, index, task, look)).save(images / spec.filename)
        entries = [
            {"imgid": i, "filename": s.filename, "split": s.split, "sentences": [{"raw": c} for c in s.captions]}
            for i, s in enumerate(specs)
        ]
        (annotations / ANNOTATION_FILE).write_text(json.dumps({"dataset": "synthetic", "images": entries}))
        stamp_file.write_text(json.dumps(stamp, indent=1))  # last: a half-written dataset is never reused
    return annotations, images, [s.filename for s in specs]


def image_demo_config(
    settings: ImageDemoSettings, annotations: Path, images: Path, cache: Path, weights: Path, out: Path
):
    """The config every method shares: the Flickr30K reader, one frame per item, the video demo's budget."""
    return load_config(
        None,
        {
            "name": "demo-images",
            "output_dir": str(out),
            "model.backbone": None,
            "model.pretrained": str(weights),
            "data.dataset": "flickr30k",
            "data.annotations": str(annotations),
            "data.videos": str(images),
            "data.cache": str(cache),
            "data.max_frames": 1,
            "data.val_split": None,
            "data.workers": 0,
            "train.epochs": settings.epochs,
            "train.batch_size": settings.batch_size,
            "train.precision": "fp32",
            "train.seed": settings.seed,
            "train.log_every_steps": 20,
            "optim.lr": settings.lr,
        },
    )


def run_image_demo(
    out: str | Path = "demo_out",
    *,
    quick: bool = False,
    settings: ImageDemoSettings | None = None,
    seed: int | None = None,
    methods: Sequence[str] = METHODS,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate (or reuse) the images and the backbone, then run and tabulate ``methods``; results go to
    ``out/images_results.json`` and ``.md`` (and the seed's folder). As in the video demo, ``seed`` replaces
    the settings' seed (pretraining's and training's); the images and their cache in
    ``out/images-<variant>`` serve every seed, the backbone and runs of one seed are in its ``seed<N>``."""
    from ..video.cache import PrepareOptions, prepare_cache
    from ..video.sources import VideoFolder

    out = Path(out)
    variant = "images-" + ("custom" if settings is not None else "quick" if quick else "default")
    settings = settings or (ImageDemoSettings.quick() if quick else ImageDemoSettings())
    if seed is not None:
        settings = dataclasses.replace(settings, seed=seed)
    seeded = out / variant / f"seed{settings.seed}"
    started = time.perf_counter()
    timings: dict[str, float] = {}
    began = time.perf_counter()
    annotations, images, ids = generate_images(out / variant / "data", settings.images, settings.synthetic)
    timings["generate images"] = round(time.perf_counter() - began, 1)
    began = time.perf_counter()
    backbone = pretrain(seeded / "backbone" / "tiny-clip.pt", settings.pretrain, settings.synthetic, progress=progress)
    timings["pretrain tiny CLIP"] = round(time.perf_counter() - began, 1)
    began = time.perf_counter()
    cache = out / variant / "cache"
    options = PrepareOptions(short_side=settings.synthetic.frame_size, progress=progress)
    report = prepare_cache(ids, VideoFolder(images), cache, options)
    if report.problems:  # our own files: a problem here is a bug, not data to drop
        raise CmadapterError(f"could not cache {len(report.problems)} demo images; see {report.report_file}")
    timings["cache images"] = round(time.perf_counter() - began, 1)
    began = time.perf_counter()
    base: RunConfig = image_demo_config(settings, annotations, images, cache, backbone.path, seeded / "runs")
    table = compare(base, demo_runs(settings, methods), seeded / "runs", quiet=not progress)
    timings["zero-shot, train and evaluate each method"] = round(time.perf_counter() - began, 1)
    timings["total"] = round(time.perf_counter() - started, 1)
    results = {
        "variant": variant,
        "seed": settings.seed,
        "machine": cpu_facts(),  # the exact figures depend on the CPU's kernels
        "runs": str(seeded / "runs"),
        "media": table["media"],
        "methods": table["methods"],
        "backbone": {"file": str(backbone.path), "single_frame_accuracy": backbone.frame_accuracy},
        "settings": settings.to_dict(),
        "timings_seconds": timings,
    }
    for folder in (seeded, out):
        (folder / "images_results.json").write_text(json.dumps(results, indent=2))
        (folder / "images_results.md").write_text(image_results_markdown(results))
    return results


def image_results_markdown(results: dict[str, Any]) -> str:
    methods = results["methods"]
    lines = [
        f"# cmadapter demo, image-text ({results['variant']}, seed {results['seed']})\n",
        "Synthetic stills in Karpathy's Flickr30K layout (three shapes each, five captions per image), the video "
        "demo's tiny CLIP, the same data, budget and seed for every method.\n",
        markdown_table(methods, results["media"]),
    ]
    gain = gain_line(methods, results["media"])
    if gain:
        lines.append(gain + "\n")
    lines.append("Stages: " + ", ".join(f"{k} {v:.0f} s" for k, v in results["timings_seconds"].items()) + ".\n")
    return "\n".join(lines)
