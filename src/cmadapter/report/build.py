"""``write_report``: a run (and a baseline) re-scored on its test split, drawn, and written as one page.

Out folder (default ``RUN_DIR/report``): ``report.html`` (self-contained), ``report.json`` (the numbers, the
chosen examples and what each model ranked first), ``curves.png``, ``examples_t2v.png``,
``examples_v2t.png``, ``heatmaps.png``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CmadapterError
from ..evaluation.run import build_run_model
from ..training.data import build_eval_data
from ..training.distributed import resolve_device
from .examples import Scored, choose, score_split
from .figures import ExampleClips, display_frames, draw_text_to_video, draw_video_to_text
from .page import Section, write_page
from .plots import draw_curves, draw_heatmaps
from .runs import ZERO_SHOT, RunFolder, read_run
from .saliency import frame_weights, patch_heatmaps

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportOptions:
    baseline: str | None = ZERO_SHOT  # "zero-shot", another run folder, or None
    examples: int = 6  # per direction
    heatmaps: int = 3  # of the text→video examples, with their own video
    seed: int = 0
    split: str | None = None  # default: the run's test split
    device: str = "auto"


@dataclass
class Contender:
    """A model under report: its run folder (None for a zero-shot baseline built here), model and scores."""

    folder: RunFolder | None
    model: Any
    scored: Scored


def write_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    options: ReportOptions = ReportOptions(),
    extra_sections: Sequence[Section] = (),
) -> dict[str, Any]:
    """Write the report of ``run_dir``; returns what ``report.json`` holds plus the drawn panels."""
    if options.examples < 1 or options.heatmaps < 0:
        raise CmadapterError(f"--examples must be at least 1 (got {options.examples}); heatmaps at least 0")
    run = read_run(run_dir)
    out = Path(out) if out is not None else run.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(options.device, 0)
    split = options.split or run.config.data.test_split
    if split is None:
        raise CmadapterError(f"{run.path}: the run has no test split (data.test_split is null): give --split")
    model, _ = build_run_model(run.config, str(run.adapter) if run.adapter else None, device=device)
    data = build_eval_data(run.config, model, split)
    contenders = [Contender(run, model, score_split(model, data, run.label, v2t=run.config.eval.v2t))]
    if options.baseline is not None:
        contenders.append(_baseline(options.baseline, run, data, split, device))
    scored = [c.scored for c in contenders]
    base = scored[1] if len(scored) > 1 else None

    t2v = choose(_hits(scored[0], "t2v"), _hits(base, "t2v"), min(options.examples, len(data.captions)), options.seed)
    v2t = choose(_hits(scored[0], "v2t"), _hits(base, "v2t"), min(options.examples, len(data.video_ids)), options.seed)
    pairs = {(c, s.top_video(c)) for c in t2v for s in scored} | {(s.top_caption(v), v) for v in v2t for s in scored}
    pairs |= {(c, int(data.caption_video[c])) for c in t2v[: options.heatmaps]}
    weights = [_pair_weights(c, pairs) for c in contenders]
    videos = {v for _, v in pairs}
    clips = _clips(data, videos)

    panels = draw_text_to_video(out / "examples_t2v.png", data.captions, t2v, scored, clips, weights)
    panels += draw_video_to_text(out / "examples_v2t.png", data.captions, v2t, scored, clips, weights)
    heat_rows = []
    for caption in t2v[: options.heatmaps]:
        video = int(data.caption_video[caption])
        frames, mask, _ = data.clips[video]
        models = []
        for c, w in zip(contenders, weights):
            maps = patch_heatmaps(c.model, [data.captions[caption]], frames[None], mask[None])[0][mask]
            models.append((c.scored.label, maps, w[(caption, video)]))
        heat_rows.append(
            {"caption": data.captions[caption], "frames": clips.frames[video][mask.numpy()], "models": models}
        )
    if heat_rows:
        draw_heatmaps(out / "heatmaps.png", heat_rows)
    curves = draw_curves(
        out / "curves.png", [(c.scored.label, c.folder.steps, c.folder.validation) for c in contenders if c.folder]
    )

    summary = {
        "run": str(run.path),
        "split": data.name,
        "models": [_numbers(c) for c in contenders],
        "t2v_examples": [_t2v_entry(data, scored, c) for c in t2v],
        "v2t_examples": [_v2t_entry(data, scored, v) for v in v2t],
    }
    (out / "report.json").write_text(json.dumps(summary, indent=2))
    sections = _sections(summary, out, curves=curves, heatmaps=bool(heat_rows)) + list(extra_sections)
    write_page(out / "report.html", f"cmadapter report: {run.path.name}", sections)
    log.info("report written to %s", out / "report.html")
    return {**summary, "panels": panels, "html": out / "report.html"}


def _hits(scored: Scored | None, direction: str) -> np.ndarray | None:
    """Which queries a model ranks right (rank 1 in the metrics)."""
    return None if scored is None else getattr(scored, f"{direction}_ranks").numpy() == 1


def _baseline(baseline: str, run: RunFolder, data, split: str, device) -> Contender:
    if baseline == ZERO_SHOT:
        model, _ = build_run_model(run.config, None, device=device)
        return Contender(None, model, score_split(model, data, ZERO_SHOT, v2t=run.config.eval.v2t))
    folder = read_run(baseline)
    model, _ = build_run_model(folder.config, str(folder.adapter) if folder.adapter else None, device=device)
    other = build_eval_data(folder.config, model, split)
    if other.video_ids != data.video_ids or other.captions != data.captions:
        raise CmadapterError(f"baseline {baseline} is evaluated on other data than {run.path} ({other.name})")
    return Contender(folder, model, score_split(model, other, folder.label, v2t=run.config.eval.v2t))


def _pair_weights(contender: Contender, pairs) -> dict[tuple[int, int], np.ndarray]:
    s = contender.scored
    out = {}
    for caption, video in pairs:
        w = frame_weights(
            contender.model, s.text[caption : caption + 1], s.video[video : video + 1], s.mask[video : video + 1]
        )
        out[(caption, video)] = w[0, 0][s.mask[video]].numpy()
    return out


def _clips(data, videos) -> ExampleClips:
    frames, masks = {}, {}
    for v in sorted(videos):
        clip, mask, _ = data.clips[v]
        frames[v], masks[v] = display_frames(clip), mask.numpy()
    return ExampleClips(frames, masks)


def _numbers(c: Contender) -> dict[str, Any]:
    efficiency = ((c.folder.metrics or {}) if c.folder else {}).get("efficiency", {})
    counts = c.model.num_parameters()
    return {
        "label": c.scored.label,
        "metrics": c.scored.metrics(),
        "trainable_params": counts["trainable_params"],
        "total_params": counts["total_params"],
        "train_seconds": efficiency.get("train_seconds"),
        "step_seconds": efficiency.get("step_seconds_median"),
        "peak_memory_mb": efficiency.get("peak_memory_mb"),
    }


def _t2v_entry(data, scored: list[Scored], caption: int) -> dict[str, Any]:
    return {
        "caption": data.captions[caption],
        "video": data.video_ids[int(data.caption_video[caption])],
        "ranked_first": {
            s.label: {"video": data.video_ids[s.top_video(caption)], "rank": int(s.t2v_ranks[caption])} for s in scored
        },
    }


def _v2t_entry(data, scored: list[Scored], video: int) -> dict[str, Any]:
    return {
        "video": data.video_ids[video],
        "ranked_first": {
            s.label: {"caption": data.captions[s.top_caption(video)], "rank": int(s.v2t_ranks[video])} for s in scored
        },
    }


def _sections(summary: dict[str, Any], out: Path, *, curves: bool, heatmaps: bool) -> list[Section]:
    header = ["model", "trainable", "total", "T2V R@1", "R@5", "R@10", "MdR", "MnR"]
    header += ["V2T R@1", "R@5", "R@10", "MdR", "MnR", "train s", "s/step", "peak MB"]
    rows = []
    for m in summary["models"]:
        t, v = m["metrics"]["t2v"], m["metrics"]["v2t"]
        keys = ("R1", "R5", "R10", "MdR", "MnR")
        rows.append([m["label"], m["trainable_params"], m["total_params"], *(float(t[k]) for k in keys)]
                    + [float(v[k]) for k in keys] + [m["train_seconds"], m["step_seconds"], m["peak_memory_mb"]])  # fmt: skip
    sections = [
        Section(
            f"Numbers ({summary['split']})",
            [
                "Recomputed from the models on the split (ties count against the model, as in `cmadapter eval`); "
                "time and memory come from each run's metrics.json."
            ],
            table=(header, rows),
        )
    ]
    if curves:
        sections.append(
            Section(
                "Training curves",
                ["From metrics.jsonl (logged steps) and validation in metrics.json."],
                image=out / "curves.png",
            )
        )
    sections.append(Section("Retrieval examples: text → video", [_EXAMPLES], image=out / "examples_t2v.png"))
    sections.append(Section("Retrieval examples: video → text", [_EXAMPLES], image=out / "examples_v2t.png"))
    if heatmaps:
        sections.append(Section("Patch heatmaps", [_HEATMAPS], image=out / "heatmaps.png"))
    return sections


_EXAMPLES = (
    "Green: the model ranks the right item first (rank 1 in the metrics); red: it does not, and the item shown "
    "is its best-scoring wrong one. Queries are a seeded choice: half the run gets right and the baseline "
    "wrong, half both miss (filled from the other cases when too few). Bars: the text-conditioned head's "
    "softmax weights over the frames (which moments matched the caption); a meanP head weighs frames equally."
)
_HEATMAPS = (
    "Gradient x input on the patch tokens entering the image tower's last block: each token's channels times "
    "the caption–video logit's gradient, summed, negative evidence cut. It shows which patches push this "
    "caption's score up through the class token's last attention, one value a patch, each frame scaled to "
    "its own maximum (w: the frame's weight in the head). It does not show causal attention: earlier blocks "
    "already mix patches into every token."
)
