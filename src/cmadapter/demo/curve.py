"""``cmadapter demo --curve``: the paper's regime in miniature, a learning curve over the training set's size.

The paper adapts a CLIP pretrained on 400M image-text pairs with fine-tuning sets thousands of times smaller,
and claims that training 0.4% of the parameters "alleviates the problem of overfitting". Here the demo's
tiny CLIP (each seed's own, pretrained as ``make demo`` pretrains it, on thousands of still frames) is
fine-tuned on the first N of the demo's training videos, for several N, by the Cross-Modal Adapter and by
full fine-tuning, and evaluated zero-shot as well.

Every run gets the same budget whatever N: ``steps`` optimizer steps of ``batch_size`` videos, one caption
of each drawn per epoch (``sampling="one-per-video"``: no video twice in a batch, so the contrastive loss
never pushes apart two copies of one video, which a batch of several captions from a dozen videos would
do). Small sets are seen many more times; that is where overfitting shows. The last step's weights are
evaluated: the demo's data has no validation split to choose on.

Two recalls per run, over galleries of the same size:

- **test R@1**: each test video's caption among the test videos (as the demo);
- **train R@1**: every caption of the training videos the run trained on (the first ``gallery`` at most)
  among the first ``gallery`` training videos, those beyond N being ones the run never saw.

Their difference is the overfitting gap. Each seed pretrains its own backbone and trains its own runs; the
synthetic videos and captions stay the same for every seed, so the spread over seeds is the methods' own.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import shutil
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..bench.machine import cpu_facts
from ..errors import CmadapterError
from ..evaluation.compare import MethodRun, execute, run_config
from ..evaluation.tables import ZERO_SHOT
from .synthetic import ANNOTATIONS, DATA_JSON, TEST_CSV, TRAIN_CSV, SyntheticDataset

log = logging.getLogger(__name__)

CURVE_METHODS = ("cross-modal", "full")


@dataclass(frozen=True)
class CurveSettings:
    """What the curve measures; sizes must not exceed the demo's training videos, gallery its test videos."""

    sizes: tuple[int, ...] = (15, 30, 60, 120, 300)
    seeds: tuple[int, ...] = (42, 43, 44)
    methods: tuple[str, ...] = CURVE_METHODS
    batch_size: int = 15  # divides every default size: each epoch sees every training video once
    # The same for every size: 28 epochs of the 300 videos, 560 of the 15 (a multiple of each size's
    # steps per epoch, so that each run's warm-up + cosine ends exactly on its last step).
    steps: int = 560
    gallery: int = 100  # videos the train captions are ranked among: as many as the default test set

    @classmethod
    def quick(cls) -> CurveSettings:
        """For ``demo --quick --curve``: the quick demo's 120 training and 60 test videos."""
        return cls(sizes=(15, 30, 60, 120), steps=320, gallery=60)

    def __post_init__(self) -> None:
        problems = []
        if not self.sizes or min(self.sizes) < self.batch_size:
            problems.append(f"every size must hold at least one batch of {self.batch_size} videos")
        if len(set(self.seeds)) != len(self.seeds) or not self.seeds:
            problems.append("seeds must be distinct, at least one")
        for size in self.sizes:
            per_epoch = size // self.batch_size
            if per_epoch and self.steps % per_epoch:
                problems.append(f"{self.steps} steps are not whole epochs of {size} videos ({per_epoch} steps each)")
        if problems:
            raise CmadapterError("invalid CurveSettings: " + "; ".join(problems))

    def epochs(self, size: int) -> int:
        return self.steps // (size // self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def subset_annotations(data: SyntheticDataset, folder: Path, train_ids: Sequence[str]) -> Path:
    """An MSR-VTT annotation folder whose training list is ``train_ids`` (the test split unchanged)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (DATA_JSON, TEST_CSV):
        shutil.copyfile(data.root / ANNOTATIONS / name, folder / name)
    with open(folder / TRAIN_CSV, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["video_id"])
        writer.writerows([v] for v in train_ids)
    return folder


@torch.no_grad()
def caption_ranks(config, adapter: str | None, gallery_annotations: Path) -> tuple[torch.Tensor, list[str]]:
    """Text->video rank of every caption of the gallery's videos (its training list) among them, with the
    video of each caption: the model of ``config`` with ``adapter`` (None: zero-shot)."""
    from ..evaluation.evaluate import EncodedSplit, encode_texts, encode_videos, similarity_matrix
    from ..evaluation.metrics import text_to_video_ranks
    from ..evaluation.run import build_run_model
    from ..training.data import build_eval_data

    config = dataclasses.replace(config, data=dataclasses.replace(config.data, annotations=str(gallery_annotations)))
    model, _ = build_run_model(config, adapter)
    model.eval()
    data = build_eval_data(config, model, "train")
    precision = config.train.precision
    text = encode_texts(
        model, data.captions, batch_size=config.eval.text_batch_size, precision=precision, progress=False
    )
    video, mask = encode_videos(
        model, data.clips, batch_size=config.eval.batch_size, precision=precision, progress=False
    )
    similarity = similarity_matrix(model, EncodedSplit(text, video, mask), block_size=config.eval.block_size)
    ranks = text_to_video_ranks(similarity, torch.as_tensor(data.caption_video))
    return ranks, [data.video_ids[i] for i in data.caption_video]


def recall_at_1(ranks: torch.Tensor, caption_videos: Sequence[str], seen: set[str]) -> float:
    """R@1 over the captions whose video is in ``seen``."""
    rows = [i for i, v in enumerate(caption_videos) if v in seen]
    if not rows:
        raise CmadapterError("no gallery caption belongs to a training video")
    return 100.0 * int((ranks[rows] == 1).sum()) / len(rows)  # counted exactly, not a float32 mean


def run_curve(
    out: str | Path = "demo_out",
    *,
    quick: bool = False,
    curve: CurveSettings | None = None,
    demo=None,
    progress: bool = True,
) -> dict[str, Any]:
    """Every (seed, size, method) run, reusing finished ones; writes ``curve.json``, ``curve.md`` and
    ``curve.png`` to ``out`` and returns what ``curve.json`` holds. ``demo``: the ``DemoSettings`` whose data,
    backbone and learning rates the curve uses (default: the demo preset ``quick`` chooses)."""
    from ..video.cache import PrepareOptions, prepare_cache
    from ..video.sources import VideoFolder
    from .dataset_files import generate_dataset
    from .pretrain import pretrain
    from .settings import DemoSettings, demo_config, demo_runs, variant_name

    out = Path(out)
    variant = variant_name(quick=quick, custom=demo is not None)
    demo = demo or (DemoSettings.quick() if quick else DemoSettings())
    curve = curve or (CurveSettings.quick() if quick else CurveSettings())
    synthetic = demo.synthetic
    if max(curve.sizes) > synthetic.num_train or curve.gallery > min(synthetic.num_train, synthetic.num_test):
        raise CmadapterError(
            f"the curve's sizes (up to {max(curve.sizes)}) and gallery ({curve.gallery}) do not fit the demo's "
            f"{synthetic.num_train} training and {synthetic.num_test} test videos"
        )
    started = time.perf_counter()
    root = out / variant
    data = generate_dataset(root / "data", synthetic, progress=progress)
    cache = root / "cache"
    prepare_cache(
        [v.video_id for v in data.videos],
        VideoFolder(data.video_dir),
        cache,
        PrepareOptions(fps=1.0, short_side=synthetic.frame_size, progress=progress),
    )
    train_ids = [v.video_id for v in data.split("train")]
    folders = root / "curve-annotations"
    gallery = subset_annotations(data, folders / "gallery", train_ids[: curve.gallery])
    subsets = {n: subset_annotations(data, folders / f"n{n}", train_ids[:n]) for n in curve.sizes}

    runs: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for seed in curve.seeds:
        settings = dataclasses.replace(demo, seed=seed)
        seeded = root / f"seed{seed}"
        backbone = pretrain(seeded / "backbone" / "tiny-clip.pt", settings.pretrain, synthetic, progress=progress)
        base = demo_config(settings, data, backbone.path, cache, seeded / "curve")
        per_method = runs.setdefault(str(seed), {})
        # Zero-shot: one evaluation of the test split; its train R@1 over each size's training captions.
        zero_config = run_config(base, MethodRun(ZERO_SHOT, ZERO_SHOT), seeded / "curve")
        zero = execute(zero_config, zero_shot=True, quiet=not progress)
        ranks, videos = caption_ranks(base, None, gallery)
        per_method[ZERO_SHOT] = {
            str(n): {"test_R1": zero["test"]["t2v"]["R1"], "train_R1": recall_at_1(ranks, videos, set(train_ids[:n]))}
            for n in curve.sizes
        }
        options = {run.method: run.options for run in demo_runs(settings, curve.methods)}
        for n in curve.sizes:
            overrides = {
                "data.annotations": str(subsets[n]),
                "data.sampling": "one-per-video",
                "train.batch_size": curve.batch_size,
                "train.epochs": curve.epochs(n),
                "train.log_every_steps": max(curve.steps // 20, 1),
            }
            for method in curve.methods:
                run = MethodRun(f"n{n}-{method}", method, options[method], overrides)
                config = run_config(base, run, seeded / "curve")
                metrics = execute(config, zero_shot=False, quiet=not progress)
                ranks, videos = caption_ranks(config, str(config.run_dir / "best.safetensors"), gallery)
                per_method.setdefault(method, {})[str(n)] = {
                    "test_R1": metrics["test"]["t2v"]["R1"],
                    "train_R1": recall_at_1(ranks, videos, set(train_ids[:n])),
                    "trainable_params": metrics["efficiency"]["trainable_params"],
                    "train_seconds": metrics["efficiency"]["train_seconds"],
                }
                log.info("seed %d, %d videos, %s: %s", seed, n, method, per_method[method][str(n)])
    results = {
        "variant": variant,
        "machine": cpu_facts(),
        "curve": curve.to_dict(),
        "demo": {k: v for k, v in demo.to_dict().items() if k != "seed"},  # each seed replaces the seed
        "pretraining_samples": demo.pretrain.steps * demo.pretrain.batch_size,
        "pretraining_frames": demo.pretrain.num_frames,
        "runs": runs,
        "summary": summarise(runs),
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "curve.json").write_text(json.dumps(results, indent=2))
    (out / "curve.md").write_text(curve_markdown(results))
    plot_curve(results, out / "curve.png")
    return results


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}


def summarise(runs: dict[str, dict[str, dict[str, dict[str, float]]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per method and size: test R@1, train R@1 and their gap (train - test), each as mean, min and max over
    the seeds (the gap's spread is the spread of each seed's own gap)."""
    seeds = list(runs.values())
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for method, sizes in seeds[0].items():
        for size in sizes:
            cells = [seed[method][size] for seed in seeds]
            summary.setdefault(method, {})[size] = {
                "test_R1": _spread([c["test_R1"] for c in cells]),
                "train_R1": _spread([c["train_R1"] for c in cells]),
                "gap": _spread([c["train_R1"] - c["test_R1"] for c in cells]),
                "seeds": len(cells),
            }
    return summary


