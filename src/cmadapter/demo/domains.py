"""One frozen backbone file, two domains, an adapter for each, one search index holding both.

The paper's third promise: every pre-trained parameter stays fixed, so one backbone serves every dataset,
each with its own small adapter. Here the backbone is the video demo's tiny CLIP file. Domain ``videos``
is the video demo's (three shapes one after another; its Cross-Modal Adapter is the demo's own run);
domain ``stills`` is the image demo's (three smaller shapes at once, in three quarters of the frame, five
captions per image), whose Cross-Modal Adapter is trained here on **the same file**, with the image demo's
data, learning rate and budget. The file's SHA-256, recorded when it was pretrained, is compared with the
file after both trainings. Each adapter (and the bare backbone) is evaluated on both domains' test splits
(a 2x2 table), and one index holds both test sets with both adapters, which ``cmadapter search INDEX TEXT
--adapter videos|stills`` and the page's selector switch between on one loaded backbone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CmadapterError
from ..evaluation.compare import MethodRun, execute, run_config
from ..evaluation.tables import ZERO_SHOT
from .images import ImageDemoSettings, ImageTaskConfig
from .synthetic import SyntheticDataset


@dataclass(frozen=True)
class StillsDomain:
    """The second domain's task and budget: the image demo's quick preset (480 training stills, 8 epochs at
    its learning rate), for ``make demo`` and ``--quick`` alike; tests pass smaller ones."""

    images: ImageTaskConfig = field(default_factory=ImageTaskConfig.quick)
    epochs: int = ImageDemoSettings.quick().epochs
    lr: float = ImageDemoSettings.quick().lr

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tensor_bytes(path: Path) -> int:
    """Bytes of the tensors in a safetensors or torch weights file: what they take in memory once loaded."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    return sum(t.numel() * t.element_size() for t in state.values() if torch.is_tensor(t))


def two_domains(
    out: Path,
    seeded: Path,
    settings,
    video_data: SyntheticDataset,
    video_config,
    weights: Path,
    pretrained_sha256: str | None,
    stills: StillsDomain,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the stills adapter on ``weights``, evaluate both adapters on both domains, index both.

    ``video_config``: the video demo's run config (its cross-modal run is reused, or trained if missing);
    ``seeded``: the seed's folder, where the stills run goes; ``out``: the demo's folder, where the two-domain
    index goes. The stills and their frame cache go beside the videos' (``video_data.root``'s parent), apart
    from ``demo --images``'s own."""
    from ..evaluation.run import evaluate_config
    from ..video.cache import PrepareOptions, prepare_cache
    from ..video.sources import VideoFolder
    from .images import generate_images, image_demo_config
    from .settings import demo_runs

    options = {run.method: run.options for run in demo_runs(settings, ("cross-modal",))}["cross-modal"]
    folder = seeded / "domains"
    # The video adapter: the demo's own cross-modal run (reused when its config matches, as `compare` does).
    video_run = run_config(video_config, MethodRun("cross-modal", "cross-modal", options), seeded / "runs")
    execute(video_run, zero_shot=False, quiet=not progress)
    adapters = {"videos": video_run.run_dir / "best.safetensors"}

    # The stills: the image demo's data, learning rate and budget, on the video demo's backbone file.
    task = stills.images
    image_settings = ImageDemoSettings(
        synthetic=settings.synthetic,
        pretrain=settings.pretrain,
        images=task,
        epochs=stills.epochs,
        lr=stills.lr,
        batch_size=settings.batch_size,
        seed=settings.seed,
    )
    stills_root = video_data.root.parent / "stills"
    annotations, images, ids = generate_images(stills_root / "data", task, settings.synthetic)
    cache = stills_root / "cache"
    report = prepare_cache(
        ids, VideoFolder(images), cache, PrepareOptions(short_side=settings.synthetic.frame_size, progress=progress)
    )
    if report.problems:
        raise CmadapterError(f"could not cache {len(report.problems)} demo images; see {report.report_file}")
    image_config = image_demo_config(image_settings, annotations, images, cache, weights, folder)
    stills_run = run_config(image_config, MethodRun("stills-cross-modal", "cross-modal", options), folder)
    execute(stills_run, zero_shot=False, quiet=not progress)
    adapters["stills"] = stills_run.run_dir / "best.safetensors"

    # 2x2 (and the bare backbone): every model on every domain's test split, through `cmadapter eval`'s code.
    configs = {"videos": video_config, "stills": image_config}
    table: dict[str, dict[str, float]] = {}
    for model_name, adapter in [(ZERO_SHOT, None), *adapters.items()]:
        table[model_name] = {}
        for domain, config in configs.items():
            metrics = evaluate_config(config, adapter=str(adapter) if adapter else None, progress=False)
            table[model_name][domain] = metrics["test"]["t2v"]["R1"]
    after = sha256(weights)
    index = _index_both(out / "index-domains", video_data, images, image_config, weights, adapters, progress=progress)
    return {
        "stills": stills.to_dict(),
        "backbone": {
            "file": str(weights),
            "sha256_at_pretraining": pretrained_sha256,
            "sha256_after_both_adapters": after,
            "unchanged": pretrained_sha256 == after if pretrained_sha256 else None,
            "tensor_bytes": tensor_bytes(weights),
        },
        "adapters": {name: {"file": str(path), "tensor_bytes": tensor_bytes(path)} for name, path in adapters.items()},
        "t2v_R1": table,  # model -> domain -> text->video (text->image for stills) R@1
        "test_items": {"videos": len(video_data.split("test")), "stills": task.num_test},
        "index": index,
    }


