"""``cmadapter demo``: the whole method, offline, in minutes on a laptop CPU.

No pretrained weights or public datasets can be downloaded here, so the demo brings its own: a synthetic
text-video dataset in the MSR-VTT layout (coloured shapes appearing one after another; a caption names
all of them, no single frame shows them all) and a tiny CLIP pretrained on single frames, saved as an
OpenAI-layout file. Then, through the same reader, frame cache, trainer and evaluator as real data, and
with the same budget and seed for each: zero-shot, the Cross-Modal Adapter, the uni-modal adapter and
full fine-tuning. Everything lands in the output folder; a rerun reuses what is already there.

One seed (``--seed``) drives the tiny CLIP's pretraining (its initialisation and batches) and every
method's training (adapter initialisation, batch order). The synthetic videos and captions do not depend
on it: every seed is measured on the same dataset, so the spread over seeds is the methods' own.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..bench.machine import cpu_facts
from ..config import RunConfig, load_config
from ..errors import CmadapterError
from ..evaluation.compare import MethodRun, compare, expand_methods
from ..evaluation.tables import ZERO_SHOT, gain_line, markdown_table
from .dataset_files import generate_dataset
from .pretrain import PretrainConfig, pretrain
from .search_demo import index_and_search
from .synthetic import SyntheticConfig

log = logging.getLogger(__name__)

METHODS = (ZERO_SHOT, "cross-modal", "uni-modal", "full")


@dataclass(frozen=True)
class DemoSettings:
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    epochs: int = 12  # x 46 steps of 32 captions: ~550 steps, the same for every method
    batch_size: int = 32
    lr: float = 2e-3  # adapters; full fine-tuning takes lr x full_backbone_lr_scale for the backbone
    full_backbone_lr_scale: float = 0.05
    r: int = 8
    shared_dim: int = 16
    seed: int = 42  # pretraining's and training's; replaces pretrain.seed

    def __post_init__(self) -> None:
        # One seed for every stage, so a results file's seed says how all of it was drawn.
        object.__setattr__(self, "pretrain", dataclasses.replace(self.pretrain, seed=self.seed))

    @classmethod
    def quick(cls) -> DemoSettings:
        return cls(synthetic=SyntheticConfig.quick(), pretrain=PretrainConfig.quick(), epochs=8)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def demo_config(settings: DemoSettings, data, weights: Path, cache: Path, out: Path) -> RunConfig:
    """The run config every method shares: the real MSR-VTT reader, the frame cache, the tiny backbone."""
    return load_config(
        None,
        {
            "name": "demo",
            "output_dir": str(out),
            "model.backbone": None,
            "model.pretrained": str(weights),
            "model.method_options": {"r": settings.r, "shared_dim": settings.shared_dim},
            "data.dataset": "msrvtt",
            "data.annotations": str(data.annotations),
            "data.videos": str(data.video_dir),
            "data.cache": str(cache),
            "data.fps": 1.0,  # one frame per object
            "data.max_frames": settings.synthetic.objects_per_video,
            "data.workers": 0,  # frames come from the cache: decoding is not the bottleneck
            "train.epochs": settings.epochs,
            "train.batch_size": settings.batch_size,
            "train.precision": "fp32",  # tiny matrices: bf16 buys nothing on CPU at this size
            "train.seed": settings.seed,
            "train.log_every_steps": 20,
            # AdamW and our warm-up + cosine, not the paper recipes' bert-adam: the demo's learning rates
            # and budget were chosen with them, and the demo shows the method, not the official optimizer.
            "optim.name": "adamw",
            "optim.schedule": "cosine",
            "optim.lr": settings.lr,
        },
    )


def demo_runs(settings: DemoSettings, methods: Sequence[str] = METHODS) -> list[MethodRun]:
    """The demo's settings for each method (``all``: every registered one): bottlenecks and ranks at the
    demo's ``r`` (the tiny CLIP is 128 wide, so AdaptFormer's usual 64 would not be a bottleneck), MaPLe in
    every block (the tiny towers have 3), the backbone learning-rate scale of full fine-tuning for partial
    fine-tuning too."""
    from ..methods import METHODS as REGISTERED

    arch = settings.pretrain.architecture
    options: dict[str, dict[str, Any]] = {
        "cross-modal": {"r": settings.r, "shared_dim": settings.shared_dim},
        "uni-modal": {"r": settings.r},
        "adapter-attn": {"r": settings.r},
        "maple": {"depth": min(arch.vision_layers, arch.text_layers)},  # MaPLe's 9 of 12 blocks: all of ours
        "adaptformer": {"r": settings.r},
        "lora": {"r": settings.r, "alpha": float(settings.r)},
        "full": {"backbone_lr_scale": settings.full_backbone_lr_scale},
        "partial": {"backbone_lr_scale": settings.full_backbone_lr_scale},
    }
    runs = []
    for name in expand_methods(methods):
        if name != ZERO_SHOT and name not in REGISTERED:
            raise CmadapterError(f"unknown method {name!r}; choose from all, {ZERO_SHOT}, {', '.join(REGISTERED)}")
        runs.append(MethodRun(name, name, options.get(name, {})))
    return runs


def run_demo(
    out: str | Path = "demo_out",
    *,
    quick: bool = False,
    settings: DemoSettings | None = None,
    seed: int | None = None,
    methods: Sequence[str] = METHODS,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate (or reuse) the data and the backbone, then run and tabulate ``methods``.

    ``settings`` overrides the preset (tests use a smaller one); its results go to ``out/custom``.
    ``seed`` replaces the settings' seed. The data and frame cache live in ``out/<variant>`` and serve
    every seed; the backbone, runs and results of one seed in ``out/<variant>/seed<N>``."""
    from ..video.cache import PrepareOptions, prepare_cache
    from ..video.sources import VideoFolder

    out = Path(out)
    variant = "custom" if settings is not None else "quick" if quick else "default"
    settings = settings or (DemoSettings.quick() if quick else DemoSettings())
    if seed is not None:
        settings = dataclasses.replace(settings, seed=seed)
    seeded = out / variant / f"seed{settings.seed}"
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def stage(name: str, began: float) -> None:
        timings[name] = round(time.perf_counter() - began, 1)
        log.info("%s: %.1f s", name, timings[name])

    began = time.perf_counter()
    data = generate_dataset(out / variant / "data", settings.synthetic, progress=progress)
    stage("generate videos", began)

    began = time.perf_counter()
    backbone = pretrain(seeded / "backbone" / "tiny-clip.pt", settings.pretrain, settings.synthetic, progress=progress)
    stage("pretrain tiny CLIP", began)

    began = time.perf_counter()
    cache = out / variant / "cache"
    frame_size = settings.synthetic.frame_size
    prepare_cache(
        [v.video_id for v in data.videos],
        VideoFolder(data.video_dir),
        cache,
        PrepareOptions(fps=1.0, short_side=frame_size, progress=progress),
    )
    stage("decode videos once into the frame cache", began)

    began = time.perf_counter()
    base = demo_config(settings, data, backbone.path, cache, seeded / "runs")
    table = compare(base, demo_runs(settings, methods), seeded / "runs", quiet=not progress)
    stage("zero-shot, train and evaluate each method", began)
    began = time.perf_counter()
    grounding = _report(out, seeded / "runs", data, table)
    if grounding is not None:
        stage("report", began)

    began = time.perf_counter()
    trained = seeded / "runs" / "cross-modal" / "best.safetensors"
    # One demo index, rebuilt for each variant and seed (each seed pretrains its own backbone).
    owner = f"{variant}/seed{settings.seed}"
    search = index_and_search(
        data, backbone.path, trained if trained.is_file() else None, out / "index", owner, progress=progress
    )
    stage("index the test videos and search them", began)
    timings["total"] = round(time.perf_counter() - started, 1)

    results = {
        "variant": variant,
        "seed": settings.seed,
        # The exact figures depend on these: kernels round differently on each CPU and ISA.
        "machine": cpu_facts(),
        "runs": str(seeded / "runs"),
        "methods": table["methods"],
        "backbone": {
            "file": str(backbone.path),
            "architecture": backbone.architecture.to_dict(),
            "single_frame_accuracy": backbone.frame_accuracy,
        },
        "search": search,
        "settings": settings.to_dict(),
        "timings_seconds": timings,
    }
    if grounding is not None:
        results["grounding"] = grounding
    # The latest run at the top of ``out``; each seed's own copy stays beside its runs.
    for folder in (seeded, out):
        (folder / "results.json").write_text(json.dumps(results, indent=2))
        (folder / "results.md").write_text(results_markdown(results))
    shutil.copyfile(seeded / "runs" / "recall_vs_params.png", out / "recall_vs_params.png")
    shutil.copyfile(seeded / "runs" / "recall_vs_cost.png", out / "recall_vs_cost.png")
    return results


