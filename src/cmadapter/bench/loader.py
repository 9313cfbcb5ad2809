"""``cmadapter bench loader``: is training input-bound? Samples/s the training data pipeline delivers (the
config's dataset, frame cache or videos, and workers) beside the samples/s a training step consumes.

With ``sources``, the same clips are read several ways in one run, each through the trainer's own loader:
``videos`` (decoded from the videos folder at every read), ``cache`` (the frame cache) and ``shards``
(WebDataset shards holding the same videos, streamed). No evaluation split is built for any of them.
"""

from __future__ import annotations

import copy
import statistics
import time

from ..config import RunConfig
from ..errors import CmadapterError

SOURCES = ("videos", "cache", "shards")


def source_config(config: RunConfig, source: str | None, shards: str | None = None) -> RunConfig:
    """``config`` reading its training clips from ``source`` (None: as it is), with no evaluation split."""
    variant = copy.deepcopy(config)
    data = variant.data
    data.val_split = data.test_split = None
    if source == "videos":
        if data.videos is None:
            raise CmadapterError("--sources videos: the config has no data.videos")
        data.cache = None
    elif source == "cache":
        if data.cache is None:
            raise CmadapterError("--sources cache: the config has no data.cache (write one with `cmadapter prepare`)")
    elif source == "shards":
        if not shards:
            raise CmadapterError("--sources shards needs --shards PATTERN: the same videos as WebDataset shards")
        data.dataset, data.annotations, data.videos, data.cache = "webdataset", shards, None, None
        data.dataset_options = {k: v for k, v in data.dataset_options.items() if k == "shuffle_buffer"}
    elif source is not None:
        raise CmadapterError(f"unknown loader source {source!r}; choose from {', '.join(SOURCES)}")
    if data.dataset in ("captions", "webdataset") and "split_file" not in data.dataset_options:
        data.dataset_options = {**data.dataset_options, "val_fraction": 0, "test_fraction": 0}  # every clip trains
    return variant


def loader_rate(config: RunConfig, model, batches: int) -> tuple[float, str, tuple]:
    """(samples/s over ``batches`` batches after the first, the source's description, the first batch)."""
    from ..training.data import build_training_data, training_loader
    from ..training.distributed import resolve_device

    data = build_training_data(config, model)
    batch = config.train.batch_size
    loader, positioner = training_loader(
        data.train,
        data.collate,
        batch,
        seed=config.train.seed,
        device=resolve_device(config.train.device),
        workers=config.data.workers,
    )
    positioner.set_epoch(0, 0)
    iterator = iter(loader)
    first = next(iterator)  # workers started, first batch ready: not part of the steady state
    began = time.perf_counter()
    delivered = 0
    for _ in range(min(batches, len(data.train) // batch - 1)):
        delivered += len(next(iterator)[3])
    seconds = time.perf_counter() - began
    del iterator
    train = data.train
    description = train.description if hasattr(train, "description") else train.reader.source.description
    return (delivered / seconds if seconds > 0 else float("inf")), description, first


def benchmark(
    config: RunConfig,
    *,
    batches: int = 20,
    steps: int = 3,
    sources: list[str] | None = None,
    shards: str | None = None,
) -> dict:
    from ..config import OptimConfig
    from ..model import build_model_from_config
    from ..precision import DTYPES
    from ..training.distributed import DistributedContext, resolve_device
    from ..training.stepper import build_stepper

    device = resolve_device(config.train.device)
    model = build_model_from_config(config.model, device)
    rows = []
    first = None
    for source in sources or [None]:
        rate, description, batch = loader_rate(source_config(config, source, shards), model, batches)
        rows.append({"source": source or "config", "description": description, "loader_samples_per_second": rate})
        first = first or batch

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
    batch = config.train.batch_size
    step_rate = batch / step_seconds
    loader_rate_first = rows[0]["loader_samples_per_second"]
    return {
        "benchmark": "loader",
        "dataset": config.data.dataset,
        "source": rows[0]["description"],
        "workers": config.data.workers,
        "batch_size": batch,
        "frames": config.data.max_frames,
        "loader_samples_per_second": loader_rate_first,
        "step_samples_per_second": step_rate,
        "input_bound": loader_rate_first < step_rate,
        "headroom": loader_rate_first / step_rate,
        "sources": [{**row, "headroom": row["loader_samples_per_second"] / step_rate} for row in rows],
    }


def format_table(report: dict) -> str:
    verdict = "INPUT-BOUND: add workers or use a frame cache" if report["input_bound"] else "compute-bound"
    lines = [
        f"data: {report['dataset']} from {report['source']}, {report['workers']} workers, "
        f"batch {report['batch_size']} x {report['frames']} frames",
        f"  the loader delivers  {report['loader_samples_per_second']:.1f} samples/s",
        f"  a training step uses {report['step_samples_per_second']:.1f} samples/s",
        f"  headroom {report['headroom']:.1f}x: {verdict}",
    ]
    if len(report["sources"]) > 1:
        lines.append("the same clips from each source (samples/s, headroom over the training step):")
        lines += [
            f"  {row['source']:<7} {row['loader_samples_per_second']:>8.1f}  {row['headroom']:>6.1f}x  {row['description']}"
            for row in report["sources"]
        ]
    return "\n".join(lines)
