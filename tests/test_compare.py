"""`cmadapter compare`: planning the runs, one table and two plots, finished runs reused."""

import json

import pytest

from annotation_files import tiny_msrvtt_run
from cmadapter.cli import main
from cmadapter.errors import CmadapterError
from cmadapter.evaluation.compare import ZERO_SHOT, expand_methods, plan_runs
from cmadapter.methods import METHODS


def test_all_means_zero_shot_and_every_method_once():
    assert expand_methods(["all"]) == [ZERO_SHOT, *METHODS]
    assert expand_methods(["full", "all"])[0] == "full" and len(expand_methods(["full", "all"])) == len(METHODS) + 1


def test_a_size_sweep_applies_where_the_method_has_the_option():
    runs = plan_runs(["cross-modal", "projection"], {"r": [4, 16]}, {"cross-modal": {"shared_dim": 2}})
    assert [(r.label, r.options) for r in runs] == [
        ("cross-modal_r4", {"shared_dim": 2, "r": 4}),
        ("cross-modal_r16", {"shared_dim": 2, "r": 16}),
        ("projection", {}),
    ]
    with pytest.raises(CmadapterError, match="twice"):
        plan_runs(["cross-modal"], {"r": [4, 4]})


@pytest.mark.slow
def test_compare_writes_the_table_and_plots_and_reuses_finished_runs(tmp_path, tiny_weights, capsys):
    config, _ = tiny_msrvtt_run(tmp_path, tiny_weights)
    out = tmp_path / "comparison"
    argv = ["compare", "--config", str(config), "--methods", "zero-shot,projection,full", "--out", str(out)]
    argv += ["train.max_steps=2"]
    assert main(argv) == 0
    table = json.loads((out / "comparison.json").read_text())["methods"]
    assert list(table) == ["zero-shot", "projection", "full"]
    assert table["zero-shot"]["trainable_params"] == 0
    assert 0 < table["projection"]["trainable_params"] < table["full"]["trainable_params"]
    assert table["full"]["time_vs_full"] == 1.0
    markdown = (out / "comparison.md").read_text()
    assert all(name in markdown for name in table)
    for plot in ("recall_vs_params.png", "recall_vs_cost.png"):
        assert (out / plot).stat().st_size > 10_000
    capsys.readouterr()

    logs = {name: (out / name / "log.txt").stat().st_mtime_ns for name in ("projection", "full")}
    assert main(argv) == 0  # same configs: nothing runs again
    assert {name: (out / name / "log.txt").stat().st_mtime_ns for name in logs} == logs
    assert main([*argv[:-1], "train.max_steps=1"]) == 0  # a changed budget reruns the trained methods
    assert all((out / name / "log.txt").stat().st_mtime_ns != logs[name] for name in logs)
    assert json.loads((out / "full" / "metrics.json").read_text())["global_step"] == 1


@pytest.mark.parametrize("count", [3, 13])
def test_the_plots_legend_never_covers_the_axis_labels(count):
    """`--methods all` makes a three-row legend; it once sat over both x-axis labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cmadapter.evaluation.compare import _legend_below

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax in axes:
        for i in range(count):
            ax.plot([1, 2], [i, i + 1], marker="o", label=f"method number {i}")
        ax.set_xlabel("trainable parameters (M, log scale)")
    _legend_below(fig, axes[0])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    for ax in axes:
        label = ax.xaxis.label.get_window_extent(renderer)
        ticks = ax.xaxis.get_tightbbox(renderer)
        assert legend.y1 <= min(label.y0, ticks.y0), (legend, label, ticks)
    assert legend.y0 >= 0  # inside the figure
    plt.close(fig)
