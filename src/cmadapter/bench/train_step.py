"""``cmadapter bench train-step``: time and memory of full training steps, per method, against ``full``.

Each (method, precision) runs in a fresh process so that peak memory (RSS on CPU, the allocator's peak
on GPU) is its own; on CPU the tensors' own peak is measured beside it (``tensor_memory``), without what
the C allocator keeps between them. A step is what the trainer runs: forward of both towers, the head, the symmetric
InfoNCE loss, backward, gradient clipping and the AdamW update. Random weights and random inputs:
the cost of a step does not depend on their values.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

import torch

from ..errors import CmadapterError
from ..precision import DTYPES
from .machine import describe_machine, matmul_peak_flops
from .tensor_memory import peak_tensor_memory_mb


@dataclass
class TrainStepSettings:
    backbone: str | None = "ViT-B-32-quickgelu"
    pretrained: str | None = None  # random weights by default: the timing does not depend on them
    frames: int = 12
    batch: int = 8
    precision: str = "bf16"
    method: str = "cross-modal"
    options: dict = field(default_factory=dict)
    steps: int = 5
    warmup: int = 2
    grad_checkpointing: bool = False
    device: str = "auto"
    nproc_per_node: int = 1  # > 1: the step runs data-parallel under torchrun (gloo on CPU, nccl on GPU)


def measure(settings: TrainStepSettings) -> dict:
    """Run in the current process; returns the step figures of one method."""
    from torch.utils.flop_counter import FlopCounterMode

    from ..config import OptimConfig
    from ..model import build_model
    from ..training.distributed import init_distributed
    from ..training.memory import peak_memory_mb, resident_memory_mb
    from ..training.stepper import build_stepper

    context = init_distributed(settings.device)  # one process, or this rank of torchrun's group
    device = context.device
    import open_clip  # noqa: F401  (imported by building the model anyway; here so the baseline holds it)

    # What the libraries alone hold (torch, open_clip, torchvision), the same for every method;
    # subtracting it gives the CPU counterpart of CUDA's max_memory_allocated.
    libraries_mb = resident_memory_mb() if device.type == "cpu" else 0.0
    torch.manual_seed(0)
    model = build_model(
        settings.backbone, settings.pretrained, method=settings.method, device=device, **settings.options
    )
    if settings.grad_checkpointing:
        model.clip.set_grad_checkpointing(True)
    model.store_frozen_weights(DTYPES[settings.precision])  # as the trainer does
    stepper = build_stepper(model, OptimConfig(), settings.precision, context)
    optimizer = stepper.optimizer
    size = model.image_size
    frames = torch.randn(settings.batch, settings.frames, 3, size, size, device=device)
    mask = torch.ones(settings.batch, settings.frames, dtype=torch.bool, device=device)
    tokens = model.tokenize([f"a person does thing number {i} on a sunny day" for i in range(settings.batch)])

    def step() -> None:
        stepper.compute_gradients(tokens, frames, mask)
        stepper.apply_gradients()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(max(1, settings.warmup)):
        step()
    times = []
    for _ in range(settings.steps):
        began = time.perf_counter()
        step()
        times.append(time.perf_counter() - began)
    seconds = statistics.median(times)
    peak = peak_memory_mb(device)  # before the counted step: under the FLOP counter, checkpointed blocks
    # keep what they would otherwise drop, which raised this peak (docs/BENCHMARKS.md)
    if device.type == "cpu":
        optimizer_state = [t for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t)]
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        held = [*model.parameters(), *model.buffers(), *optimizer_state, *grads, frames, mask, tokens]
        tensor_peak = peak_tensor_memory_mb(step, held)
    else:
        tensor_peak = peak  # CUDA's max_memory_allocated is already the tensors' peak
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    counts = model.num_parameters()
    return {
        "method": settings.method,
        "precision": settings.precision,
        "world_size": context.world_size,
        # What a step sends between processes: every trainable gradient (fp32) all-reduced, plus the features.
        "allreduce_mb_per_step": counts["trainable_params"] * 4 / 2**20 if context.world_size > 1 else 0.0,
        "grad_checkpointing": settings.grad_checkpointing,
        "step_seconds": seconds,
        "step_seconds_all": times,
        "samples_per_second": settings.batch / seconds,
        "peak_memory_mb": peak,
        "libraries_memory_mb": libraries_mb,
        "model_memory_mb": peak - libraries_mb,
        "peak_tensor_memory_mb": tensor_peak,
        "trainable_params": counts["trainable_params"],
        "total_params": counts["total_params"],
        "step_flops": flops,
        "achieved_flops_per_second": flops / seconds,
    }


def run_isolated(settings: TrainStepSettings) -> dict:
    """``measure`` in a fresh Python process (its own peak memory)."""
    worker = ["-m", "cmadapter.bench.train_step", json.dumps(asdict(settings))]
    if settings.nproc_per_node > 1:  # each process steps its own batch; the loss is over the global batch
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={settings.nproc_per_node}"]
        worker = [*launcher, *worker]
    result = subprocess.run([sys.executable, *worker], capture_output=True, text=True)
    if result.returncode != 0:
        raise CmadapterError(f"benchmark of {settings.method} ({settings.precision}) failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def plan(
    base: TrainStepSettings,
    methods: list[str],
    precisions: list[str],
    *,
    checkpointing: bool = False,
    rounds: int = 1,
) -> dict:
    """Check the settings (one-line errors) and list the processes ``benchmark`` would run, running none."""
    from .checks import check_settings

    check_settings(
        backbone=base.backbone,
        pretrained=base.pretrained,
        methods=methods,
        options=base.options,
        precisions=precisions,
        device=base.device,
        counts={
            "batch": base.batch,
            "frames": base.frames,
            "steps": base.steps,
            "rounds": rounds,
            "processes": base.nproc_per_node,
        },
    )
    variants = [False, True] if checkpointing else [base.grad_checkpointing]
    runs = [
        {"method": method, "precision": precision, "grad_checkpointing": ckpt}
        for precision in precisions
        for _ in range(rounds)
        for method in methods
        for ckpt in variants
    ]
    return {"benchmark": "train-step", "dry_run": True, "settings": asdict(base), "runs": runs}


def benchmark(
    base: TrainStepSettings,
    methods: list[str],
    precisions: list[str],
    *,
    checkpointing: bool = False,
    rounds: int = 1,
) -> dict:
    """Every method at every precision (``full`` first, the reference), plus each precision's matmul peak.

    With ``rounds`` > 1 each method runs in that many fresh processes, the methods taking turns (full,
    adapter, full, adapter, ...), and the step times of all its rounds are pooled before the median: a
    slow spell of a shared machine then lands on every method rather than on one."""
    from ..training.distributed import resolve_device

    runs = plan(base, methods, precisions, checkpointing=checkpointing, rounds=rounds)["runs"]  # checks first
    device = resolve_device(base.device)
    rows: dict[str, dict] = {}
    for precision in precisions:
        peak = matmul_peak_flops(device, DTYPES[precision])
        measured: dict[str, list[dict]] = {}
        for run in (r for r in runs if r["precision"] == precision):  # the plan's order: rounds take turns
            key = _key(run["method"], precision, run["grad_checkpointing"], len(precisions) > 1)
            measured.setdefault(key, []).append(run_isolated(TrainStepSettings(**{**asdict(base), **run})))
        # Timed again after the steps: the better of the two stands for the machine's peak.
        peak = max(peak, matmul_peak_flops(device, DTYPES[precision]))
        for key, results in measured.items():
            row = _pool(results)
            row["matmul_peak_flops_per_second"] = peak
            row["fraction_of_matmul_peak"] = row["achieved_flops_per_second"] / peak
            rows[key] = row
    for row in rows.values():
        reference = rows.get(_key("full", row["precision"], row["grad_checkpointing"], len(precisions) > 1))
        row["time_ratio_to_full"] = row["step_seconds"] / reference["step_seconds"] if reference else None
        row["memory_ratio_to_full"] = row["peak_memory_mb"] / reference["peak_memory_mb"] if reference else None
        row["model_memory_ratio_to_full"] = row["model_memory_mb"] / reference["model_memory_mb"] if reference else None
        row["tensor_memory_ratio_to_full"] = (
            row["peak_tensor_memory_mb"] / reference["peak_tensor_memory_mb"] if reference else None
        )
    return {
        "benchmark": "train-step",
        "settings": {k: v for k, v in asdict(base).items() if k not in ("method", "precision")} | {"rounds": rounds},
        "machine": describe_machine(device),
        "methods": rows,
    }


def _pool(runs: list[dict]) -> dict:
    """One row from a method's rounds: the median over all their steps, the largest peak memory (less the
    libraries' median baseline for the memory above them) and the largest tensor peak."""
    row = dict(runs[0])
    times = [t for run in runs for t in run["step_seconds_all"]]
    seconds = statistics.median(times)
    peak = max(run["peak_memory_mb"] for run in runs)
    libraries = statistics.median(run["libraries_memory_mb"] for run in runs)
    row.update(
        rounds=len(runs),
        step_seconds=seconds,
        step_seconds_all=times,
        samples_per_second=row["samples_per_second"] * row["step_seconds"] / seconds,
        achieved_flops_per_second=row["step_flops"] / seconds,
        peak_memory_mb=peak,
        libraries_memory_mb=libraries,
        model_memory_mb=peak - libraries,
        peak_tensor_memory_mb=max(run["peak_tensor_memory_mb"] for run in runs),
    )
    return row


