"""Training pairs streamed from WebDataset shards: every training sample exactly once per epoch, over all
processes and loader workers, with the same steps on every process.

The plan of an epoch (a function of seed and epoch only, so every process computes the same one):

1. The shards are put in a seeded order and their training samples laid end to end: positions ``0 … N-1``.
2. An epoch has ``steps = N // B`` global batches of ``B``; process ``r`` of ``W`` takes ``b = B / W`` of each.
   The DataLoader asks its ``K`` workers for batches in turn, so batch ``i`` of a process comes from its
   worker ``i mod K``: worker ``k`` owes ``len(range(k, steps, K))`` batches.
3. The positions are cut into consecutive slots, process by process and worker by worker, each as long
   as that worker owes; the last ``N mod B`` positions (different samples each epoch) wait for the next.
4. A worker streams the shards its slot covers (``webdataset``: no extraction to disk, reading stops once
   the slot is read), shuffles the raw samples in a seeded buffer of ``shuffle_buffer``, and only then
   decodes them. A run resumed at batch ``s`` of an epoch skips, undecoded, the samples of the batches
   done, and turns worker ``k`` into worker ``(k + s) mod K``, so it sees the batches an uninterrupted run
   would have, in the same order.

A sample whose video cannot be decoded is an error naming shard and key (``missing="fail"``), or is replaced
by the worker's previous good sample and said so (``"drop"``): the batch keeps its size and every process
its steps. Problems found by the scan (a truncated shard, a sample without caption) never get here
(``webdataset.ShardSet``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..errors import CmadapterError, DataError
from ..video.preprocess import to_model_input
from ..video.sampling import WHOLE_VIDEO, Sampling
from .shards import ShardSample, iter_shard_members
from .webdataset import ShardSet

log = logging.getLogger(__name__)


class ShardStream(IterableDataset):
    """``(tokens [L], frames [max_frames, 3, S, S], mask [max_frames], key)`` of the training split of shards."""

    def __init__(
        self,
        shards: ShardSet,
        tokenizer: Callable[[list[str]], torch.Tensor],
        image_size: int,
        max_frames: int = 12,
        fps: float = 1.0,
        *,
        seed: int = 0,
        shuffle_buffer: int = 100,
        missing: str = "fail",
        split: str = "train",
    ):
        if isinstance(shuffle_buffer, bool) or not isinstance(shuffle_buffer, int) or shuffle_buffer < 1:
            raise CmadapterError(f"shuffle_buffer must be a positive integer, got {shuffle_buffer!r}")
        by_shard: dict[str, list[ShardSample]] = {}
        for url, sample in shards.split_samples(split):
            by_shard.setdefault(url, []).append(sample)
        if not by_shard:
            raise DataError(f"{shards.description}: no {split} samples to train on")
        self.description = shards.description
        self.shards = list(by_shard.items())
        self.total = sum(len(samples) for _, samples in self.shards)
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.sampling = Sampling(fps=fps, max_frames=max_frames)
        self.seed, self.shuffle_buffer, self.missing = seed, shuffle_buffer, missing
        self.global_batch, self.rank, self.world_size = 1, 0, 1
        # Shared memory, so that persistent loader workers see the epoch and the resume point.
        self._position = torch.zeros(2, dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return self.total

    # ---- the plan -----------------------------------------------------------------------------------------------

    def configure(self, global_batch: int, *, rank: int = 0, world_size: int = 1) -> None:
        """The global batch and this process's place: set before the loader starts its workers."""
        from ..training.sampler import check_batch

        check_batch(self.total, global_batch, world_size)
        self.global_batch, self.rank, self.world_size = global_batch, rank, world_size

    def set_epoch(self, epoch: int, start_batch: int | None = None) -> None:
        """The epoch to stream; ``start_batch`` (batches of it already done) when resuming mid-epoch."""
        self._position[0] = epoch
        if start_batch is not None:
            self._position[1] = start_batch

    @property
    def steps(self) -> int:
        return self.total // self.global_batch

    @property
    def local_batch(self) -> int:
        return self.global_batch // self.world_size

    def slot(self, epoch: int, rank: int, worker: int, workers: int) -> list[tuple[str, ShardSample]]:
        """The samples (in stream order, before the shuffle) that ``worker`` of ``workers`` on process
        ``rank`` delivers in ``epoch``."""
        owed = [len(range(k, self.steps, workers)) * self.local_batch for k in range(workers)]
        begin = rank * self.steps * self.local_batch + sum(owed[:worker])
        end = begin + owed[worker]
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.shards))
        out: list[tuple[str, ShardSample]] = []
        position = 0
        for index in order:
            url, samples = self.shards[index]
            lo, hi = max(begin - position, 0), min(end - position, len(samples))
            out += [(url, s) for s in samples[lo:hi]]
            position += len(samples)
            if position >= end:
                break
        return out

    # ---- streaming ----------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]]:
        info = get_worker_info()
        physical, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch, start = (int(v) for v in self._position.tolist())
        worker = (physical + start) % workers  # resumed at batch `start`: the loader asks worker 0 first
        done = len(range(worker, start, workers)) * self.local_batch
        slot = self.slot(epoch, self.rank, worker, workers)
        raw = self._shuffled(self._read(slot), epoch, worker)
        for _ in range(done):  # the batches done before a resume: skipped without decoding
            next(raw)
        yield from self._decoded(raw)

    def _read(self, slot: list[tuple[str, ShardSample]]) -> Iterator[tuple[str, ShardSample, bytes]]:
        by_url: dict[str, dict[str, ShardSample]] = {}
        for url, sample in slot:
            by_url.setdefault(url, {})[sample.key] = sample
        for url, samples in by_url.items():
            for key, data in iter_shard_members(url, {k: s.member for k, s in samples.items()}):
                yield url, samples[key], data

    def _shuffled(self, items, epoch: int, worker: int):
        import random

        from webdataset.filters import shuffle

        seed = int(np.random.SeedSequence([self.seed, epoch, self.rank, worker]).generate_state(1)[0])
        return shuffle(self.shuffle_buffer, self.shuffle_buffer, rng=random.Random(seed))(items)

    def _decoded(self, raw) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]]:
        from ..video.member import read_member_clip

        last = None
        owed = 0  # dropped samples still to be replaced
        for url, sample, data in raw:
            what = f"shard {url} key {sample.key!r}"
            try:
                clip = read_member_clip(data, sample.extension, what, self.sampling, self.image_size, WHOLE_VIDEO)
            except DataError as exc:
                if self.missing != "drop":
                    raise DataError(
                        f"{exc}. Fix the shard, or set data.missing=drop to leave such samples out"
                    ) from exc
                log.warning("dropping %s (replaced by the worker's previous sample): %s", what, exc)
                if last is not None:
                    yield last
                else:
                    owed += 1
                continue
            frames, mask = to_model_input(clip.frames, self.sampling.max_frames)
            last = (self.tokenizer([sample.caption])[0], frames, mask, sample.key)
            for _ in range(1 + owed):
                yield last
            owed = 0
        if owed:
            raise DataError(f"{self.description}: every sample of a loader worker's share failed to decode")
