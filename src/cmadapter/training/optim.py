"""The optimizers and schedules a run can name (``optim.name``, ``optim.schedule``).

``adamw``: Adam (0.9, 0.98), eps 1e-6, decoupled weight decay on weights only, as torch's AdamW.
``bert-adam``: the official code's rule (``bert_adam.py``): no bias correction, decay inside the update.
Schedules: ``cosine`` (linear warm-up over the first ``warmup`` fraction of steps, then a cosine to zero
over the rest), ``constant`` (the warm-up only) and ``warmup-cosine-total`` (the official code's, below).
Only trainable tensors are optimised.
"""

from __future__ import annotations

import math

import torch

from ..config import OptimConfig
from ..errors import CmadapterError
from ..methods import Method
from .bert_adam import BertAdam


def build_optimizer(method: Method, config: OptimConfig) -> torch.optim.Optimizer:
    groups = method.param_groups(config.lr, config.weight_decay)
    if not any(g["params"] for g in groups):
        raise CmadapterError(f"method {method.name!r} has nothing to train")
    if config.name == "bert-adam":
        return BertAdam(groups, lr=config.lr, betas=config.betas, eps=config.eps)
    # AdamW is Adam with decoupled weight decay. The fused kernel where torch has one: on CPU the default
    # per-tensor loop was several times slower for full fine-tuning's tensors (docs/BENCHMARKS.md).
    params = [p for g in groups for p in g["params"]]
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps, fused=fused or None)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    if config.schedule == "warmup-cosine-total":

        def factor(step: int) -> float:
            return warmup_cosine_total(step, total_steps, config.warmup)

    else:
        warmup = int(config.warmup * total_steps)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if config.schedule == "constant":
                return 1.0
            progress = (step - warmup) / max(1, total_steps - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def warmup_cosine_total(step: int, total_steps: int, warmup: float) -> float:
    """The official code's schedule, as a factor of the base lr before update ``step`` (from 0).

    On the progress ``x = step / total_steps``: ``x / warmup`` while ``x < warmup``, then
    ``0.5·(1 + cos(π·x))``. So the first update has lr 0, and the cosine runs over all of training, not
    only the part after warm-up: at the end of a 10% warm-up the factor drops from ~1 to 0.976.
    """
    x = step / max(1, total_steps)
    if x < warmup:
        return x / warmup
    return 0.5 * (1.0 + math.cos(math.pi * x))
