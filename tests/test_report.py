"""`cmadapter report` end to end on a small demo run: files, numbers, the page in Chromium, ground truth."""

import json
from pathlib import Path

import pytest

from cmadapter.cli import main
from cmadapter.demo.pretrain import PretrainConfig
from cmadapter.demo.run import DemoSettings, run_demo
from cmadapter.demo.synthetic import SyntheticConfig
from cmadapter.report.runs import read_steps


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo at test_demo's reduced size: zero-shot and the Cross-Modal Adapter, and the report."""
    out = tmp_path_factory.mktemp("demo")
    settings = DemoSettings(
        synthetic=SyntheticConfig(num_train=60, num_test=30),
        pretrain=PretrainConfig.quick(steps=100),
        epochs=10,
    )
    results = run_demo(out, settings=settings, methods=("zero-shot", "cross-modal"), progress=False)
    return out, results


def test_the_demo_writes_its_report_with_every_figure(demo):
    out, results = demo
    report = out / "report"
    for name in ("report.html", "report.json", "curves.png", "examples_t2v.png", "examples_v2t.png", "heatmaps.png"):
        assert (report / name).stat().st_size > 1000, name
    summary = json.loads((report / "report.json").read_text())
    stored = json.loads((Path(results["runs"]) / "cross-modal" / "metrics.json").read_text())["test"]
    run, base = summary["models"]
    # The pictures come from the same ranks as the run's own test table, and the baseline is zero-shot's.
    for direction in ("t2v", "v2t"):
        for key in ("R1", "R5", "R10", "MnR"):
            assert run["metrics"][direction][key] == pytest.approx(stored[direction][key], abs=1e-6)
            assert base["metrics"][direction][key] == pytest.approx(results["methods"]["zero-shot"][direction][key])
    assert run["trainable_params"] > 0 and base["trainable_params"] == 0
    assert len(summary["t2v_examples"]) == 6 and len(summary["v2t_examples"]) == 6
    for example in summary["t2v_examples"]:
        for ranked in example["ranked_first"].values():
            assert (ranked["video"] == example["video"]) == (ranked["rank"] == 1)
    html = (report / "report.html").read_text()
    assert "Checked against ground truth" in html and "http" not in html.replace("http-equiv", "")


def test_the_report_opens_in_chromium_with_every_image_loaded(demo, browser, tmp_path):
    from browser import images_loaded

    out, _ = demo
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    failed = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto((out / "report" / "report.html").as_uri())
    page.wait_for_load_state("load")
    images = images_loaded(page)
    assert len(images) == 4, images  # curves, the two example grids, heatmaps
    assert all(i["complete"] and i["width"] > 100 and i["height"] > 100 for i in images), images
    assert not failed
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_heatmaps_and_frame_weights_find_the_named_objects(demo):
    """Thresholds below what we measured (README, "Checked against ground truth"): on this fixture's test split
    the adapter's heatmaps put 1.81x the box's share of their mass in the named object's box (1.66 on
    ``make demo``'s), 2.30x its mask's share against a fixed centre map's 2.01 (1.96 vs 1.82), and the head
    weighed the frame showing a named object 0.418 against 0.291 (both demos). A uniform map scores 1.0,
    uniform weights a gap of 0."""
    _, results = demo
    adapter, zero = results["grounding"]["cross-modal"], results["grounding"]["zero-shot"]
    assert adapter["heatmap_frames"] > 0.8 * 30 * 3  # 83 of 90 frames had a non-empty map
    assert adapter["heatmap_box_ratio"] > 1.4, adapter
    # On the shapes themselves, not only where objects usually are.
    assert adapter["heatmap_mask_ratio"] > adapter["heatmap_mask_ratio_centre_prior"], adapter
    assert adapter["frame_weight_named"] > adapter["frame_weight_others"] + 0.08, adapter
    assert adapter["frame_weight_named_is_top"] > 1.5 * adapter["frame_weight_chance"], adapter
    assert zero["frame_weight_named"] > zero["frame_weight_others"], zero


def test_the_command_line_writes_a_report_and_names_a_wrong_folder(demo, tmp_path, capsys):
    _, results = demo
    runs = Path(results["runs"])
    code = main(["report", str(runs / "cross-modal"), "--baseline", str(runs / "zero-shot"), "--examples", "2",
                 "--heatmaps", "1", "--out", str(tmp_path / "r")])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and "Report:" in printed and "zero-shot" in printed
    summary = json.loads((tmp_path / "r" / "report.json").read_text())
    assert len(summary["t2v_examples"]) == 2 and summary["models"][1]["label"].startswith("zero-shot")
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err


def test_step_log_keeps_the_newest_record_of_a_step_and_skips_a_torn_line(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text(
        '{"global_step": 1, "loss": 3.0, "lr": 0.1}\n{"global_step": 2, "loss": 2.0, "lr": 0.1}\n'
        '{"global_step": 3, "lo\n{"global_step": 2, "loss": 1.5, "lr": 0.1}\n'
    )
    steps = read_steps(log)
    assert [(s["global_step"], s["loss"]) for s in steps] == [(1, 3.0), (2, 1.5)]


def test_a_resumed_run_is_read_with_the_config_it_finished_with(tmp_path):
    """A forced resume may change the config; the report describes the weights, so the newest config counts."""
    from cmadapter.config import load_config, save_config
    from cmadapter.report.runs import read_run

    for name, lr in (("config.yaml", 1e-3), ("config.resume-2.yaml", 2e-3), ("config.resume-10.yaml", 3e-3)):
        save_config(load_config(None, {"model.method": "cross-modal", "optim.lr": lr}), tmp_path / name)
    (tmp_path / "config.resume-x.yaml").write_text("not: a numbered resume\n")  # not ours: ignored
    (tmp_path / "best.safetensors").write_bytes(b"")
    assert read_run(tmp_path).config.optim.lr == 3e-3  # resume 10 after resume 2, by number
    (tmp_path / "config.resume-10.yaml").unlink()
    assert read_run(tmp_path).config.optim.lr == 2e-3
