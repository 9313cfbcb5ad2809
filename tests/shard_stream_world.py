"""Streams WebDataset shards through the trainer's loader in one process of a torchrun world (gloo on CPU);
rank 0 writes every rank's batch keys per epoch to OUT/keys.json (see test_shards_distributed.py)."""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(__file__))

from cmadapter.datasets.shard_stream import ShardStream
from cmadapter.datasets.webdataset import ShardSet
from cmadapter.training.data import training_loader
from cmadapter.training.distributed import init_distributed, shutdown_distributed


def tokenize(texts: list[str]) -> torch.Tensor:
    return torch.tensor([len(t) for t in texts])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shards", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    context = init_distributed("cpu")
    try:
        shards = ShardSet(args.shards, val_fraction=0, test_fraction=0)
        data = ShardStream(shards, tokenize, image_size=32, max_frames=2, seed=3, shuffle_buffer=4)
        loader, positioner = training_loader(
            data, None, args.batch, seed=3, rank=context.rank, world_size=context.world_size, workers=args.workers
        )
        epochs = []
        for epoch in range(args.epochs):
            positioner.set_epoch(epoch, 0)
            mine = [list(ids) for *_, ids in loader]
            every = [None] * context.world_size
            dist.all_gather_object(every, mine)
            epochs.append(every)
        if context.is_main:
            backend = dist.get_backend()
            with open(os.path.join(args.out, "keys.json"), "w") as f:
                json.dump({"backend": backend, "world_size": context.world_size, "epochs": epochs}, f)
    finally:
        shutdown_distributed(context)


if __name__ == "__main__":
    main()
