"""`demo --curve`: the learning curve's settings, training subsets, train recall, summary and report section."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cmadapter.datasets import load_split
from cmadapter.demo.curve import (
    CurveSettings,
    curve_markdown,
    plot_curve,
    recall_at_1,
    subset_annotations,
    summarise,
)
from cmadapter.demo.dataset_files import write_annotations
from cmadapter.demo.report import curve_section
from cmadapter.demo.synthetic import SyntheticConfig, SyntheticDataset, video_specs
from cmadapter.errors import CmadapterError


def test_every_size_gets_the_same_steps_in_whole_epochs():
    curve = CurveSettings()
    assert [curve.epochs(n) * (n // curve.batch_size) for n in curve.sizes] == [curve.steps] * len(curve.sizes)
    assert CurveSettings.quick().epochs(120) == 40
    with pytest.raises(CmadapterError, match="not whole epochs of 45 videos"):
        CurveSettings(sizes=(15, 45))
    with pytest.raises(CmadapterError, match="at least one batch"):
        CurveSettings(sizes=(10, 30))


def test_a_subset_trains_on_exactly_its_videos_and_tests_on_the_whole_test_split(tmp_path):
    config = SyntheticConfig(num_train=12, num_test=4)
    data = SyntheticDataset(tmp_path / "data", config, tuple(video_specs(config)))
    write_annotations(data)  # the annotation files alone: the readers never open a video
    folder = subset_annotations(data, tmp_path / "n5", ["video0", "video1", "video2", "video3", "video4"])
    train = load_split("msrvtt", folder, "train")
    assert sorted({r.video_id for r in train}) == [f"video{i}" for i in range(5)]
    assert len(train) == 5 * config.captions_per_train_video
    assert load_split("msrvtt", folder, "test") == load_split("msrvtt", data.annotations, "test")


def test_train_recall_counts_only_captions_of_videos_the_run_trained_on():
    ranks = torch.tensor([1, 1, 3, 1, 2, 1])
    videos = ["v0", "v0", "v1", "v1", "v2", "v3"]
    assert recall_at_1(ranks, videos, {"v0"}) == 100.0
    assert recall_at_1(ranks, videos, {"v0", "v1"}) == 75.0
    assert recall_at_1(ranks, videos, {"v1", "v2", "v3"}) == 50.0
    with pytest.raises(CmadapterError, match="no gallery caption"):
        recall_at_1(ranks, videos, {"v9"})


def _runs():
    # Two seeds, two sizes: full overfits more at 15 videos (gap 60 and 50) than the adapter (20 and 30).
    cell = lambda test, train: {"test_R1": test, "train_R1": train}
    return {
        "42": {
            "full": {"15": cell(20, 80), "300": cell(50, 70)},
            "cross-modal": {"15": cell(25, 45), "300": cell(40, 50)},
        },
        "43": {
            "full": {"15": cell(30, 80), "300": cell(54, 70)},
            "cross-modal": {"15": cell(15, 45), "300": cell(36, 50)},
        },
    }


def test_the_summary_gives_mean_min_max_and_each_seeds_own_gap():
    summary = summarise(_runs())
    full = summary["full"]["15"]
    assert full["test_R1"] == {"mean": 25, "min": 20, "max": 30}
    assert full["gap"] == {"mean": 55, "min": 50, "max": 60} and full["seeds"] == 2
    assert summary["cross-modal"]["15"]["gap"] == {"mean": 25, "min": 20, "max": 30}
    assert summary["cross-modal"]["300"]["test_R1"]["mean"] == 38


def test_the_curve_is_drawn_tabled_and_put_in_the_report_page(tmp_path):
    from cmadapter.report.page import write_page

    runs = _runs()
    results = {
        "variant": "default",
        "machine": {"cpu": "test CPU"},
        "curve": CurveSettings(sizes=(15, 300), seeds=(42, 43)).to_dict(),
        "runs": runs,
        "summary": summarise(runs),
        "seconds": 1.0,
    }
    (tmp_path / "curve.json").write_text(json.dumps(results))
    plot_curve(results, tmp_path / "curve.png")
    image = np.asarray(Image.open(tmp_path / "curve.png").convert("RGB"))
    assert image.shape[0] > 300 and image.shape[1] > 800 and image.std() > 10  # drawn, not blank
    table = curve_markdown(results)
    assert "| 15 | full | 25.0 (20–30) | 80.0 (80–80) | 55.0 (50–60) |" in table
    results["summary"]["full"]["15"]["gap"]["min"] = -0.2
    assert "55.0 (0–60)" in curve_markdown(results)  # not "-0"
    assert curve_section(tmp_path, "quick") is None  # a curve of another variant is not this report's
    section = curve_section(tmp_path, "default")
    page = write_page(tmp_path / "report.html", "report", [section]).read_text()
    assert 'data-file="curve.png"' in page and "<td>15</td><td>full</td><td>25.0</td>" in page


@pytest.mark.slow
def test_the_curve_runs_each_method_and_reuses_finished_runs(tmp_path):
    """The whole curve at a toy size (one seed, one size, both methods, zero-shot), then again from the finished
    runs. Three training/evaluation processes: about a minute on two idle cores."""
    from cmadapter.demo.curve import run_curve
    from cmadapter.demo.pretrain import PretrainConfig
    from cmadapter.demo.run import DemoSettings

    demo = DemoSettings(synthetic=SyntheticConfig(num_train=20, num_test=10), pretrain=PretrainConfig.quick(steps=20))
    curve = CurveSettings(sizes=(10,), seeds=(0,), batch_size=5, steps=4, gallery=10)
    results = run_curve(tmp_path, demo=demo, curve=curve, progress=False)
    runs = results["runs"]["0"]
    assert set(runs) == {"zero-shot", "cross-modal", "full"} and all(set(r) == {"10"} for r in runs.values())
    for method in ("cross-modal", "full"):
        metrics = json.loads((tmp_path / "custom" / "seed0" / "curve" / f"n10-{method}" / "metrics.json").read_text())
        assert runs[method]["10"]["test_R1"] == metrics["test"]["t2v"]["R1"]
        assert metrics["global_step"] == 4 and not metrics["stopped_early"]  # the budget's steps, in whole epochs
        assert 0 <= runs[method]["10"]["train_R1"] <= 100
    assert runs["cross-modal"]["10"]["trainable_params"] < 0.1 * runs["full"]["10"]["trainable_params"]
    assert (
        results["summary"]["full"]["10"]["gap"]["mean"]
        == runs["full"]["10"]["train_R1"] - runs["full"]["10"]["test_R1"]
    )
    assert (tmp_path / "curve.md").read_text().count("|") > 15
    Image.open(tmp_path / "curve.png").verify()
    again = run_curve(tmp_path, demo=demo, curve=curve, progress=False)
    assert again["runs"] == results["runs"]
