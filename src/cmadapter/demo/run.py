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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..bench.machine import cpu_facts
from ..evaluation.compare import compare
from ..evaluation.tables import ZERO_SHOT, gain_line, markdown_table
from .dataset_files import generate_dataset
from .pretrain import pretrain
from .search_demo import index_and_search
from .settings import METHODS, DemoSettings, demo_config, demo_runs, variant_name
from .step_time import step_time_line, step_time_parts

if TYPE_CHECKING:
    from .domains import StillsDomain

log = logging.getLogger(__name__)


def run_demo(
    out: str | Path = "demo_out",
    *,
    quick: bool = False,
    settings: DemoSettings | None = None,
    seed: int | None = None,
    methods: Sequence[str] = METHODS,
    domains: bool | StillsDomain = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate (or reuse) the data and the backbone, then run and tabulate ``methods``.

    ``settings`` overrides the preset (tests use a smaller one); its results go to ``out/custom``.
    ``seed`` replaces the settings' seed. The data and frame cache live in ``out/<variant>`` and serve
    every seed; the backbone, runs and results of one seed in ``out/<variant>/seed<N>``. With ``domains``
    (True: ``StillsDomain()``; or the ``StillsDomain`` to use) and the Cross-Modal Adapter
    among ``methods``, a second domain's adapter is trained on the same backbone file and both share one
    index (``domains.two_domains``); a training step's time is split
    into arithmetic and overhead when full fine-tuning is among the methods (``step_time``)."""
    from ..video.cache import PrepareOptions, prepare_cache
    from ..video.sources import VideoFolder

    out = Path(out)
    variant = variant_name(quick=quick, custom=settings is not None)
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
    weights_size = backbone.path.stat().st_size

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
    step_time = None
    if {"full", "cross-modal"} <= set(table["methods"]):
        began = time.perf_counter()
        step_time = step_time_parts(
            backbone.path,
            batch=settings.batch_size,
            frames=settings.synthetic.objects_per_video,
            methods={run.method: run.options for run in demo_runs(settings, ("full", "cross-modal"))},
        )
        stage("time a training step", began)
    began = time.perf_counter()
    grounding = _report(out, seeded / "runs", data, table, curve=_curve_section(out, variant))
    if grounding is not None:
        stage("report", began)
    two = None
    if domains is not False and "cross-modal" in table["methods"]:
        from .domains import StillsDomain, two_domains

        stills = domains if isinstance(domains, StillsDomain) else StillsDomain()
        began = time.perf_counter()
        two = two_domains(out, seeded, settings, data, base, backbone.path, backbone.sha256, stills, progress=progress)
        stage("a second domain on the same backbone", began)

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
            "bytes": weights_size,
            "sha256": backbone.sha256,
            "architecture": backbone.architecture.to_dict(),
            "single_frame_accuracy": backbone.frame_accuracy,
            "pretraining_samples": settings.pretrain.steps * settings.pretrain.batch_size,
        },
        "search": search,
        "settings": settings.to_dict(),
        "timings_seconds": timings,
    }
    if grounding is not None:
        results["grounding"] = grounding
    if step_time is not None:
        results["step_time"] = step_time
    if two is not None:
        results["domains"] = two
    # The latest run at the top of ``out``; each seed's own copy stays beside its runs.
    for folder in (seeded, out):
        (folder / "results.json").write_text(json.dumps(results, indent=2))
        (folder / "results.md").write_text(results_markdown(results))
    shutil.copyfile(seeded / "runs" / "recall_vs_params.png", out / "recall_vs_params.png")
    shutil.copyfile(seeded / "runs" / "recall_vs_cost.png", out / "recall_vs_cost.png")
    return results


def _report(out: Path, runs: Path, data, table: dict[str, Any], *, curve=None) -> dict[str, Any] | None:
    """``out/report/report.html``: the Cross-Modal Adapter against zero-shot, checked against ground truth
    (and the learning curve, when ``demo --curve`` has drawn one for this variant)."""
    if not {"cross-modal", ZERO_SHOT} <= set(table["methods"]):
        return None
    from .report import demo_report

    return demo_report(runs, out / "report", data, extra=[curve] if curve is not None else [])


def _curve_section(out: Path, variant: str):
    """The report's section of the learning curve in ``out``, if one was measured for this variant."""
    from .report import curve_section

    return curve_section(out, variant)


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
    if results.get("step_time"):
        gain += "\n" + step_time_line(results["step_time"]) + "\n"
    if results.get("domains"):
        from .domains import domains_markdown

        gain += "\n" + domains_markdown(results["domains"]) + "\n"
    machine = results["machine"]
    return (
        f"# cmadapter demo ({results['variant']}, seed {results['seed']})\n\n"
        "Synthetic MSR-VTT-layout data (coloured shapes appearing one after another), a tiny CLIP pretrained on "
        "single frames, the same data, budget and seed for every method.\n\n" + markdown_table(methods) + gain + "\n"
        f"Stages: {timings}.\n\n"
        f"Machine: {machine['cpu']} (bf16 path {machine['bf16_path']}, torch {machine['torch']} with "
        f"{machine['cpu_capability']} kernels); the exact figures depend on the CPU.\n"
    )
