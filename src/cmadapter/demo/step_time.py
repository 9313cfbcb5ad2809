"""How much of a demo training step is the model's arithmetic, and how much is overhead at this size.

The paper's "about 30% less training time" comes from the backbone's weight gradients the adapter does not
compute: a third of a step's FLOPs. That only shows when the FLOPs are most of the step. On the demo's
tiny CLIP they need not be: a step of a 3-block, 128-wide model also spends time on what does not shrink
with the FLOPs (Python and autograd dispatch, many small kernels, the optimizer's per-tensor loop,
memory-bound element-wise work). Here each method runs the trainer's step (both towers, the head, the loss,
backward, clipping, AdamW) on the demo's backbone file, batch and frames in fp32 as the demo trains; its
FLOPs are counted and set against this CPU's fp32 matmul peak: ``compute_seconds`` is what the FLOPs would
take at that peak, the rest of the step is ``overhead_seconds``. Both are CPU seconds (the process's own
CPU time, steps and peak alike): on a shared machine wall time also counts the time other work held the
cores; under a load of 13 on 2 cores, wall-time ratios of the same two steps moved from 0.60x to 0.96x
between runs. The methods' steps take turns, one each per round, and the median round counts; each
method's fastest wall-clock step is kept beside it.
ViT-B/32's figures, where the FLOPs dominate, are ``cmadapter bench train-step``'s (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_COMMAND = "cmadapter bench train-step --methods full,cross-modal,uni-modal --precision bf16 --rounds 2 --steps 5"


def _training_step(
    weights: Path, method: str, options: dict[str, Any], batch: int, frames: int
) -> tuple[Callable, int]:
    """One training step of ``method`` on random inputs (its cost does not depend on their values), as
    ``bench train-step`` builds it; and the method's trainable parameter count."""
    import torch

    from ..config import OptimConfig
    from ..model import build_model
    from ..training.distributed import init_distributed
    from ..training.stepper import build_stepper

    context = init_distributed("cpu")
    torch.manual_seed(0)
    model = build_model(None, str(weights), method=method, device=context.device, **options)
    model.store_frozen_weights(torch.float32)
    stepper = build_stepper(model, OptimConfig(), "fp32", context)
    size = model.image_size
    clips = torch.randn(batch, frames, 3, size, size)
    mask = torch.ones(batch, frames, dtype=torch.bool)
    tokens = model.tokenize([f"a red square appears and then shape number {i}" for i in range(batch)])

    def step() -> None:
        stepper.compute_gradients(tokens, clips, mask)
        stepper.apply_gradients()

    return step, model.num_parameters()["trainable_params"]


def _cpu_time_matmul_peak(size: int) -> float:
    """FLOPs per CPU second of ``size``² fp32 matmuls, the best of five (``bench``'s peak, in CPU time)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up: kernel selection, page faults
    best = 0.0
    for _ in range(5):
        began = time.process_time()
        a @ b
        best = max(best, 2 * size**3 / max(time.process_time() - began, 1e-9))
    return best


def step_time_parts(
    weights: Path,
    *,
    batch: int,
    frames: int,
    methods: dict[str, dict[str, Any]],
    steps: int = 20,
    warmup: int = 3,
    matmul_size: int = 2048,
) -> dict[str, Any]:
    """Per method (name -> options): the fastest step of ``steps`` rounds, its FLOPs and the part of it
    beyond the FLOPs at the machine's fp32 matmul peak (timed on ``matmul_size``² matrices, as the
    benchmark does); and each method's ratios to ``full`` where ``full`` is among them."""
    from torch.utils.flop_counter import FlopCounterMode

    peak = _cpu_time_matmul_peak(matmul_size)
    built = {name: _training_step(weights, name, options, batch, frames) for name, options in methods.items()}
    for step, _ in built.values():
        for _ in range(warmup):
            step()
    cpu_times: dict[str, list[float]] = {name: [] for name in built}
    wall_times: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(steps):
        for name, (step, _) in built.items():
            began, began_cpu = time.perf_counter(), time.process_time()
            step()
            cpu_times[name].append(time.process_time() - began_cpu)
            wall_times[name].append(time.perf_counter() - began)
    rows: dict[str, dict[str, Any]] = {}
    for name, (step, trainable) in built.items():
        with FlopCounterMode(display=False) as counter:
            step()
        rows[name] = {
            "step_cpu_seconds": statistics.median(cpu_times[name]),
            "step_wall_seconds_fastest": min(wall_times[name]),
            "gflop": counter.get_total_flops() / 1e9,
            "trainable_params": trainable,
        }
    # The better of two timings of the peak (before and after the steps), as the benchmark does.
    peak = max(peak, _cpu_time_matmul_peak(matmul_size))
    for row in rows.values():
        row["compute_seconds"] = row["gflop"] * 1e9 / peak
        row["overhead_seconds"] = max(row["step_cpu_seconds"] - row["compute_seconds"], 0.0)
        row["overhead_share"] = row["overhead_seconds"] / row["step_cpu_seconds"]
    full = rows.get("full")
    if full is not None:
        for row in rows.values():
            row["time_vs_full"] = row["step_cpu_seconds"] / full["step_cpu_seconds"]
            row["wall_time_vs_full"] = row["step_wall_seconds_fastest"] / full["step_wall_seconds_fastest"]
            row["flops_vs_full"] = row["gflop"] / full["gflop"]
    return {
        "batch": batch,
        "frames": frames,
        "precision": "fp32",
        "rounds": steps,
        "matmul_peak_gflops_per_cpu_second": peak / 1e9,
        "methods": rows,
        "vit_b32": f"`{BENCH_COMMAND}` (docs/BENCHMARKS.md)",
    }


def step_time_line(parts: dict[str, Any]) -> str:
    """One paragraph for results.md and the CLI."""
    rows = parts["methods"]
    described = "; ".join(
        f"{name} {row['step_cpu_seconds'] * 1000:.0f} ms, of which {row['compute_seconds'] * 1000:.1f} ms would be "
        f"its {row['gflop']:.2f} GFLOP at the peak ({100 * row['overhead_share']:.0f}% overhead)"
        for name, row in rows.items()
    )
    line = (
        f"Step time at this size (batch {parts['batch']} × {parts['frames']} frames, fp32; CPU time, the median "
        f"of {parts['rounds']} rounds taking turns; this CPU's fp32 matmul peak "
        f"{parts['matmul_peak_gflops_per_cpu_second']:.0f} GFLOP per CPU second): {described}."
    )
    adapter = next((row for name, row in rows.items() if name != "full" and "time_vs_full" in row), None)
    if adapter is not None:
        line += (
            f" The adapter does {adapter['flops_vs_full']:.2f}× full fine-tuning's FLOPs in "
            f"{adapter['time_vs_full']:.2f}× its CPU time ({adapter['wall_time_vs_full']:.2f}× its fastest wall-clock "
            "step); the overhead does not shrink with the FLOPs."
        )
    return line + f" For ViT-B/32, where the FLOPs are most of a step: {parts['vit_b32']}."