def curve_markdown(results: dict[str, Any]) -> str:
    summary = results["summary"]
    sizes = list(next(iter(summary.values())))
    seeds = ", ".join(results["runs"])
    curve = results["curve"]

    def cell(s: dict[str, float]) -> str:
        # round() gives ints, which have no negative zero ("-0" for a gap of -0.2 read as a loss).
        return f"{s['mean']:.1f} ({round(s['min'])}–{round(s['max'])})"

    lines = [
        f"# Learning curve ({results['variant']}, seeds {seeds})\n",
        f"Text→video R@1, mean (min–max) over the seeds. Every run: {curve['steps']} steps of {curve['batch_size']} "
        f"videos whatever the size; train R@1 ranks the training captions among {curve['gallery']} training videos, "
        f"test R@1 the test captions among the test videos; gap = train − test.\n",
        "| training videos | method | test R@1 | train R@1 | gap |",
        "|---:|---|---:|---:|---:|",
    ]
    for size in sizes:
        for method, by_size in summary.items():
            s = by_size[size]
            lines.append(f"| {size} | {method} | {cell(s['test_R1'])} | {cell(s['train_R1'])} | {cell(s['gap'])} |")
    lines.append(f"\nMachine: {results['machine']['cpu']}; {results['seconds']:.0f} s.\n")
    return "\n".join(lines)


