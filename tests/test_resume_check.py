"""Resume checks what it resumes: a changed config is refused (unless forced); the original config.yaml is kept."""

import logging

import pytest
import yaml

from annotation_files import tiny_msrvtt_run
from cmadapter.cli import main
from cmadapter.config import load_config
from cmadapter.errors import ConfigError
from cmadapter.tokenizer import Tokenizer
from cmadapter.training.resume_check import MAY_CHANGE, config_differences, resolved
from cmadapter.training.state import latest_state, load_train_state
from cmadapter.training.trainer import train
from toy_data import colour_data
from toy_training import toy_config


@pytest.fixture
def killed_run(tiny_weights, tmp_path):
    """A toy run stopped after 2 of its 4 steps (batch 8 of 32 pairs), with a training state per step."""
    config = toy_config(str(tiny_weights), str(tmp_path), **{"train.epochs": 1, "train.max_steps": 2})
    train(config, colour_data(Tokenizer(None, 32)), progress=False)
    return tiny_weights, tmp_path


def resume(weights, out, **overrides):
    config = toy_config(str(weights), str(out), resume="auto", **overrides)
    return train(config, colour_data(Tokenizer(None, 32)), progress=False)


def run_dir_configs(out):
    return sorted(p.name for p in (out / "toy").glob("config*.yaml"))


def test_the_state_records_the_resolved_config(killed_run):
    weights, out = killed_run
    state = load_train_state(latest_state(out / "toy" / "checkpoints"))
    expected = toy_config(str(weights), str(out), **{"train.epochs": 1, "train.max_steps": 2})
    assert state.config == resolved(expected)


def test_a_changed_batch_size_is_refused_naming_the_key_and_both_values(killed_run, caplog):
    weights, out = killed_run
    original = (out / "toy" / "config.yaml").read_text()
    with pytest.raises(ConfigError) as info:
        resume(weights, out, **{"train.epochs": 1, "train.batch_size": 4})
    message = str(info.value)
    assert "train.batch_size: 8 in the state, 4 now" in message and "--resume-force" in message
    assert "\n" not in message
    # Nothing was overwritten before the check, and nothing trained.
    assert (out / "toy" / "config.yaml").read_text() == original
    assert run_dir_configs(out) == ["config.yaml"]
    assert latest_state(out / "toy" / "checkpoints").name == "state-step00000002.safetensors"


def test_every_differing_key_is_listed(killed_run):
    weights, out = killed_run
    with pytest.raises(ConfigError) as info:
        resume(weights, out, **{"train.epochs": 2, "optim.lr": 1e-3, "model.method_options": {"r": 4}})
    message = str(info.value)
    assert "train.epochs: 1 in the state, 2 now" in message
    assert "optim.lr: 0.01 in the state, 0.001 now" in message
    assert "model.method_options: {'r': 8, 'shared_dim': 16} in the state, {'r': 4} now" in message


def test_resume_force_goes_on_and_keeps_the_original_config_beside_the_new(killed_run, caplog):
    weights, out = killed_run
    with caplog.at_level(logging.WARNING, logger="cmadapter"):
        results = resume(weights, out, **{"train.epochs": 2, "resume_force": True})
    assert results["global_step"] == 8  # 2 epochs of 4 steps: it went on to the new end
    assert any("train.epochs: 1 in the state, 2 now" in r.getMessage() for r in caplog.records)
    assert run_dir_configs(out) == ["config.resume-1.yaml", "config.yaml"]
    assert yaml.safe_load((out / "toy" / "config.yaml").read_text())["train"]["epochs"] == 1
    assert yaml.safe_load((out / "toy" / "config.resume-1.yaml").read_text())["train"]["epochs"] == 2


def test_a_key_that_may_change_resumes_silently(killed_run, caplog):
    weights, out = killed_run
    with caplog.at_level(logging.WARNING, logger="cmadapter"):
        results = resume(
            weights, out, **{"train.epochs": 1, "train.log_every_steps": 1, "eval.batch_size": 3, "data.workers": 1}
        )
    assert results["global_step"] == 4
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("cmadapter")]
    assert run_dir_configs(out) == ["config.resume-1.yaml", "config.yaml"]


def test_what_may_change_is_exactly_the_listed_keys():
    saved = resolved(load_config(None, {}))
    for key in sorted(MAY_CHANGE):
        section, _, name = key.rpartition(".")
        changed = resolved(load_config(None, {}))
        target = changed[section] if section else changed
        target[name] = "something else"
        assert config_differences(saved, changed) == [], key
    changed = resolved(load_config(None, {"train.precision": "fp32", "train.seed": 1}))
    assert config_differences(saved, changed) == [("train.precision", "bf16", "fp32"), ("train.seed", 42, 1)]


def test_resume_force_from_the_command_line(tmp_path, tiny_weights, capsys):
    config, _ = tiny_msrvtt_run(tmp_path, tiny_weights)  # 12 pairs, batch 4: 3 steps
    base = ["train", "--config", str(config), "--no-progress"]
    assert main([*base, "train.save_every_steps=1", "train.max_steps=1"]) == 0
    assert main([*base, "--resume", "train.batch_size=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "train.batch_size: 4 in the state, 2 now" in err
    assert main([*base, "--resume-force", "train.batch_size=2"]) == 0  # save_every_steps may change
    run = tmp_path / "runs" / "tiny"
    assert sorted(p.name for p in run.glob("config*.yaml")) == ["config.resume-1.yaml", "config.yaml"]
