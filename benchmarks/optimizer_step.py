"""Time one optimizer step over ViT-B/32's real trainable tensors: bert-adam per tensor vs foreach, and
torch's fused AdamW for reference. Random weights and gradients (the values do not change the time).

    python benchmarks/optimizer_step.py [--methods cross-modal,full] [--steps 20] [--device cpu]

Prints, per method and optimizer, the median seconds of ``steps`` steps after two warm-up steps.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cmadapter import build_model
from cmadapter.config import OptimConfig
from cmadapter.training.bert_adam import BertAdam
from cmadapter.training.optim import build_optimizer


def variants(method, config: OptimConfig):
    groups = lambda: method.param_groups(config.lr, config.weight_decay)
    yield "bert-adam per tensor", BertAdam(groups(), lr=config.lr, betas=config.betas, eps=config.eps, foreach=False)
    yield "bert-adam foreach", BertAdam(groups(), lr=config.lr, betas=config.betas, eps=config.eps, foreach=True)
    yield "adamw fused (torch)", build_optimizer(method, config)


def median_step_seconds(optimizer: torch.optim.Optimizer, device: torch.device, steps: int) -> float:
    times = []
    for i in range(steps + 2):
        began = time.perf_counter()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 2:
            times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="cross-modal,full")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device}")
    print("| method | tensors | parameters | optimizer | s/step |")
    print("|---|---:|---:|---|---:|")
    for name in args.methods.split(","):
        model = build_model("ViT-B-32-quickgelu", None, method=name, device=device)
        method = model.method
        params = list(method.trainable_tensors().values())
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        count = sum(p.numel() for p in params)
        for label, optimizer in variants(method, OptimConfig()):
            seconds = median_step_seconds(optimizer, device, args.steps)
            print(f"| {name} | {len(params)} | {count:,} | {label} | {seconds:.4f} |", flush=True)
            del optimizer
        del model, method, params


if __name__ == "__main__":
    main()
