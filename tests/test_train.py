import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cmadapter import build_model
from cmadapter.evaluation.evaluate import evaluate
from cmadapter.training.trainer import train
from helpers import assert_same_first_step
from toy_data import colour_data
from toy_runs import run_script
from toy_training import toy_config


def test_training_learns_the_toy_task(tiny_weights, tmp_path):
    overrides = {"train.epochs": 15, "train.save_every_steps": None, "eval.every_epochs": 5}
    config = toy_config(str(tiny_weights), str(tmp_path), **overrides)
    plain = build_model(pretrained=tiny_weights, method=None)
    data = colour_data(plain.tokenizer)
    before = evaluate(plain, data.test, config.eval, progress=False)["t2v"]["R1"]
    results = train(config, data, progress=False)
    after = results["test"]["t2v"]["R1"]
    assert before <= 40 and after >= 75, (before, after)


def test_run_folder_holds_config_logs_checkpoints_and_metrics(tiny_weights, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="cmadapter")
    config = toy_config(str(tiny_weights), str(tmp_path), **{"train.epochs": 2})
    results = train(config, colour_data(build_model(pretrained=tiny_weights, method=None).tokenizer), progress=False)
    run = tmp_path / "toy"
    assert "toy: cross-modal" in caplog.text  # the one-line summary, logged
    assert (run / "config.yaml").is_file()
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1]["global_step"] == 8 and {"loss", "lr", "samples_per_second", "peak_memory_mb"} <= set(steps[-1])
    assert list(run.glob("events.out.tfevents*"))
    assert sorted(p.name for p in (run / "checkpoints").glob("epoch*")) == [
        "epoch001.safetensors",
        "epoch002.safetensors",
    ]
    assert len(list((run / "checkpoints").glob("state-step*.safetensors"))) == 2  # the newest two kept
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["test"]["t2v"]["R1"] == results["test"]["t2v"]["R1"]
    assert saved["efficiency"]["trainable_params"] > 0 and saved["efficiency"]["step_seconds_median"] > 0
    assert saved["selection"].startswith("validation") and len(saved["validation"]) == 2
    best = build_model(pretrained=tiny_weights, adapter=run / "best.safetensors")
    assert best.method.num_trainable() == saved["efficiency"]["trainable_params"]


def test_without_validation_split_the_last_epoch_is_used_and_said(tiny_weights, tmp_path):
    config = toy_config(str(tiny_weights), str(tmp_path), **{"train.epochs": 1})
    data = colour_data(build_model(pretrained=tiny_weights, method=None).tokenizer, validation=False)
    results = train(config, data, progress=False)
    assert results["selection"] == "last epoch (no validation split)"
    last = load_file(tmp_path / "toy" / "checkpoints" / "epoch001.safetensors")
    best = load_file(tmp_path / "toy" / "best.safetensors")
    assert all(torch.equal(last[k], best[k]) for k in last)


def assert_same_tensors(a: Path, b: Path) -> list[str]:
    """Every tensor of every safetensors file both run folders hold, bitwise; returns the files compared."""
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*.safetensors"))
    assert names == sorted(str(p.relative_to(b)) for p in b.rglob("*.safetensors"))
    for name in names:
        x, y = load_file(a / name), load_file(b / name)
        assert x.keys() == y.keys(), name
        for key in x:
            assert x[key].dtype == y[key].dtype and torch.equal(x[key], y[key]), (name, key)
    return names


