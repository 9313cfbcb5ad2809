"""The demo's report: the Cross-Modal Adapter against zero-shot, with its heatmaps and frame weights checked
against where the synthetic objects really are (``grounding``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..evaluation.run import build_run_model
from ..report.build import ReportOptions, write_report
from ..report.page import Section
from ..report.runs import read_run
from ..training.data import build_eval_data
from .grounding import grounding_scores
from .synthetic import SyntheticDataset

log = logging.getLogger(__name__)


def grounding_for_run(run_dir: Path, dataset: SyntheticDataset, *, zero_shot: bool = False) -> dict[str, Any]:
    """The grounding figures of a run's model (or of its frozen backbone) on the synthetic test split."""
    run = read_run(run_dir)
    adapter = None if zero_shot or run.adapter is None else str(run.adapter)
    model, _ = build_run_model(run.config, adapter)
    data = build_eval_data(run.config, model, run.config.data.test_split)
    return grounding_scores(model, data, dataset.split("test"), dataset.config)


def demo_report(
    runs: Path, out: Path, dataset: SyntheticDataset, method: str = "cross-modal", extra: Sequence[Section] = ()
) -> dict[str, Any]:
    """Write ``out/report.html`` for ``runs/<method>`` against zero-shot, with ``extra`` sections after the
    ground-truth check; returns the grounding figures."""
    scores = {
        method: grounding_for_run(runs / method, dataset),
        "zero-shot": grounding_for_run(runs / method, dataset, zero_shot=True),
    }
    header = ["model", "corner peak: top left", "top right", "bottom left", "bottom right", "lowest mass contrast"]
    header += ["gain on its own object", "box ratio", "mask ratio", "all-zero maps"]
    header += ["weight: named frame", "weight: other frames", "named frame on top"]

    def row(name: str, s: dict[str, Any], weights: bool = True) -> list[Any]:
        cells = [name, *s["corner_peak_hits"], min(s["corner_mass_contrast"].values())]
        # Rounded: a fixed map's gain is 0 up to float noise (4e-16), which the table would print as such.
        cells += [round(s["heatmap_mask_ratio_own_vs_others"], 3), s["heatmap_box_ratio"], s["heatmap_mask_ratio"]]
        cells.append(f"{s['heatmap_empty_frames']} of {s['heatmap_frames']}")
        keys = ("frame_weight_named", "frame_weight_others", "frame_weight_named_is_top")
        return cells + [s[k] if weights else None for k in keys]

    rows = [row(name, s) for name, s in scores.items()]
    rows += [row(name, s, weights=False) for name, s in next(iter(scores.values()))["references"].items()]
    some = next(iter(scores.values()))
    references = some["references"]
    section = Section(
        "Checked against ground truth",
        [
            f"Corners: {some['corner_frames']} stills drawn for the check, each with one object inside one quarter "
            "of the frame, captioned with its name. Per quarter, the share of stills whose heatmap peaks in that "
            f"quarter (chance {some['corner_chance']:.2f}); mass contrast: the map's mass in the object's quarter "
            "minus its mass in the neighbouring quarter across, the one above or below, and the opposite one, the "
            "lowest of the three. A map that ignores the image scores about 0; a correct map transposed, flipped "
            "or rotated by 90° misses whole quarters and turns a contrast negative.",
            "Box ratio: the share of a test frame's heatmap inside the box of the object it shows (named in the "
            "video's caption), divided by the box's share of the frame, over every test frame; mask ratio: the "
            "same weighted by the shape's own pixels. A uniform map scores 1.0; an all-zero map counts as uniform. "
            "The demo's objects are large and near the middle: the fixed centre block (the middle half of the "
            "patch grid, the same map for every frame) scores a box ratio of "
            f"{references['fixed centre block']['heatmap_box_ratio']:.2f} and the perfect map (the object's mask "
            f"per patch) {references['perfect map']['heatmap_box_ratio']:.2f}: these ratios cannot tell centre "
            "bias from grounding. Gain on its own object: a map's mask ratio on its own frame's object minus that "
            "on other videos' objects; 0 for any map that ignores the image.",
            "Frame weights: for a caption naming one object of a video (\u201ca red square\u201d), the head's "
            f"weight on the frame showing it against the other frames (chance {some['frame_weight_chance']:.2f}), "
            "averaged over every (video, object) pair of the test split.",
        ],
        table=(header, rows),
    )
    write_report(runs / method, out, ReportOptions(baseline="zero-shot"), extra_sections=[section, *extra])
    log.info("grounding: %s", scores)
    return scores


def curve_section(out: Path, variant: str):
    """The demo report's section for the curve in ``out`` (None when none was measured for ``variant``)."""
    path = out / "curve.json"
    if not path.is_file() or not (out / "curve.png").is_file():
        return None
    results = json.loads(path.read_text())
    if results.get("variant") != variant:
        return None
    summary = results["summary"]
    header = ["training videos", "method", "test R@1", "min", "max", "train R@1", "gap (train − test)", "min", "max"]
    rows = []
    for size in next(iter(summary.values())):
        for method, by_size in summary.items():
            s = by_size[size]
            test, train, gap = s["test_R1"], s["train_R1"], s["gap"]
            rows.append(
                [
                    int(size),
                    method,
                    test["mean"],
                    test["min"],
                    test["max"],
                    train["mean"],
                    gap["mean"],
                    gap["min"],
                    gap["max"],
                ]
            )
    curve = results["curve"]
    return Section(
        "Learning curve: R@1 against the number of training videos",
        [
            f"From `cmadapter demo --curve` ({len(results['runs'])} seeds: {', '.join(results['runs'])}): the demo's "
            f"backbone of each seed, fine-tuned on the first N training videos for {curve['steps']} steps of "
            f"{curve['batch_size']} videos whatever N. Train R@1 ranks the training captions among "
            f"{curve['gallery']} training videos (those beyond N unseen), test R@1 the test captions among the test "
            "videos; the gap between them is the overfitting. Mean over the seeds, band: min–max.",
        ],
        table=(header, rows),
        image=out / "curve.png",
        alt="test and train R@1 against training videos, and the gap",
    )
