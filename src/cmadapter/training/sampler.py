"""The training order: a seeded permutation per epoch, cut into global batches, split over processes.

Global batch ``b`` of an epoch is items ``perm[b*B : (b+1)*B]``; process ``r`` of ``W`` takes the
``r``-th contiguous slice of it, so concatenating the processes' batches in rank order gives exactly
the batch one process would see. The order depends only on (seed, epoch), so a run resumed at step
``s`` of an epoch skips the first ``s`` batches and sees the same data as an uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from ..errors import ConfigError


class EpochBatchSampler(Sampler[list[int]]):
    def __init__(
        self,
        num_items: int,
        global_batch_size: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ):
        check_batch(num_items, global_batch_size, world_size)
        self.num_items = num_items
        self.global_batch_size = global_batch_size
        self.local_batch_size = global_batch_size // world_size
        self.seed, self.rank, self.world_size, self.shuffle = seed, rank, world_size, shuffle
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        # Incomplete last batch dropped: every step has the full global batch (the InfoNCE negatives).
        return self.num_items // self.global_batch_size - self.start_batch

    def order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.num_items)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(self.num_items, generator=generator)

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order()
        batches = self.num_items // self.global_batch_size
        lo = self.rank * self.local_batch_size
        for b in range(self.start_batch, batches):
            batch = order[b * self.global_batch_size : (b + 1) * self.global_batch_size]
            yield batch[lo : lo + self.local_batch_size].tolist()


def check_batch(num_items: int, global_batch_size: int, world_size: int = 1) -> None:
    """A global batch that the processes share evenly and the training set fills at least once."""
    if isinstance(global_batch_size, bool) or not isinstance(global_batch_size, int) or global_batch_size < 1:
        raise ConfigError(f"train.batch_size must be a positive integer, got {global_batch_size!r}")
    if global_batch_size % world_size:
        raise ConfigError(
            f"train.batch_size={global_batch_size} is not divisible by the {world_size} processes; "
            "the global batch is split evenly over them"
        )
    if num_items < global_batch_size:
        raise ConfigError(
            f"train.batch_size={global_batch_size} is larger than the training set ({num_items} samples); "
            "no step could run"
        )
