"""The demo's split of a training step into arithmetic (FLOPs at the matmul peak) and overhead."""

import pytest

from cmadapter.demo.step_time import step_time_line, step_time_parts


def test_a_step_splits_into_its_flops_at_the_peak_and_the_rest(tiny_weights):
    parts = step_time_parts(
        tiny_weights, batch=2, frames=2, methods={"full": {}, "cross-modal": {}}, steps=2, matmul_size=256
    )
    peak = parts["matmul_peak_gflops_per_cpu_second"] * 1e9
    full, adapter = parts["methods"]["full"], parts["methods"]["cross-modal"]
    for row in (full, adapter):
        assert row["compute_seconds"] == pytest.approx(row["gflop"] * 1e9 / peak)
        assert row["overhead_seconds"] == pytest.approx(max(row["step_cpu_seconds"] - row["compute_seconds"], 0))
        assert row["step_wall_seconds_fastest"] > 0
        assert 0 <= row["overhead_share"] <= 1 and row["gflop"] > 0
    # The adapter computes no weight gradients for the frozen backbone: fewer FLOPs than full fine-tuning.
    assert adapter["flops_vs_full"] < 1 and full["flops_vs_full"] == 1
    assert adapter["trainable_params"] < full["trainable_params"]
    line = step_time_line(parts)
    assert "full fine-tuning's FLOPs" in line and "bench train-step" in line and "docs/BENCHMARKS.md" in line
