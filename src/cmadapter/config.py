"""Run configuration: typed dataclasses, loaded from YAML recipes and ``key=value`` overrides.

Unknown keys and wrong types are errors that name the key and the file. ``configs/`` holds the paper's
recipes; every field below has the MSR-VTT recipe's value (DESIGN.md §1) as its default, except the
optimizer and schedule: the recipes name the official code's (``bert-adam``, ``warmup-cosine-total``),
the defaults are torch's fused AdamW and our schedule.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import CmadapterError


@dataclass
class ModelConfig:
    backbone: str | None = "ViT-B-32-quickgelu"  # open_clip name; may be None with a weights file
    pretrained: str | None = "openai"  # None (random), "openai"/an open_clip tag, or a weights file
    method: str | None = "cross-modal"  # None trains nothing (zero-shot evaluation)
    method_options: dict[str, Any] = field(default_factory=lambda: {"r": 8, "shared_dim": 16})
    head: Literal["text-pool", "meanP"] = "text-pool"
    temperature: float = 5.0  # text-pool softmax temperature
    context_length: int = 32  # caption tokens, start and end included


@dataclass
class DataConfig:
    dataset: str = "msrvtt"
    annotations: str = ""  # folder with the dataset's annotation files
    videos: str | None = None  # raw videos (or pre-extracted frame folders)
    cache: str | None = None  # frame cache written by `cmadapter prepare`; preferred when given
    dataset_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"train_list": "7k"} for MSR-VTT
    train_split: str = "train"
    val_split: str | None = None  # best epoch chosen on it; None: the last epoch is used (and said so)
    test_split: str | None = "test"  # evaluated once at the end of training; None: no test split
    fps: float = 1.0
    max_frames: int = 12
    sampling: Literal["all", "one-per-video"] = "all"  # MSR-VTT recipe: every caption is a sample
    missing: Literal["fail", "drop"] = "fail"  # a training video that cannot be found
    workers: int = 4


@dataclass
class OptimConfig:
    # adamw: torch's AdamW. bert-adam: the official code's rule (no bias correction, decay inside the
    # update), which the recipes in configs/ use; see training/optim.py.
    name: Literal["adamw", "bert-adam"] = "adamw"
    lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.2  # decoupled; weights only, never biases
    warmup: float = 0.1  # fraction of all steps with a linear warm-up
    # cosine: warm-up as (step+1)/warmup steps, then a cosine over the rest; constant: no cosine;
    # warmup-cosine-total: the official code's (first update at lr 0, the cosine spans all of training).
    schedule: Literal["cosine", "constant", "warmup-cosine-total"] = "cosine"
    grad_clip: float | None = 1.0


@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int = 128  # global: split evenly over the processes
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    grad_checkpointing: bool = False
    # Under bf16/fp16, keep the frozen backbone weights in that dtype (bitwise the same results, less memory).
    frozen_weights_in_autocast_dtype: bool = True
    seed: int = 42
    device: str = "auto"  # auto, cpu, cuda
    save_every_steps: int | None = None  # besides the end of every epoch
    log_every_steps: int = 10
    max_steps: int | None = None  # stop early (smoke runs, demos); the schedule still spans all epochs


@dataclass
class EvalConfig:
    batch_size: int = 32  # videos per encoding batch
    text_batch_size: int = 256
    block_size: int = 1024  # similarity computed in blocks of this many texts x videos
    v2t: Literal["best-caption", "clip4clip"] = "best-caption"
    postprocess: list[str] = field(default_factory=list)  # dual-softmax, inverted-softmax, qb-norm
    every_epochs: int = 1  # validation frequency when a validation split exists


@dataclass
class RunConfig:
    name: str = "run"
    output_dir: str = "runs"
    resume: str | None = None  # "auto" (latest state in the run folder) or a state file
    resume_force: bool = False  # resume even where the config differs from the state's (resume_check.py)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> RunConfig:
    """A ``RunConfig`` from a YAML file (optional) plus ``section.key=value`` overrides."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise CmadapterError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise CmadapterError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise CmadapterError(f"cannot read config file {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise CmadapterError(f"{path} must hold a mapping of sections, got {type(data).__name__}")
    if isinstance(overrides, dict):
        pairs = list(overrides.items())
    else:
        pairs = [_split_assignment(item) for item in overrides or []]
    for key, value in pairs:
        _assign(data, key, value)
    return from_dict(RunConfig, data, where=source)


def save_config(config: RunConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(plain(config.to_dict()), sort_keys=False))


def from_dict(cls: type, data: dict[str, Any], *, where: str, prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise CmadapterError(f"{where}: '{prefix.rstrip('.') or 'config'}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise CmadapterError(
            f"{where}: unknown key '{prefix}{unknown[0]}'; valid keys here are {', '.join(sorted(fields))}"
        )
    values = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = from_dict(hint, value, where=where, prefix=f"{prefix}{name}.")
        else:
            values[name] = check_type(value, hint, f"{prefix}{name}", where)
    return cls(**values)


def check_type(value: Any, hint: Any, key: str, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)

    def fail() -> typing.NoReturn:
        raise CmadapterError(f"{where}: '{key}' must be {_describe(hint)}, got {value!r}")

    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return check_type(value, option, key, where)
            except CmadapterError:
                continue
        fail()
    if hint is type(None):
        return None if value is None else fail()
    if origin is Literal:
        return value if value in args else fail()
    if hint is bool:
        return value if isinstance(value, bool) else fail()
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else fail()
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-5" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        fail()
    if hint is str:
        return value if isinstance(value, str) else fail()
    if origin is list:
        if not isinstance(value, (list, tuple)):
            fail()
        return [check_type(v, args[0], f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            fail()
        return tuple(check_type(v, a, f"{key}[{i}]", where) for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            fail()
        return dict(value)
    raise TypeError(f"unsupported config type {hint} for {key}")  # a bug in this module, not user input


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def _split_assignment(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise CmadapterError(f"overrides look like section.key=value, got {item!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def _assign(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    target = data
    for part in parts[:-1]:
        child = target.setdefault(part, {})
        if not isinstance(child, dict):
            raise CmadapterError(f"override {dotted!r}: '{part}' is not a section")
        target = child
    target[parts[-1]] = value


def plain(value: Any) -> Any:
    """Plain YAML/JSON values: tuples become lists, recursively."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