def _index_both(
    out: Path, video_data: SyntheticDataset, images: Path, image_config, weights: Path, adapters, *, progress: bool
):
    """One index of both test sets with both adapters; each domain's test captions searched with each adapter
    (a hit: the caption's own item first among all of both domains')."""
    from ..datasets import load_split
    from ..search.api import VideoIndex
    from ..search.build import BuildOptions

    test_videos = video_data.split("test")
    stills = load_split("flickr30k", image_config.data.annotations, "test")
    still_files = sorted({r.video_id for r in stills})
    sources = [video_data.video_path(v.video_id) for v in test_videos] + [images / name for name in still_files]
    frames = video_data.config.objects_per_video
    VideoIndex.build(
        sources,
        out,
        pretrained=str(weights),
        adapters={name: str(path) for name, path in adapters.items()},
        zero_shot=True,
        options=BuildOptions(fps=1.0, max_frames=frames, progress=progress),
    )
    queries = {
        "videos": [(v.captions[0], v.video_id) for v in test_videos],
        # One caption per still, as per test video: the first of its five.
        "stills": [(next(r.caption for r in stills if r.video_id == name), Path(name).stem) for name in still_files],
    }
    hits: dict[str, dict[str, float]] = {}
    with VideoIndex.open(out) as index:
        for adapter in [ZERO_SHOT, *adapters]:
            hits[adapter] = {}
            for domain, pairs in queries.items():
                found = 0
                for text, item in pairs:
                    top = index.search(text, k=1, adapter=adapter).results
                    found += bool(top) and Path(top[0].best.video).stem == item
                hits[adapter][domain] = 100.0 * found / len(pairs)
    return {
        "path": str(out),
        "items": len(sources),
        "t2v_R1_by_search": hits,
        "commands": [
            f'cmadapter search {out} "{queries["stills"][0][0]}" --adapter stills -k 3',
            f'cmadapter search {out} "{queries["stills"][0][0]}" --adapter videos -k 3',
            f"cmadapter serve {out}",
        ],
    }


def domains_markdown(two: dict[str, Any]) -> str:
    """The 2x2 table and the backbone's and adapters' figures, for results.md and the CLI."""
    table = two["t2v_R1"]
    items = two["test_items"]
    lines = [
        "One backbone, two domains: text→item R@1 of each model on each domain's test split "
        f"({items['videos']} videos, {items['stills']} stills):\n",
        "| model | videos | stills |",
        "|---|---:|---:|",
    ]
    for model, by_domain in table.items():
        name = model if model == ZERO_SHOT else f"adapter trained on {model}"
        lines.append(f"| {name} | {by_domain['videos']:.1f} | {by_domain['stills']:.1f} |")
    backbone = two["backbone"]
    state = {True: "unchanged", False: "CHANGED", None: "(no checksum recorded at pretraining)"}[backbone["unchanged"]]
    mb = 2**20
    sizes = ", ".join(f"{name} {a['tensor_bytes'] / mb:.2f} MB" for name, a in two["adapters"].items())
    index = two["index"]
    hits = "; ".join(
        f"{adapter}: " + ", ".join(f"{domain} {value:.1f}" for domain, value in by_domain.items())
        for adapter, by_domain in index["t2v_R1_by_search"].items()
    )
    lines += [
        "",
        f"Backbone file SHA-256 after both adapters trained on it: `{backbone['sha256_after_both_adapters'][:16]}…`, "
        f"{state} since pretraining. Its tensors: {backbone['tensor_bytes'] / mb:.1f} MB; each adapter's: {sizes}.",
        f"One index of both test sets ({index['items']} items, `{index['path']}`), R@1 by search with each adapter, "
        f"one caption per item (its own item first among all {index['items']}, videos and stills together): {hits}.",
        "Try: " + "; ".join(f"`{c}`" for c in index["commands"]),
    ]
    return "\n".join(lines)
