"""`cmadapter train` and `cmadapter eval` end to end on a tiny MSR-VTT folder with real video files."""

import json

import pytest

from annotation_files import tiny_msrvtt_run
from cmadapter.cli import main


@pytest.fixture
def msrvtt(tmp_path, tiny_weights):
    return tiny_msrvtt_run(tmp_path, tiny_weights)


def test_train_then_eval_from_the_command_line(msrvtt, capsys):
    config, _ = msrvtt
    assert main(["train", "--config", str(config), "--no-progress", "optim.lr=1e-3"]) == 0
    run = config.parent / "runs" / "tiny"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 3  # 4 videos x 3 captions, batch 4
    assert metrics["selection"] == "last epoch (no validation split)"
    assert metrics["test"]["t2v"]["queries"] == 2
    capsys.readouterr()

    assert main(["eval", "--config", str(config), "--adapter", str(run / "best.safetensors"), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["t2v"] == metrics["test"]["t2v"]

    out = config.parent / "zero.json"
    assert main(["eval", "--config", str(config), "--out", str(out), "--no-progress"]) == 0
    assert "msrvtt/test: zero-shot" in capsys.readouterr().out
    assert json.loads(out.read_text())["efficiency"]["trainable_params"] == 0


def test_missing_training_video_fails_before_the_first_step(msrvtt, capsys):
    config, videos = msrvtt
    (videos / "video2.mp4").unlink()
    assert main(["train", "--config", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "video2" in err and "missing='drop'" in err
    assert not list((config.parent / "runs").glob("tiny/checkpoints/*"))
    assert not (config.parent / "runs" / "tiny" / "metrics.jsonl").exists()


def test_dropping_missing_videos_is_explicit_and_counted(msrvtt, caplog):
    config, videos = msrvtt
    (videos / "video2.mp4").unlink()
    assert main(["train", "--config", str(config), "--no-progress", "data.missing=drop", "train.max_steps=1"]) == 0
    assert any("dropping 1 of 4 videos" in r.getMessage() for r in caplog.records)


def test_missing_evaluation_video_error_does_not_offer_dropping(msrvtt, capsys):
    config, videos = msrvtt
    (videos / "video5.mp4").unlink()  # a test video; evaluation configs have no `missing` setting
    assert main(["eval", "--config", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "video5" in err and "evaluation" in err and "missing='drop'" not in err
