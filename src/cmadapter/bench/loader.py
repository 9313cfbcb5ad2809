"""``cmadapter bench loader``: is training input-bound? Samples/s the training data pipeline delivers (the
config's dataset, frame cache or videos, and workers) beside the samples/s a training step consumes."""

from __future__ import annotations

import statistics
import time

from torch.utils.data import DataLoader

from ..config import RunConfig


def benchmark(config: RunConfig, *, batches: int = 20, steps: int = 3) -> dict:
    from ..config import OptimConfig
    from ..datasets.clips import loader_settings
    from ..model import build_model_from_config
    from ..precision import DTYPES
    from ..training.data import build_training_data, frame_source
    from ..training.distributed import DistributedContext, resolve_device
    from ..training.sampler import EpochBatchSampler
    from ..training.stepper import build_stepper

    device = resolve_device(config.train.device)
    model = build_model_from_config(config.model, device)
    data = build_training_data(config, model)
    batch = config.train.batch_size
    sampler = EpochBatchSampler(len(data.train), batch, seed=config.train.seed)
    loader = DataLoader(
        data.train, batch_sampler=sampler, collate_fn=data.collate, **loader_settings(device, config.data.workers)
    )
    iterator = iter(loader)
    first = next(iterator)  # workers started, first batch ready: not part of the steady state
    began = time.perf_counter()
    delivered = 0
    for _ in range(min(batches, len(sampler) - 1)):
        delivered += len(next(iterator)[3])
    loader_seconds = time.perf_counter() - began
    del iterator

    if model.method is not None:
        if config.train.frozen_weights_in_autocast_dtype:
            model.store_frozen_weights(DTYPES[config.train.precision])
        # The recipe's optimizer at a constant rate: a step's cost does not depend on the schedule.
        stepper = build_stepper(model, OptimConfig(), config.train.precision, DistributedContext(device=device))
        tokens, frames, mask, _ = first
        times = []
        for _ in range(steps + 1):
            start = time.perf_counter()
            stepper.compute_gradients(tokens, frames, mask)
            stepper.apply_gradients()
            times.append(time.perf_counter() - start)
        step_seconds = statistics.median(times[1:])
    else:
        step_seconds = float("nan")
    loader_rate = delivered / loader_seconds if loader_seconds > 0 else float("inf")
    step_rate = batch / step_seconds
    return {
        "benchmark": "loader",
        "dataset": config.data.dataset,
        "source": frame_source(config).description,
        "workers": config.data.workers,
        "batch_size": batch,
        "frames": config.data.max_frames,
        "loader_samples_per_second": loader_rate,
        "step_samples_per_second": step_rate,
        "input_bound": loader_rate < step_rate,
        "headroom": loader_rate / step_rate,
    }


def format_table(report: dict) -> str:
    verdict = "INPUT-BOUND: add workers or use a frame cache" if report["input_bound"] else "compute-bound"
    return "\n".join(
        [
            f"data: {report['dataset']} from {report['source']}, {report['workers']} workers, "
            f"batch {report['batch_size']} x {report['frames']} frames",
            f"  the loader delivers  {report['loader_samples_per_second']:.1f} samples/s",
            f"  a training step uses {report['step_samples_per_second']:.1f} samples/s",
            f"  headroom {report['headroom']:.1f}x: {verdict}",
        ]
    )