def plot_curve(results: dict[str, Any], path: Path) -> None:
    """Test and train R@1 against training videos (mean, min–max band), and the gap, per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..evaluation.compare import _style

    summary = results["summary"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for method, by_size in summary.items():
        sizes = [int(n) for n in by_size]
        style = _style(method)
        zero = method == ZERO_SHOT
        colour = "black" if zero else style["color"]
        for key, ax, line in (("test_R1", axes[0], "-"), ("train_R1", axes[0], ":"), ("gap", axes[1], "-")):
            mean = [by_size[n][key]["mean"] for n in by_size]
            if not zero:  # zero-shot's spread is the backbones' alone; its band would hide the others'
                lows, highs = ([by_size[n][key][k] for n in by_size] for k in ("min", "max"))
                ax.fill_between(sizes, lows, highs, color=colour, alpha=0.15, linewidth=0)
            label = f"{method}, {key.split('_')[0]}" if ax is axes[0] else method
            if zero and key == "gap":  # not overfitting: the train and test galleries differ this much
                label, line = "zero-shot (the galleries' own difference)", "--"
            ax.plot(sizes, mean, linestyle=line, marker=style["marker"], color=colour, label=label)
    seeds = len(results["runs"])
    axes[0].set(title=f"text→video R@1 (mean and min–max of {seeds} seeds)", ylabel="R@1 (%)")
    axes[1].set(title="overfitting gap: train R@1 − test R@1", ylabel="points of R@1")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        ax.set_xlabel("training videos")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
