"""Facts about the machine a benchmark ran on, and its practical matmul peak."""

from __future__ import annotations

import os
import platform
import time

import torch


def describe_machine(device: torch.device) -> dict[str, str | int]:
    facts: dict[str, str | int] = {
        "cpu": _cpu_name(),
        "cores": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(device)
    return facts


def matmul_peak_flops(device: torch.device, dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """Achieved FLOP/s of a large square matmul in ``dtype``: the practical peak a step can approach."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    a @ b  # warm-up: kernel selection, page faults
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - began)
    return 2 * size**3 / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
