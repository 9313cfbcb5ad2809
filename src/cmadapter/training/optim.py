"""The paper's optimisation: Adam (0.9, 0.98), eps 1e-6, decoupled weight decay on weights only,
linear warm-up over the first 10% of steps then cosine to zero. Only trainable tensors are optimised."""

from __future__ import annotations

import math

import torch

from ..config import OptimConfig
from ..errors import CmadapterError
from ..methods import Method


def build_optimizer(method: Method, config: OptimConfig) -> torch.optim.Optimizer:
    groups = method.param_groups(config.lr, config.weight_decay)
    if not any(g["params"] for g in groups):
        raise CmadapterError(f"method {method.name!r} has nothing to train")
    # AdamW is Adam with decoupled weight decay. The fused kernel where torch has one: on CPU the default
    # per-tensor loop was several times slower for full fine-tuning's tensors (docs/BENCHMARKS.md).
    params = [p for g in groups for p in g["params"]]
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps, fused=fused or None)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = int(config.warmup * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