def _key(method: str, precision: str, checkpointing: bool, several_precisions: bool) -> str:
    key = f"{method}@{precision}" if several_precisions else method
    return key + "+ckpt" if checkpointing else key


def format_table(report: dict) -> str:
    lines = [
        "| method | precision | step (s) | samples/s | peak memory (MB) | above libraries (MB) | tensors (MB) "
        "| trainable | GFLOP/step | % of matmul peak | time vs full | memory vs full | above libraries vs full "
        "| tensors vs full |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def ratio(value: float | None) -> str:
        return "–" if value is None else f"{value:.3f}×"

    for key, r in report["methods"].items():
        lines.append(
            f"| {key} | {r['precision']} | {r['step_seconds']:.3f} | {r['samples_per_second']:.2f} "
            f"| {r['peak_memory_mb']:.0f} | {r['model_memory_mb']:.0f} | {r['peak_tensor_memory_mb']:.0f} "
            f"| {r['trainable_params']:,} | {r['step_flops'] / 1e9:.1f} | {100 * r['fraction_of_matmul_peak']:.0f}% "
            f"| {ratio(r['time_ratio_to_full'])} | {ratio(r['memory_ratio_to_full'])} "
            f"| {ratio(r['model_memory_ratio_to_full'])} | {ratio(r['tensor_memory_ratio_to_full'])} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # the isolated worker: settings as JSON in, one JSON line out
    from ..training.allocator import keep_freed_memory

    keep_freed_memory()  # as the CLI's training runs
    figures = measure(TrainStepSettings(**json.loads(sys.argv[1])))
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun: rank 0 reports (its own memory)
        print(json.dumps(figures))
