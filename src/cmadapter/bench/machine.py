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
        properties = torch.cuda.get_device_properties(device)
        facts.update(
            gpu=properties.name,
            gpu_memory_mb=properties.total_memory // 2**20,
            compute_capability=f"{properties.major}.{properties.minor}",
            cuda=torch.version.cuda or "unknown",
            cudnn=torch.backends.cudnn.version() or 0,
        )
    return facts


def cpu_facts(cpuinfo: str = "/proc/cpuinfo") -> dict[str, str]:
    """What decides a CPU run's exact numbers: the CPU, its bf16 kernels, torch's vector ISA and version.

    bf16 matmuls run on AMX tiles, AVX512-BF16 instructions or are emulated (``none``), and torch picks its
    vectorised kernels by ISA; each path rounds differently, and training amplifies the differences.
    """
    flags = set(_cpuinfo_field("flags", cpuinfo).split())
    bf16 = "AMX" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else "none"
    return {
        "cpu": _cpu_name(cpuinfo),
        "bf16_path": bf16,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
    }


def matmul_peak_flops(device: torch.device, dtype: torch.dtype, sizes: tuple[int, ...] | None = None) -> float:
    """Achieved FLOP/s of large square matmuls in ``dtype``, the best of a few: the practical peak a step
    can approach. One timing can land on a moment the shared machine is busy, hence the best of several.
    On a GPU the matrices are larger: a 2048² product takes tens of microseconds there, mostly launch cost."""
    if sizes is None:
        sizes = (8192,) if device.type == "cuda" else (2048,)
    best_rate = 0.0
    for size in sizes:
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
        a @ b  # warm-up: kernel selection, page faults
        _sync(device)
        for _ in range(5):
            began = time.perf_counter()
            a @ b
            _sync(device)
            best_rate = max(best_rate, 2 * size**3 / (time.perf_counter() - began))
    return best_rate


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    return _cpuinfo_field("model name", cpuinfo) or platform.processor() or "unknown"


def _cpuinfo_field(name: str, cpuinfo: str = "/proc/cpuinfo") -> str:
    """The first processor's ``name`` line in /proc/cpuinfo; empty where there is none (not Linux)."""
    try:
        with open(cpuinfo) as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return ""
