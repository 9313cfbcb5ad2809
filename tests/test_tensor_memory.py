"""The tensors' peak during a step: what was held at its start plus the highest running total of its allocations."""

import torch

from cmadapter.bench.tensor_memory import held_bytes, peak_tensor_memory_mb


def test_held_bytes_counts_each_storage_once():
    a = torch.zeros(1000)  # 4,000 bytes
    b = torch.zeros(10, dtype=torch.float64)  # 80 bytes
    assert held_bytes([a, a[10:], a.view(10, 100), b]) == 4080


def test_peak_counts_the_largest_moment_not_the_sum_of_allocations():
    held = torch.zeros(2**18)  # 1 MiB

    def step():
        for _ in range(3):  # three 4 MiB tensors, one at a time: the peak is one of them
            x = torch.ones(2**20)
            del x
        y = torch.ones(2**20)  # then two 4 MiB tensors alive together
        z = torch.ones(2**20)
        del y, z

    peak = peak_tensor_memory_mb(step, [held])
    assert 1 + 8 <= peak < 1 + 8 + 0.5
