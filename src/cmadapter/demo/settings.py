"""The demo's settings and the run config every method of it shares (the video demo, its learning curve, its
second domain and the image demo build on these)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import RunConfig, load_config
from ..errors import CmadapterError
from ..evaluation.compare import MethodRun, expand_methods
from ..evaluation.tables import ZERO_SHOT
from .pretrain import PretrainConfig
from .synthetic import SyntheticConfig

METHODS = (ZERO_SHOT, "cross-modal", "uni-modal", "full")


@dataclass(frozen=True)
class DemoSettings:
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    epochs: int = 12  # x 46 steps of 32 captions: ~550 steps, the same for every method
    batch_size: int = 32
    lr: float = 2e-3  # adapters; full fine-tuning takes lr x full_backbone_lr_scale for the backbone
    full_backbone_lr_scale: float = 0.05
    r: int = 8
    shared_dim: int = 16
    seed: int = 42  # pretraining's and training's; replaces pretrain.seed

    def __post_init__(self) -> None:
        # One seed for every stage, so a results file's seed says how all of it was drawn.
        object.__setattr__(self, "pretrain", dataclasses.replace(self.pretrain, seed=self.seed))

    @classmethod
    def quick(cls) -> DemoSettings:
        return cls(synthetic=SyntheticConfig.quick(), pretrain=PretrainConfig.quick(), epochs=8)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def demo_config(settings: DemoSettings, data, weights: Path, cache: Path, out: Path) -> RunConfig:
    """The run config every method shares: the real MSR-VTT reader, the frame cache, the tiny backbone."""
    return load_config(
        None,
        {
            "name": "demo",
            "output_dir": str(out),
            "model.backbone": None,
            "model.pretrained": str(weights),
            "model.method_options": {"r": settings.r, "shared_dim": settings.shared_dim},
            "data.dataset": "msrvtt",
            "data.annotations": str(data.annotations),
            "data.videos": str(data.video_dir),
            "data.cache": str(cache),
            "data.fps": 1.0,  # one frame per object
            "data.max_frames": settings.synthetic.objects_per_video,
            "data.workers": 0,  # frames come from the cache: decoding is not the bottleneck
            "train.epochs": settings.epochs,
            "train.batch_size": settings.batch_size,
            "train.precision": "fp32",  # tiny matrices: bf16 buys nothing on CPU at this size
            "train.seed": settings.seed,
            "train.log_every_steps": 20,
            # AdamW and our warm-up + cosine, not the paper recipes' bert-adam: the demo's learning rates
            # and budget were chosen with them, and the demo shows the method, not the official optimizer.
            "optim.name": "adamw",
            "optim.schedule": "cosine",
            "optim.lr": settings.lr,
        },
    )


def demo_runs(settings: DemoSettings, methods: Sequence[str] = METHODS) -> list[MethodRun]:
    """The demo's settings for each method (``all``: every registered one): bottlenecks and ranks at the
    demo's ``r`` (the tiny CLIP is 128 wide, so AdaptFormer's usual 64 would not be a bottleneck), MaPLe in
    every block (the tiny towers have 3), the backbone learning-rate scale of full fine-tuning for partial
    fine-tuning too."""
    from ..methods import METHODS as REGISTERED

    arch = settings.pretrain.architecture
    options: dict[str, dict[str, Any]] = {
        "cross-modal": {"r": settings.r, "shared_dim": settings.shared_dim},
        "uni-modal": {"r": settings.r},
        "adapter-attn": {"r": settings.r},
        "maple": {"depth": min(arch.vision_layers, arch.text_layers)},  # MaPLe's 9 of 12 blocks: all of ours
        "adaptformer": {"r": settings.r},
        "lora": {"r": settings.r, "alpha": float(settings.r)},
        "full": {"backbone_lr_scale": settings.full_backbone_lr_scale},
        "partial": {"backbone_lr_scale": settings.full_backbone_lr_scale},
    }
    runs = []
    for name in expand_methods(methods):
        if name != ZERO_SHOT and name not in REGISTERED:
            raise CmadapterError(f"unknown method {name!r}; choose from all, {ZERO_SHOT}, {', '.join(REGISTERED)}")
        runs.append(MethodRun(name, name, options.get(name, {})))
    return runs


def variant_name(*, quick: bool, custom: bool) -> str:
    """The folder under the demo's output of a preset (``default``, ``quick``) or of settings given in code."""
    return "custom" if custom else "quick" if quick else "default"
