"""A config that cannot train is a one-line error naming its key, before weights, data or processes are touched."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from annotation_files import tiny_msrvtt_run
from cmadapter.cli import main
from cmadapter.config import RunConfig, load_config
from cmadapter.config_validation import config_problems, validate_config
from cmadapter.errors import CheckpointError, CmadapterError, ConfigError
from cmadapter.tokenizer import Tokenizer
from cmadapter.training.loss import symmetric_infonce
from cmadapter.training.sampler import EpochBatchSampler
from cmadapter.training.trainer import train
from cmadapter.video.sampling import Sampling
from toy_data import colour_data
from toy_training import toy_config

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "msrvtt_vitb32.yaml"

# Each value the issue lists, with the key its error must name. The recipe points at data/msrvtt and the
# OpenAI weights, neither of which this machine has: the bad value must be reported without reaching them.
BAD_VALUES = [
    ("train.batch_size=0", "train.batch_size"),
    ("train.batch_size=-4", "train.batch_size"),
    ("train.epochs=0", "train.epochs"),
    ("data.fps=0", "data.fps"),
    ("data.fps=nan", "data.fps"),
    ("data.max_frames=0", "data.max_frames"),
    ("eval.batch_size=0", "eval.batch_size"),
    ("optim.lr=nan", "optim.lr"),
]


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.slow
def test_the_recipe_with_a_bad_batch_size_fails_at_once_offline_without_data(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "cmadapter", "train", "--config", str(RECIPE), "train.batch_size=0"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 2
    line = one_line_error(result.stderr)
    assert line.startswith("error: invalid config:")
    assert "train.batch_size must be a positive integer, got 0" in line
    assert "huggingface" not in line and not list(tmp_path.glob("runs"))


@pytest.mark.parametrize(("override", "key"), BAD_VALUES)
def test_each_bad_value_is_a_one_line_error_naming_its_key(override, key, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", str(RECIPE), override]) == 2
    line = one_line_error(capsys.readouterr().err)
    value = override.split("=")[1]
    assert f"{key} must be" in line and f"got {value}" in line
    # The same check guards `eval`, which also reads data and eval settings.
    if not key.startswith(("train.", "optim.")):
        assert main(["eval", "--config", str(RECIPE), override]) == 2
        assert key in one_line_error(capsys.readouterr().err)


def test_every_problem_is_listed_on_one_line():
    config = load_config(RECIPE, ["train.batch_size=0", "data.fps=0", "optim.warmup=1.5"])
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    message = str(info.value)
    assert "\n" not in message
    for key in ("train.batch_size", "data.fps", "optim.warmup", "data.annotations: folder not found: data/msrvtt"):
        assert key in message


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"data.max_frames": -1}, "data.max_frames must be a positive integer, got -1"),
        ({"data.workers": -1}, "data.workers must be an integer >= 0, got -1"),
        ({"data.fps": math.inf}, "data.fps must be a finite number > 0, got inf"),
        ({"optim.lr": 0}, "optim.lr must be a finite number > 0, got 0.0"),
        ({"optim.eps": -1e-6}, "optim.eps must be a finite number > 0"),
        ({"optim.betas": [0.9, 1.0]}, r"optim.betas[1] must be in [0.0, 1.0), got 1.0"),
        ({"optim.weight_decay": -0.1}, "optim.weight_decay must be in [0.0, inf), got -0.1"),
        ({"optim.warmup": -0.1}, "optim.warmup must be in [0.0, 1.0], got -0.1"),
        ({"optim.grad_clip": 0}, "optim.grad_clip must be a finite number > 0 or null, got 0.0"),
        ({"train.seed": -1}, "train.seed must be an integer in [0, 4294967295], got -1"),
        ({"train.max_steps": 0}, "train.max_steps must be a positive integer or null, got 0"),
        ({"train.save_every_steps": 0}, "train.save_every_steps must be a positive integer or null"),
        ({"train.log_every_steps": 0}, "train.log_every_steps must be a positive integer"),
        ({"train.device": "gpu7"}, "train.device must be auto, cpu, cuda"),
        ({"eval.text_batch_size": 0}, "eval.text_batch_size must be a positive integer"),
        ({"eval.block_size": 0}, "eval.block_size must be a positive integer"),
        ({"eval.every_epochs": 0}, "eval.every_epochs must be a positive integer"),
        ({"eval.postprocess": ["softmax"]}, "unknown post-processing 'softmax'"),
        ({"model.temperature": 0}, "model.temperature must be a finite number > 0"),
        ({"model.context_length": 1}, "model.context_length must be an integer >= 2, got 1"),
        ({"model.context_length": 78}, "model.context_length=78 exceeds the 77 positions of ViT-B-32-quickgelu"),
        ({"model.method": "nope"}, "unknown method 'nope'"),
        ({"model.method_options": {"rank": 4}}, "method 'cross-modal' has no option 'rank'"),
        ({"model.method_options": {"r": 0}}, "adapter bottleneck r must be a positive integer"),
        ({"model.method": "lora", "model.method_options": {"r": -2}}, "LoRA rank r must be a positive integer, got -2"),
        ({"model.method": None}, "model.method is null: nothing to train"),
        ({"model.pretrained": "weights/missing.pt"}, "model.pretrained: weights file not found: weights/missing.pt"),
        ({"model.pretrained": "laion-nope"}, "'laion-nope' is neither a weights file nor a pretrained tag"),
        ({"model.backbone": "ViT-Nope"}, "unknown backbone 'ViT-Nope'"),
        ({"data.dataset": "kinetics"}, "data.dataset: unknown dataset 'kinetics'"),
        ({"data.val_split": "val"}, "data.val_split: msrvtt has no split 'val'"),
        ({"data.dataset_options": {"list": "7k"}}, "data.dataset_options: msrvtt has no option 'list'"),
        ({"data.cache": "nowhere"}, "data.cache: frame cache folder not found: nowhere"),
        ({"data.videos": None}, "data.videos and data.cache are both null"),
        ({"resume": "nowhere.safetensors"}, "resume: training state not found: nowhere.safetensors"),
        ({"name": " "}, "name must not be empty"),
    ],
)
def test_ranges_names_and_files(overrides, message):
    config = load_config(RECIPE, overrides)
    problems = config_problems(config)
    assert any(message in p for p in problems), problems


def test_unreadable_config_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(CmadapterError, match="cannot read config file .*latin1.yaml") as info:
        load_config(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: {epochs: 3\nmodel: [\n")
    with pytest.raises(CmadapterError, match="broken.yaml is not valid YAML") as info:
        load_config(broken)
    assert "\n" not in str(info.value)


def test_types_are_checked_for_configs_built_in_python():
    config = RunConfig()
    config.train.batch_size = "8"
    assert config_problems(config) == ["config: 'train.batch_size' must be int, got '8'"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_names_the_key():
    problems = config_problems(load_config(RECIPE, {"train.device": "cuda"}))
    assert "train.device=cuda, but no CUDA device is available here; use auto or cpu" in problems


def test_a_valid_config_passes(tmp_path, tiny_weights):
    config_path, _ = tiny_msrvtt_run(tmp_path, tiny_weights)
    assert config_problems(load_config(config_path)) == []
    # eval does not train: a null method (zero-shot) and training-only values are fine there.
    zero_shot = load_config(config_path, ["model.method=null", "train.epochs=0"])
    assert config_problems(zero_shot, purpose="eval") == []


def test_a_batch_larger_than_the_training_set_names_both_numbers(tmp_path, tiny_weights):
    data = colour_data(Tokenizer(None, 32))  # 32 training pairs
    config = toy_config(str(tiny_weights), str(tmp_path), **{"train.batch_size": 40})
    with pytest.raises(ConfigError, match=r"train.batch_size=40 is larger than the training set \(32 samples\)"):
        train(config, data, progress=False)
    assert not (tmp_path / "toy" / "metrics.jsonl").exists()


def test_a_batch_larger_than_the_dataset_from_the_command_line(tmp_path, tiny_weights, capsys):
    config, _ = tiny_msrvtt_run(tmp_path, tiny_weights)  # 4 training videos x 3 captions
    assert main(["train", "--config", str(config), "--no-progress", "train.batch_size=16"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "train.batch_size=16 is larger than the training set (12 samples)" in line


def test_offline_openai_weights_say_so_and_suggest_a_path(tmp_path, monkeypatch, capsys):
    """The hub client really runs, offline, with an empty cache (as on a machine with no network)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert main(["info", "--backbone", "ViT-B-32-quickgelu", "--pretrained", "openai"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "could not download the 'openai' weights of ViT-B-32-quickgelu" in line
    assert "model.pretrained=PATH" in line and "http" not in line and "huggingface" not in line.lower()


def test_an_unknown_pretrained_tag_lists_the_known_ones():
    from cmadapter.backbone import load_backbone

    with pytest.raises(CheckpointError, match=r"'nope' is neither a weights file nor a pretrained tag.*openai"):
        load_backbone("ViT-B-32-quickgelu", "nope")


def _no_cuda_device():
    from cmadapter.training.distributed import resolve_device

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    resolve_device("cuda")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: Sampling(fps=0), "fps must be a positive"),
        (lambda: Sampling(max_frames=0), "max_frames must be"),
        (lambda: EpochBatchSampler(10, 0, seed=0), "train.batch_size must be a positive integer, got 0"),
        (lambda: EpochBatchSampler(10, 3, seed=0, world_size=2), "train.batch_size=3 is not divisible by the 2"),
        (lambda: EpochBatchSampler(10, 16, seed=0), r"train.batch_size=16 is larger than the training set \(10"),
        (lambda: symmetric_infonce(torch.zeros(2, 3)), "square logit matrix"),
        (_no_cuda_device, "train.device=cuda"),
    ],
)
def test_library_checks_raise_cmadapter_errors(call, message):
    with pytest.raises(CmadapterError, match=message):
        call()
