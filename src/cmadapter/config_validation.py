"""Validation of a whole run configuration before anything slow (weights, data, processes) starts.

Types come from the dataclasses (``config.from_dict``); this module adds the ranges every value must lie
in, the names that must be known (backbone, pretrained tag, method and its options, dataset, splits,
post-processing) and the files that must exist. All problems are reported at once, on one line, each
naming its key and value:

    validate_config(config, purpose="train")   # raises ConfigError
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from .config import RunConfig, from_dict, plain
from .errors import CmadapterError, ConfigError

Purpose = Literal["train", "eval"]
_SEED_MAX = 2**32 - 1  # numpy's seeds are 32-bit


def validate_config(
    config: RunConfig, *, purpose: Purpose = "train", check_data: bool = True, check_model: bool = True
) -> None:
    """Raise ``ConfigError`` listing every value of ``config`` that cannot work for ``purpose``.

    ``check_data=False`` skips the dataset and its files (the caller brings its own data);
    ``check_model=False`` skips backbone, weights and method (the caller brings its own model).
    """
    problems = config_problems(config, purpose=purpose, check_data=check_data, check_model=check_model)
    if problems:
        raise ConfigError("invalid config: " + "; ".join(problems))


def config_problems(
    config: RunConfig, *, purpose: Purpose = "train", check_data: bool = True, check_model: bool = True
) -> list[str]:
    try:  # types first: a config built in Python skips the checks load_config makes
        from_dict(RunConfig, plain(config.to_dict()), where="config")
    except CmadapterError as exc:
        return [str(exc)]
    problems: list[str] = []
    check = _Checker(problems)
    if not config.name.strip():
        problems.append("name must not be empty (it names the run folder)")
    # Values first, then the names and files they point to (the slower checks).
    if purpose == "train":
        _train_problems(config, check)
    check.positive("model.temperature", config.model.temperature)
    check.at_least("model.context_length", config.model.context_length, 2)  # start and end tokens
    check.positive("data.fps", config.data.fps)
    check.at_least("data.max_frames", config.data.max_frames, 1)
    check.at_least("data.workers", config.data.workers, 0)
    _eval_problems(config, check)
    _device_problems(config.train.device, problems)
    if check_model:
        _model_problems(config, purpose, check)
    if check_data:
        _data_problems(config, purpose, check)
    return problems


class _Checker:
    """Range checks that append one message per problem, naming key and value."""

    def __init__(self, problems: list[str]):
        self.problems = problems

    def at_least(self, key: str, value: int | None, low: int, *, optional: bool = False) -> None:
        if value is None and optional:
            return
        if value is None or value < low:
            what = "a positive integer" if low == 1 else f"an integer >= {low}"
            self.problems.append(f"{key} must be {what}{' or null' if optional else ''}, got {value!r}")

    def positive(self, key: str, value: float | None, *, optional: bool = False) -> None:
        if value is None and optional:
            return
        if value is None or not math.isfinite(value) or value <= 0:
            self.problems.append(f"{key} must be a finite number > 0{' or null' if optional else ''}, got {value!r}")

    def within(self, key: str, value: float, low: float, high: float, *, high_open: bool = False) -> None:
        ok = math.isfinite(value) and low <= value and (value < high if high_open else value <= high)
        if not ok:
            self.problems.append(f"{key} must be in [{low}, {high}{')' if high_open else ']'}, got {value!r}")


def _model_problems(config: RunConfig, purpose: Purpose, check: _Checker) -> None:
    from .backbone import looks_like_path

    m = config.model
    problems = check.problems
    named = None  # the backbone's name when it is an open_clip model (not a weights file)
    if m.pretrained is not None and looks_like_path(m.pretrained):
        if not Path(m.pretrained).is_file():
            problems.append(f"model.pretrained: weights file not found: {m.pretrained}")
    elif m.backbone is None:
        if purpose == "train":  # eval may take the backbone's name from the adapter checkpoint
            problems.append("model.backbone is needed unless model.pretrained is a local weights file")
    elif _capture(problems, lambda: _check_named_backbone(m.backbone, m.pretrained, m.context_length)):
        named = m.backbone
    if purpose == "train":
        if m.method is None:
            problems.append("model.method is null: nothing to train (use `cmadapter eval` for zero-shot)")
        else:
            _capture(problems, lambda: _check_method(m.method, m.method_options, named))


def _check_named_backbone(name: str, pretrained: str | None, context_length: int) -> None:
    import open_clip

    from .backbone import check_known_name

    check_known_name(name)
    positions = (open_clip.get_model_config(name) or {}).get("text_cfg", {}).get("context_length", 77)
    if context_length > positions:
        raise ConfigError(f"model.context_length={context_length} exceeds the {positions} positions of {name}")
    if pretrained is not None and not open_clip.get_pretrained_cfg(name, pretrained):
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise ConfigError(
            f"model.pretrained={pretrained!r} is neither a weights file nor a pretrained tag of {name} "
            f"(its tags: {', '.join(tags) or 'none'})"
        )


def _check_method(name: str, options: dict[str, Any], backbone: str | None) -> None:
    from .backbone import load_backbone
    from .methods import method_class
    from .methods.base import make_options

    checked = make_options(method_class(name).Options, dict(options), method=name)
    if backbone is not None:  # option ranges need the architecture: shapes only, no weights (meta device)
        checked.validate(load_backbone(backbone, None, device="meta"))


def _data_problems(config: RunConfig, purpose: Purpose, check: _Checker) -> None:
    from .datasets import get_dataset

    d = config.data
    problems = check.problems
    try:
        spec = get_dataset(d.dataset)
    except CmadapterError as exc:
        problems.append(f"data.dataset: {exc}")
        return
    splits = {"data.test_split": d.test_split, "data.val_split": d.val_split}
    if purpose == "train":
        splits["data.train_split"] = d.train_split
    for key, split in splits.items():
        if split is not None and split not in spec.splits:
            problems.append(f"{key}: {d.dataset} has no split {split!r}; its splits: {', '.join(spec.splits)}")
    unknown = sorted(set(d.dataset_options) - set(spec.options))
    if unknown:
        problems.append(
            f"data.dataset_options: {d.dataset} has no option {unknown[0]!r}; its options: "
            f"{', '.join(spec.options) or 'none'}"
        )
    wanted = {
        "folder": "the folder of the dataset's annotation files",
        "file": "the captions table (CSV, TSV, JSON lines or Parquet)",
        "shards": "the shards (a brace pattern, a folder or a list file)",
    }[spec.annotations]
    if not d.annotations:
        problems.append(f"data.annotations is empty: give {wanted}")
    elif spec.annotations == "folder" and not Path(d.annotations).is_dir():
        problems.append(f"data.annotations: folder not found: {d.annotations}")
    elif spec.annotations == "file" and not Path(d.annotations).is_file():
        problems.append(f"data.annotations: captions table not found: {d.annotations}")
    if d.cache is not None:
        if not Path(d.cache).is_dir():
            problems.append(f"data.cache: frame cache folder not found: {d.cache}")
    elif spec.annotations == "shards":
        pass  # the videos are in the shards
    elif d.videos is None:
        problems.append("data.videos and data.cache are both null: give a videos folder or a frame cache")
    elif not Path(d.videos).is_dir():
        problems.append(f"data.videos: folder not found: {d.videos}")


def _eval_problems(config: RunConfig, check: _Checker) -> None:
    from .evaluation.postprocess import check_postprocessors

    e = config.eval
    _capture(check.problems, lambda: check_postprocessors(e.postprocess))
    for key in ("batch_size", "text_batch_size", "block_size", "every_epochs"):
        check.at_least(f"eval.{key}", getattr(e, key), 1)


def _train_problems(config: RunConfig, check: _Checker) -> None:
    t, o = config.train, config.optim
    check.at_least("train.epochs", t.epochs, 1)
    check.at_least("train.batch_size", t.batch_size, 1)
    check.at_least("train.log_every_steps", t.log_every_steps, 1)
    check.at_least("train.save_every_steps", t.save_every_steps, 1, optional=True)
    check.at_least("train.max_steps", t.max_steps, 1, optional=True)
    if not 0 <= t.seed <= _SEED_MAX:
        check.problems.append(f"train.seed must be an integer in [0, {_SEED_MAX}], got {t.seed!r}")
    check.positive("optim.lr", o.lr)
    check.positive("optim.eps", o.eps)
    for i, beta in enumerate(o.betas):
        check.within(f"optim.betas[{i}]", beta, 0.0, 1.0, high_open=True)
    check.within("optim.weight_decay", o.weight_decay, 0.0, math.inf, high_open=True)
    check.within("optim.warmup", o.warmup, 0.0, 1.0)
    check.positive("optim.grad_clip", o.grad_clip, optional=True)
    if config.resume not in (None, "auto") and not Path(config.resume).is_file():
        check.problems.append(f"resume: training state not found: {config.resume} (use 'auto' or a state file)")


def _device_problems(device: str, problems: list[str]) -> None:
    import torch

    if device == "auto":
        return
    try:
        parsed = torch.device(device)
    except RuntimeError:
        problems.append(f"train.device must be auto, cpu, cuda or a torch device such as cuda:1, got {device!r}")
        return
    if parsed.type == "cuda" and not torch.cuda.is_available():
        problems.append(f"train.device={device}, but no CUDA device is available here; use auto or cpu")


def _capture(problems: list[str], run: Callable[[], None]) -> bool:
    """Run a check that raises; its message joins ``problems``. True when it passed."""
    try:
        run()
    except CmadapterError as exc:
        problems.append(str(exc))
        return False
    return True
