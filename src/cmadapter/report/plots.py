"""Patch heatmaps over frames (the paper's Fig. 6 style) and training curves from a run's step log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .figures import DPI, _plt, _wrap


def upsample(heatmap: torch.Tensor, size: int) -> np.ndarray:
    """A [g, g] map scaled to [size, size] pixels (bilinear, for display), then to [0, 1] by its maximum."""
    image = F.interpolate(heatmap[None, None].float(), size=(size, size), mode="bilinear", align_corners=False)[0, 0]
    peak = float(image.max())
    return (image / peak if peak > 0 else image).numpy()


@dataclass(frozen=True)
class HeatmapPanel:
    """One frame with one model's heatmap over it, and where the frame lies in the saved PNG."""

    example: int  # index into the rows drawn
    model: str
    frame: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in PNG pixels, origin top-left: the frame's own pixels


def draw_heatmaps(
    path: Path,
    rows: Sequence[dict[str, Any]],
) -> list[HeatmapPanel]:
    """One block per example: the caption, its video's frames, then each model's heatmap overlaid on every
    frame with that model's frame weight in the corner. ``rows``: dicts with ``caption``, ``frames``
    (uint8 [T, H, W, 3], valid frames only) and ``models``: a list of (label, maps [T, g, g], weights [T]).
    Returns every overlaid frame's box in the PNG, so a test can read back what was drawn where."""
    plt = _plt()
    drawn = []
    frames_max = max(len(r["frames"]) for r in rows)
    lines = sum(1 + len(r["models"]) for r in rows)
    fig, axes = plt.subplots(lines, frames_max + 1, figsize=(2.6 + 1.3 * frames_max, 1.35 * lines + 0.6), dpi=DPI)
    axes = np.atleast_2d(axes)
    line = 0
    size_of = [r["frames"].shape[1] for r in rows]
    for example, row in enumerate(rows):
        frames = row["frames"]
        size = frames.shape[1]
        labels = [("frames", None, None), *row["models"]]
        for label, maps, weights in labels:
            head = axes[line, 0]
            head.axis("off")
            text = f"“{_wrap(row['caption'], 26)}”" if maps is None else label
            head.text(0, 0.5, text, va="center", fontsize=7 if maps is None else 8)
            for f in range(frames_max):
                ax = axes[line, f + 1]
                ax.axis("off")
                if f >= len(frames):
                    continue
                ax.imshow(frames[f])
                if maps is not None:
                    ax.imshow(upsample(maps[f], size), cmap="jet", alpha=0.5, vmin=0, vmax=1)
                    ax.text(1, 1, f"w={weights[f]:.2f}", color="white", fontsize=7, va="top", backgroundcolor="black")
                    drawn.append((example, label, f, ax))
            line += 1
    fig.suptitle("Which patches drive the caption–video score\n(gradient × input, last vision block; w: frame weight)")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.canvas.draw()  # the image axes take their final, aspect-kept boxes
    height = fig.bbox.height
    panels = []
    for example, label, f, ax in drawn:
        # The frame's pixels: the image's data limits (-0.5 .. size - 0.5) through the axes' transform.
        (x0, y0), (x1, y1) = ax.transData.transform([(-0.5, -0.5), (size_of[example] - 0.5, size_of[example] - 0.5)])
        box = (round(min(x0, x1)), round(height - max(y0, y1)), round(max(x0, x1)), round(height - min(y0, y1)))
        panels.append(HeatmapPanel(example, label, f, box))
    fig.savefig(path, dpi=fig.dpi)
    plt.close(fig)
    return panels


def draw_curves(path: Path, runs: Sequence[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]]) -> bool:
    """Loss and learning rate per logged step, and validation text→video R@1 per epoch where a run has a
    validation split. ``runs``: (label, step records, validation entries). False when no run logged steps."""
    runs = [r for r in runs if r[1]]
    if not runs:
        return False
    plt = _plt()
    with_validation = any(r[2] for r in runs)
    panels = 3 if with_validation else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 3.4), dpi=DPI)
    for label, steps, validation in runs:
        x = [s["global_step"] for s in steps]
        axes[0].plot(x, [s["loss"] for s in steps], label=label)
        axes[1].plot(x, [s["lr"] for s in steps], label=label)
        if with_validation and validation:
            axes[2].plot([v["epoch"] for v in validation], [v["t2v"]["R1"] for v in validation], "o-", label=label)
    axes[0].set(title="training loss", xlabel="step", ylabel="symmetric InfoNCE")
    axes[1].set(title="learning rate", xlabel="step", ylabel="lr")
    axes[1].ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if with_validation:
        axes[2].set(title="validation text→video R@1", xlabel="epoch", ylabel="R@1 (%)")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True