@pytest.mark.slow
@pytest.mark.parametrize(
    ("save_every", "kill_after", "resumed_from", "optim"),
    [
        (1, 6, "step00000006", ("adamw", "cosine")),
        (4, 6, "step00000004", ("adamw", "cosine")),  # redoes steps 5 and 6
        (1, 6, "step00000006", ("bert-adam", "warmup-cosine-total")),  # the recipes' optimizer and schedule
    ],
    ids=["killed-right-after-a-save", "killed-between-saves", "bert-adam"],
)
def test_killed_run_resumes_to_the_same_tensors_bit_for_bit(
    tiny_weights, toy_runs, tmp_path, save_every, kill_after, resumed_from, optim
):
    common = ["--weights", str(tiny_weights), "--save-every", str(save_every), "--optim", *optim]
    # The run straight through (made once, and compared against by the torchrun test too).
    (tmp_path / "a").symlink_to(toy_runs("train", *common[2:]))

    killed = run_script("train", *common, "--out", str(tmp_path / "b"), "--kill-after", str(kill_after))
    assert killed.returncode == -9, killed.stderr[-2000:]  # really killed, mid-run (12 steps in all)
    assert not (tmp_path / "b" / "toy" / "metrics.json").exists()
    resumed = run_script("train", *common, "--out", str(tmp_path / "b"), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr and resumed_from in resumed.stderr

    # CPU fp32: adapters of every epoch, best, and the last training states (optimizer moments included).
    names = assert_same_tensors(tmp_path / "a" / "toy", tmp_path / "b" / "toy")
    assert "best.safetensors" in names and "checkpoints/state-step00000012.safetensors" in names
    a, b = (json.loads((tmp_path / r / "toy" / "metrics.json").read_text()) for r in "ab")
    assert a["test"] == b["test"]


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process_on_the_global_batch(tiny_weights, toy_runs, tmp_path):
    (tmp_path / "one").symlink_to(toy_runs("grads"))  # one process's first step, made once (test_multinode too)
    (tmp_path / "two").mkdir()
    two = run_script("grads", "--weights", str(tiny_weights), "--out", str(tmp_path / "two"), torchrun=True)
    assert two.returncode == 0, two.stderr[-3000:]
    assert_same_first_step(tmp_path / "one" / "grads.pt", tmp_path / "two" / "grads.pt", world_size=2)


@pytest.mark.slow
def test_peak_memory_is_the_process_own_not_its_parents():
    # A child started by a large parent must not inherit the parent's peak (ru_maxrss survives exec on Linux).
    ballast = bytearray(600 * 2**20)  # the parent grows by 600 MB
    ballast[::4096] = b"x" * len(ballast[::4096])
    code = (
        "import torch; from cmadapter.training.memory import peak_memory_mb; print(peak_memory_mb(torch.device('cpu')))"
    )
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    from cmadapter.training.memory import peak_memory_mb

    assert child < peak_memory_mb(torch.device("cpu")) - 300
    del ballast


@pytest.mark.slow
def test_torchrun_trains_several_steps_and_resumes_bit_for_bit(tiny_weights, toy_runs, tmp_path):
    common = ["--weights", str(tiny_weights), "--save-every", "4"]
    # One process, straight through: the run test_killed_run_resumes_to_the_same_tensors_bit_for_bit compares with.
    (tmp_path / "one").symlink_to(toy_runs("train", *common[2:], "--optim", "adamw", "cosine"))
    straight = run_script("train", *common, "--out", str(tmp_path / "a"), torchrun=True)
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = run_script("train", *common, "--out", str(tmp_path / "b"), "--kill-after", "6", torchrun=True)
    assert killed.returncode != 0 and not (tmp_path / "b" / "toy" / "metrics.json").exists()
    resumed = run_script("train", *common, "--out", str(tmp_path / "b"), "--resume", torchrun=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr and "step00000004" in resumed.stderr  # steps 5, 6 redone

    assert "checkpoints/epoch003.safetensors" in assert_same_tensors(tmp_path / "a" / "toy", tmp_path / "b" / "toy")
    # Two processes on the global batch follow one process (the gradient sums differ only in rounding).
    for name in ("checkpoints/epoch001.safetensors", "best.safetensors"):
        x, y = load_file(tmp_path / "one" / "toy" / name), load_file(tmp_path / "a" / "toy" / name)
        for key in x:
            assert torch.allclose(x[key], y[key], rtol=0, atol=1e-4), (name, key)


@pytest.mark.slow
def test_sharded_evaluation_of_an_uneven_split_equals_one_process(tiny_weights, tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    common = ["--weights", str(tiny_weights), "--videos", "5"]  # 3 + 2 videos over two processes
    one = run_script("encode", *common, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_script("encode", *common, "--out", str(tmp_path / "two"), torchrun=True)
    assert two.returncode == 0, two.stderr[-3000:]
    single = torch.load(tmp_path / "one" / "encoded.pt", weights_only=True)
    sharded = torch.load(tmp_path / "two" / "encoded.pt", weights_only=True)
    assert single["world_size"] == 1 and sharded["world_size"] == 2
    assert single["video"].shape[0] == 5 and torch.equal(single["video"], sharded["video"])
    assert torch.equal(single["mask"], sharded["mask"])
    metrics = [json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two")]
    assert metrics[0] == metrics[1] and metrics[0]["t2v"]["queries"] == 5
