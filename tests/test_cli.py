import json
import subprocess
import sys

import pytest
import torch

from cmadapter.cli import main
from test_official import official_checkpoint

PAPER_COUNTS = [
    ("ViT-B-32-quickgelu", 8, 16, 519168, {"vision": 310080, "text": 205632, "shared": 3456}),
    ("ViT-B-16-quickgelu", 8, 16, 519168, {"vision": 310080, "text": 205632, "shared": 3456}),
    ("ViT-B-32-quickgelu", 8, 0, 522624, None),
    ("ViT-B-32-quickgelu", 16, 32, 1001472, None),  # paper: 1.00M (MSVD)
    ("ViT-B-32-quickgelu", 16, 64, 988416, None),  # paper: 0.99M (VATEX)
    ("ViT-B-32-quickgelu", 16, 512, 805632, None),  # paper: 0.81M (ActivityNet)
]


def info_json(capsys, *args):
    assert main(["info", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("backbone", "r", "ds", "trainable", "breakdown"), PAPER_COUNTS)
def test_info_reports_the_papers_parameter_counts(capsys, backbone, r, ds, trainable, breakdown):
    report = info_json(
        capsys, "--backbone", backbone, "--method", "cross-modal", "--r", str(r), "--shared-dim", str(ds)
    )
    assert report["trainable_params"] == trainable
    if breakdown:
        assert report["breakdown"] == breakdown
    assert report["total_params"] == report["backbone_params"] + trainable


def test_info_on_a_weights_file(capsys, tiny_weights):
    report = info_json(capsys, "--pretrained", str(tiny_weights), "--r", "4", "--shared-dim", "8")
    assert report["architecture"]["vision_width"] == 64
    assert report["trainable_params"] == sum(report["breakdown"].values())


def test_errors_are_one_line_without_traceback(capsys):
    assert main(["info", "--backbone", "ViT-B-32-quickgelu", "--r", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: adapter bottleneck r must be a positive integer") and "Traceback" not in err


def test_convert_official_command(tmp_path, capsys):
    torch.save(official_checkpoint(), tmp_path / "pytorch_model.bin.1")
    out = tmp_path / "adapter.safetensors"
    assert main(["convert-official", str(tmp_path / "pytorch_model.bin.1"), "--out", str(out)]) == 0
    assert "r=4, d_s=8" in capsys.readouterr().out
    assert out.is_file()


@pytest.mark.slow
def test_console_script_runs():
    result = subprocess.run(
        [sys.executable, "-m", "cmadapter", "info", "--backbone", "nope"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "unknown backbone 'nope'" in result.stderr


@pytest.mark.slow
def test_a_closed_pipe_ends_quietly(tiny_weights):
    """`cmadapter info | head -0`: the reader is gone before anything is written; no traceback follows."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cmadapter", "info", "--pretrained", str(tiny_weights)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.stdout.close()  # before the model is built, so the first print meets a closed pipe
    err = process.stderr.read()
    assert process.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


@pytest.mark.parametrize("images", [False, True])
def test_demo_passes_its_seed_to_either_variant(monkeypatch, capsys, images):
    """`--seed` reaches the video demo and the image demo alike (the image demo once ignored it)."""
    import cmadapter.demo.images
    import cmadapter.demo.run

    calls = []

    def fake(out, **kwargs):
        calls.append(kwargs)
        return {"methods": {}, "variant": "quick", "runs": "r", "timings_seconds": {"total": 0.0}}

    monkeypatch.setattr(
        cmadapter.demo.images if images else cmadapter.demo.run, "run_image_demo" if images else "run_demo", fake
    )
    assert main(["demo", "--quick", "--seed", "7", *(["--images"] if images else [])]) == 0
    assert calls and calls[0]["seed"] == 7 and calls[0]["quick"] is True


def test_demo_curve_runs_the_given_seeds_then_the_demo_of_the_first(monkeypatch, capsys, tmp_path):
    """`--curve --seeds` reaches the curve; the demo of the first seed then writes the report with it."""
    import cmadapter.demo.curve
    import cmadapter.demo.run

    calls = []

    def fake_curve(out, **kwargs):
        calls.append(("curve", kwargs["curve"].seeds, kwargs["quick"]))
        return {"variant": "quick", "runs": {}, "curve": {"steps": 1, "batch_size": 1, "gallery": 1}, "seconds": 0.0,
                "machine": {"cpu": "x"}, "summary": {"full": {"15": {k: {"mean": 0, "min": 0, "max": 0}
                                                                     for k in ("test_R1", "train_R1", "gap")}}}}  # fmt: skip

    def fake_demo(out, **kwargs):
        calls.append(("demo", kwargs["seed"], kwargs["domains"]))

    monkeypatch.setattr(cmadapter.demo.curve, "run_curve", fake_curve)
    monkeypatch.setattr(cmadapter.demo.run, "run_demo", fake_demo)
    assert main(["demo", "--curve", "--quick", "--seeds", "5,3", "--no-domains", "--out", str(tmp_path)]) == 0
    assert calls == [("curve", (5, 3), True), ("demo", 5, False)]
    assert "| 15 | full |" in capsys.readouterr().out
    assert main(["demo", "--curve", "--images"]) == 2
    assert "--curve runs zero-shot, cross-modal and full" in capsys.readouterr().err
    assert main(["demo", "--curve", "--seeds", "1,x"]) == 2
    assert "--seeds takes comma-separated integers, got '1,x'" in capsys.readouterr().err
    assert main(["demo", "--curve", "--seeds", "1,1"]) == 2
    assert "seeds must be distinct" in capsys.readouterr().err
    assert main(["demo", "--seeds", "1,2"]) == 2  # without --curve: not silently ignored
    assert "--seeds goes with --curve" in capsys.readouterr().err
