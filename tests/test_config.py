from pathlib import Path

import pytest

from cmadapter import CmadapterError
from cmadapter.config import RunConfig, load_config, save_config

CONFIGS = sorted(Path(__file__).parent.parent.joinpath("configs").glob("*.yaml"))


def test_defaults_are_the_msrvtt_recipe():
    config = load_config()
    assert config.optim.lr == 1e-5 and config.optim.betas == (0.9, 0.98) and config.optim.eps == 1e-6
    assert config.optim.weight_decay == 0.2 and config.optim.warmup == 0.1 and config.optim.grad_clip == 1.0
    assert config.train.batch_size == 128 and config.train.epochs == 5 and config.train.seed == 42
    assert config.data.max_frames == 12 and config.model.context_length == 32
    assert config.model.method_options == {"r": 8, "shared_dim": 16}


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ntrain:\n  epochs: 2\noptim:\n  betas: [0.8, 0.9]\n")
    config = load_config(path, ["train.batch_size=16", "model.method=uni-modal", "model.method_options={r: 4}"])
    assert config.name == "x" and config.train.epochs == 2 and config.optim.betas == (0.8, 0.9)
    assert config.train.batch_size == 16 and config.model.method == "uni-modal"
    assert config.model.method_options == {"r": 4}
    assert load_config(None, ["model.method=null"]).model.method is None
    assert load_config(None, ["optim.lr=1e-3"]).optim.lr == 1e-3  # YAML 1.1 reads this as a string


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epoch=3", "unknown key 'train.epoch'; valid keys here are"),
        ("trian.epochs=3", "unknown key 'trian'"),
        ("train.epochs=three", "'train.epochs' must be int, got 'three'"),
        ("train.epochs=2.5", "'train.epochs' must be int"),
        ("train.precision=fp8", "one of 'bf16', 'fp16', 'fp32'"),
        ("optim.lr=fast", "'optim.lr' must be float"),
        ("train.grad_checkpointing=1", "must be bool"),
        ("optim.betas=[0.9]", "'optim.betas' must be tuple"),
        ("epochs", "look like section.key=value"),
    ],
)
def test_bad_keys_and_types_are_clear_errors(override, message):
    with pytest.raises(CmadapterError, match=message):
        load_config(None, [override])


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(CmadapterError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: [\n")
    with pytest.raises(CmadapterError, match="bad.yaml is not valid YAML"):
        load_config(bad)
    bad.write_text("train:\n  lr: 1\n")
    with pytest.raises(CmadapterError, match=r"bad.yaml: unknown key 'train.lr'"):
        load_config(bad)


def test_saved_config_loads_back_equal(tmp_path):
    config = load_config(None, ["train.epochs=3", "optim.betas=[0.8, 0.9]", "eval.postprocess=[dual-softmax]"])
    save_config(config, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_recipe_loads_and_says_where_its_values_come_from(path):
    config = load_config(path)
    assert isinstance(config, RunConfig)
    assert "#" in path.read_text()  # each recipe comments its sources
    assert (config.optim.name, config.optim.schedule) == ("bert-adam", "warmup-cosine-total")  # the official code's
