"""Peak memory held by tensors during a step on CPU: the counterpart of CUDA's ``max_memory_allocated``.

A process's resident set also counts what the C allocator keeps after tensors are freed. glibc's heap
does not return the gaps between tensors that are still alive, and an adapter step (many activations of
a few similar sizes, freed in the reverse order) leaves a large share of its peak in them at the end of a
forward pass (``mallinfo2`` figures in docs/BENCHMARKS.md). This counts only the bytes PyTorch's allocator
hands out: what the step's tensors held when it began, plus the highest running total of the
allocations and frees the profiler records during the step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


def held_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (views and shared tensors counted once)."""
    storages: dict[int, int] = {}
    for tensor in tensors:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def peak_tensor_memory_mb(step: Callable[[], None], held: Iterable[torch.Tensor]) -> float:
    """Run ``step`` once under the profiler; the peak of tensor memory in MiB, ``held`` included.

    ``held`` are the tensors alive when the step begins (parameters, buffers, optimizer state, inputs):
    the profiler only sees what is allocated while it runs."""
    from torch.profiler import ProfilerActivity, profile

    baseline = held_bytes(held)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        step()
    changes = sorted(
        (event.start_ns(), event.nbytes())
        for event in profiler.profiler.kineto_results.events()
        if event.name() == "[memory]" and event.device_type() == torch.autograd.DeviceType.CPU
    )
    running = peak = 0
    for _, nbytes in changes:
        running += nbytes
        peak = max(peak, running)
    return (baseline + peak) / 2**20