def _report(out: Path, runs: Path, data, table: dict[str, Any]) -> dict[str, Any] | None:
    """``out/report/report.html``: the Cross-Modal Adapter against zero-shot, checked against ground truth."""
    if not {"cross-modal", ZERO_SHOT} <= set(table["methods"]):
        return None
    from .report import demo_report

    return demo_report(runs, out / "report", data)


def results_markdown(results: dict[str, Any]) -> str:
    methods = results["methods"]
    gain = gain_line(methods)
    gain = f"\n{gain}\n" if gain else ""
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in results["timings_seconds"].items())
    search = results.get("search")
    if search:
        recall = ", ".join(f"{name} {value:.1f}" for name, value in search["t2v_R1"].items())
        lines = [f"\nSearch index `{search['index']}` ({search['files']} test videos): text→video R@1 {recall}.\n"]
        for example in search["examples"]:
            lines.append(f"- `{example['query']}` (expected {example['expected']}):")
            lines += [f"  {Path(r['video']).stem} {r['score']:.3f}" for r in example["results"]]
        lines.append("\nTry: " + "; ".join(f"`{c}`" for c in search["commands"]) + "\n")
        gain += "\n".join(lines)
    machine = results["machine"]
    return (
        f"# cmadapter demo ({results['variant']}, seed {results['seed']})\n\n"
        "Synthetic MSR-VTT-layout data (coloured shapes appearing one after another), a tiny CLIP pretrained on "
        "single frames, the same data, budget and seed for every method.\n\n" + markdown_table(methods) + gain + "\n"
        f"Stages: {timings}.\n\n"
        f"Machine: {machine['cpu']} (bf16 path {machine['bf16_path']}, torch {machine['torch']} with "
        f"{machine['cpu_capability']} kernels); the exact figures depend on the CPU.\n"
    )
