"""Several adaptation methods trained and evaluated with the same data, budget and seed, side by side.

Each method runs as its own ``cmadapter train`` process (so peak memory is its own), in its own run
folder under the comparison folder; a run whose ``metrics.json`` exists for the same resolved config
is reused. ``zero-shot`` is the frozen backbone evaluated without training. The table (Markdown and
JSON) and two plots in the style of the paper's Figures 4 and 5 land in the comparison folder.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import RunConfig, load_config, save_config
from ..config_validation import validate_config
from ..datasets import get_dataset
from ..errors import CmadapterError
from .tables import ZERO_SHOT, format_eval, markdown_table, summary_line

log = logging.getLogger(__name__)


@dataclass
class MethodRun:
    label: str  # unique, used as the run folder name
    method: str  # a registered method, or "zero-shot"
    options: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # extra config overrides for this run


def expand_methods(names: Sequence[str]) -> list[str]:
    """``all`` stands for zero-shot and every registered method, in the registry's order."""
    from ..methods import METHODS

    expanded: list[str] = []
    for name in names:
        for item in [ZERO_SHOT, *METHODS] if name == "all" else [name]:
            if item not in expanded:
                expanded.append(item)
    return expanded


def plan_runs(
    methods: Sequence[str],
    sizes: dict[str, list[Any]] | None = None,
    base_options: dict[str, dict[str, Any]] | None = None,
) -> list[MethodRun]:
    """One run per method, or one per value of a size option (e.g. ``{"r": [4, 8, 16]}``) for the methods
    that have that option; methods without it run once with their defaults."""
    from ..methods import method_class

    runs: list[MethodRun] = []
    for name in expand_methods(methods):
        options = dict((base_options or {}).get(name, {}))
        if name == ZERO_SHOT:
            runs.append(MethodRun(ZERO_SHOT, ZERO_SHOT))
            continue
        fields = method_class(name).Options.__dataclass_fields__
        swept = {key: values for key, values in (sizes or {}).items() if key in fields}
        if not swept:
            runs.append(MethodRun(name, name, options))
            continue
        for key, values in swept.items():
            for value in values:
                runs.append(MethodRun(f"{name}_{key}{value}", name, {**options, key: value}))
    labels = [r.label for r in runs]
    if len(set(labels)) != len(labels):
        raise CmadapterError(f"the comparison lists a run twice: {labels}")
    return runs


def run_config(base: RunConfig, run: MethodRun, out_dir: Path) -> RunConfig:
    overrides = {
        "name": run.label,
        "output_dir": str(out_dir),
        "model.method": None if run.method == ZERO_SHOT else run.method,
        "model.method_options": run.options,
        **run.overrides,
    }
    data = base.to_dict()
    return load_config(None, _flatten(data) | overrides)


