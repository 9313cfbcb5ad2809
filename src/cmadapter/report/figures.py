"""The retrieval-example pictures in the style of the paper's Fig. 5b: rank-1 results, green when correct,
red when not, with the head's frame weights drawn under each strip of frames.

Every drawing function returns the panels it drew with their borders' pixel boxes in the saved PNG, so
a test can read the picture's pixels back and check them against the ranks.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..video.preprocess import CLIP_MEAN, CLIP_STD
from .examples import Scored

CORRECT = "#12a312"
WRONG = "#d61a1a"
NEUTRAL = "#666666"
DPI = 100  # figures are saved at their own dpi, so a panel's pixel box is where it lands in the PNG
BORDER = 5.0  # points
GAP = 2  # pixels between frames of a strip


@dataclass(frozen=True)
class Panel:
    """One drawn result: which query, which model, correct or not, and its border's box in the PNG."""

    direction: str  # "t2v" or "v2t"
    query: int  # caption index (t2v) or video index (v2t)
    model: str
    shown: int  # the video (t2v) or caption (v2t) shown at rank 1
    correct: bool
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in PNG pixels, origin top-left


@dataclass(frozen=True)
class ExampleClips:
    """What the pictures show of each video: display frames [T, H, W, 3] uint8 and the valid-frame mask."""

    frames: dict[int, np.ndarray]
    masks: dict[int, np.ndarray]


def display_frames(frames: torch.Tensor) -> np.ndarray:
    """Model input frames [T, 3, H, W] (CLIP-normalised) back to uint8 [T, H, W, 3] for display."""
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    pixels = (frames.float().cpu() * std + mean).clamp(0, 1) * 255
    return pixels.round().byte().permute(0, 2, 3, 1).numpy()


def strip(frames: np.ndarray, mask: np.ndarray, gap: int = 2) -> np.ndarray:  # gap: GAP in the figures
    """Valid frames side by side, white gaps between them."""
    valid = [f for f, keep in zip(frames, mask) if keep]
    height, width = valid[0].shape[:2]
    out = np.full((height, len(valid) * (width + gap) - gap, 3), 255, dtype=np.uint8)
    for i, frame in enumerate(valid):
        out[:, i * (width + gap) : i * (width + gap) + width] = frame
    return out


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _frame_box(ax, colour: str) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color(colour)
        spine.set_linewidth(BORDER)


def _pixel_box(fig, ax) -> tuple[int, int, int, int]:
    box = ax.get_window_extent()
    height = fig.bbox.height
    return (round(box.x0), round(height - box.y1), round(box.x1), round(height - box.y0))


def _weights(ax, weights: np.ndarray, frame_width: int, colours: Sequence[str] = ("#3465a4",)) -> None:
    """Bars, one group per frame, each under its frame of the strip (``_save`` aligns the axes with the
    strip's); each model's weights sum to 1 over the valid frames."""
    weights = np.atleast_2d(weights)
    count, frames = weights.shape
    width = 0.8 / count
    for k, row in enumerate(weights):
        xs = np.arange(frames) + (k - (count - 1) / 2) * width
        ax.bar(xs, row, width=width, color=colours[k % len(colours)])
    # One unit a frame plus its gap; the strip's outer edges are half a frame from the first/last centres.
    half = frame_width / (2 * (frame_width + GAP))
    ax.set_xlim(-half, frames - 1 + half)
    ax.set_ylim(0, 1)
    ax.set_xticks(range(frames))
    ax.set_xticklabels([f"f{i + 1}" for i in range(frames)], fontsize=6)
    ax.tick_params(axis="y", labelsize=6)
    ax.set_yticks([0, 0.5, 1])


def _wrap(text: str, width: int = 34) -> str:
    return "\n".join(textwrap.wrap(text, width)) or "(empty)"


def draw_text_to_video(
    path: Path,
    captions: Sequence[str],
    queries: Sequence[int],
    models: Sequence[Scored],
    clips: ExampleClips,
    weights: Sequence[dict[tuple[int, int], np.ndarray]],
) -> list[Panel]:
    """One row per query caption: the caption, then each model's rank-1 video as a strip of frames with a
    green (correct) or red (wrong) border and that model's frame weights for the caption underneath.
    ``weights[k][(caption, video)]`` holds model k's weights over the video's valid frames."""
    plt = _plt()
    rows = len(queries)
    height = 2.3 * rows + 0.9
    fig = plt.figure(figsize=(2.6 + 4.2 * len(models), height), dpi=DPI)
    grid = fig.add_gridspec(
        2 * rows,
        1 + len(models),
        height_ratios=[3, 1] * rows,
        width_ratios=[2.2] + [4] * len(models),
        hspace=0.7,
        top=1 - 0.75 / height,
        bottom=0.3 / height,
    )
    panels, aligned = [], []
    for r, caption in enumerate(queries):
        text_ax = fig.add_subplot(grid[2 * r : 2 * r + 2, 0])
        text_ax.axis("off")
        text_ax.text(0, 0.5, f"“{_wrap(captions[caption], 28)}”", va="center", fontsize=9)
        for k, model in enumerate(models):
            shown = model.top_video(caption)
            correct = int(model.t2v_ranks[caption]) == 1
            ax = fig.add_subplot(grid[2 * r, 1 + k])
            ax.imshow(strip(clips.frames[shown], clips.masks[shown], GAP))
            _frame_box(ax, CORRECT if correct else WRONG)
            rank = int(model.t2v_ranks[caption])
            note = "correct" if correct else f"wrong (right video at rank {rank})"
            ax.set_title(f"{model.label}: {note}", fontsize=8)
            bars = fig.add_subplot(grid[2 * r + 1, 1 + k])
            _weights(bars, weights[k][(caption, shown)], clips.frames[shown].shape[2])
            aligned.append((ax, bars))
            panels.append((("t2v", caption, model.label, shown, correct), ax))
    fig.suptitle("text → video: rank-1 video of each model (frame weights of the head below each strip)", fontsize=10)
    return _save(fig, path, panels, aligned)


def draw_video_to_text(
    path: Path,
    captions: Sequence[str],
    queries: Sequence[int],
    models: Sequence[Scored],
    clips: ExampleClips,
    weights: Sequence[dict[tuple[int, int], np.ndarray]],
) -> list[Panel]:
    """One row per query video: its frames (each model's weights for its own rank-1 caption underneath),
    then each model's rank-1 caption in a green or red box."""
    plt = _plt()
    rows = len(queries)
    height = 2.3 * rows + 0.9
    fig = plt.figure(figsize=(4.2 + 3.4 * len(models), height), dpi=DPI)
    grid = fig.add_gridspec(
        2 * rows,
        1 + len(models),
        height_ratios=[3, 1] * rows,
        hspace=0.7,
        wspace=0.15,
        top=1 - 0.85 / height,
        bottom=0.3 / height,
    )
    palette = ("#3465a4", "#f5a623", "#7b4ea3")
    panels, aligned = [], []
    for r, video in enumerate(queries):
        ax = fig.add_subplot(grid[2 * r, 0])
        ax.imshow(strip(clips.frames[video], clips.masks[video], GAP))
        _frame_box(ax, NEUTRAL)
        ax.set_title("query video", fontsize=8)
        shown = [model.top_caption(video) for model in models]
        heights = np.stack([weights[k][(shown[k], video)] for k in range(len(models))])
        bars = fig.add_subplot(grid[2 * r + 1, 0])
        _weights(bars, heights, clips.frames[video].shape[2], palette)
        aligned.append((ax, bars))
        for k, model in enumerate(models):
            correct = int(model.v2t_ranks[video]) == 1
            box_ax = fig.add_subplot(grid[2 * r : 2 * r + 2, 1 + k])
            box_ax.text(0.05, 0.5, f"“{_wrap(captions[shown[k]], 30)}”", va="center", fontsize=8)
            _frame_box(box_ax, CORRECT if correct else WRONG)
            rank = int(model.v2t_ranks[video])
            box_ax.set_title(f"{model.label}: {'correct' if correct else f'wrong (rank {rank})'}", fontsize=8)
            panels.append((("v2t", video, model.label, shown[k], correct), box_ax))
    key = ", ".join(f"{m.label} {name}" for m, name in zip(models, ("blue", "orange", "purple")))
    fig.suptitle(
        f"video → text: rank-1 caption of each model\n(bars: the head's frame weights for it; {key})", fontsize=10
    )
    return _save(fig, path, panels, aligned)


def _save(fig, path: Path, drawn: list[tuple[tuple, object]], aligned: list[tuple[object, object]]) -> list[Panel]:
    """Lay out, put each bar chart exactly under its strip, read each panel's final pixel box, save at the
    figure's own dpi (no tight cropping, which would move the boxes)."""
    plt = _plt()
    fig.canvas.draw()
    for image, bars in aligned:
        image.apply_aspect()  # the strip's axes shrink to the image's aspect: take its final width
        left, width = image.get_position().x0, image.get_position().width
        below = bars.get_position()
        bars.set_position([left, below.y0, width, below.height])
    fig.canvas.draw()
    panels = [Panel(*fields, _pixel_box(fig, ax)) for fields, ax in drawn]
    fig.savefig(path, dpi=fig.dpi)
    plt.close(fig)
    return panels