def execute(config: RunConfig, *, zero_shot: bool, quiet: bool = False) -> dict[str, Any]:
    """Run one method in its own process (reusing a finished run with the same config)."""
    run_dir = config.run_dir
    metrics_path = run_dir / "metrics.json"
    config_path = run_dir / "requested.yaml"
    if metrics_path.is_file() and config_path.is_file() and load_config(config_path) == config:
        log.info("reusing finished run %s", run_dir)
        return json.loads(metrics_path.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, config_path)
    command = [sys.executable, "-m", "cmadapter"]
    command += (
        ["eval", "--config", str(config_path), "--out", str(metrics_path)]
        if zero_shot
        else ["train", "--config", str(config_path)]
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(run_dir / "log.txt", "w") as logfile:
        result = subprocess.run(command, stdout=logfile, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        tail = (run_dir / "log.txt").read_text()[-2000:]
        raise CmadapterError(f"run {config.name} failed (exit {result.returncode}); end of its log:\n{tail}")
    results = json.loads(metrics_path.read_text())
    if not quiet:
        log.info(format_eval(results) if zero_shot else summary_line(results))
    return results


def compare(base: RunConfig, runs: Sequence[MethodRun], out_dir: str | Path, *, quiet: bool = False) -> dict[str, Any]:
    """Train/evaluate every run, then write ``comparison.json``, ``comparison.md`` and the two plots."""
    out_dir = Path(out_dir)
    configs = [run_config(base, run, out_dir) for run in runs]
    for run, config in zip(runs, configs):  # every run's config before the first one trains
        validate_config(config, purpose="eval" if run.method == ZERO_SHOT else "train")
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for run, config in zip(runs, configs):
        results[run.label] = summarise(run, execute(config, zero_shot=run.method == ZERO_SHOT, quiet=quiet))
    add_relative(results)
    # "image" for Flickr30K/MSCOCO: tables then read T2I/I2T and add rsum.
    table = {"media": get_dataset(base.data.dataset).media, "methods": results}
    (out_dir / "comparison.json").write_text(json.dumps(table, indent=2))
    (out_dir / "comparison.md").write_text(markdown_table(results, table["media"]))
    plot_recall_vs_params(results, out_dir / "recall_vs_params.png")
    plot_recall_vs_cost(results, out_dir / "recall_vs_cost.png")
    return table


def summarise(run: MethodRun, metrics: dict[str, Any]) -> dict[str, Any]:
    test = metrics.get("test")
    if test is None:
        raise CmadapterError(f"run {run.label} has no test metrics")
    efficiency = metrics.get("efficiency", {})
    keys = ("R1", "R5", "R10", "MdR", "MnR")
    return {
        "method": run.method,
        "options": run.options,
        "trainable_params": efficiency.get("trainable_params", 0),
        "total_params": efficiency.get("total_params"),
        "t2v": {k: test["t2v"][k] for k in keys},
        "v2t": {k: test["v2t"][k] for k in keys},
        "rsum": test.get("rsum"),
        "step_seconds": efficiency.get("step_seconds_median"),
        "train_seconds": efficiency.get("train_seconds", 0.0),
        "peak_memory_mb": efficiency.get("peak_memory_mb"),
    }


def add_relative(results: dict[str, dict[str, Any]]) -> None:
    full = next((r for r in results.values() if r["method"] == "full"), None)
    for row in results.values():
        trained = row["method"] != ZERO_SHOT
        row["time_vs_full"] = (
            row["step_seconds"] / full["step_seconds"] if full and trained and full["step_seconds"] else None
        )
        row["memory_vs_full"] = (
            row["peak_memory_mb"] / full["peak_memory_mb"] if full and trained and full["peak_memory_mb"] else None
        )


def _style(method: str) -> dict[str, Any]:
    styles = {
        "cross-modal": {"color": "tab:red", "marker": "*", "markersize": 14},
        "uni-modal": {"color": "tab:orange", "marker": "s"},
        "full": {"color": "tab:gray", "marker": "P", "markersize": 10},
        "partial": {"color": "silver", "marker": "P"},
        "projection": {"color": "tab:brown", "marker": "D"},
        "lora": {"color": "tab:purple", "marker": "^"},
        "adaptformer": {"color": "tab:pink", "marker": "v"},
        "coop": {"color": "tab:green", "marker": "o"},
        "vpt": {"color": "coral", "marker": "o"},
        "vl-prompt": {"color": "deepskyblue", "marker": "o"},
        "maple": {"color": "navy", "marker": "o"},
        "adapter-attn": {"color": "gold", "marker": "s"},
    }
    return {"color": "tab:blue", "marker": "o", "markersize": 8} | styles.get(method, {})


def _by_method(results: dict[str, dict[str, Any]]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for label, row in results.items():
        groups.setdefault(row["method"], []).append((label, row))
    return groups


def _label_values(ax, points: list[tuple[float, float]]) -> None:
    """Write each point's R@1 beside it, moving a label to another corner where it would cover one
    already written (two methods with equal recall and similar size would otherwise print "48.348.3")."""
    ax.autoscale_view()
    scale = ax.figure.dpi / 72  # display pixels per typographic point
    placed: list[tuple[float, float]] = []  # label origins, in points
    width, height = 24, 9  # a label such as "48.3" at fontsize 8, in points
    for x, y in points:
        px, py = (value / scale for value in ax.transData.transform((x, y)))
        for dx, dy in ((6, 4), (6, -12), (-30, 4), (-30, -12), (6, 14), (6, -22)):
            origin = (px + dx, py + dy)
            if all(abs(origin[0] - ox) >= width or abs(origin[1] - oy) >= height for ox, oy in placed):
                break
        placed.append(origin)
        ax.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=8)


def _legend_below(fig, ax) -> None:
    """One legend for both panels, below them: the figure grows by the legend's rows, so a long list of
    methods (``--methods all``: three rows) never covers the axis labels."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        fig.tight_layout()
        return
    ncol = min(len(labels), 6)
    rows = -(-len(labels) // ncol)
    row_inches = 0.3  # one legend row at the default font size
    fig.set_figheight(fig.get_figheight() + rows * row_inches)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, frameon=False)
    fig.tight_layout(rect=(0, (rows * row_inches + 0.1) / fig.get_figheight(), 1, 1))


def plot_recall_vs_params(results: dict[str, dict[str, Any]], path: Path) -> None:
    """R@1 against trainable parameters on a log axis, both directions (the paper's Figure 4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, direction, title in ((axes[0], "t2v", "text→video"), (axes[1], "v2t", "video→text")):
        labels: list[tuple[float, float]] = []
        for method, rows in _by_method(results).items():
            if method == ZERO_SHOT:
                ax.axhline(rows[0][1][direction]["R1"], color="black", linestyle="--", linewidth=1, label="zero-shot")
                continue
            rows = sorted(rows, key=lambda item: item[1]["trainable_params"])
            xs = [max(r["trainable_params"], 1) / 1e6 for _, r in rows]
            ys = [r[direction]["R1"] for _, r in rows]
            ax.plot(xs, ys, linestyle="-", label=method, **_style(method))
            labels.extend(zip(xs, ys))
        ax.set_xscale("log")
        ax.margins(x=0.12)  # room for the rightmost point's label
        _label_values(ax, labels)
        ax.set_xlabel("trainable parameters (M, log scale)")
        ax.set_ylabel("R@1 (%)")
        ax.set_title(f"{title} R@1")
        ax.grid(True, alpha=0.3)
    _legend_below(fig, axes[0])
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_recall_vs_cost(results: dict[str, dict[str, Any]], path: Path) -> None:
    """Text→video R@1 against training time and peak memory relative to full fine-tuning (Figure 5)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = (
        (axes[0], "time_vs_full", "relative training time (step time ÷ full)"),
        (axes[1], "memory_vs_full", "relative peak memory (÷ full)"),
    )
    any_point = False
    for ax, key, xlabel in panels:
        for method, rows in _by_method(results).items():
            points = sorted((r[key], r["t2v"]["R1"]) for _, r in rows if r.get(key) is not None)
            if not points:
                continue
            any_point = True
            ax.plot(*zip(*points), linestyle="-", label=method, **_style(method))
        ax.axvline(1.0, color="gray", linewidth=0.8, alpha=0.6)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("text→video R@1 (%)")
        ax.grid(True, alpha=0.3)
    if not any_point:
        axes[0].text(0.5, 0.5, "add 'full' to the methods\nfor relative cost", ha="center", transform=axes[0].transAxes)
    _legend_below(fig, axes[0])
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict) and key in ("model", "data", "optim", "train", "eval") and not prefix:
            flat |= _flatten(value, f"{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat
